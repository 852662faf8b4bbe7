#!/usr/bin/python3
"""patchgrad vs PyTorch on the benchmark's DiT training steps, in one go.

    /usr/bin/python3 tools/bench_compare.py [--configs S,M,L] [--threads 2] [--rounds 3]
                                            [--floor] [--patchgrad build/patchgrad]

Runs `patchgrad bench --json` and tools/bench_torch.py --json alternately,
`rounds` times per config, so that drift of a shared machine hits both
sides alike; each side's figure is the median over the rounds of its
per-run median step. --floor also measures the GEMM floor (BLIS's own
time for every product of a step, in the patchgrad runs). Prints a
Markdown table (the README's) with the ratios.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON line from " + " ".join(cmd))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="S,M,L")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0, help="timed steps per run (default: the tools' own)")
    ap.add_argument("--floor", action="store_true", help="measure the GEMM floor in the patchgrad runs")
    ap.add_argument("--patchgrad", default=os.path.join(HERE, "..", "build", "patchgrad"))
    ap.add_argument("--torch-blas-as-installed", action="store_true",
                    help="pass --blas-as-installed to bench_torch.py")
    args = ap.parse_args()

    rows = []
    for cfg in args.configs.split(","):
        pg_runs, th_runs = [], []
        for r in range(args.rounds):
            pg = [args.patchgrad, "bench", "--config", cfg, "--threads", str(args.threads), "--json"]
            th = ["/usr/bin/python3", os.path.join(HERE, "bench_torch.py"), "--config", cfg,
                  "--threads", str(args.threads), "--json"]
            if args.steps:
                pg += ["--steps", str(args.steps)]
                th += ["--steps", str(args.steps)]
            if args.floor and r == 0:
                pg.append("--floor")
            if args.torch_blas_as_installed:
                th.append("--blas-as-installed")
            # alternate which side goes first, so neither always gets the cooler machine
            for side in ((pg, pg_runs), (th, th_runs)) if r % 2 == 0 else ((th, th_runs), (pg, pg_runs)):
                side[1].append(run_json(side[0]))
                print("%s %s round %d: %.2f ms" % (side[1][-1]["tool"], cfg, r + 1, side[1][-1]["step_median_ms"]),
                      file=sys.stderr)
        med = lambda runs, key: statistics.median(x[key] for x in runs)
        floor = next((x for x in pg_runs if "floor_ms" in x), None)
        rows.append({
            "config": cfg,
            "pg_ms": med(pg_runs, "step_median_ms"), "th_ms": med(th_runs, "step_median_ms"),
            "pg_gflops": med(pg_runs, "gflops"), "th_gflops": med(th_runs, "gflops"),
            "pg_fwd": med(pg_runs, "forward_ms"), "pg_bwd": med(pg_runs, "backward_ms"),
            "pg_opt": med(pg_runs, "optimizer_ms"),
            "th_fwd": med(th_runs, "forward_ms"), "th_bwd": med(th_runs, "backward_ms"),
            "th_opt": med(th_runs, "optimizer_ms"),
            "pg_rss": max(x["peak_rss_mib"] for x in pg_runs), "th_rss": max(x["peak_rss_mib"] for x in th_runs),
            "allocs": max(x["allocations"] for x in pg_runs),
            "floor_ms": floor["floor_ms"] if floor else None,
            "blis_gflops": floor["blis_gflops"] if floor else None,
        })

    print("\n%d threads, median step over %d alternating rounds per side\n" % (args.threads, args.rounds))
    print("| config | patchgrad ms/step | PyTorch ms/step | ratio | patchgrad GFLOP/s | PyTorch GFLOP/s "
          "| GEMM floor ms | x floor | % of BLIS rate | peak RSS MiB (pg / torch) | allocations |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fl = "%.1f" % r["floor_ms"] if r["floor_ms"] else "-"
        xf = "%.2fx" % (r["pg_ms"] / r["floor_ms"]) if r["floor_ms"] else "-"
        pb = "%.0f%% of %.0f" % (100 * r["pg_gflops"] / r["blis_gflops"], r["blis_gflops"]) if r["blis_gflops"] else "-"
        print("| %s | %.2f | %.2f | %.2fx | %.1f | %.1f | %s | %s | %s | %.0f / %.0f | %d |"
              % (r["config"], r["pg_ms"], r["th_ms"], r["pg_ms"] / r["th_ms"], r["pg_gflops"], r["th_gflops"],
                 fl, xf, pb, r["pg_rss"], r["th_rss"], r["allocs"]))
    print("\nphases (ms, median): patchgrad forward / backward / optimizer vs PyTorch")
    for r in rows:
        print("  %s: %.2f / %.2f / %.2f   vs   %.2f / %.2f / %.2f"
              % (r["config"], r["pg_fwd"], r["pg_bwd"], r["pg_opt"], r["th_fwd"], r["th_bwd"], r["th_opt"]))


if __name__ == "__main__":
    main()
