#!/usr/bin/python3
"""Data-parallel scaling on this machine, measured in one go.

    /usr/bin/python3 tools/dp_scaling.py [--sizes small,medium] [--rounds 2] [--patchgrad build/patchgrad]

For each size, alternately `rounds` times:
  mpirun -n 2 patchgrad bench --size S --threads 1 --json
      (2 ranks x 1 thread, weak scaling; the same run also times rank 0's
      steps alone: 1 rank x 1 thread)
  patchgrad bench --size S --threads 2 --json   (1 rank x 2 threads)
and prints a Markdown table of images per second (median over the rounds,
with the min-max spread), the 2-rank speed-up over one rank and over one
rank with 2 threads, the wait for the reduction after backward and the
share of a whole reduction hidden behind backward. Run it on an idle
machine (OpenMPI as root: the script passes --allow-run-as-root).
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_compare import run_json  # noqa: E402  (one copy of the JSON reader)


def spread(xs):
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="small,medium")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--patchgrad", default="build/patchgrad")
    a = ap.parse_args()
    batch = {"tiny": 32, "small": 64, "medium": 16}
    mpi = ["mpirun", "-n", "2", "--allow-run-as-root", "--bind-to", "none",
           "--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none"]
    rows = []
    for size in a.sizes.split(","):
        solo, dp, threads2, wait, hidden = [], [], [], [], []
        for _ in range(a.rounds):
            d = run_json(mpi + [a.patchgrad, "bench", "--size", size, "--threads", "1", "--json"])
            t = run_json([a.patchgrad, "bench", "--size", size, "--threads", "2", "--json"])
            b = batch[size]
            solo.append(1e3 * b / d["solo_step_ms"])
            dp.append(1e3 * 2 * b / d["step_median_ms"])
            threads2.append(1e3 * b / t["step_median_ms"])
            wait.append(d["comm_wait_ms"])
            hidden.append(100.0 * max(0.0, 1.0 - d["comm_wait_ms"] / d["allreduce_ms"]) if d["allreduce_ms"] > 0 else 0.0)
        rows.append((size, solo, dp, threads2, wait, hidden, d["solo_step_ms"], d["allreduce_ms"]))
    print("| size | 1 rank x 1 thread | 2 ranks x 1 thread | 1 rank x 2 threads | 2 ranks / 1 rank | 2 ranks / 2 threads "
          "| wait after backward | reduction hidden | compute per step (1 thread) | whole reduction |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, solo, dp, threads2, wait, hidden, step_ms, red_ms in rows:
        r1 = [x / y for x, y in zip(dp, solo)]
        r2 = [x / y for x, y in zip(dp, threads2)]
        print(f"| {size} | {spread(solo)} img/s | {spread(dp)} img/s | {spread(threads2)} img/s | "
              f"{statistics.median(r1):.2f}x ({min(r1):.2f}-{max(r1):.2f}) | "
              f"{statistics.median(r2):.2f}x ({min(r2):.2f}-{max(r2):.2f}) | "
              f"{statistics.median(wait):.2f} ms | {statistics.median(hidden):.0f}% | {step_ms:.0f} ms | {red_ms:.2f} ms |")


if __name__ == "__main__":
    main()
