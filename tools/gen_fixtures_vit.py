#!/usr/bin/python3
"""Writes tests/data/vit_cases.h5: PyTorch reference cases for the ViT example,
in the case-file format of casefile.md, replayed by tests/test_vit.c through
`patchgrad check` (handlers in cli/check_vit.c):

  cross_entropy  attribute label_smoothing; logits [N, K], labels [N] (int64);
                 out = F.cross_entropy(logits, labels, label_smoothing=s) (mean)
  vit            the config of vit/vit.h as attributes; x [B, H, W, C] channels
                 last, params/<timm name>; out = logits [B, K]

The ViT below is written from the same description as vit/vit.h (timm's
VisionTransformer with pre-norm blocks, LayerNorm eps 1e-6, GELU in its tanh
form, the class token read by the head), once with multi-head attention and
once with the seed-style single Head (key/query/value Linears, no bias, no
projection, scale 1/sqrt(hidden)). Parameters are random (not the model's
init), so that every gradient is exercised.

Inputs are drawn in float32 and stored as float32, so C sees exactly the
values PyTorch used; the reference runs in float64 and is stored as float64.

    /usr/bin/python3 tools/gen_fixtures_vit.py   (Debian's python3-torch, python3-h5py)
"""
import math
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "vit_cases.h5")
gen = torch.Generator().manual_seed(20240609)


def randn(*shape, scale=1.0):
    return (torch.randn(shape, generator=gen) * scale).float()


def cross_entropy_case(f, name, logits, labels, smoothing=0.0, grad_out=None):
    g = f.create_group(name)
    g.attrs["op"] = "cross_entropy"
    g.attrs["label_smoothing"] = smoothing
    g.create_dataset("logits", data=logits.numpy())
    g.create_dataset("labels", data=labels.numpy().astype(np.int64))
    leaf = logits.double().requires_grad_(True)
    out = F.cross_entropy(leaf, labels, label_smoothing=smoothing)
    grad_out = randn() if grad_out is None else torch.tensor(grad_out, dtype=torch.float32)
    out.backward(grad_out.double())
    g.create_dataset("out", data=out.detach().numpy())
    g.create_dataset("grad_out", data=grad_out.numpy())
    g.create_dataset("grad/logits", data=leaf.grad.numpy())


def cross_entropy_cases(f):
    labels = lambda n, k: torch.randint(0, k, (n,), generator=gen)
    cross_entropy_case(f, "ce_basic", randn(4, 5), labels(4, 5))
    cross_entropy_case(f, "ce_ten_classes", randn(16, 10, scale=3.0), labels(16, 10))
    # rows of huge magnitude: a naive exp overflows, the max-subtracted form does not
    big = randn(3, 4, scale=1.0)
    big[0] += 1000.0
    big[1] -= 1000.0
    big[2, 1] = 500.0
    cross_entropy_case(f, "ce_large_logits", big, torch.tensor([0, 3, 1]))
    cross_entropy_case(f, "ce_label_smoothing", randn(6, 7, scale=2.0), labels(6, 7), smoothing=0.1)
    cross_entropy_case(f, "ce_one_class", randn(3, 1), torch.zeros(3, dtype=torch.long))
    cross_entropy_case(f, "ce_one_sample", randn(1, 3), torch.tensor([2]))
    # a -inf logit for a class other than the label: PyTorch's loss and
    # gradient stay finite (row 0: ln 2 and [-1/2, 0, 1/2]); drawn without the
    # generator, so that the cases after it are unchanged
    minus_inf = torch.tensor([[0.0, float("-inf"), 0.0], [1.5, -0.5, float("-inf")]])
    cross_entropy_case(f, "ce_minus_inf_logit", minus_inf, torch.tensor([0, 1]), grad_out=0.75)


def vit_params(cfg):
    """Random parameters under vit/vit.h's names, in its registration order."""
    C, p, h, K = cfg["in_channels"], cfg["patch_size"], cfg["hidden"], cfg["num_classes"]
    T = (cfg["height"] // p) * (cfg["width"] // p)
    hm = cfg["mlp_ratio"] * h
    P = {}
    P["patch_embed.proj.weight"] = randn(h, C, p, p, scale=0.3)
    P["patch_embed.proj.bias"] = randn(h, scale=0.1)
    P["cls_token"] = randn(1, 1, h, scale=0.5)
    P["pos_embed"] = randn(1, 1 + T, h, scale=0.5)
    for i in range(cfg["depth"]):
        b = "blocks.%d." % i
        P[b + "norm1.weight"] = 1 + randn(h, scale=0.2)
        P[b + "norm1.bias"] = randn(h, scale=0.1)
        if cfg["single_head"]:
            for part in ("key", "query", "value"):
                P[b + "attn.%s.weight" % part] = randn(h, h, scale=1 / math.sqrt(h))
        else:
            P[b + "attn.qkv.weight"] = randn(3 * h, h, scale=1 / math.sqrt(h))
            P[b + "attn.qkv.bias"] = randn(3 * h, scale=0.1)
            P[b + "attn.proj.weight"] = randn(h, h, scale=1 / math.sqrt(h))
            P[b + "attn.proj.bias"] = randn(h, scale=0.1)
        P[b + "norm2.weight"] = 1 + randn(h, scale=0.2)
        P[b + "norm2.bias"] = randn(h, scale=0.1)
        P[b + "mlp.fc1.weight"] = randn(hm, h, scale=1 / math.sqrt(h))
        P[b + "mlp.fc1.bias"] = randn(hm, scale=0.1)
        P[b + "mlp.fc2.weight"] = randn(h, hm, scale=1 / math.sqrt(hm))
        P[b + "mlp.fc2.bias"] = randn(h, scale=0.1)
    P["norm.weight"] = 1 + randn(h, scale=0.2)
    P["norm.bias"] = randn(h, scale=0.1)
    P["head.weight"] = randn(K, h, scale=1 / math.sqrt(h))
    P["head.bias"] = randn(K, scale=0.1)
    return P


def vit_forward(P, x, cfg):
    h, heads, p = cfg["hidden"], cfg["heads"], cfg["patch_size"]
    B = x.shape[0]
    ln = lambda t, name: F.layer_norm(t, (h,), P[name + ".weight"], P[name + ".bias"], 1e-6)
    tok = F.conv2d(x.permute(0, 3, 1, 2), P["patch_embed.proj.weight"], P["patch_embed.proj.bias"], stride=p)
    tok = tok.flatten(2).transpose(1, 2)  # [B, T, h], row-major over the patch grid
    tok = torch.cat([P["cls_token"].expand(B, -1, -1), tok], dim=1) + P["pos_embed"]
    S = tok.shape[1]
    for i in range(cfg["depth"]):
        b = "blocks.%d." % i
        hn = ln(tok, b + "norm1")
        if cfg["single_head"]:  # the seed's Head
            k = hn @ P[b + "attn.key.weight"].T
            q = hn @ P[b + "attn.query.weight"].T
            v = hn @ P[b + "attn.value.weight"].T
            att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(h), dim=-1) @ v
        else:  # timm's Attention
            hd = h // heads
            qkv = F.linear(hn, P[b + "attn.qkv.weight"], P[b + "attn.qkv.bias"])
            q, k, v = qkv.reshape(B, S, 3, heads, hd).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1) @ v
            att = F.linear(a.transpose(1, 2).reshape(B, S, h), P[b + "attn.proj.weight"], P[b + "attn.proj.bias"])
        tok = tok + att
        hn = ln(tok, b + "norm2")
        m = F.gelu(F.linear(hn, P[b + "mlp.fc1.weight"], P[b + "mlp.fc1.bias"]), approximate="tanh")
        tok = tok + F.linear(m, P[b + "mlp.fc2.weight"], P[b + "mlp.fc2.bias"])
    return F.linear(ln(tok[:, 0], "norm"), P["head.weight"], P["head.bias"])


def vit_case(f, name, cfg, batch):
    g = f.create_group(name)
    g.attrs["op"] = "vit"
    for k, v in cfg.items():
        g.attrs[k] = int(v)
    x = randn(batch, cfg["height"], cfg["width"], cfg["in_channels"])
    P = vit_params(cfg)
    g.create_dataset("x", data=x.numpy())
    leaves = {}
    for k, v in P.items():
        g.create_dataset("params/" + k, data=v.numpy())
        leaves[k] = v.double().requires_grad_(True)
    xl = x.double().requires_grad_(True)
    out = vit_forward(leaves, xl, cfg)
    grad_out = randn(*out.shape)
    out.backward(grad_out.double())
    g.create_dataset("out", data=out.detach().numpy())
    g.create_dataset("grad_out", data=grad_out.numpy())
    g.create_dataset("grad/x", data=xl.grad.numpy())
    for k, v in leaves.items():
        g.create_dataset("grad/params/" + k, data=v.grad.numpy())


def main():
    with h5py.File(OUT, "w", libver="latest") as f:  # compact headers: a smaller file
        f.attrs["description"] = "PyTorch references for the ViT example: cross_entropy and the whole ViT (tools/gen_fixtures_vit.py)"
        cross_entropy_cases(f)
        base = dict(height=8, width=4, in_channels=3, patch_size=2, hidden=8, depth=2, heads=2,
                    mlp_ratio=2, num_classes=5, single_head=0)
        vit_case(f, "vit_multi_head", base, batch=3)
        vit_case(f, "vit_single_head", dict(base, single_head=1, depth=1), batch=2)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
