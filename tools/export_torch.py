#!/usr/bin/python3
"""A patchgrad checkpoint (HDF5) -> PyTorch.

    /usr/bin/python3 tools/export_torch.py CKPT.h5 OUT.pt [--ema] [--case CASE.h5]
    /usr/bin/python3 tools/export_torch.py CKPT.h5 OUT.safetensors --safetensors [--ema]
    /usr/bin/python3 tools/export_torch.py CKPT.h5 OUT.pt --upstream-dit [--ema]

OUT.pt (torch.save of a dict):
  model      the state_dict, names and layouts as in the checkpoint (PyTorch's:
             Linear [out, in], Conv2d [out, in, kh, kw], ConvTranspose2d
             [in, out, kh, kw]); it loads with strict=True into the PyTorch
             twins: DiT of tools/dit_torch.py, ViT below (timm's names)
  ema        the EMA weights under the same names (when the checkpoint has them)
  optimizer  a torch.optim state_dict (when the checkpoint has optimizer state):
             state {index: {step, exp_avg, exp_avg_sq[, max_exp_avg_sq]} or
             {momentum_buffer}}, param_groups with the parameter indices
             numbered group by group, each group's parameters in the twin's
             parameters() order (lr, betas, eps, weight_decay, ... from the
             checkpoint; patchgrad's default group first, then its param
             groups; decay_weights_only splits a group into its weights and
             the rest with weight_decay 0; each group lists its param_names)
  config     the checkpoint's /config attributes; step: its step

--safetensors writes the weights (the model's, or the EMA's with --ema) as a
.safetensors file, with the standard library and numpy only: an 8-byte
little-endian header length, a JSON header {name: {dtype, shape,
data_offsets}, "__metadata__": {...}}, then the raw little-endian tensors.

--upstream-dit writes a plain state_dict for facebookresearch/DiT's `DiT`
class (models.py) built with the same config and learn_sigma=False,
class_dropout_prob > 0 (docs/data_in_out.md lists what maps and what does not).

--case CASE.h5 writes a `patchgrad check` case file: the checkpoint's
parameters, an input, and the output of the twin loaded from OUT.pt, so that
`build/patchgrad check CASE.h5` compares patchgrad's forward with PyTorch's.

Runs with Debian's /usr/bin/python3 (python3-torch, python3-h5py); the
test suite does not need it.
"""
import argparse
import json
import math
import os
import struct
import sys
from collections import OrderedDict

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CHECKPOINT_FORMAT = "patchgrad checkpoint"


def fail(msg):
    sys.exit("%s: %s" % (os.path.basename(sys.argv[0]), msg))


def attr(v):
    """An HDF5 attribute as a plain Python value."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


# ---- Checkpoints ----

def read_group(g):
    """Datasets of a group in creation order: OrderedDict name -> array, and their `kind`s."""
    arrays, kinds = OrderedDict(), {}
    for name in g:
        d = g[name]
        if not isinstance(d, h5py.Dataset):
            continue
        arrays[name] = d[()]
        kinds[name] = attr(d.attrs.get("kind", "weight"))
    return arrays, kinds


def read_checkpoint(path):
    """Config, params, kinds, ema, optimizer state and settings, step."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        fail("%s: cannot open as HDF5 (%s)" % (path, e))
    with f:
        fmt = attr(f.attrs.get("format", ""))
        if fmt != CHECKPOINT_FORMAT:
            fail("%s: not a patchgrad checkpoint (attribute format is '%s', expected '%s')"
                 % (path, fmt, CHECKPOINT_FORMAT))
        if attr(f.attrs.get("format_version", 0)) != 1:
            fail("%s: checkpoint format_version %s (this tool reads 1)"
                 % (path, attr(f.attrs.get("format_version"))))
        for part in ("config", "params"):
            if part not in f:
                fail("%s: missing group '%s'" % (path, part))
        ck = {"path": path, "config": {k: attr(v) for k, v in f["config"].attrs.items()},
              "step": attr(f.attrs.get("step", 0))}
        ck["params"], ck["kinds"] = read_group(f["params"])
        ck["ema"] = read_group(f["ema"])[0] if "ema" in f else None
        if "optim" in f:
            ck["optim_state"] = read_group(f["optim"])[0]
            ck["optim"] = {k: attr(v) for k, v in f["optim"].attrs.items()}
        else:
            ck["optim_state"], ck["optim"] = None, None
    return ck


def model_type(config):
    return "vit" if config.get("model") == "vit" else "dit"


# ---- The PyTorch twins ----

def build_twin(config):
    """The PyTorch module of a checkpoint's config: tools/dit_torch.py's DiT or the ViT below."""
    import torch  # noqa: F401  (imported here: --safetensors needs only numpy)
    c = config
    if model_type(c) == "vit":
        return make_vit(c)
    from dit_torch import DiT
    return DiT(int(c["input_size"]), int(c["in_channels"]), int(c["patch_size"]), int(c["hidden"]),
               int(c["depth"]), int(c["heads"]), int(c.get("mlp_ratio", 4)),
               int(c.get("num_classes", 0)), float(c.get("class_dropout", 0.1)))


def vit_twin_config(c):
    keys = ("height", "width", "in_channels", "patch_size", "hidden", "depth", "heads",
            "mlp_ratio", "num_classes")
    cfg = {k: int(c[k]) for k in keys}
    cfg["single_head"] = 1 if c.get("attention") == "single_head" else 0
    return cfg


def make_vit(config):
    """The ViT of tools/gen_fixtures_vit.py as an nn.Module: its parameters
    (vit_params: timm's names, vit/vit.h's order) registered under their
    dotted names, its forward vit_forward (x [B, H, W, C] -> logits [B, K])."""
    import torch
    import torch.nn as nn
    import gen_fixtures_vit as twin

    cfg = vit_twin_config(config)

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.cfg = cfg
            for name, value in twin.vit_params(cfg).items():
                *path, leaf = name.split(".")
                m = self
                for p in path:
                    if p not in m._modules:
                        m.add_module(p, nn.Module())
                    m = m._modules[p]
                m.register_parameter(leaf, nn.Parameter(torch.zeros(value.shape)))

        def forward(self, x):
            return twin.vit_forward(dict(self.named_parameters()), x, self.cfg)

    return ViT()


def load_into(model, arrays, what):
    """load_state_dict(strict=True) from numpy arrays, with a readable error."""
    import torch
    sd = OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in arrays.items())
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        fail("%s does not load into the PyTorch twin with strict=True: %s" % (what, e))


# ---- The optimizer ----

def skipped_steps(optim):
    """Steps each trainable parameter (slot index, registration order) sat out."""
    text, part = [], 0
    while True:
        key = "skipped_steps" if part == 0 else "skipped_steps.%d" % part
        if key not in optim:
            break
        text.append(str(optim[key]))
        part += 1
    out = {}
    for token in " ".join(text).split():
        span, n = token.split(":")
        first, _, last = span.partition("-")
        for i in range(int(first), int(last or first) + 1):
            out[i] = int(n)
    return out


def optimizer_groups(ck, names):
    """The checkpoint's param groups as torch ones: a list of (settings,
    parameter names in the twin's order). patchgrad's group 0 (the parameters
    no pattern took, with the optimizer's own settings) comes first, then
    groups 1..n in their order; a group is split in two (weights, then the
    rest with weight_decay 0) under decay_weights_only, as patchgrad decays
    only weights then. Empty groups are left out."""
    import fnmatch
    optim, kinds = ck["optim"], ck["kinds"]
    n = int(optim.get("param_groups", 0))
    base = {"lr": optim["lr"], "weight_decay": optim.get("weight_decay", 0.0),
            "beta1": optim.get("beta1", 0.9), "beta2": optim.get("beta2", 0.999),
            "momentum": optim.get("momentum", 0.0), "frozen": 0}
    initial = optim.get("initial_lr")
    if initial:
        base["initial_lr"] = initial
    settings = [base]
    for k in range(1, n + 1):
        g = {f: optim["param_groups.%d.%s" % (k, f)] for f in
             ("pattern", "lr", "weight_decay", "beta1", "beta2", "momentum", "frozen")}
        g["initial_lr"] = g["lr"]  # the group's lr at schedule factor 1
        if initial and initial > 0 and g["lr"] != initial:
            g["lr"] = g["lr"] * (optim["lr"] / initial)
        elif initial and initial > 0:
            g["lr"] = optim["lr"]
        settings.append(g)
    members = [[] for _ in settings]
    for name in names:
        k = next((k for k in range(1, n + 1)
                  if fnmatch.fnmatchcase(name, settings[k]["pattern"])), 0)
        members[k].append(name)
    out = []
    for g, ms in zip(settings, members):
        if optim.get("decay_weights_only") and g["weight_decay"] != 0:
            out.append((g, [m for m in ms if kinds.get(m) == "weight"]))
            out.append((dict(g, weight_decay=0.0), [m for m in ms if kinds.get(m) != "weight"]))
        else:
            out.append((g, ms))
    return [(g, ms) for g, ms in out if ms]


def make_torch_optimizer(kind, groups, optim):
    """torch.optim.SGD / Adam / AdamW over groups [(settings, params)]."""
    import torch
    tg = []
    for g, ps in groups:
        d = {"params": ps, "lr": g["lr"], "weight_decay": g["weight_decay"]}
        if kind == "sgd":
            d["momentum"] = g["momentum"]
        else:
            d["betas"] = (g["beta1"], g["beta2"])
        tg.append(d)
    if kind == "sgd":
        return torch.optim.SGD(tg, lr=optim["lr"], dampening=optim.get("dampening", 0.0),
                               nesterov=bool(optim.get("nesterov", 0)))
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(kind)
    if cls is None:
        fail("unknown optimizer '%s' in the checkpoint (expected sgd, adam or adamw)" % kind)
    return cls(tg, lr=optim["lr"], eps=optim.get("eps", 1e-8), amsgrad=bool(optim.get("amsgrad", 0)))


def optimizer_state_dict(ck, model):
    """The checkpoint's optimizer as torch.optim's state_dict over the twin's
    parameters: groups as optimizer_groups says, indices numbered group by
    group as torch numbers them, each parameter's step its own update count
    (the optimizer's step less the steps it sat out frozen)."""
    import torch
    optim, state = ck["optim"], ck["optim_state"]
    kind = optim.get("optimizer", "adamw")
    names = [n for n, _ in model.named_parameters()]
    groups = optimizer_groups(ck, names)
    # A throwaway optimizer of the same class gives this torch version's group keys.
    template = make_torch_optimizer(kind, [(g, [torch.zeros(1)]) for g, _ in groups], optim)
    buffers = {"sgd": ["momentum_buffer"],
               "adam": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
               "adamw": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]}[kind]
    step = int(optim.get("step", 0))
    slots = [n for n in ck["params"] if ck["kinds"].get(n) != "buffer"]  # registration order
    skipped = {slots[i]: k for i, k in skipped_steps(optim).items() if i < len(slots)}
    out_state, out_groups, index = {}, [], 0
    for (g, group_names), tg in zip(groups, template.state_dict()["param_groups"]):
        d = dict(tg)
        if "initial_lr" in g:
            d["initial_lr"] = g["initial_lr"]
        d["params"], d["param_names"] = [], list(group_names)
        for n in group_names:
            done = step - skipped.get(n, 0)
            entry = OrderedDict()
            if kind != "sgd":
                entry["step"] = torch.tensor(float(done))
            for b in buffers:
                if n + "." + b in state:
                    entry[b] = torch.from_numpy(np.ascontiguousarray(state[n + "." + b]))
            if done > 0 and len(entry) > (0 if kind == "sgd" else 1):
                out_state[index] = entry
            d["params"].append(index)
            index += 1
        out_groups.append(d)
    known = {n + "." + b for n in names for b in buffers}
    stray = [k for k in state if k not in known]
    if stray:
        fail("%s: optimizer state '%s' belongs to no parameter of the model" % (ck["path"], stray[0]))
    sd = {"state": out_state, "param_groups": out_groups}
    # It must load into the same optimizer built over the twin's parameters.
    params = dict(model.named_parameters())
    opt = make_torch_optimizer(kind, [(g, [params[n] for n in ns]) for g, ns in groups], optim)
    opt.load_state_dict(sd)
    for i, (n, p) in enumerate((n, params[n]) for _, ns in groups for n in ns):
        for b, v in out_state.get(i, {}).items():
            if b != "step" and not torch.equal(opt.state[p][b], v):
                fail("internal: optimizer state %s.%s did not load" % (n, b))
    return sd


# ---- safetensors ----

SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "float64": "F64", "int64": "I64",
                      "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def atomic_write(path, chunks):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for c in chunks:
            f.write(c)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_safetensors(path, tensors, metadata=None):
    """tensors: OrderedDict name -> numpy array; metadata: str -> str."""
    header, blobs, offset = OrderedDict(), [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, a in tensors.items():
        a = np.asarray(a)
        dtype = SAFETENSORS_DTYPES.get(a.dtype.name)
        if dtype is None:
            fail("tensor '%s' has dtype %s, which safetensors does not store" % (name, a.dtype))
        b = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)  # the data starts 8-byte aligned
    atomic_write(path, [struct.pack("<Q", len(h)), h] + blobs)


def read_safetensors(path):
    """OrderedDict name -> numpy array, and the metadata; every offset checked."""
    inverse = {v: k for k, v in SAFETENSORS_DTYPES.items()}
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        fail("%s: %d bytes, too short for a safetensors file" % (path, len(raw)))
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        fail("%s: header length %d exceeds the file (%d bytes)" % (path, n, len(raw)))
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=OrderedDict)
    except ValueError as e:
        fail("%s: the header is not JSON (%s)" % (path, e))
    data = memoryview(raw)[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out, end = OrderedDict(), 0
    for name, h in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        if h.get("dtype") not in inverse:
            fail("%s: tensor '%s' has dtype %s (known: %s)" % (path, name, h.get("dtype"),
                                                               ", ".join(sorted(inverse))))
        dt = np.dtype(inverse[h["dtype"]]).newbyteorder("<")
        begin, stop = h["data_offsets"]
        count = int(np.prod(h["shape"], dtype=np.int64))
        if begin != end or stop - begin != count * dt.itemsize or stop > len(data):
            fail("%s: tensor '%s' has data_offsets [%d, %d] for shape %s %s (expected [%d, %d])"
                 % (path, name, begin, stop, h["shape"], h["dtype"], end, end + count * dt.itemsize))
        out[name] = np.frombuffer(data[begin:stop], dtype=dt).reshape(h["shape"]).astype(dt.newbyteorder("="))
        end = stop
    if end != len(data):
        fail("%s: %d bytes after the last tensor" % (path, len(data) - end))
    # back in the header's own order
    return OrderedDict((k, out[k]) for k in header), meta


# ---- facebookresearch/DiT's names ----

def upstream_dit_order(depth, has_y=True):
    """Names of upstream DiT's state_dict, in its order."""
    names = ["pos_embed", "x_embedder.proj.weight", "x_embedder.proj.bias",
             "t_embedder.mlp.0.weight", "t_embedder.mlp.0.bias",
             "t_embedder.mlp.2.weight", "t_embedder.mlp.2.bias"]
    if has_y:
        names.append("y_embedder.embedding_table.weight")
    for i in range(depth):
        for part in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "adaLN_modulation.1"):
            names += ["blocks.%d.%s.weight" % (i, part), "blocks.%d.%s.bias" % (i, part)]
    names += ["final_layer.linear.weight", "final_layer.linear.bias",
              "final_layer.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias"]
    return names


def to_upstream_dit(params, config):
    """patchgrad's DiT parameters -> upstream DiT's state_dict (numpy).

    Same names and layouts except: x_embedder.conv -> x_embedder.proj (the
    same Conv2d); final_layer.unpatchify.deconv (ConvTranspose2d weight
    [h, C, p, p], bias [C]) -> final_layer.linear (weight [p*p*C, h] in
    unpatchify's (p, q, c) row order, bias repeated for each of the p*p
    positions); unconditional: a one-row class table of zeros (the null
    class: upstream always adds a class embedding)."""
    p, C, h = int(config["patch_size"]), int(config["in_channels"]), int(config["hidden"])
    K = int(config.get("num_classes", 0))
    out = {}
    for name, a in params.items():
        if name.startswith("x_embedder.conv."):
            out["x_embedder.proj." + name[len("x_embedder.conv."):]] = a
        elif name == "final_layer.unpatchify.deconv.weight":
            out["final_layer.linear.weight"] = np.ascontiguousarray(a.transpose(2, 3, 1, 0).reshape(p * p * C, h))
        elif name == "final_layer.unpatchify.deconv.bias":
            out["final_layer.linear.bias"] = np.tile(a, p * p)
        else:
            out[name] = a
    if K == 0:
        out["y_embedder.embedding_table.weight"] = np.zeros((1, h), np.float32)
    order = upstream_dit_order(int(config["depth"]))
    missing = [n for n in order if n not in out]
    extra = [n for n in out if n not in order]
    if missing or extra:
        fail("the checkpoint's DiT does not map onto upstream DiT: missing %s, left over %s"
             % (missing[:3], extra[:3]))
    return OrderedDict((n, out[n]) for n in order)


# ---- patchgrad check case files ----

def write_case(path, config, params, model, seed=0):
    """A case file for `patchgrad check`: op dit or vit, the config as
    attributes, params/<name> (what patchgrad loads), an input, and `out`
    from the given PyTorch module (in float32, as a user runs it; the DiT
    twin's timestep embedding is float32 anyway). Tolerance atol 1e-5, rtol 0."""
    import torch
    g = torch.Generator().manual_seed(seed)
    kind = model_type(config)
    B = 2
    with h5py.File(path, "w") as f:
        f.attrs["description"] = "patchgrad forward vs the PyTorch twin (tools/export_torch.py)"
        c = f.create_group("twin_forward")
        c.attrs["op"] = kind
        c.attrs["atol"] = 1e-5
        c.attrs["rtol"] = 0.0
        for name, a in params.items():
            c.create_dataset("params/" + name, data=a)
        m = model.eval()
        if kind == "vit":
            cfg = vit_twin_config(config)
            for k, v in cfg.items():
                c.attrs[k] = v
            x = torch.randn(B, cfg["height"], cfg["width"], cfg["in_channels"], generator=g)
            c.create_dataset("x", data=x.numpy())
            with torch.no_grad():
                out = m(x)
        else:
            for k in ("input_size", "in_channels", "patch_size", "hidden", "depth", "heads",
                      "mlp_ratio", "num_classes"):
                c.attrs[k] = int(config[k])
            S, C, K = int(config["input_size"]), int(config["in_channels"]), int(config["num_classes"])
            x = torch.randn(B, S, S, C, generator=g)
            t = torch.tensor([17.0, 901.0])[:B]
            c.create_dataset("x", data=x.numpy())
            c.create_dataset("t", data=t.numpy())
            y = None
            if K > 0:
                y = torch.tensor([K - 1, K])[:B]  # a class and the null class
                c.create_dataset("y", data=y.numpy().astype(np.int64))
            with torch.no_grad():
                out = m(x, t, y)
        c.create_dataset("out", data=out.numpy())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", help="patchgrad checkpoint (ckpt.h5 of train or classify train)")
    ap.add_argument("out", help="OUT.pt, or OUT.safetensors with --safetensors")
    ap.add_argument("--safetensors", action="store_true", help="write the weights as .safetensors")
    ap.add_argument("--upstream-dit", action="store_true",
                    help="a state_dict for facebookresearch/DiT's DiT class")
    ap.add_argument("--ema", action="store_true",
                    help="the EMA weights for --safetensors and --upstream-dit")
    ap.add_argument("--case", metavar="CASE.h5",
                    help="also write a patchgrad check case: this checkpoint vs the twin loaded from OUT")
    a = ap.parse_args()
    ck = read_checkpoint(a.ckpt)
    config = ck["config"]
    if a.ema and ck["ema"] is None:
        fail("%s has no EMA weights (group 'ema'): train with --ema DECAY" % a.ckpt)
    weights = ck["ema"] if a.ema else ck["params"]

    if a.upstream_dit:
        if model_type(config) != "dit":
            fail("--upstream-dit needs a DiT checkpoint; %s holds a %s" % (a.ckpt, model_type(config)))
        import torch
        sd = to_upstream_dit(weights, config)
        torch.save(OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in sd.items()), a.out)
        print("wrote %s: %d tensors for facebookresearch/DiT's DiT(input_size=%d, patch_size=%d, "
              "in_channels=%d, hidden_size=%d, depth=%d, num_heads=%d, mlp_ratio=%d, num_classes=%d, "
              "class_dropout_prob>0, learn_sigma=False)"
              % (a.out, len(sd), config["input_size"], config["patch_size"], config["in_channels"],
                 config["hidden"], config["depth"], config["heads"], config["mlp_ratio"],
                 config["num_classes"]))
        return

    if a.safetensors:
        meta = {"format": "pt", "patchgrad_config": json.dumps(config),
                "patchgrad_weights": "ema" if a.ema else "model", "patchgrad_step": str(ck["step"])}
        write_safetensors(a.out, weights, meta)
        print("wrote %s: %d tensors (%s weights), %d bytes" % (a.out, len(weights),
              "EMA" if a.ema else "model", os.path.getsize(a.out)))
        return

    import torch
    model = build_twin(config)
    load_into(model, ck["params"], "%s params/" % a.ckpt)
    out = {"model": model.state_dict(), "config": config, "step": ck["step"]}
    if ck["ema"] is not None:
        ema = build_twin(config)
        load_into(ema, ck["ema"], "%s ema/" % a.ckpt)
        out["ema"] = ema.state_dict()
    if ck["optim"] is not None:
        out["optimizer"] = optimizer_state_dict(ck, model)
    torch.save(out, a.out)
    print("wrote %s: model (%d tensors)%s%s, step %d" % (
        a.out, len(out["model"]), ", ema" if "ema" in out else "",
        ", optimizer (%s, %d parameters with state, %d groups)" % (
            ck["optim"].get("optimizer"), len(out["optimizer"]["state"]),
            len(out["optimizer"]["param_groups"])) if "optimizer" in out else "", ck["step"]))
    if a.case:
        back = torch.load(a.out)
        twin = build_twin(config)
        twin.load_state_dict(back["model"], strict=True)
        write_case(a.case, config, ck["params"], twin)
        print("wrote %s: run build/patchgrad check %s" % (a.case, a.case))


if __name__ == "__main__":
    main()
