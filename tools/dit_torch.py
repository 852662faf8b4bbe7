"""The DiT of docs/dit.md as a PyTorch nn.Module, parameter for parameter.

Imported by tools/bench_torch.py (the benchmark's PyTorch side) and by the
PyTorch twin of the demo. Run it with Debian's /usr/bin/python3 (torch 1.13).

Layout follows docs/dit.md: latents x are [B, H, W, C] (channels last), the
output is the predicted noise in the same layout. The state_dict keys are the
checkpoint names of docs/checkpoint.md (x_embedder.conv.weight, pos_embed,
blocks.0.attn.qkv.weight, final_layer.unpatchify.deconv.weight, ...).
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FREQ_DIM = 256


def sincos_1d(dim, pos):
    """[len(pos), dim]: all sines, then all cosines (omega_k = 1/10000^(k/(dim/2)))."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.outer(np.asarray(pos, dtype=np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(hidden, grid):
    """[grid*grid, hidden]: token (i, j) = [1D table of column j, 1D table of row i]."""
    ii, jj = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    emb_col = sincos_1d(hidden // 2, jj.reshape(-1))
    emb_row = sincos_1d(hidden // 2, ii.reshape(-1))
    return np.concatenate([emb_col, emb_row], axis=1).astype(np.float32)


def timestep_embedding(t, dim=FREQ_DIM):
    """[B, dim]: cosines first, f_k = exp(-ln(10000) k / half); computed in float64 like the C side."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    args = t.to(torch.float64)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(torch.float32)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        B, T, h = x.shape
        hd = h // self.heads
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, T, h))


class Mlp(nn.Module):
    def __init__(self, hidden, mlp_hidden):
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp_hidden)
        self.fc2 = nn.Linear(mlp_hidden, hidden)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio):
        super().__init__()
        self.attn = Attention(hidden, heads)
        self.mlp = Mlp(hidden, mlp_ratio * hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        h = x.shape[-1]
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(F.layer_norm(x, (h,), eps=1e-6), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(F.layer_norm(x, (h,), eps=1e-6), shift_mlp, scale_mlp))
        return x


class Unpatchify(nn.Module):
    def __init__(self, hidden, out_channels, patch):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(hidden, out_channels, kernel_size=patch, stride=patch)


class FinalLayer(nn.Module):
    def __init__(self, hidden, out_channels, patch):
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.unpatchify = Unpatchify(hidden, out_channels, patch)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQ_DIM, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        return self.mlp(timestep_embedding(t))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden)


class PatchEmbed(nn.Module):
    def __init__(self, in_channels, hidden, patch):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, kernel_size=patch, stride=patch)


class DiT(nn.Module):
    """DiT(input_size, in_channels, patch_size, hidden, depth, heads, mlp_ratio, num_classes)."""

    def __init__(self, input_size, in_channels, patch_size, hidden, depth, heads, mlp_ratio=4,
                 num_classes=0, class_dropout=0.1):
        super().__init__()
        assert input_size % patch_size == 0 and hidden % heads == 0 and hidden % 4 == 0
        self.input_size, self.in_channels, self.patch_size = input_size, in_channels, patch_size
        self.hidden, self.heads, self.num_classes = hidden, heads, num_classes
        self.class_dropout = class_dropout
        grid = input_size // patch_size
        self.x_embedder = PatchEmbed(in_channels, hidden, patch_size)
        self.register_buffer("pos_embed", torch.from_numpy(sincos_2d(hidden, grid)).unsqueeze(0))
        self.t_embedder = TimestepEmbedder(hidden)
        if num_classes > 0:
            self.y_embedder = LabelEmbedder(num_classes, hidden)
        self.blocks = nn.ModuleList([DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden, in_channels, patch_size)
        self.initialize_weights()

    def initialize_weights(self):
        """DiT's initialisation (docs/dit.md)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.conv.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.conv.bias)
        if self.num_classes > 0:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for blk in self.blocks:
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.unpatchify.deconv.weight)
        nn.init.zeros_(self.final_layer.unpatchify.deconv.bias)

    def forward(self, x, t, y=None):
        """x [B, H, W, C], t [B] float, y [B] int64 (None when unconditional) -> [B, H, W, C]."""
        B, H, W, C = x.shape
        grid, h = H // self.patch_size, self.hidden
        tok = self.x_embedder.conv(x.permute(0, 3, 1, 2))       # [B, h, gh, gw]
        tok = tok.flatten(2).transpose(1, 2) + self.pos_embed    # [B, T, h]
        c = self.t_embedder(t)
        if self.num_classes > 0:
            c = c + self.y_embedder.embedding_table(y)
        for blk in self.blocks:
            tok = blk(tok, c)
        shift, scale = self.final_layer.adaLN_modulation(c).chunk(2, dim=1)
        tok = modulate(F.layer_norm(tok, (h,), eps=1e-6), shift, scale)
        tok = tok.transpose(1, 2).reshape(B, h, grid, grid)
        out = self.final_layer.unpatchify.deconv(tok)            # [B, C, H, W]
        return out.permute(0, 2, 3, 1)


class Diffusion:
    """T = 1000, betas linear 1e-4..0.02 in float64, epsilon prediction with MSE."""

    T = 1000

    def __init__(self):
        betas = np.linspace(1e-4, 0.02, self.T, dtype=np.float64)
        self.alpha_bar = torch.from_numpy(np.cumprod(1.0 - betas))

    def loss(self, model, x0, y=None, training=True, generator=None):
        B = x0.shape[0]
        t = torch.randint(0, self.T, (B,), generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        if y is not None and training and model.class_dropout > 0:
            drop = torch.rand(B, generator=generator) < model.class_dropout
            y = torch.where(drop, torch.full_like(y, model.num_classes), y)
        ab = self.alpha_bar[t].to(torch.float32).view(B, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        return F.mse_loss(model(xt, t.to(torch.float32), y), eps)


def forward_gemm_flops(input_size, in_channels, patch_size, hidden, depth, heads, mlp_ratio, batch):
    """FLOPs of one forward pass's matrix products (as pg_dit_forward_gemm_flops)."""
    B, h, p = float(batch), float(hidden), float(patch_size)
    T = float((input_size // patch_size) ** 2)
    patch_in, hm = in_channels * p * p, mlp_ratio * h
    f = 2 * B * T * patch_in * h + 2 * B * FREQ_DIM * h + 2 * B * h * h
    block = (2 * B * h * 6 * h + 2 * B * T * h * 3 * h + 2 * 2 * B * T * T * h + 2 * B * T * h * h
             + 2 * 2 * B * T * h * hm)
    return f + depth * block + 2 * B * h * 2 * h + 2 * B * T * h * patch_in


def check_cases(path):
    """Replays the 'dit' cases of a case file (docs/casefile.md) through this module."""
    import h5py
    worst = 0.0
    with h5py.File(path, "r") as f:
        for name in f:
            g = f[name]
            op = g.attrs.get("op")
            if (op.decode() if isinstance(op, bytes) else op) != "dit":
                continue
            a = {k: int(g.attrs[k]) for k in ("input_size", "in_channels", "patch_size", "hidden",
                                             "depth", "heads", "mlp_ratio", "num_classes")}
            m = DiT(a["input_size"], a["in_channels"], a["patch_size"], a["hidden"], a["depth"],
                    a["heads"], a["mlp_ratio"], a["num_classes"])
            state = {}
            g["params"].visititems(lambda n, o: state.__setitem__(n, torch.from_numpy(o[()]))
                                   if isinstance(o, h5py.Dataset) else None)
            m.load_state_dict(state, strict=True)
            x = torch.from_numpy(g["x"][()]).requires_grad_(True)
            y = torch.from_numpy(g["y"][()]).long() if "y" in g else None
            out = m(x, torch.from_numpy(g["t"][()]).float(), y)
            err = (out - torch.from_numpy(g["out"][()])).abs().max().item()
            gerr = 0.0
            if "grad_out" in g:
                out.backward(torch.from_numpy(g["grad_out"][()]))
                for n, p in m.named_parameters():
                    if "grad/params/" + n in g:
                        gerr = max(gerr, (p.grad - torch.from_numpy(g["grad/params/" + n][()])).abs().max().item())
                gerr = max(gerr, (x.grad - torch.from_numpy(g["grad/x"][()])).abs().max().item())
            print("%-20s output max error %.2e, gradient max error %.2e" % (name, err, gerr))
            worst = max(worst, err, gerr)
    return worst


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 2:
        sys.exit("usage: /usr/bin/python3 tools/dit_torch.py CASES.h5   (checks the module on the 'dit' cases)")
    sys.exit(0 if check_cases(sys.argv[1]) < 1e-4 else 1)
