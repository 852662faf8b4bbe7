#!/usr/bin/python3
"""The patch VAE of vae/vae.h as a PyTorch nn.Module, parameter for parameter,
and its twin check: a patchgrad VAE checkpoint loaded into it (strict, the
names and layouts as saved) runs the same forward as the C library.

Layout as in C: images x are [B, H, W, C] (channels last), latents
[B, H/p, W/p, C_lat]. The state_dict keys are the checkpoint names
(encoder.patch_embed.proj.weight, encoder.pos_embed, encoder.blocks.0.attn.qkv.weight,
encoder.moments.weight, decoder.latent_embed.weight, decoder.unpatchify.weight, ...).
docs/vae.md defines the model.

Twin check (by hand; the test suite needs no Python):

    build/patchgrad vae reconstruct --ckpt V.h5 --data test.h5 --count 64 --sample --dump D.h5
    /usr/bin/python3 tools/vae_torch.py --ckpt V.h5 --dump D.h5

D.h5 holds what C used and computed: x (the images), eps, mean, logvar, z,
recon. This script runs x and eps through the PyTorch module and prints the
largest absolute difference of mean, logvar, z and the reconstruction.
Imported by tools/gen_fixtures_vae.py (the case-file references).
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dit_torch import Attention, Mlp, sincos_1d  # noqa: E402

LN_EPS = 1e-6
CONFIG_KEYS = ("height", "width", "in_channels", "patch_size", "latent_channels", "hidden",
               "encoder_depth", "decoder_depth", "heads", "mlp_ratio")


def sincos_2d_grid(hidden, gh, gw):
    """[1, gh*gw, hidden], tokens row-major: token (i, j) = [1-D table of column j, of row i]."""
    ii, jj = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    emb = np.concatenate([sincos_1d(hidden // 2, jj.reshape(-1)), sincos_1d(hidden // 2, ii.reshape(-1))], axis=1)
    return torch.from_numpy(emb.astype(np.float32))[None]


class Block(nn.Module):
    """timm's pre-norm Block: x + attn(norm1(x)), x + mlp(norm2(x))."""

    def __init__(self, hidden, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.mlp = Mlp(hidden, mlp_ratio * hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, in_channels, hidden, patch):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden, kernel_size=patch, stride=patch)


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, p = c["hidden"], c["patch_size"]
        self.patch_embed = PatchEmbed(c["in_channels"], h, p)
        self.register_buffer("pos_embed", sincos_2d_grid(h, c["height"] // p, c["width"] // p))
        self.blocks = nn.ModuleList([Block(h, c["heads"], c["mlp_ratio"]) for _ in range(c["encoder_depth"])])
        self.norm = nn.LayerNorm(h, eps=LN_EPS)
        self.moments = nn.Linear(h, 2 * c["latent_channels"])


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, p = c["hidden"], c["patch_size"]
        self.latent_embed = nn.Linear(c["latent_channels"], h)
        self.register_buffer("pos_embed", sincos_2d_grid(h, c["height"] // p, c["width"] // p))
        self.blocks = nn.ModuleList([Block(h, c["heads"], c["mlp_ratio"]) for _ in range(c["decoder_depth"])])
        self.norm = nn.LayerNorm(h, eps=LN_EPS)
        self.unpatchify = nn.ConvTranspose2d(h, c["in_channels"], kernel_size=p, stride=p)


class PatchVAE(nn.Module):
    """PatchVAE(**config) with the keys of CONFIG_KEYS (a checkpoint's /config)."""

    def __init__(self, **config):
        super().__init__()
        self.config = {k: int(config[k]) for k in CONFIG_KEYS}
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)

    def grid(self):
        p = self.config["patch_size"]
        return self.config["height"] // p, self.config["width"] // p

    def encode(self, x):
        """x [B, H, W, C] -> mean, logvar [B, H/p, W/p, C_lat]."""
        e, (gh, gw) = self.encoder, self.grid()
        tok = e.patch_embed.proj(x.permute(0, 3, 1, 2)).flatten(2).transpose(1, 2) + e.pos_embed
        for b in e.blocks:
            tok = b(tok)
        mean, logvar = e.moments(e.norm(tok)).chunk(2, dim=-1)
        B, L = x.shape[0], self.config["latent_channels"]
        return mean.reshape(B, gh, gw, L), logvar.reshape(B, gh, gw, L)

    def decode(self, z):
        """z [B, H/p, W/p, C_lat] -> [B, H, W, C]."""
        d, (gh, gw) = self.decoder, self.grid()
        B = z.shape[0]
        tok = d.latent_embed(z.reshape(B, gh * gw, -1)) + d.pos_embed
        for b in d.blocks:
            tok = b(tok)
        tok = d.norm(tok).reshape(B, gh, gw, -1).permute(0, 3, 1, 2)
        return d.unpatchify(tok).permute(0, 2, 3, 1)

    def forward(self, x, eps):
        mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mean, logvar, z


def kl_normal(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, I)): summed over a sample's latent elements, mean over the batch."""
    return -0.5 * torch.sum(1 + logvar - mean ** 2 - torch.exp(logvar)) / mean.shape[0]


def vae_loss(recon, x, mean, logvar, beta):
    """mse(recon, x) (mean over every element) + beta * KL."""
    return F.mse_loss(recon, x) + beta * kl_normal(mean, logvar)


def load_checkpoint(path):
    import h5py
    with h5py.File(path, "r") as f:
        cfg = f["config"].attrs
        if cfg.get("model") not in ("vae", b"vae"):
            raise SystemExit("%s: config model is %r, not a VAE" % (path, cfg.get("model")))
        m = PatchVAE(**{k: int(cfg[k]) for k in CONFIG_KEYS})
        state = {name: torch.from_numpy(f["params"][name][()]) for name in f["params"]}
    m.load_state_dict(state, strict=True)
    return m.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True, help="a patchgrad VAE checkpoint")
    ap.add_argument("--dump", required=True, help="the arrays of `patchgrad vae reconstruct --dump`")
    ap.add_argument("--float64", action="store_true", help="run PyTorch in float64 (C stays float32)")
    args = ap.parse_args()
    import h5py
    torch.set_num_threads(1)
    model = load_checkpoint(args.ckpt)
    with h5py.File(args.dump, "r") as f:
        got = {k: f[k][()] for k in ("x", "eps", "mean", "logvar", "z", "recon")}
    dtype = torch.float64 if args.float64 else torch.float32
    model = model.to(dtype)
    with torch.no_grad():
        recon, mean, logvar, z = model(torch.from_numpy(got["x"]).to(dtype), torch.from_numpy(got["eps"]).to(dtype))
    ref = {"mean": mean, "logvar": logvar, "z": z, "recon": recon}
    n = got["x"].shape[0]
    print("%s: %d images %s, latents %s; PyTorch %s" % (args.ckpt, n, list(got["x"].shape[1:]),
                                                        list(got["z"].shape[1:]), str(dtype).split(".")[-1]))
    worst = 0.0
    for k, v in ref.items():
        d = float(np.max(np.abs(v.double().numpy() - got[k].astype(np.float64))))
        scale = float(np.max(np.abs(got[k])))
        worst = max(worst, d)
        print("  %-7s max |C - PyTorch| = %.3e   (max |value| %.3g)" % (k, d, scale))
    mse = float(np.mean((got["recon"].astype(np.float64) - got["x"]) ** 2))
    mse_t = float(torch.mean((recon.double() - torch.from_numpy(got["x"]).double()) ** 2))
    print("  reconstruction MSE: C %.6f, PyTorch %.6f" % (mse, mse_t))
    print("worst %.3e: %s 1e-5" % (worst, "within" if worst <= 1e-5 else "BEYOND"))
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
