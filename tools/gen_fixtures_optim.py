#!/usr/bin/python3
"""Writes tests/data/optim_torch.h5: torch.optim trajectories that
tests/test_optim.c replays with patchgrad's optimizers.

Each case (a group at the root) holds the optimizer's settings as attributes
(optimizer, lr, momentum, dampening, nesterov, weight_decay, beta1, beta2, eps,
amsgrad, decay_weights_only, steps) and, for each parameter NAME ("weight",
and in the group cases "bias"; the name is also its kind): `NAME.init`
(float32), `NAME.grads` [steps, *shape] (float32), `NAME.traj`
[steps, *shape] (float64: the parameter after every step, PyTorch run in
float64 from the same float32 values), and `NAME.final32` (PyTorch's own
float32 result after the last step).

decay_weights_only = 1 is written for PyTorch as two param groups, the second
(biases) with weight_decay=0.

Run with Debian's python (torch 1.13, h5py): /usr/bin/python3 tools/gen_fixtures_optim.py
"""
import os

import h5py
import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "optim_torch.h5")

SGD = dict(optimizer="sgd", momentum=0.0, dampening=0.0, nesterov=0, weight_decay=0.0)
ADAM = dict(optimizer="adam", beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=0)
ADAMW = dict(ADAM, optimizer="adamw", weight_decay=1e-2)

# name: (settings, steps, grads recipe)
CASES = {
    "sgd_plain": (dict(SGD, lr=0.1), 24, "normal"),
    "sgd_momentum": (dict(SGD, lr=0.05, momentum=0.9), 24, "normal"),
    "sgd_dampening_wd": (dict(SGD, lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01), 24, "normal"),
    "sgd_nesterov_wd": (dict(SGD, lr=0.02, momentum=0.85, nesterov=1, weight_decay=1e-3), 24, "normal"),
    "sgd_zero_grads": (dict(SGD, lr=0.1, momentum=0.9, weight_decay=0.05), 24, "zeros"),
    "sgd_groups": (dict(SGD, lr=0.05, momentum=0.9, weight_decay=0.1, decay_weights_only=1), 24, "two"),
    "adam_default": (dict(ADAM, lr=1e-3), 24, "normal"),
    "adam_wd_betas": (dict(ADAM, lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.05), 24, "scales"),
    "adam_amsgrad": (dict(ADAM, lr=0.02, amsgrad=1, weight_decay=0.01), 24, "normal"),
    "adam_zero_grads": (dict(ADAM, lr=0.01, weight_decay=0.1), 24, "zeros"),
    "adam_long": (dict(ADAM, lr=3e-3, beta2=0.95), 60, "normal"),
    "adamw_default": (dict(ADAMW, lr=1e-3), 24, "normal"),
    "adamw_amsgrad_wd": (dict(ADAMW, lr=0.05, beta2=0.95, weight_decay=0.1, amsgrad=1), 24, "scales"),
    "adamw_groups": (dict(ADAMW, lr=0.01, weight_decay=0.3, decay_weights_only=1), 24, "two"),
    "adamw_zero_grads": (dict(ADAMW, lr=0.01, weight_decay=0.1), 24, "zeros"),
}


def make_params(recipe, steps, rng):
    """[(name, kind, init float32, grads float32 [steps, *shape])]"""
    if recipe == "two":
        shapes = [("weight", "weight", (2, 3)), ("bias", "bias", (3,))]
    else:
        shapes = [("weight", "weight", (2, 4))]
    out = []
    for name, kind, shape in shapes:
        init = rng.standard_normal(shape).astype(np.float32)
        grads = rng.standard_normal((steps,) + shape).astype(np.float32)
        if recipe == "zeros":
            grads[0] = 0          # the very first gradient is zero (SGD's buffer starts at 0)
            grads[8:12] = 0       # a stretch of zero gradients in the middle
            grads[:, 0] = 0       # one row never receives a gradient
        elif recipe == "scales":  # magnitudes from 1e-4 to 1e2 (eps matters at the small end)
            grads *= np.float32(10.0) ** rng.integers(-4, 3, size=shape).astype(np.float32)
        out.append((name, kind, init, grads))
    return out


def run_torch(settings, params, steps, dtype):
    tensors = [torch.tensor(init, dtype=dtype, requires_grad=True) for _, _, init, _ in params]
    kinds = [kind for _, kind, _, _ in params]
    wd = settings["weight_decay"]
    if settings.get("decay_weights_only"):
        groups = [{"params": [t for t, k in zip(tensors, kinds) if k == "weight"]},
                  {"params": [t for t, k in zip(tensors, kinds) if k != "weight"], "weight_decay": 0.0}]
    else:
        groups = [{"params": tensors}]
    opt_name = settings["optimizer"]
    if opt_name == "sgd":
        opt = torch.optim.SGD(groups, lr=settings["lr"], momentum=settings["momentum"],
                              dampening=settings["dampening"], nesterov=bool(settings["nesterov"]),
                              weight_decay=wd)
    else:
        cls = torch.optim.Adam if opt_name == "adam" else torch.optim.AdamW
        opt = cls(groups, lr=settings["lr"], betas=(settings["beta1"], settings["beta2"]),
                  eps=settings["eps"], weight_decay=wd, amsgrad=bool(settings["amsgrad"]))
    traj = [np.zeros((steps,) + init.shape, dtype=np.float64) for _, _, init, _ in params]
    for s in range(steps):
        for t, (_, _, _, grads) in zip(tensors, params):
            t.grad = torch.tensor(grads[s], dtype=dtype)
        opt.step()
        for i, t in enumerate(tensors):
            traj[i][s] = t.detach().numpy()
    return traj


def write_compact(group, name, data):
    """A dataset stored inside its object header: no separate block, which
    keeps this file of many tiny arrays small."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    group.create_dataset(name, data=data, dcpl=dcpl)


def create_group_compact_attrs(parent, name):
    """A group whose dozen attributes stay in its header (the default moves
    more than 8 into a separate heap and B-tree, several KB each)."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_attr_phase_change(32, 24)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


def main():
    rng = np.random.default_rng(20240505)
    with h5py.File(OUT, "w", libver="latest") as f:
        f.attrs["generator"] = "tools/gen_fixtures_optim.py"
        f.attrs["torch_version"] = str(torch.__version__)
        for case, (settings, steps, recipe) in CASES.items():
            settings = dict(settings)
            settings.setdefault("decay_weights_only", 0)
            params = make_params(recipe, steps, rng)
            traj64 = run_torch(settings, params, steps, torch.float64)
            traj32 = run_torch(settings, params, steps, torch.float32)
            g = create_group_compact_attrs(f, case)
            for k, v in settings.items():
                g.attrs[k] = v
            g.attrs["steps"] = steps
            for (name, kind, init, grads), t64, t32 in zip(params, traj64, traj32):
                assert name == kind
                for key, data in (("init", init), ("grads", grads), ("traj", t64),
                                  ("final32", t32[-1].astype(np.float32))):
                    write_compact(g, name + "." + key, data)
    print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
