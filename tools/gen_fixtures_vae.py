#!/usr/bin/python3
"""Writes tests/data/vae_cases.h5: PyTorch reference cases for the patch VAE,
in the case-file format of `patchgrad check`, replayed by tests/test_vae.c
through `patchgrad check` (handlers in cli/check_vae.c):

  reparameterize  mean, logvar, eps (same shape); out = mean + exp(0.5 logvar) eps;
                  grad/mean, grad/logvar, grad/eps
  kl_normal       mean, logvar [B, ...]; out = -0.5 * sum(1 + logvar - mean^2 - exp(logvar)) / B
                  (a 0-d scalar); grad/mean, grad/logvar
  vae             the config of vae/vae.h as attributes plus beta (float);
                  x [B, H, W, C], eps [B, H/p, W/p, C_lat], params/<name>;
                  out = the loss mse(recon, x) + beta * KL (0-d); also recon,
                  mean, logvar, z; grad/x, grad/eps, grad/params/<name>

The VAE is tools/vae_torch.py's PatchVAE. Its parameters are random (not the
model's init), so that every gradient is exercised; params/encoder.pos_embed
and params/decoder.pos_embed are the fixed sin-cos tables (no gradient).

Inputs are drawn in float32 and stored as float32, so C sees exactly the
values PyTorch used; the reference runs in float64 and is stored as float64.

    /usr/bin/python3 tools/gen_fixtures_vae.py   (Debian's python3-torch, python3-h5py)
"""
import math
import os
import sys

import h5py
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vae_torch import PatchVAE, kl_normal, vae_loss  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "vae_cases.h5")
gen = torch.Generator().manual_seed(20240719)


def randn(*shape, scale=1.0):
    return (torch.randn(shape, generator=gen) * scale).float()


def store_op(f, name, op, inputs, fn, attrs=None):
    """inputs: name -> float32 tensor; fn(**float64 leaves) -> out."""
    g = f.create_group(name)
    g.attrs["op"] = op
    for k, v in (attrs or {}).items():
        g.attrs[k] = v
    leaves = {}
    for k, v in inputs.items():
        g.create_dataset(k, data=v.numpy())
        leaves[k] = v.double().requires_grad_(True)
    out = fn(**leaves)
    grad_out = randn(*out.shape)
    out.backward(grad_out.double())
    g.create_dataset("out", data=out.detach().numpy())
    g.create_dataset("grad_out", data=grad_out.numpy())
    for k, v in leaves.items():
        g.create_dataset("grad/" + k, data=v.grad.numpy())


def reparameterize(mean, logvar, eps):
    return mean + torch.exp(0.5 * logvar) * eps


def op_cases(f):
    store_op(f, "reparameterize_basic", "reparameterize",
             dict(mean=randn(3, 4, 4, 2), logvar=randn(3, 4, 4, 2), eps=randn(3, 4, 4, 2)), reparameterize)
    # a wide range of variances: sigma from e^-10 to e^5
    store_op(f, "reparameterize_wide_logvar", "reparameterize",
             dict(mean=randn(2, 17), logvar=torch.linspace(-20, 10, 34).reshape(2, 17).float(), eps=randn(2, 17)),
             reparameterize)
    store_op(f, "reparameterize_one_element", "reparameterize",
             dict(mean=randn(1), logvar=randn(1), eps=randn(1)), reparameterize)
    store_op(f, "kl_normal_basic", "kl_normal", dict(mean=randn(4, 3, 3, 2), logvar=randn(4, 3, 3, 2)), kl_normal)
    store_op(f, "kl_normal_batch_one", "kl_normal", dict(mean=randn(1, 5), logvar=randn(1, 5, scale=2.0)), kl_normal)
    store_op(f, "kl_normal_wide_logvar", "kl_normal",
             dict(mean=randn(3, 8, scale=3.0), logvar=torch.linspace(-12, 6, 24).reshape(3, 8).float()), kl_normal)
    # the prior itself: KL 0, gradients 0
    store_op(f, "kl_normal_at_prior", "kl_normal", dict(mean=torch.zeros(2, 6), logvar=torch.zeros(2, 6)), kl_normal)


def vae_case(f, name, cfg, batch, beta):
    g = f.create_group(name)
    g.attrs["op"] = "vae"
    for k, v in cfg.items():
        g.attrs[k] = int(v)
    g.attrs["beta"] = beta
    model = PatchVAE(**cfg)
    p, L = cfg["patch_size"], cfg["latent_channels"]
    with torch.no_grad():  # random parameters, float32 values as C reads them
        for pname, t in model.named_parameters():
            if pname.endswith("norm1.weight") or pname.endswith("norm2.weight") or pname.endswith("norm.weight"):
                t.copy_(1 + randn(*t.shape, scale=0.2))
            elif pname.endswith("bias"):
                t.copy_(randn(*t.shape, scale=0.1))
            else:
                fan_in = t[0].numel() if "unpatchify" not in pname else t.shape[0]
                t.copy_(randn(*t.shape, scale=1 / math.sqrt(fan_in)))
    for pname, t in model.state_dict().items():
        g.create_dataset("params/" + pname, data=t.numpy())
    x = randn(batch, cfg["height"], cfg["width"], cfg["in_channels"])
    eps = randn(batch, cfg["height"] // p, cfg["width"] // p, L)
    g.create_dataset("x", data=x.numpy())
    g.create_dataset("eps", data=eps.numpy())
    model = model.double()
    xl, el = x.double().requires_grad_(True), eps.double().requires_grad_(True)
    recon, mean, logvar, z = model(xl, el)
    loss = vae_loss(recon, xl, mean, logvar, beta)
    grad_out = randn()
    loss.backward(grad_out.double())
    g.create_dataset("out", data=loss.detach().numpy())
    g.create_dataset("grad_out", data=grad_out.numpy())
    for k, v in (("recon", recon), ("mean", mean), ("logvar", logvar), ("z", z)):
        g.create_dataset(k, data=v.detach().numpy())
    g.create_dataset("grad/x", data=xl.grad.numpy())
    g.create_dataset("grad/eps", data=el.grad.numpy())
    for pname, t in model.named_parameters():
        g.create_dataset("grad/params/" + pname, data=t.grad.numpy())


def main():
    with h5py.File(OUT, "w", libver="latest") as f:  # compact headers: a smaller file
        f.attrs["description"] = ("PyTorch references for the patch VAE: reparameterize, kl_normal and the "
                                  "whole VAE's loss (tools/gen_fixtures_vae.py)")
        op_cases(f)
        base = dict(height=8, width=4, in_channels=2, patch_size=2, latent_channels=3, hidden=8,
                    encoder_depth=2, decoder_depth=1, heads=2, mlp_ratio=2)
        vae_case(f, "vae_small", base, batch=3, beta=0.1)
        vae_case(f, "vae_no_blocks", dict(base, encoder_depth=0, decoder_depth=0, patch_size=4, height=8, width=8),
                 batch=2, beta=1.0)
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
