#!/usr/bin/python3
"""Reference fixtures for Patchify / Unpatchify and the sin-cos tables.

Run with Debian's Python (it has torch and h5py):
    /usr/bin/python3 tools/gen_fixtures_patch.py
Writes
  tests/data/patch_cases.h5    case file (spec: casefile.md) of patchify and
                               unpatchify cases: every data_dim, stride below,
                               equal to and above the patch, bias on and off,
                               odd sizes, output_spatial_shape at both ends of
                               its range. `patchgrad check` replays it.
  tests/data/sincos_tables.h5  sin-cos position tables for 1, 2 and 3 axes,
                               computed with numpy as DiT does.
Inputs are float32; PyTorch computes in float64 from them (conv / conv
transpose on channels-first copies, results moved back to channels-last).
"""
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def to_first(t, d):  # [B, *S, C] -> [B, C, *S]
    return t.permute(0, d + 1, *range(1, d + 1))


def to_last(t, d):  # [B, C, *S] -> [B, *S, C]
    return t.permute(0, *range(2, d + 2), 1)


def f32(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float32)


def put(g, path, array):
    """A dataset stored inside its object header (compact layout): keeps the
    file small, as every array here is a few KB at most."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    g.create_dataset(path, data=array, dcpl=dcpl)


def write_case(f, name, op, attrs, x, w, b, out, grad_out, grads):
    g = f.create_group(name)
    g.attrs["op"] = op
    for k, v in attrs.items():
        g.attrs[k] = v
    put(g, "x", x.numpy())
    put(g, "params/weight", w.numpy())
    if b is not None:
        put(g, "params/bias", b.numpy())
    put(g, "out", out.detach().numpy())
    put(g, "grad_out", grad_out.numpy())
    for k, v in grads.items():
        put(g, "grad/" + k, v.numpy())


def run(f, gen, name, op, d, batch, size, c_in, c_out, patch, stride, bias, oss=None):
    """size: spatial sizes of the signal (patchify) or of the grid (unpatchify)."""
    if op == "patchify":
        x = f32(gen, batch, *size, c_in)
        w = f32(gen, c_out, c_in, *([patch] * d)) * (c_in * patch**d) ** -0.5
    else:
        x = f32(gen, batch, *size, c_in)
        w = f32(gen, c_in, c_out, *([patch] * d)) * (c_in * patch**d) ** -0.5
    b = f32(gen, c_out) if bias else None
    x64 = x.double().requires_grad_()
    w64 = w.double().requires_grad_()
    b64 = b.double().requires_grad_() if bias else None
    if op == "patchify":
        y = to_last(CONV[d](to_first(x64, d), w64, b64, stride=stride), d)
    else:
        default = [(s - 1) * stride + patch for s in size]
        pad = [o - s for o, s in zip(oss, default)] if oss is not None else 0
        y = to_last(CONV_T[d](to_first(x64, d), w64, b64, stride=stride, output_padding=pad), d)
        if oss is not None:
            assert list(y.shape[1:d + 1]) == list(oss)
    grad_out = f32(gen, *y.shape)
    y.backward(grad_out.double())
    grads = {"x": x64.grad, "params/weight": w64.grad}
    if bias:
        grads["params/bias"] = b64.grad
    attrs = {"data_dim": d, "patch_size": patch, "stride": stride, "bias": int(bias)}
    if oss is not None:
        attrs["output_spatial_shape"] = np.array(oss, dtype=np.int64)
    write_case(f, name, op, attrs, x, w, b, y, grad_out, grads)


def patch_cases():
    gen = torch.Generator().manual_seed(20260301)
    path = os.path.join(ROOT, "patch_cases.h5")
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["generator"] = "tools/gen_fixtures_patch.py (PyTorch float64)"
        f.attrs["torch_version"] = str(torch.__version__)
        P = "patchify"
        # name, data_dim, batch, spatial, C_in, C_out, patch, stride, bias
        run(f, gen, "patchify_1d_p3_s2_overlap", P, 1, 2, [11], 2, 5, 3, 2, True)
        run(f, gen, "patchify_1d_p3_s3_dropped_nobias", P, 1, 2, [10], 3, 4, 3, 3, False)
        run(f, gen, "patchify_1d_p2_s3_gaps", P, 1, 1, [13], 3, 2, 2, 3, True)
        run(f, gen, "patchify_2d_p2_s2_odd", P, 2, 1, [7, 9], 3, 4, 2, 2, True)
        run(f, gen, "patchify_2d_p3_s1_overlap_nobias", P, 2, 1, [6, 5], 2, 3, 3, 1, False)
        run(f, gen, "patchify_2d_p2_s3_gaps", P, 2, 2, [8, 7], 2, 4, 2, 3, True)
        run(f, gen, "patchify_2d_p4_s4_rect", P, 2, 1, [8, 12], 1, 5, 4, 4, True)
        run(f, gen, "patchify_3d_p2_s1_overlap", P, 3, 1, [3, 4, 3], 2, 3, 2, 1, True)
        run(f, gen, "patchify_3d_p2_s3_gaps_nobias", P, 3, 1, [5, 4, 6], 2, 3, 2, 3, False)
        run(f, gen, "patchify_3d_p3_s3_odd", P, 3, 1, [4, 7, 5], 2, 3, 3, 3, True)
        U = "unpatchify"
        # name, data_dim, batch, grid, C_embed, C_out, patch, stride, bias, output_spatial_shape
        run(f, gen, "unpatchify_1d_p3_s2_overlap", U, 1, 2, [5], 4, 2, 3, 2, True)
        run(f, gen, "unpatchify_1d_p2_s3_gaps_osshigh", U, 1, 2, [4], 3, 2, 2, 3, True, [13])
        run(f, gen, "unpatchify_1d_p4_s4_nobias", U, 1, 1, [3], 5, 3, 4, 4, False)
        run(f, gen, "unpatchify_2d_p2_s2_osshigh", U, 2, 1, [3, 4], 6, 3, 2, 2, True, [7, 8])
        run(f, gen, "unpatchify_2d_p3_s2_overlap_osslow", U, 2, 1, [3, 2], 4, 2, 3, 2, True, [7, 5])
        run(f, gen, "unpatchify_2d_p2_s3_gaps_nobias", U, 2, 2, [2, 3], 3, 2, 2, 3, False)
        run(f, gen, "unpatchify_2d_p3_s1_overlap", U, 2, 1, [4, 3], 2, 3, 3, 1, True)
        run(f, gen, "unpatchify_3d_p2_s2_ossmixed", U, 3, 1, [2, 3, 2], 4, 2, 2, 2, True, [4, 7, 5])
        run(f, gen, "unpatchify_3d_p3_s2_overlap_nobias", U, 3, 1, [2, 2, 3], 3, 2, 3, 2, False)
        run(f, gen, "unpatchify_3d_p2_s3_gaps", U, 3, 1, [2, 2, 2], 2, 2, 2, 3, True, [7, 5, 6])
    print("wrote", path)


# ---- sin-cos tables, written the way DiT's models.py does ----
def sincos_1d(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def dit_2d(embed_dim, gh, gw):
    """DiT's get_2d_sincos_pos_embed, with a rectangular grid."""
    grid_h = np.arange(gh, dtype=np.float32)
    grid_w = np.arange(gw, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, gh, gw])
    emb_h = sincos_1d(embed_dim // 2, grid[0])
    emb_w = sincos_1d(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def nd(embed_dim, grid):
    """Part k encodes axis d-1-k (layers.md)."""
    d = len(grid)
    idx = np.stack(np.meshgrid(*[np.arange(g, dtype=np.float64) for g in grid], indexing="ij"))
    idx = idx.reshape(d, -1)
    return np.concatenate([sincos_1d(embed_dim // d, idx[d - 1 - k]) for k in range(d)], axis=1)


def sincos_tables():
    path = os.path.join(ROOT, "sincos_tables.h5")
    with h5py.File(path, "w") as f:
        f.attrs["generator"] = "tools/gen_fixtures_patch.py (numpy float64, stored float32)"
        tables = [
            ("d1_g7_dim8", [7], 8, nd(8, [7])),
            ("d1_g5_dim2", [5], 2, nd(2, [5])),
            ("d2_g4x4_dim32", [4, 4], 32, dit_2d(32, 4, 4)),
            ("d2_g3x5_dim16", [3, 5], 16, dit_2d(16, 3, 5)),
            ("d3_g2x3x4_dim12", [2, 3, 4], 12, nd(12, [2, 3, 4])),
            ("d3_g3x2x2_dim24", [3, 2, 2], 24, nd(24, [3, 2, 2])),
        ]
        for name, grid, dim, table in tables:
            if len(grid) == 2:  # the general rule and DiT's agree
                assert np.array_equal(table, nd(dim, grid))
            ds = f.create_dataset(name, data=table.astype(np.float32))
            ds.attrs["data_dim"] = len(grid)
            ds.attrs["grid"] = np.array(grid, dtype=np.int64)
            ds.attrs["dim"] = dim
    print("wrote", path)


if __name__ == "__main__":
    patch_cases()
    sincos_tables()
