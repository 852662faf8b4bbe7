#!/usr/bin/python3
"""A PyTorch state_dict (.pt or .safetensors) -> a patchgrad checkpoint (HDF5).

    /usr/bin/python3 tools/import_torch.py IN.pt|IN.safetensors OUT.h5 [options]

The input is a state_dict, or a dict holding one under "model" (or
"state_dict"), as torch.save writes them, or a .safetensors file (read with
the standard library and numpy). Three kinds of model are recognised by
their tensor names:
  DiT   x_embedder.conv.weight ...   (patchgrad's DiT, tools/dit_torch.py)
  DiT   x_embedder.proj.weight ...   (facebookresearch/DiT's DiT: renamed, and
                                      final_layer.linear turned back into the
                                      Unpatchify ConvTranspose; see
                                      docs/data_in_out.md for what must hold)
  ViT   patch_embed.proj.weight ...  (vit/vit.h, timm's names)

The config comes from, in this order of precedence: the flags; --like
CKPT.h5 (another checkpoint's /config); the file's own (export_torch.py's
"config", or the safetensors metadata "patchgrad_config"); the tensors'
shapes (hidden, channels, patch, depth, MLP ratio, classes, input size; the
number of heads is not in any shape: --heads). Every tensor is then checked
against the PyTorch twin built from that config (names and shapes, both
ways); the first mismatch stops the import with a message naming it.

The output has /config (with the data transform of --data LATENTS.h5: the
mean, std, pad and space_to_depth `patchgrad sample` needs to turn latents
back into images), /params (float32, kind attributes) and, when the input is
an export with an "ema" entry, /ema: what `patchgrad sample` (DiT) and
`patchgrad classify eval` (ViT) read. --case CASE.h5 also writes a
`patchgrad check` case comparing patchgrad's forward on the written
parameters with the PyTorch twin's.
"""
import argparse
import math
import os
import sys
from collections import OrderedDict

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import export_torch as ex  # noqa: E402  (the twins, safetensors, the upstream map, case files)
from export_torch import fail  # noqa: E402

MODEL_NAMES = {"dit": "DiT", "vit": "ViT"}
DIT_KEYS = ("input_size", "in_channels", "patch_size", "hidden", "depth", "heads", "mlp_ratio",
            "num_classes")
VIT_KEYS = ("height", "width", "in_channels", "patch_size", "hidden", "depth", "heads",
            "mlp_ratio", "num_classes")


# ---- Reading the input ----

def to_numpy(t):
    """A torch tensor or array as float32 numpy (float16 / bfloat16 widened)."""
    if hasattr(t, "detach"):
        t = t.detach().cpu()
        if t.is_floating_point():
            t = t.float()
        t = t.numpy()
    a = np.asarray(t)
    return a.astype(np.float32) if a.dtype.kind == "f" else a


def load_input(path, which):
    """(weights, ema or None, config or None, step) of a .pt or .safetensors file."""
    if path.endswith(".safetensors"):
        tensors, meta = ex.read_safetensors(path)
        config = None
        if "patchgrad_config" in meta:
            import json
            config = json.loads(meta["patchgrad_config"])
        return (OrderedDict((k, to_numpy(v)) for k, v in tensors.items()), None, config,
                int(meta.get("patchgrad_step", 0)))
    import torch
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001  (torch raises many kinds)
        fail("%s: torch.load failed: %s" % (path, e))
    if not isinstance(obj, dict):
        fail("%s holds a %s, not a state_dict (a dict of tensors)" % (path, type(obj).__name__))
    is_tensor = lambda v: hasattr(v, "detach") or isinstance(v, np.ndarray)
    if obj and all(is_tensor(v) for v in obj.values()):
        if which not in (None, "model"):
            fail("%s is a plain state_dict: --weights %s does not apply" % (path, which))
        return OrderedDict((k, to_numpy(v)) for k, v in obj.items()), None, None, 0
    key = which or next((k for k in ("model", "state_dict") if k in obj), None)
    if key is None or key not in obj:
        fail("%s: no state_dict under %s (keys: %s); choose one with --weights KEY"
             % (path, "'%s'" % key if key else "'model' or 'state_dict'", ", ".join(map(str, obj))))
    weights = OrderedDict((k, to_numpy(v)) for k, v in obj[key].items())
    ema = None
    if key == "model" and isinstance(obj.get("ema"), dict):
        ema = OrderedDict((k, to_numpy(v)) for k, v in obj["ema"].items())
    return weights, ema, obj.get("config"), int(obj.get("step", 0) or 0)


# ---- Which model, and its config ----

def count_blocks(names, suffix):
    n = 0
    while "blocks.%d.%s" % (n, suffix) in names:
        n += 1
    return n


def square_side(tokens):
    """g when tokens = g * g, else None."""
    g = int(round(math.sqrt(tokens)))
    return g if g * g == tokens else None


def infer_dit(w):
    h, C, p, _ = w["x_embedder.conv.weight"].shape
    c = {"hidden": h, "in_channels": C, "patch_size": p,
         "depth": count_blocks(w, "adaLN_modulation.1.weight")}
    if "pos_embed" in w:
        g = square_side(w["pos_embed"].shape[1])
        if g:
            c["input_size"] = g * p
    if "blocks.0.mlp.fc1.weight" in w and w["blocks.0.mlp.fc1.weight"].shape[0] % h == 0:
        c["mlp_ratio"] = w["blocks.0.mlp.fc1.weight"].shape[0] // h
    t = w.get("y_embedder.embedding_table.weight")
    c["num_classes"] = t.shape[0] - 1 if t is not None else 0
    return c


def infer_vit(w):
    h, C, p, _ = w["patch_embed.proj.weight"].shape
    c = {"hidden": h, "in_channels": C, "patch_size": p,
         "depth": count_blocks(w, "norm1.weight"),
         "attention": "single_head" if "blocks.0.attn.key.weight" in w else "multi_head"}
    if "pos_embed" in w:
        g = square_side(w["pos_embed"].shape[1] - 1)
        if g:
            c["height"] = c["width"] = g * p
    if "blocks.0.mlp.fc1.weight" in w and w["blocks.0.mlp.fc1.weight"].shape[0] % h == 0:
        c["mlp_ratio"] = w["blocks.0.mlp.fc1.weight"].shape[0] // h
    if "head.weight" in w:
        c["num_classes"] = w["head.weight"].shape[0]
    if c["attention"] == "single_head":
        c["heads"] = 1
    return c


def from_upstream_dit(w, heads_given, drop_sigma, num_classes):
    """facebookresearch/DiT's state_dict -> patchgrad's DiT names and layouts.
    The inverse of export_torch.to_upstream_dit, with its conditions checked."""
    h, C, p, _ = w["x_embedder.proj.weight"].shape
    L, Lb = w.get("final_layer.linear.weight"), w.get("final_layer.linear.bias")
    if L is None or Lb is None:
        fail("facebookresearch/DiT weights without final_layer.linear.weight/bias")
    out_c, rem = divmod(L.shape[0], p * p)
    if rem or out_c not in (C, 2 * C):
        fail("final_layer.linear.weight has %d rows: expected p*p*C = %d (learn_sigma=False) or "
             "p*p*2C = %d (learn_sigma=True)" % (L.shape[0], p * p * C, p * p * 2 * C))
    L = L.reshape(p, p, out_c, h)
    Lb = Lb.reshape(p * p, out_c)
    if out_c == 2 * C:
        if not drop_sigma:
            fail("the model was built with learn_sigma=True (%d output channels for %d input "
                 "channels): patchgrad's DiT predicts the noise only. --drop-sigma keeps the noise "
                 "channels and drops the learned variance (samplers then use the fixed variance)"
                 % (out_c, C))
        L, Lb = L[:, :, :C], Lb[:, :C]
    spread = float(np.abs(Lb - Lb[:1]).max())
    if spread > 0:
        fail("final_layer.linear.bias differs between the %d positions of a patch (by up to %.3g): "
             "patchgrad's Unpatchify has one bias per channel, so this model has no exact "
             "equivalent" % (p * p, spread))
    out = OrderedDict()
    for name, a in w.items():
        if name.startswith("x_embedder.proj."):
            out["x_embedder.conv." + name[len("x_embedder.proj."):]] = a
        elif name.startswith("final_layer.linear."):
            continue
        else:
            out[name] = a
    out["final_layer.unpatchify.deconv.weight"] = np.ascontiguousarray(L.transpose(3, 2, 0, 1))
    out["final_layer.unpatchify.deconv.bias"] = np.ascontiguousarray(Lb[0])
    table = out.get("y_embedder.embedding_table.weight")
    if table is not None and (num_classes == 0 or (num_classes is None and table.shape[0] == 1)):
        # upstream DiT(num_classes=0) still adds its one row (the null class)
        # to the conditioning: fold it into the bias before it.
        if table.shape[0] != 1:
            fail("--num-classes 0 but y_embedder.embedding_table.weight has %d rows" % table.shape[0])
        out["t_embedder.mlp.2.bias"] = out["t_embedder.mlp.2.bias"] + table[0]
        del out["y_embedder.embedding_table.weight"]
    elif table is not None and num_classes is not None and table.shape[0] != num_classes + 1:
        fail("y_embedder.embedding_table.weight has %d rows; patchgrad's DiT with --num-classes %d "
             "needs %d (the classes and the null class of classifier-free guidance: "
             "class_dropout_prob > 0 upstream)" % (table.shape[0], num_classes, num_classes + 1))
    if heads_given is None:
        fail("facebookresearch/DiT weights: --heads N is needed (num_heads: DiT-S 6, DiT-B 12, "
             "DiT-L 16, DiT-XL 16)")
    return out


def merge_config(kind, inferred, file_cfg, like_cfg, flags):
    c = dict(inferred)
    for src in (file_cfg, like_cfg, flags):
        for k, v in (src or {}).items():
            if v is not None:
                c[k] = v
    keys = DIT_KEYS if kind == "dit" else VIT_KEYS
    missing = [k for k in keys if k not in c]
    if missing:
        hints = {"heads": "--heads N (the number of attention heads is in no tensor's shape)",
                 "height": "--height H --width W (the token count is not a square)",
                 "width": "--height H --width W (the token count is not a square)",
                 "input_size": "--input-size S (no pos_embed, or a non-square one)"}
        fail("the %s config needs %s" % (MODEL_NAMES[kind], "; ".join(hints.get(k, "'%s'" % k) for k in missing)))
    if kind == "vit":
        c["model"] = "vit"
        c.setdefault("attention", "multi_head")
    else:
        c.setdefault("class_dropout", 0.1)
    return c


def config_attrs(kind, c):
    """/config attributes in the order patchgrad writes them, typed as it reads them."""
    out = OrderedDict()
    if kind == "vit":
        out["model"] = "vit"
        for k in VIT_KEYS:
            out[k] = np.int64(c[k])
        out["attention"] = c["attention"]
    else:
        for k in DIT_KEYS:
            out[k] = np.int64(c[k])
        out["class_dropout"] = np.float64(c["class_dropout"])
    for k in ("data_mean", "data_std"):
        if k in c:
            out[k] = np.float64(c[k])
    for k in ("data_pad", "data_space_to_depth"):
        if k in c:
            out[k] = np.int64(c[k])
    for k in ("data_source", "data_class_names"):
        if k in c:
            out[k] = str(c[k])
    return out


def data_transform(path, kind):
    """data_* settings from a latent file's attributes (and, for a DiT, its
    class names, which label the rows of patchgrad sample's sheets)."""
    with h5py.File(path, "r") as f:
        a = {k: ex.attr(v) for k, v in f.attrs.items()}
        has_latents = "latents" in f
    if not has_latents and "mean" not in a and "std" not in a:
        fail("--data %s has neither a dataset 'latents' nor the attributes mean and std" % path)
    c = {"data_mean": float(a.get("mean", 0.0)), "data_std": float(a.get("std", 1.0))}
    if kind == "dit":
        c["data_pad"] = int(a.get("pad", 0))
        c["data_space_to_depth"] = int(a.get("space_to_depth", 1))
        if str(a.get("class_names", "")).startswith("0 "):
            c["data_class_names"] = str(a["class_names"])
    else:
        c["data_source"] = str(a.get("source", ""))
    return c


def kind_of(model_kind, name):
    """The `kind` attribute patchgrad gives each tensor (informational)."""
    if name == "pos_embed":
        return "buffer" if model_kind == "dit" else "embedding"
    if name in ("cls_token", "y_embedder.embedding_table.weight"):
        return "embedding"
    leaf = name.split(".")
    if model_kind == "vit" and len(leaf) >= 2 and leaf[-2] in ("norm1", "norm2", "norm"):
        return "norm"
    return "bias" if leaf[-1] == "bias" else "weight"


def shape_str(s):
    return "[" + ", ".join(str(int(d)) for d in s) + "]"


def check_against(expected, given, src, what):
    """Names and shapes both ways; the first mismatch is the message."""
    problems = []
    for name, shape in expected.items():
        if name not in given:
            problems.append("'%s' %s is missing" % (name, shape_str(shape)))
        elif tuple(given[name].shape) != tuple(shape):
            problems.append("'%s' has shape %s in %s, the model needs %s"
                            % (name, shape_str(given[name].shape), src, shape_str(shape)))
    for name in given:
        if name not in expected:
            problems.append("'%s' %s is not a tensor of the model" % (name, shape_str(given[name].shape)))
    if problems:
        fail("%s does not match %s: %s%s" % (src, what, problems[0],
             " (and %d more mismatches)" % (len(problems) - 1) if len(problems) > 1 else ""))


def write_checkpoint(path, kind, config, weights, ema, step):
    contents = "config: model configuration (attributes); params/: model parameters, PyTorch names and layouts, float32"
    if ema is not None:
        contents += "; ema/: exponential moving average of the parameters, same names"
    tmp = path + ".tmp"
    with h5py.File(tmp, "w", track_order=True) as f:
        f.attrs["format"] = ex.CHECKPOINT_FORMAT
        f.attrs["format_version"] = np.int64(1)
        f.attrs["contents"] = contents
        f.attrs["step"] = np.int64(step)
        g = f.create_group("config", track_order=True)
        for k, v in config_attrs(kind, config).items():
            g.attrs[k] = v
        for group, arrays in (("params", weights), ("ema", ema)):
            if arrays is None:
                continue
            g = f.create_group(group, track_order=True)
            for name, a in arrays.items():
                d = g.create_dataset(name, data=np.ascontiguousarray(a, dtype=np.float32))
                d.attrs["kind"] = kind_of(kind, name)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="IN.pt (a state_dict, or a dict with 'model') or IN.safetensors")
    ap.add_argument("out", help="OUT.h5, a patchgrad checkpoint")
    ap.add_argument("--weights", metavar="KEY", help="the entry of the .pt dict to import (model)")
    ap.add_argument("--like", metavar="CKPT.h5", help="take the config from this checkpoint")
    ap.add_argument("--data", metavar="LATENTS.h5",
                    help="the latent file the model is for: its mean, std, pad, space_to_depth")
    ap.add_argument("--heads", type=int)
    ap.add_argument("--input-size", type=int, help="DiT: latent height = width")
    ap.add_argument("--height", type=int, help="ViT: latent height")
    ap.add_argument("--width", type=int, help="ViT: latent width")
    ap.add_argument("--num-classes", type=int)
    ap.add_argument("--class-dropout", type=float, help="DiT: label dropout of training (0.1)")
    ap.add_argument("--drop-sigma", action="store_true",
                    help="facebookresearch/DiT with learn_sigma=True: keep the noise channels only")
    ap.add_argument("--case", metavar="CASE.h5", help="also write a patchgrad check case file")
    a = ap.parse_args()

    weights, ema, file_cfg, step = load_input(a.input, a.weights)
    # DistributedDataParallel ("module.") and torch.compile ("_orig_mod.") prefixes
    for prefix in ("module.", "_orig_mod."):
        if weights and all(k.startswith(prefix) for k in weights):
            print("note: dropping the prefix '%s' of every name" % prefix)
            weights = OrderedDict((k[len(prefix):], v) for k, v in weights.items())
            if ema is not None and all(k.startswith(prefix) for k in ema):
                ema = OrderedDict((k[len(prefix):], v) for k, v in ema.items())
    names = set(weights)
    upstream = "x_embedder.proj.weight" in names
    if upstream:
        weights = from_upstream_dit(weights, a.heads, a.drop_sigma, a.num_classes)
        names = set(weights)
    if "x_embedder.conv.weight" in names:
        kind, inferred = "dit", infer_dit(weights)
    elif "patch_embed.proj.weight" in names:
        kind, inferred = "vit", infer_vit(weights)
    else:
        fail("%s: not a DiT or ViT state_dict: none of x_embedder.conv.weight (patchgrad's DiT), "
             "x_embedder.proj.weight (facebookresearch/DiT), patch_embed.proj.weight (ViT) among its "
             "%d tensors (the first: %s)" % (a.input, len(weights), ", ".join(list(weights)[:4])))
    like_cfg = None
    if a.like:
        with h5py.File(a.like, "r") as f:
            if "config" not in f:
                fail("--like %s has no group 'config'" % a.like)
            like_cfg = {k: ex.attr(v) for k, v in f["config"].attrs.items()}
        if ex.model_type(like_cfg) != kind:
            fail("--like %s is a %s checkpoint, %s holds a %s" % (a.like, ex.model_type(like_cfg),
                                                                 a.input, kind))
    flags = {"heads": a.heads, "input_size": a.input_size, "height": a.height, "width": a.width,
             "num_classes": a.num_classes, "class_dropout": a.class_dropout}
    if a.data:
        flags.update(data_transform(a.data, kind))
    config = merge_config(kind, inferred, file_cfg if isinstance(file_cfg, dict) else None,
                          like_cfg, flags)

    # The twin of that config says which tensors, of which shapes.
    twin = ex.build_twin(config)
    expected = OrderedDict((k, tuple(v.shape)) for k, v in twin.state_dict().items())
    if kind == "dit" and "pos_embed" not in weights:
        weights["pos_embed"] = twin.state_dict()["pos_embed"].numpy()  # the fixed table
    what = "a %s with %s" % (MODEL_NAMES[kind], ", ".join("%s %s" % (k, config[k]) for k in
                                                  (DIT_KEYS if kind == "dit" else VIT_KEYS)))
    check_against(expected, weights, a.input, what)
    if ema is not None:
        check_against(expected, ema, a.input + " (ema)", what)
    if kind == "dit":
        fixed = twin.state_dict()["pos_embed"].numpy()
        diff = float(np.abs(weights["pos_embed"] - fixed).max())
        if diff > 1e-5:
            print("note: pos_embed differs from the 2D sin-cos table by up to %.3g; patchgrad "
                  "uses the file's" % diff)
    # Tensors in the twin's order.
    weights = OrderedDict((k, weights[k]) for k in expected)
    if ema is not None:
        ema = OrderedDict((k, ema[k]) for k in expected)
    write_checkpoint(a.out, kind, config, weights, ema, step)
    print("wrote %s: %s%s, %d tensors%s%s" % (a.out, what, " (from facebookresearch/DiT's names)"
          if upstream else "", len(weights), ", ema" if ema is not None else "",
          "" if any(k.startswith("data_") for k in config) else
          "; no data transform (--data LATENTS.h5 gives %s the data's mean and std%s)"
          % (("sample", ", pad and space_to_depth") if kind == "dit" else ("classify eval", ""))))
    if a.case:
        ex.load_into(twin, weights, a.input)
        ck = ex.read_checkpoint(a.out)
        ex.write_case(a.case, ck["config"], ck["params"], twin)
        print("wrote %s: run build/patchgrad check %s" % (a.case, a.case))


if __name__ == "__main__":
    main()
