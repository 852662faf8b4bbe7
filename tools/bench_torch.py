#!/usr/bin/python3
"""PyTorch side of `patchgrad bench`: the same DiT training steps (diffusion
loss forward, backward, AdamW lr 1e-4 update) on random latents, timed the
same way, with the same thread count. Run with Debian's /usr/bin/python3.

    /usr/bin/python3 tools/bench_torch.py --size small --threads 2 [--steps K] [--warmup W] [--json]
                                          [--autocast bf16]

--autocast bf16 runs the forward pass (and so the matching backward) under
torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's mixed precision on
CPU, against which `patchgrad bench --precision bf16` is compared.

Debian's torch does its matrix products through the system BLAS, which is
BLIS once libblis-dev is installed. BLIS 0.9 runs its slow generic kernels on
AMD CPUs newer than Zen 3, so by default this script gives torch the same
BLIS kernels patchgrad picks (autograd/runtime.c: BLIS_ARCH_TYPE = skx on AMD
CPUs with AVX-512); --blas-as-installed leaves BLIS to its own detection.
"""
import argparse
import json
import os
import resource
import sys
import time

SIZES = {  # input, hidden, depth, heads, batch, default steps (cli/sizes.c)
    "tiny": (8, 64, 2, 4, 32, 50),
    "small": (16, 128, 4, 4, 64, 20),
    "medium": (32, 384, 6, 6, 16, 8),
}


# BLIS 0.9's arch_t ids (its enum order) for the kernel sets of x86-64.
BLIS_ARCH_IDS = {"skx": "0", "knl": "1", "haswell": "3", "sandybridge": "4", "penryn": "5",
                 "zen3": "6", "zen2": "7", "zen": "8", "excavator": "9", "steamroller": "10",
                 "piledriver": "11", "bulldozer": "12"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small", choices=sorted(SIZES))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="bf16: forward under torch.autocast('cpu', dtype=torch.bfloat16)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of every number")
    ap.add_argument("--blis-arch", default=None,
                    help="BLIS kernel set to run (skx, zen3, ...), as patchgrad bench reports it")
    args = ap.parse_args()

    # Threads and BLAS kernels must be fixed before torch (and BLIS) load.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["BLIS_NUM_THREADS"] = str(args.threads)
    arch = BLIS_ARCH_IDS.get(args.blis_arch) if args.blis_arch else None
    if args.blis_arch and arch is None:
        sys.exit("bench_torch: --blis-arch %s is not one of %s" % (args.blis_arch, ", ".join(sorted(BLIS_ARCH_IDS))))
    if arch is not None and "BLIS_ARCH_TYPE" not in os.environ:
        os.environ["BLIS_ARCH_TYPE"] = arch
    import torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from dit_torch import DiT, Diffusion, forward_gemm_flops

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    inp, hidden, depth, heads, batch, default_steps = SIZES[args.size]
    steps = args.steps or default_steps
    model = DiT(inp, 4, 2, hidden, depth, heads, 4, 10)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    diff = Diffusion()
    gen = torch.Generator().manual_seed(args.seed)
    x0 = torch.randn(batch, inp, inp, 4, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)

    def step():
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast == "bf16"):
            loss = diff.loss(model, x0, y, training=True, generator=gen)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=False)
        t3 = time.perf_counter()
        if not torch.isfinite(loss):
            sys.exit("bench_torch: the loss is not finite")
        return [1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2)]

    for _ in range(args.warmup):
        step()
    cpu0 = time.process_time()
    times = [step() for _ in range(steps)]
    cpu_per_step = 1e3 * (time.process_time() - cpu0) / steps
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def med(v):
        v = sorted(v)
        n = len(v)
        return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])

    phases = [[t[p] for t in times] for p in range(3)] + [[sum(t) for t in times]]
    gflop = 3 * forward_gemm_flops(inp, 4, 2, hidden, depth, heads, 4, batch) * 1e-9
    step_med = med(phases[3])
    print("torch bench: size %s (input %dx%d, hidden %d, depth %d, heads %d, batch %d), %d threads, "
          "%d steps after %d warm-up, torch %s, autocast %s, BLIS_ARCH_TYPE=%s"
          % (args.size, inp, inp, hidden, depth, heads, batch, args.threads, steps, args.warmup,
             torch.__version__, args.autocast, os.environ.get("BLIS_ARCH_TYPE", "(BLIS detects)")))
    print("%-10s %10s %10s %10s" % ("phase", "median ms", "min ms", "max ms"))
    for name, v in zip(("forward", "backward", "optimizer", "step"), phases):
        print("%-10s %10.3f %10.3f %10.3f" % (name, med(v), min(v), max(v)))
    print("GEMM work  %.3f GFLOP per step (3 x forward), %.1f GFLOP/s at the median" % (gflop, gflop / (step_med * 1e-3)))
    print("CPU time   %.3f ms per step (all threads)" % cpu_per_step)
    print("peak RSS   %.1f MiB" % rss)
    if args.json:
        print(json.dumps({"tool": "torch", "size": args.size, "threads": args.threads, "steps": steps,
                          "precision": "bf16" if args.autocast == "bf16" else "fp32",
                          "forward_ms": med(phases[0]), "backward_ms": med(phases[1]),
                          "optimizer_ms": med(phases[2]), "step_median_ms": step_med,
                          "step_min_ms": min(phases[3]), "step_max_ms": max(phases[3]), "gflop": gflop,
                          "gflops": gflop / (step_med * 1e-3), "cpu_ms_per_step": cpu_per_step,
                          "peak_rss_mib": rss,
                          "blis_arch_type": os.environ.get("BLIS_ARCH_TYPE")}))


if __name__ == "__main__":
    main()
