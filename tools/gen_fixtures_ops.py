#!/usr/bin/python3
"""Writes tests/data/ops_torch.h5: PyTorch reference cases for the generic ops
of autograd/ops.h, in the case-file format of casefile.md, replayed by
tests/test_ops_torch.c through `patchgrad check`.

gelu, silu, softmax and mse use casefile.md's op names; the others use
patchgrad's own (handlers in cli/check_basic.c):
  add, sub, mul, div   inputs a, b (NumPy broadcasting)
  matmul               attributes trans_a, trans_b; inputs a, b (stored transposed when set)
  sum, mean            attributes axes (int array; absent: all), keepdims; input x
  embedding            params/weight [n, d], idx (int64, any shape)

Inputs are drawn in float32 and stored as float32, so C sees exactly the
values PyTorch used; the reference runs in float64 from those values and is
stored as float64.

    /usr/bin/python3 tools/gen_fixtures_ops.py   (Debian's python3-torch, python3-h5py)
"""
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "ops_torch.h5")
gen = torch.Generator().manual_seed(20240605)


def randn(*shape, scale=1.0):
    return (torch.randn(shape, generator=gen) * scale).float()


def away_from_zero(*shape):
    """|v| in [0.5, 2), random signs: safe divisors."""
    v = torch.rand(shape, generator=gen) * 1.5 + 0.5
    return (v * torch.sign(torch.randn(shape, generator=gen))).float()


def write_case(f, name, op, attrs, inputs, forward, ints=None):
    """inputs: name -> float32 tensor (a name under params/ is a parameter);
    ints: name -> int64 array (no gradient). forward(leaves) -> out, run in
    float64 with gradients for every float input."""
    g = f.create_group(name)
    g.attrs["op"] = op
    for k, v in attrs.items():
        g.attrs[k] = v
    leaves = {}
    for k, v in inputs.items():
        g.create_dataset(k, data=v.numpy())
        leaves[k] = v.double().requires_grad_(True)
    for k, v in (ints or {}).items():
        g.create_dataset(k, data=v.numpy().astype(np.int64))
        leaves[k] = v
    out = forward(leaves)
    grad_out = randn(*out.shape)
    out.backward(grad_out.double())
    g.create_dataset("out", data=out.detach().numpy())
    g.create_dataset("grad_out", data=grad_out.numpy())
    for k in inputs:
        g.create_dataset("grad/" + k, data=leaves[k].grad.numpy())


def binary_cases(f):
    ops = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}
    shapes = [  # (op, a's shape, b's shape): same, row, rank growth, scalar, column...
        ("add", (2, 3), (2, 3)),
        ("add", (3, 5), (5,)),
        ("add", (4, 1, 3), (2, 1)),
        ("sub", (), (2, 3)),
        ("mul", (2, 3, 4), (2, 1, 4)),
        ("div", (2, 3), (2, 1)),
        ("div", (3,), (2, 3)),
    ]
    for op, sa, sb in shapes:
        a = randn(*sa)
        b = away_from_zero(*sb) if op == "div" else randn(*sb)
        name = "%s_%s_%s" % (op, "x".join(map(str, sa)) or "scalar", "x".join(map(str, sb)) or "scalar")
        write_case(f, name, op, {}, {"a": a, "b": b}, lambda t, op=op: ops[op](t["a"], t["b"]))


def matmul_cases(f):
    forms = [  # (batch of a, batch of b, m, k, n, transposes)
        ((), (), 3, 4, 5, ((0, 0), (0, 1), (1, 0), (1, 1))),
        ((2,), (2,), 3, 4, 2, ((0, 1), (1, 0))),
        ((2, 3), (2, 3), 2, 3, 4, ((0, 0),)),
        ((3,), (), 4, 2, 3, ((0, 0), (1, 1))),  # b shared by the batch
    ]
    for ba, bb, m, k, n, transposes in forms:
        for ta, tb in transposes:
            a = randn(*ba, *((k, m) if ta else (m, k)))
            b = randn(*bb, *((n, k) if tb else (k, n)))

            def forward(t, ta=ta, tb=tb):
                x = t["a"].transpose(-1, -2) if ta else t["a"]
                y = t["b"].transpose(-1, -2) if tb else t["b"]
                return x @ y

            name = "matmul_%dd%s_%s%s" % (len(ba) + 2, "_shared" if ba and not bb else "",
                                         "t" if ta else "n", "t" if tb else "n")
            write_case(f, name, "matmul", {"trans_a": ta, "trans_b": tb}, {"a": a, "b": b}, forward)


def activation_cases(f):
    for approximate in ("none", "tanh"):
        x = randn(4, 9, scale=3.0)
        write_case(f, "gelu_" + approximate, "gelu", {"approximate": approximate}, {"x": x},
                   lambda t, a=approximate: F.gelu(t["x"], approximate=a))
    write_case(f, "silu_3d", "silu", {}, {"x": randn(2, 3, 5, scale=3.0)}, lambda t: F.silu(t["x"]))
    x = randn(4, 7, scale=3.0)
    x[1] = torch.tensor([100, -100, 0, 99.5, -3, 100, 1], dtype=torch.float32)
    x[2] = -100
    write_case(f, "softmax_pm100", "softmax", {}, {"x": x}, lambda t: torch.softmax(t["x"], -1))
    write_case(f, "softmax_3d", "softmax", {}, {"x": randn(2, 3, 6, scale=2.0)},
               lambda t: torch.softmax(t["x"], -1))
    write_case(f, "mse_3d", "mse", {}, {"x": randn(2, 3, 4), "target": randn(2, 3, 4)},
               lambda t: F.mse_loss(t["x"], t["target"]))


def reduce_cases(f):
    cases = [  # (op, shape, axes or None for all, keepdims)
        ("sum", (2, 3, 4), (1,), 0),
        ("sum", (2, 1, 3, 2), (-1, 0), 1),
        ("sum", (3, 5), None, 0),
        ("mean", (2, 3, 4), (-1,), 0),
        ("mean", (2, 3, 4), (0, 1), 1),
    ]
    for op, shape, axes, keepdims in cases:
        attrs = {"keepdims": keepdims}
        if axes is not None:
            attrs["axes"] = np.array(axes, dtype=np.int64)
        name = "%s_%s_axes%s%s" % (op, "x".join(map(str, shape)),
                                  "all" if axes is None else "_".join(str(a) for a in axes),
                                  "_keep" if keepdims else "")
        fn = torch.sum if op == "sum" else torch.mean

        def forward(t, fn=fn, axes=axes, keepdims=keepdims):
            if axes is None:
                r = fn(t["x"])
                return r.reshape([1] * t["x"].dim()) if keepdims else r
            return fn(t["x"], dim=axes, keepdim=bool(keepdims))

        write_case(f, name, op, attrs, {"x": randn(*shape)}, forward)


def embedding_cases(f):
    idx = torch.tensor([[4, 0, 4], [2, 5, 4]])  # row 4 three times: scatter-add
    write_case(f, "embedding_2x3", "embedding", {}, {"params/weight": randn(6, 4)},
               lambda t: F.embedding(t["idx"], t["params/weight"]), ints={"idx": idx})


def main():
    with h5py.File(OUT, "w", libver="latest") as f:
        f.attrs["generator"] = "tools/gen_fixtures_ops.py (torch %s)" % torch.__version__
        binary_cases(f)
        matmul_cases(f)
        activation_cases(f)
        reduce_cases(f)
        embedding_cases(f)
        n = len(f)
    print("wrote %s: %d cases, %d bytes" % (os.path.normpath(OUT), n, os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
