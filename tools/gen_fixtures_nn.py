#!/usr/bin/python3
"""Writes tests/data/nn_cases.h5: PyTorch reference cases (casefile.md format)
for the transformer layers, replayed by tests/test_nn_cases.c through
`patchgrad check`.

Inputs are drawn in float32 and stored as float32, so C sees exactly the
values PyTorch used; the reference runs in float64 from those values and is
stored rounded to float32 (a relative 6e-8, far below the 1e-4 tolerance),
which keeps the file small.

    /usr/bin/python3 tools/gen_fixtures_nn.py   (Debian's python3-torch, python3-h5py)
"""
import math
import os

import h5py
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "nn_cases.h5")
gen = torch.Generator().manual_seed(20240604)


def randn(*shape, scale=1.0, offset=0.0):
    return (torch.randn(*shape, generator=gen) * scale + offset).float()


def write_case(f, name, op, attrs, inputs, params, forward):
    """inputs/params: name -> float32 tensor. forward(inputs, params) -> out,
    evaluated in float64 with gradients for every input and parameter."""
    g = f.create_group(name)
    g.attrs["op"] = op
    for k, v in attrs.items():
        g.attrs[k] = v
    leaves = {}
    for k, v in list(inputs.items()) + [("params/" + k, v) for k, v in params.items()]:
        g.create_dataset(k, data=v.numpy())
        leaves[k] = v.double().requires_grad_(True)
    out = forward({k: leaves[k] for k in inputs}, {k: leaves["params/" + k] for k in params})
    grad_out = randn(*out.shape)
    out.backward(grad_out.double())
    g.create_dataset("out", data=out.detach().float().numpy())
    g.create_dataset("grad_out", data=grad_out.numpy())
    for k, v in leaves.items():
        g.create_dataset("grad/" + k, data=v.grad.float().numpy())


def attention(x, p, heads, causal):
    """Multi-head self-attention of dit.md (timm's Attention)."""
    B, T, h = x.shape
    hd = h // heads
    qkv = F.linear(x, p["qkv.weight"], p.get("qkv.bias"))
    q, k, v = qkv.reshape(B, T, 3, heads, hd).permute(2, 0, 3, 1, 4)
    s = q @ k.transpose(-2, -1) / math.sqrt(hd)
    if causal:
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, h)
    return F.linear(o, p["proj.weight"], p["proj.bias"])


def attention_head(x, p, causal):
    """The seed-style single head: key/query/value Linears without bias."""
    k = F.linear(x, p["key.weight"])
    q = F.linear(x, p["query.weight"])
    v = F.linear(x, p["value.weight"])
    T = x.shape[1]
    s = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
    if causal:
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return s.softmax(-1) @ v


class SeedHead(torch.nn.Module):
    """The seed notebook's Head, as written there: scores scaled by C**-0.5,
    C the embedding size (n_embed), not the head size. Dropout is built but
    the reference runs in eval mode (no dropout)."""

    def __init__(self, n_embed, head_size, block_size, dropout=0.0):
        super().__init__()
        self.key = torch.nn.Linear(n_embed, head_size, bias=False)
        self.query = torch.nn.Linear(n_embed, head_size, bias=False)
        self.value = torch.nn.Linear(n_embed, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x, causal=True):
        B, T, C = x.shape
        k = self.key(x)
        q = self.query(x)
        wei = q @ k.transpose(-2, -1) * C**-0.5
        if causal:
            wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = F.softmax(wei, dim=-1)
        wei = self.dropout(wei)
        v = self.value(x)
        return wei @ v


def seed_head(x, p, causal):
    """SeedHead in float64 with the case's weights as its parameters."""
    n_embed, head_size = x.shape[-1], p["key.weight"].shape[0]
    head = SeedHead(n_embed, head_size, x.shape[1]).double().eval()
    # the leaves themselves, so that their gradients are the case's
    for name in ("key", "query", "value"):
        del getattr(head, name)._parameters["weight"]
        getattr(head, name).weight = p[name + ".weight"]
    return head(x, causal=bool(causal))


def main():
    if os.path.exists(OUT):
        os.remove(OUT)
    # The newest format keeps small groups compact (links in the object header).
    with h5py.File(OUT, "w", libver="latest") as f:
        f.attrs["generator"] = "tools/gen_fixtures_nn.py (PyTorch %s, float64)" % torch.__version__
        # Linear on 3D and 4D inputs
        write_case(f, "linear_3d_bias", "linear", {"bias": 1}, {"x": randn(2, 3, 5)},
                   {"weight": randn(4, 5, scale=0.5), "bias": randn(4, scale=0.5)},
                   lambda i, p: F.linear(i["x"], p["weight"], p["bias"]))
        write_case(f, "linear_4d_nobias", "linear", {"bias": 0}, {"x": randn(2, 2, 3, 6)},
                   {"weight": randn(3, 6, scale=0.5)},
                   lambda i, p: F.linear(i["x"], p["weight"]))
        # LayerNorm: a large offset (mean 1e3), and no affine on a 3D input
        write_case(f, "layernorm_offset1e3_affine", "layernorm", {"eps": 1e-5, "affine": 1},
                   {"x": randn(4, 32, offset=1000.0)},
                   {"weight": randn(32, scale=0.3, offset=1.0), "bias": randn(32, scale=0.3)},
                   lambda i, p: F.layer_norm(i["x"], (32,), p["weight"], p["bias"], 1e-5))
        write_case(f, "layernorm_3d_noaffine_eps1e-6", "layernorm", {"eps": 1e-6, "affine": 0},
                   {"x": randn(2, 5, 24, scale=2.0, offset=-3.0)}, {},
                   lambda i, p: F.layer_norm(i["x"], (24,), None, None, 1e-6))
        # Multi-head attention: head counts, T (1, odd, even), causal, no qkv bias
        for heads, T, h, causal, qkv_bias in [(1, 1, 8, 0, 1), (3, 7, 12, 1, 1), (6, 13, 12, 0, 1),
                                              (8, 5, 16, 1, 0), (2, 16, 8, 1, 1)]:
            params = {"qkv.weight": randn(3 * h, h, scale=h ** -0.5)}
            if qkv_bias:
                params["qkv.bias"] = randn(3 * h, scale=0.1)
            params["proj.weight"] = randn(h, h, scale=h ** -0.5)
            params["proj.bias"] = randn(h, scale=0.1)
            name = "attention_h%d_T%d%s%s" % (heads, T, "_causal" if causal else "",
                                              "" if qkv_bias else "_noqkvbias")
            write_case(f, name, "attention", {"heads": heads, "causal": causal, "qkv_bias": qkv_bias},
                       {"x": randn(2, T, h)}, params,
                       lambda i, p, heads=heads, causal=causal: attention(i["x"], p, heads, causal))
        # The single head (head size differs from the width)
        for T, causal in [(7, 0), (9, 1)]:
            n_embed, hs = 12, 5
            params = {k: randn(hs, n_embed, scale=n_embed ** -0.5) for k in ("key.weight", "query.weight", "value.weight")}
            write_case(f, "attention_head_T%d%s" % (T, "_causal" if causal else ""), "attention_head",
                       {"causal": causal}, {"x": randn(2, T, n_embed)}, params,
                       lambda i, p, causal=causal: attention_head(i["x"], p, causal))
        # The seed notebook's own scale, 1/sqrt(n_embed): the attribute `scale`
        # is the factor of q k^T (absent: 1/sqrt(head_size))
        for T, causal in [(7, 0), (9, 1)]:
            n_embed, hs = 12, 5
            params = {k: randn(hs, n_embed, scale=n_embed ** -0.5) for k in ("key.weight", "query.weight", "value.weight")}
            write_case(f, "attention_head_seed_scale_T%d%s" % (T, "_causal" if causal else ""), "attention_head",
                       {"causal": causal, "scale": n_embed ** -0.5}, {"x": randn(2, T, n_embed)}, params,
                       lambda i, p, causal=causal: seed_head(i["x"], p, causal))
    print("wrote %s (%d bytes)" % (os.path.normpath(OUT), os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
