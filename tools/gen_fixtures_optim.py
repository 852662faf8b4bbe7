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

Freezing and param groups (group /experiments, one subgroup per case):
the case's attributes hold the optimizer settings as above, `steps`, the
lr schedule (`schedule`: constant, warmup, cosine or step, with
`warmup_steps`, `total_steps`, `min_lr`, `step_size`, `gamma` as
optim/schedule.h defines them; PyTorch runs it as LambdaLR with
lambda(step) = lr(step) / lr), `params` (the parameter names, space
separated, in registration order; `kinds` their kinds), and the param groups
`n_groups`, `group.K.pattern`, `group.K.lr`, `group.K.weight_decay`,
`group.K.beta1`, `group.K.beta2`, `group.K.momentum`, `group.K.frozen` for
K = 1..n_groups (fnmatch globs, first match wins, the rest in the default
group). Each parameter NAME has NAME.init, NAME.grads, NAME.traj, NAME.final32
as above and NAME.frozen (uint8 [steps]: 1 where the parameter is frozen at
that step; PyTorch then sees p.grad = None, and the gradient in NAME.grads is
noise that must be ignored).

Run with Debian's python (torch 1.13, h5py): /usr/bin/python3 tools/gen_fixtures_optim.py
"""
import fnmatch
import math
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


# ---- Freezing and param groups ----

# The model of the experiments: (name, kind, shape), in registration order.
MODEL = [
    ("embed.weight", "embedding", (5, 3)),
    ("blocks.0.fc.weight", "weight", (4, 3)),
    ("blocks.0.fc.bias", "bias", (4,)),
    ("norm.weight", "norm", (4,)),
    ("head.weight", "weight", (2, 4)),
]

# Freezing over 100 steps: (name, first frozen step, first step after) per
# frozen stretch. embed.weight is frozen by its group; the others by
# requires_grad: frozen from step 40 with leftover moments, frozen from 25 to
# 59 then trained again (its own step count resumes), frozen for the first 30
# steps (its first update is its step 1).
FREEZE_STEPS = 100
FREEZE_SCHEDULE = {
    "blocks.0.fc.weight": [(40, FREEZE_STEPS)],
    "blocks.0.fc.bias": [(25, 60)],
    "norm.weight": [(0, 30)],
}
FROZEN_EMBED = [dict(pattern="embed.*", frozen=1)]

SCHED_NONE = dict(schedule="constant")

EXPERIMENTS = {
    "adam_freeze": (dict(ADAM, lr=1e-2, weight_decay=0.01), FREEZE_STEPS, SCHED_NONE,
                    FROZEN_EMBED, FREEZE_SCHEDULE),
    "adamw_freeze": (dict(ADAMW, lr=1e-2, weight_decay=0.1), FREEZE_STEPS, SCHED_NONE,
                     FROZEN_EMBED, FREEZE_SCHEDULE),
    "adamw_amsgrad_freeze": (dict(ADAMW, lr=5e-3, weight_decay=0.05, amsgrad=1), FREEZE_STEPS,
                             dict(schedule="cosine", warmup_steps=10, total_steps=FREEZE_STEPS, min_lr=1e-4),
                             FROZEN_EMBED, FREEZE_SCHEDULE),
    "sgd_momentum_freeze": (dict(SGD, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
                            FREEZE_STEPS, SCHED_NONE, FROZEN_EMBED, FREEZE_SCHEDULE),
    # no-decay groups for biases and norms, an lr and betas of their own
    "adamw_groups": (dict(ADAMW, lr=1e-2, weight_decay=0.05), 40,
                     dict(schedule="cosine", warmup_steps=5, total_steps=40, min_lr=0.0),
                     [dict(pattern="*.bias", weight_decay=0.0),
                      dict(pattern="norm.*", weight_decay=0.0, beta1=0.8, beta2=0.99),
                      dict(pattern="head.*", lr=3e-2, weight_decay=0.1, beta1=0.85, beta2=0.95)], {}),
    # first match wins: blocks.0.fc.bias goes to '*.bias', not 'blocks.*'
    "adam_groups": (dict(ADAM, lr=5e-3, weight_decay=0.01), 40, dict(schedule="warmup", warmup_steps=10),
                    [dict(pattern="*.bias", lr=1e-2, weight_decay=0.0),
                     dict(pattern="blocks.*", beta1=0.5, beta2=0.9)], {}),
    # momentum per group (none for biases), a frozen group, a step schedule
    "sgd_groups": (dict(SGD, lr=0.05, momentum=0.9, weight_decay=0.01), 40,
                   dict(schedule="step", step_size=10, gamma=0.5),
                   [dict(pattern="*.bias", weight_decay=0.0, momentum=0.0),
                    dict(pattern="norm.*", weight_decay=0.0, momentum=0.5),
                    dict(pattern="head.*", lr=0.1, momentum=0.95),
                    dict(pattern="embed.*", frozen=1)], {}),
}


def schedule_lr(sched, base_lr, step):
    """optim/schedule.h's pg_schedule_lr."""
    kind = sched["schedule"]
    if kind == "constant":
        return base_lr
    warmup = sched.get("warmup_steps", 0)
    if step < warmup:
        return base_lr * step / warmup
    since = step - warmup
    if kind == "cosine":
        span = sched["total_steps"] - warmup
        progress = min(1.0, since / span) if span > 0 else 1.0
        min_lr = sched.get("min_lr", 0.0)
        return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "step":
        return base_lr * sched.get("gamma", 0.1) ** (since // sched["step_size"])
    return base_lr


def full_group(settings, group):
    """A group spec with every field, the missing ones from the settings."""
    return dict(pattern=group["pattern"], lr=group.get("lr", settings["lr"]),
                weight_decay=group.get("weight_decay", settings["weight_decay"]),
                beta1=group.get("beta1", settings.get("beta1", 0.0)),
                beta2=group.get("beta2", settings.get("beta2", 0.0)),
                momentum=group.get("momentum", settings.get("momentum", 0.0)),
                frozen=group.get("frozen", 0))


def group_of(name, groups):
    """The first group whose glob matches (1-based), else 0 (default)."""
    for k, g in enumerate(groups):
        if fnmatch.fnmatchcase(name, g["pattern"]):
            return k + 1
    return 0


def run_experiment(settings, sched, groups, params, frozen, steps, dtype):
    """params: [(name, init, grads)]; frozen: {name: bool [steps]}."""
    tensors = [torch.tensor(init, dtype=dtype, requires_grad=True) for _, init, _ in params]
    members = [[] for _ in range(len(groups) + 1)]
    for (name, _, _), t in zip(params, tensors):
        members[group_of(name, groups)].append(t)
    torch_groups = [{"params": members[0]}]
    for g, m in zip(groups, members[1:]):
        tg = {"params": m, "lr": g["lr"], "weight_decay": g["weight_decay"]}
        if settings["optimizer"] == "sgd":
            tg["momentum"] = g["momentum"]
        else:
            tg["betas"] = (g["beta1"], g["beta2"])
        torch_groups.append(tg)
    opt_name = settings["optimizer"]
    if opt_name == "sgd":
        opt = torch.optim.SGD(torch_groups, lr=settings["lr"], momentum=settings["momentum"],
                              dampening=settings["dampening"], nesterov=bool(settings["nesterov"]),
                              weight_decay=settings["weight_decay"])
    else:
        cls = torch.optim.Adam if opt_name == "adam" else torch.optim.AdamW
        opt = cls(torch_groups, lr=settings["lr"], betas=(settings["beta1"], settings["beta2"]),
                  eps=settings["eps"], weight_decay=settings["weight_decay"],
                  amsgrad=bool(settings["amsgrad"]))
    base = settings["lr"]
    lam = lambda step: schedule_lr(sched, base, step) / base
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    traj = [np.zeros((steps,) + init.shape, dtype=np.float64) for _, init, _ in params]
    for s in range(steps):
        for t, (name, _, grads) in zip(tensors, params):
            t.grad = None if frozen[name][s] else torch.tensor(grads[s], dtype=dtype)
        opt.step()
        scheduler.step()
        for i, t in enumerate(tensors):
            traj[i][s] = t.detach().numpy()
    return traj


def write_experiment(parent, case, spec, rng):
    settings, steps, sched, groups, freeze_schedule = spec
    settings = dict(settings)
    settings.setdefault("decay_weights_only", 0)
    groups = [full_group(settings, g) for g in groups]
    params, frozen = [], {}
    for name, kind, shape in MODEL:
        init = rng.standard_normal(shape).astype(np.float32)
        grads = rng.standard_normal((steps,) + shape).astype(np.float32)
        mask = np.zeros(steps, dtype=np.uint8)
        for lo, hi in freeze_schedule.get(name, []):
            mask[lo:hi] = 1
        k = group_of(name, groups)
        if k and groups[k - 1]["frozen"]:
            mask[:] = 1
        params.append((name, init, grads))
        frozen[name] = mask
    traj64 = run_experiment(settings, sched, groups, params, frozen, steps, torch.float64)
    traj32 = run_experiment(settings, sched, groups, params, frozen, steps, torch.float32)
    g = create_group_compact_attrs(parent, case, max_compact=64)
    for k, v in settings.items():
        g.attrs[k] = v
    g.attrs["steps"] = steps
    for k, v in dict(dict(warmup_steps=0, total_steps=0, min_lr=0.0, step_size=0, gamma=0.1), **sched).items():
        g.attrs[k] = v
    g.attrs["params"] = " ".join(name for name, _, _ in MODEL)
    g.attrs["kinds"] = " ".join(kind for _, kind, _ in MODEL)
    g.attrs["n_groups"] = len(groups)
    for k, grp in enumerate(groups):
        for key, v in grp.items():
            g.attrs["group.%d.%s" % (k + 1, key)] = v
    for (name, init, grads), t64, t32 in zip(params, traj64, traj32):
        for key, data in (("init", init), ("grads", grads), ("traj", t64),
                          ("final32", t32[-1].astype(np.float32)), ("frozen", frozen[name])):
            write_compact(g, name + "." + key, data)


def write_compact(group, name, data):
    """A dataset stored inside its object header: no separate block, which
    keeps this file of many tiny arrays small."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    group.create_dataset(name, data=data, dcpl=dcpl)


def create_group_compact_attrs(parent, name, max_compact=32):
    """A group whose dozen attributes stay in its header (the default moves
    more than 8 into a separate heap and B-tree, several KB each)."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_attr_phase_change(max_compact, max_compact * 3 // 4)
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
        ex = f.create_group("experiments")
        for case, spec in EXPERIMENTS.items():
            write_experiment(ex, case, spec, rng)
    print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
