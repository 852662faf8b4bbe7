#!/usr/bin/python3
"""patchgrad vs PyTorch on the benchmark's DiT training steps, in one go.

    /usr/bin/python3 tools/bench_compare.py [--sizes tiny,small,medium] [--threads 2] [--rounds 3]
                                            [--floor] [--precisions fp32,bf16] [--contend N]
                                            [--patchgrad build/patchgrad]

Runs `patchgrad bench --json` and tools/bench_torch.py --json alternately,
`rounds` times per size, so that drift of a shared machine hits both
sides alike; each side's figure is the median over the rounds of its
per-run median step. --precisions fp32,bf16 adds bf16 mixed precision on
both sides (patchgrad --precision bf16, torch.autocast on PyTorch's side).
--contend N repeats every measurement beside N busy processes (a shared
machine) and reports the throughput kept. --floor also measures the GEMM floor (BLIS's own
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


def busy_processes(n):
    """n processes that spin on a core each, as other users' jobs would."""
    return [subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"]) for _ in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,small,medium")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0, help="timed steps per run (default: the tools' own)")
    ap.add_argument("--floor", action="store_true", help="measure the GEMM floor in the patchgrad runs")
    ap.add_argument("--precisions", default="fp32",
                    help="comma list of fp32, bf16: bf16 runs `patchgrad bench --precision bf16` "
                         "against PyTorch under torch.autocast('cpu', dtype=torch.bfloat16)")
    ap.add_argument("--contend", type=int, default=0,
                    help="also run every measurement beside N busy processes and report "
                         "throughput relative to idle (same run, alternating)")
    ap.add_argument("--patchgrad", default=os.path.join(HERE, "..", "build", "patchgrad"))
    ap.add_argument("--torch-blas-as-installed", action="store_true",
                    help="let BLIS detect its kernels in PyTorch instead of giving it patchgrad's")
    args = ap.parse_args()

    loads = [0] + ([args.contend] if args.contend else [])
    # the kernel set patchgrad's start-up timing picks, for PyTorch's BLIS too
    blis_kernels = run_json([args.patchgrad, "bench", "--size", "tiny", "--steps", "1", "--warmup", "0",
                             "--threads", "1", "--json"]).get("blis_kernels")
    print("BLIS kernels on both sides: %s" % blis_kernels, file=sys.stderr)
    rows = []
    for cfg in args.sizes.split(","):
        for prec in args.precisions.split(","):
            for load in loads:
                pg_runs, th_runs = [], []
                for r in range(args.rounds):
                    pg = [args.patchgrad, "bench", "--size", cfg, "--threads", str(args.threads), "--json"]
                    th = ["/usr/bin/python3", os.path.join(HERE, "bench_torch.py"), "--size", cfg,
                          "--threads", str(args.threads), "--json"]
                    if prec != "fp32":
                        pg += ["--precision", prec]
                        th += ["--autocast", prec]
                    if args.steps:
                        pg += ["--steps", str(args.steps)]
                        th += ["--steps", str(args.steps)]
                    if args.floor and r == 0 and prec == "fp32" and load == 0:
                        pg.append("--floor")
                    if not args.torch_blas_as_installed and blis_kernels:
                        th += ["--blis-arch", blis_kernels]
                    # alternate which side goes first, so neither always gets the cooler machine
                    for side in ((pg, pg_runs), (th, th_runs)) if r % 2 == 0 else ((th, th_runs), (pg, pg_runs)):
                        busy = busy_processes(load)
                        try:
                            side[1].append(run_json(side[0]))
                        finally:
                            for p in busy:
                                p.kill()
                                p.wait()
                        print("%s %s %s load %d round %d: %.2f ms" % (side[1][-1]["tool"], cfg, prec, load, r + 1,
                                                                    side[1][-1]["step_median_ms"]), file=sys.stderr)
                med = lambda runs, key: statistics.median(x[key] for x in runs)
                spread = lambda runs: (min(x["step_median_ms"] for x in runs), max(x["step_median_ms"] for x in runs))
                floor = next((x for x in pg_runs if "floor_ms" in x), None)
                rows.append({
                    "size": cfg, "precision": prec, "load": load,
                    "pg_ms": med(pg_runs, "step_median_ms"), "th_ms": med(th_runs, "step_median_ms"),
                    "pg_spread": spread(pg_runs), "th_spread": spread(th_runs),
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

    print("\n%d threads, median step over %d alternating rounds per side (min-max of the rounds' medians)\n"
          % (args.threads, args.rounds))
    print("| size | precision | busy processes | patchgrad ms/step | PyTorch ms/step | ratio | patchgrad GFLOP/s "
          "| PyTorch GFLOP/s | GEMM floor ms | x floor | % of BLIS rate | peak RSS MiB (pg / torch) | allocations |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fl = "%.1f" % r["floor_ms"] if r["floor_ms"] else "-"
        xf = "%.2fx" % (r["pg_ms"] / r["floor_ms"]) if r["floor_ms"] else "-"
        pb = "%.0f%% of %.0f" % (100 * r["pg_gflops"] / r["blis_gflops"], r["blis_gflops"]) if r["blis_gflops"] else "-"
        print("| %s | %s | %d | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2fx | %.1f | %.1f | %s | %s | %s | %.0f / %.0f | %s |"
              % (r["size"], r["precision"], r["load"], r["pg_ms"], r["pg_spread"][0], r["pg_spread"][1],
                 r["th_ms"], r["th_spread"][0], r["th_spread"][1], r["pg_ms"] / r["th_ms"], r["pg_gflops"],
                 r["th_gflops"], fl, xf, pb, r["pg_rss"], r["th_rss"],
                 "not counted" if r["allocs"] < 0 else "%d" % r["allocs"]))
    print("\nphases (ms, median): patchgrad forward / backward / optimizer vs PyTorch")
    for r in rows:
        print("  %s %s load %d: %.2f / %.2f / %.2f   vs   %.2f / %.2f / %.2f"
              % (r["size"], r["precision"], r["load"], r["pg_fwd"], r["pg_bwd"], r["pg_opt"],
                 r["th_fwd"], r["th_bwd"], r["th_opt"]))
    by = {(r["size"], r["precision"], r["load"]): r for r in rows}
    for cfg in args.sizes.split(","):
        if "bf16" in args.precisions and "fp32" in args.precisions:
            a, b = by[(cfg, "bf16", 0)], by[(cfg, "fp32", 0)]
            print("%s: bf16 / fp32 step, same run: patchgrad %.2fx, PyTorch %.2fx; patchgrad bf16 / PyTorch autocast %.2fx"
                  % (cfg, a["pg_ms"] / b["pg_ms"], a["th_ms"] / b["th_ms"], a["pg_ms"] / a["th_ms"]))
        if args.contend:
            for prec in args.precisions.split(","):
                idle, busy = by[(cfg, prec, 0)], by[(cfg, prec, args.contend)]
                print("%s %s beside %d busy processes: patchgrad keeps %.0f%% of its idle throughput, PyTorch %.0f%%"
                      % (cfg, prec, args.contend, 100 * idle["pg_ms"] / busy["pg_ms"], 100 * idle["th_ms"] / busy["th_ms"]))


if __name__ == "__main__":
    main()
