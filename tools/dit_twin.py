"""The PyTorch twin of a `patchgrad train` run (docs/dit.md, "Training objective").

Starts from the C run's initial weights (DIR/init.h5), trains the same model
(tools/dit_torch.py) on the same latents with the same optimizer settings,
and measures the validation loss on the C run's own fixed draws
(DIR/val_draws.h5: x0, t, eps, y), at the same steps. The two programs'
random generators differ, so the batches, timesteps and noise of training
differ; the validation problem is identical. Prints both curves side by side
and the final ratio, and writes DIR/twin_loss.csv.

    /usr/bin/python3 tools/dit_twin.py --run out --data train.h5 --steps 4000 \
        --lr 5e-4 --batch 64 --val-every 250 --threads 2

Needs Debian's python3-torch and python3-h5py; the C build and tests do not.
"""
import argparse
import csv
import math
import os
import sys
import time

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dit_torch import DiT, Diffusion  # noqa: E402


def load_model(init_path):
    with h5py.File(init_path, "r") as f:
        c = {k: int(f["config"].attrs[k]) for k in ("input_size", "in_channels", "patch_size", "hidden",
                                                    "depth", "heads", "mlp_ratio", "num_classes")}
        dropout = float(f["config"].attrs.get("class_dropout", 0.1))
        m = DiT(c["input_size"], c["in_channels"], c["patch_size"], c["hidden"], c["depth"], c["heads"],
                c["mlp_ratio"], c["num_classes"], class_dropout=dropout)
        state = {name: torch.from_numpy(f["params"][name][()]) for name in f["params"]}
    m.load_state_dict(state, strict=True)
    return m


def validation_loss(model, diff, val, batch):
    model.eval()
    total, n = 0.0, val["x0"].shape[0]
    with torch.no_grad():
        for s in range(0, n, batch):
            x0, eps = val["x0"][s:s + batch], val["eps"][s:s + batch]
            t = val["t"][s:s + batch]
            ab = diff.alpha_bar[t.long()].to(torch.float32).view(-1, 1, 1, 1)
            xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
            y = val["y"][s:s + batch] if model.num_classes > 0 else None
            pred = model(xt, t, y)
            total += torch.mean((pred - eps) ** 2).item() * x0.shape[0]
    model.train()
    return total / n


def read_c_curve(path):
    rows = {}
    if os.path.exists(path):
        with open(path) as f:
            for r in csv.DictReader(f):
                if r["val_loss"]:
                    rows[int(r["step"])] = float(r["val_loss"])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="output folder of the C run (init.h5, val_draws.h5, loss.csv)")
    ap.add_argument("--data", required=True, help="the training latents the C run used")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--optim", choices=["adamw", "adam", "sgd"], default="adamw")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--warmup", type=int, default=0, help="linear warmup steps (lr 0 on the first update, as patchgrad)")
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = load_model(os.path.join(a.run, "init.h5"))
    diff = Diffusion()
    with h5py.File(a.data, "r") as f:
        data = torch.from_numpy(f["latents"][()])
        labels = torch.from_numpy(f["labels"][()]).long() if "labels" in f else None
    with h5py.File(os.path.join(a.run, "val_draws.h5"), "r") as f:
        val = {k: torch.from_numpy(f[k][()]) for k in ("x0", "eps", "t", "y")}
    val["y"] = val["y"].long()

    params = [p for p in model.parameters() if p.requires_grad]
    if a.optim == "adamw":
        opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.weight_decay)
    elif a.optim == "adam":
        opt = torch.optim.Adam(params, lr=a.lr, weight_decay=a.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)

    # patchgrad's warmup: the update after k updates uses lr * k / warmup
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, k / a.warmup) if a.warmup > 0 else 1.0)
    gen = torch.Generator().manual_seed(a.seed)
    n, step, curve, t0 = data.shape[0], 0, {}, time.time()
    while step < a.steps:
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n - a.batch + 1, a.batch):
            idx = perm[s:s + a.batch]
            y = labels[idx] if (labels is not None and model.num_classes > 0) else None
            loss = diff.loss(model, data[idx], y, training=True, generator=gen)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % a.val_every == 0 or step == a.steps:
                curve[step] = validation_loss(model, diff, val, a.batch)
                print("step %d: validation loss %.5f (%.1f steps/s)" % (step, curve[step], step / (time.time() - t0)),
                      flush=True)
            if step == a.steps:
                break

    c_curve = read_c_curve(os.path.join(a.run, "loss.csv"))
    with open(os.path.join(a.run, "twin_loss.csv"), "w") as f:
        f.write("step,torch_val_loss,patchgrad_val_loss\n")
        for s in sorted(curve):
            f.write("%d,%.6g,%s\n" % (s, curve[s], ("%.6g" % c_curve[s]) if s in c_curve else ""))
    print("\n  step   PyTorch  patchgrad")
    for s in sorted(curve):
        print("%6d  %8.5f  %s" % (s, curve[s], ("%8.5f" % c_curve[s]) if s in c_curve else "       -"))
    last = max(curve)
    if last in c_curve:
        ratio = c_curve[last] / curve[last]
        print("final validation loss: patchgrad %.5f, PyTorch %.5f, ratio %.3f (%s 5%%)"
              % (c_curve[last], curve[last], ratio, "within" if abs(ratio - 1) <= 0.05 else "NOT within"))
        return 0 if abs(ratio - 1) <= 0.05 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
