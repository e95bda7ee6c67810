"""Compile a trained torch network into the integer model file.

    python -m model.compiler --checkpoint runs/spikingformer-2-64/best.pt --out models/x.sfm
    python -m model.compiler --random spikingformer-1-32 --seed 3 --out /tmp/random.sfm

Passes, each a function from a layer graph to a layer graph, run in order from ``PASSES``:

1. ``fold_batchnorm``: walk the torch network into a list of layers (conv, lif, maxpool,
   attention, add, head) with BN folded into real-valued weights and biases.
2. ``quantize``: integer weights and biases with per-channel scales (the residual stream's
   writers share one, each over its power of two, and enter the stream shifted left),
   integer thresholds theta = ceil(v_th 2^f / s), the integer head.
   Uses the same functions as the torch integer mode (``model.quant``).
3. ``assign_widths``: worst-case bound of every layer's output and the bit width that holds it;
   the membrane width of every LIF.
4. ``emit_program``: the layer program and the tensors of the model file.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from . import build_model, quant
from .config import Config, get_config
from .layers import folded
from .modelfile import CompiledModel

MAX_BITS = 48  # widest accumulator the golden model (float64 BLAS, exact < 2^53) and RTL take


class CompileError(ValueError):
    pass


# -- pass 1: fold_batchnorm ------------------------------------------------------------------
def _conv(name, src, conv, bn, kernel, source, shape, **kw):
    w, b = folded(conv, bn)
    if w.dim() == 3:  # Conv1d [Co, Ci, 1] -> [Co, Ci, 1, 1]
        w = w.unsqueeze(-1)
    elif w.dim() == 2:  # Linear
        w = w[:, :, None, None]
    return dict(op="conv", name=name, inputs=[src], w=w, b=b, kernel=kernel, input=source,
                shape=list(shape), **kw)


def _attention(a: str, cfg: Config, side: int) -> list[dict]:
    """Spike attention on {a}.q_lif, k_lif, v_lif and its LIF (the 0.125 scale as its unit)."""
    return [dict(op="attention", name=f"{a}.attn",
                 inputs=[f"{a}.q_lif", f"{a}.k_lif", f"{a}.v_lif"], heads=cfg.heads,
                 scale=0.125, shape=[cfg.dim, side, side]),
            dict(op="lif", name=f"{a}.attn_lif", inputs=[f"{a}.attn"], v_th=0.5)]


def _spikingformer_graph(model) -> list[dict]:
    cfg: Config = model.cfg
    D, S = cfg.dim, cfg.img_size
    pe = model.patch_embed
    chans = [D // 8, D // 4, D // 2, D, D]
    sizes = [S, S, S, S // 2, S // 4]
    g = [_conv("patch_embed.block0", "image", pe.block0_conv, pe.block0_bn, 3, "pixels",
               (chans[0], S, S), in_scale=pe.pixel_scale.double(),
               zero_point=pe.zero_point.double())]
    prev = "patch_embed.block0"
    for i in range(1, 5):
        g.append(dict(op="lif", name=f"patch_embed.block{i}_lif", inputs=[prev], v_th=1.0))
        src = g[-1]["name"]
        if i >= 3:
            g.append(dict(op="maxpool", name=f"patch_embed.block{i}_mp", inputs=[src],
                          kernel=3, stride=2, pad=1))
            src = g[-1]["name"]
        g.append(_conv(f"patch_embed.block{i}", src, getattr(pe, f"block{i}_conv"),
                       getattr(pe, f"block{i}_bn"), 3, "spikes", (chans[i], sizes[i], sizes[i]),
                       group="residual" if i == 4 else None))
        prev = g[-1]["name"]
    side = S // 4
    stream = prev
    for j, blk in enumerate(model.block):
        a, m = f"block.{j}.attn", f"block.{j}.mlp"
        g.append(dict(op="lif", name=f"{a}.proj_lif", inputs=[stream], v_th=1.0))
        for n in ("q", "k", "v"):
            g.append(_conv(f"{a}.{n}", f"{a}.proj_lif", getattr(blk.attn, f"{n}_conv"),
                           getattr(blk.attn, f"{n}_bn"), 1, "spikes", (D, side, side)))
            g.append(dict(op="lif", name=f"{a}.{n}_lif", inputs=[f"{a}.{n}"], v_th=1.0))
        g += _attention(a, cfg, side)
        g.append(_conv(f"{a}.proj", f"{a}.attn_lif", blk.attn.proj_conv, blk.attn.proj_bn, 1,
                       "spikes", (D, side, side), group="residual"))
        g.append(dict(op="add", name=f"block.{j}.attn_residual", inputs=[stream, f"{a}.proj"]))
        stream = g[-1]["name"]
        g.append(dict(op="lif", name=f"{m}.mlp1_lif", inputs=[stream], v_th=1.0))
        g.append(_conv(f"{m}.mlp1", f"{m}.mlp1_lif", blk.mlp.mlp1_conv, blk.mlp.mlp1_bn, 1,
                       "spikes", (cfg.hidden, side, side)))
        g.append(dict(op="lif", name=f"{m}.mlp2_lif", inputs=[f"{m}.mlp1"], v_th=1.0))
        g.append(_conv(f"{m}.mlp2", f"{m}.mlp2_lif", blk.mlp.mlp2_conv, blk.mlp.mlp2_bn, 1,
                       "spikes", (D, side, side), group="residual"))
        g.append(dict(op="add", name=f"block.{j}.mlp_residual", inputs=[stream, f"{m}.mlp2"]))
        stream = g[-1]["name"]
    g.append(dict(op="head", name="head", inputs=[stream], linear=model.head))
    return g


def _spikformer_graph(model) -> list[dict]:
    """Spikformer: Conv -> BN -> LIF everywhere; the stream adds spikes (small integers)."""
    cfg: Config = model.cfg
    D, S = cfg.dim, cfg.img_size
    pe = model.patch_embed
    chans = [D // 8, D // 4, D // 2, D]
    sizes = [S, S, S, S // 2]
    g = [_conv("patch_embed.proj_conv", "image", pe.proj_conv, pe.proj_bn, 3, "pixels",
               (chans[0], S, S), in_scale=pe.pixel_scale.double(),
               zero_point=pe.zero_point.double()),
         dict(op="lif", name="patch_embed.proj_lif", inputs=["patch_embed.proj_conv"], v_th=1.0)]
    for i in (1, 2, 3):
        g.append(_conv(f"patch_embed.proj_conv{i}", g[-1]["name"],
                       getattr(pe, f"proj_conv{i}"), getattr(pe, f"proj_bn{i}"), 3, "spikes",
                       (chans[i], sizes[i], sizes[i])))
        g.append(dict(op="lif", name=f"patch_embed.proj_lif{i}", inputs=[g[-1]["name"]],
                      v_th=1.0))
        if i >= 2:
            g.append(dict(op="maxpool", name=f"patch_embed.maxpool{i}", inputs=[g[-1]["name"]],
                          kernel=3, stride=2, pad=1))
    side = S // 4
    g.append(_conv("patch_embed.rpe_conv", "patch_embed.maxpool3", pe.rpe_conv, pe.rpe_bn, 3,
                   "spikes", (D, side, side)))
    g.append(dict(op="lif", name="patch_embed.rpe_lif", inputs=["patch_embed.rpe_conv"],
                  v_th=1.0))
    g.append(dict(op="add", name="patch_embed.tokens",
                  inputs=["patch_embed.rpe_lif", "patch_embed.maxpool3"]))
    stream = "patch_embed.tokens"
    for j, blk in enumerate(model.block):
        a, m = f"block.{j}.attn", f"block.{j}.mlp"
        for n in ("q", "k", "v"):
            g.append(_conv(f"{a}.{n}_linear", stream, getattr(blk.attn, f"{n}_linear"),
                           getattr(blk.attn, f"{n}_bn"), 1, "int", (D, side, side)))
            g.append(dict(op="lif", name=f"{a}.{n}_lif", inputs=[f"{a}.{n}_linear"], v_th=1.0))
        g += _attention(a, cfg, side)
        g.append(_conv(f"{a}.proj_linear", f"{a}.attn_lif", blk.attn.proj_linear,
                       blk.attn.proj_bn, 1, "spikes", (D, side, side)))
        g.append(dict(op="lif", name=f"{a}.proj_lif", inputs=[f"{a}.proj_linear"], v_th=1.0))
        g.append(dict(op="add", name=f"block.{j}.attn_residual", inputs=[stream, f"{a}.proj_lif"]))
        stream = g[-1]["name"]
        g.append(_conv(f"{m}.fc1_linear", stream, blk.mlp.fc1_linear, blk.mlp.fc1_bn, 1, "int",
                       (cfg.hidden, side, side)))
        g.append(dict(op="lif", name=f"{m}.fc1_lif", inputs=[f"{m}.fc1_linear"], v_th=1.0))
        g.append(_conv(f"{m}.fc2_linear", f"{m}.fc1_lif", blk.mlp.fc2_linear, blk.mlp.fc2_bn, 1,
                       "spikes", (D, side, side)))
        g.append(dict(op="lif", name=f"{m}.fc2_lif", inputs=[f"{m}.fc2_linear"], v_th=1.0))
        g.append(dict(op="add", name=f"block.{j}.mlp_residual", inputs=[stream, f"{m}.fc2_lif"]))
        stream = g[-1]["name"]
    g.append(dict(op="head", name="head", inputs=[stream], linear=model.head))
    return g


def fold_batchnorm(model) -> list[dict]:
    graphs = {"spikingformer": _spikingformer_graph, "spikformer": _spikformer_graph}
    return graphs[model.cfg.arch](model)


# -- pass 2: quantize ------------------------------------------------------------------------
def _conv_int(L: dict, cfg: Config, residual=None):
    """A folded conv layer's real weights (times its input scale, if any) and its integer
    weights, bias and scale, and its left shift: (w, w_int, b_int, s, shift). A writer of the
    residual stream (group 'residual') takes ``residual`` = (the stream's unit u, shift per
    writer): its weights count in u 2^shift."""
    w = L["w"]
    if "in_scale" in L:
        w = w * L["in_scale"].reshape(1, -1, 1, 1)
    if L.get("group") != "residual":
        return (w, *quant.affine_int(w, L["b"], cfg.weight_bits, cfg.bias_bits), 0)
    unit, shifts = residual
    shift = shifts[L["name"]]
    return (w, *quant.affine_int(w, L["b"], cfg.weight_bits, cfg.bias_bits,
                                 unit * 2.0 ** shift), shift)


def residual_of(model, graph: list[dict]):
    """(the stream's unit, {writer layer: its left shift}) of a network with a real-valued
    residual stream (``Spikingformer.residual_shifts``), or None."""
    if not hasattr(model, "residual_shifts"):
        return None
    unit, shifts = model.residual_shifts()
    writers = [L["name"] for L in graph if L.get("group") == "residual"]
    if len(writers) != len(shifts):
        raise CompileError(f"internal: {len(writers)} residual writers in the graph, "
                           f"{len(shifts)} shifts")
    return unit, dict(zip(writers, shifts, strict=True))


def quantize(graph: list[dict], cfg: Config, residual=None) -> list[dict]:
    """Integer tensors for every layer; ``residual`` (``residual_of``) for group 'residual'."""
    scale: dict[str, torch.Tensor | None] = {"image": None}
    kind = {"image": "pixels"}
    out = []
    for L in graph:
        L = dict(L)
        src = L["inputs"][0]
        if L["op"] == "conv":
            _, wq, bq, s, shift = _conv_int(L, cfg, residual)
            for k in ("w", "in_scale", "group", "b"):
                L.pop(k, None)
            L["weight"], L["bias"] = wq, bq
            if shift:  # the output (bias included) is the integer sum times 2^shift
                L["shift"] = shift
                s = residual[0]
            scale[L["name"]], kind[L["name"]] = s, "current"
        elif L["op"] == "lif":
            s = scale[src]
            if s is None:
                raise CompileError(f"{L['name']}: its input {src!r} has no scale")
            C = len(s) if s.dim() else _channels(graph, src)
            s = s.expand(C) if s.dim() == 0 else s
            L["theta"] = quant.threshold(L["v_th"], cfg.f, s)
            scale[L["name"]], kind[L["name"]] = None, "spikes"
        elif L["op"] == "maxpool":
            scale[L["name"]], kind[L["name"]] = None, kind[src]
        elif L["op"] == "attention":
            scale[L["name"]] = torch.tensor(L.pop("scale"), dtype=torch.float64)
            kind[L["name"]] = "current"
        elif L["op"] == "add":
            a, b = (scale[i] for i in L["inputs"])
            if (a is None) != (b is None) or (a is not None and not torch.equal(a, b)):
                raise CompileError(f"{L['name']}: its inputs have different scales")
            scale[L["name"]] = a
            kind[L["name"]] = "current" if a is not None else "int"
        elif L["op"] == "head":
            lin = L.pop("linear")
            s = scale[src]
            s = torch.ones(lin.weight.shape[1], dtype=torch.float64) if s is None else s
            count = cfg.T * cfg.tokens
            L["weight"], L["bias"], L["out_scale"] = quant.head_int(
                lin.weight, lin.bias, s, count, cfg.weight_bits, cfg.bias_bits)
            L["count"] = count
        if L["op"] == "conv" and kind.get(src) in ("int", "current") and L["input"] == "spikes":
            L["input"] = "int"
        out.append(L)
    return out


def _channels(graph, name):
    for L in graph:
        if L["name"] == name:
            return L["shape"][0]
    raise CompileError(f"unknown layer {name!r}")


# -- pass 3: assign_widths -------------------------------------------------------------------
def assign_widths(graph: list[dict], cfg: Config) -> list[dict]:
    """Worst-case |value| of every layer's output and the signed width that holds it."""
    bound: dict[str, float] = {"image": 255.0}
    shape: dict[str, list[int]] = {"image": [cfg.in_channels, cfg.img_size, cfg.img_size]}
    out = []
    for L in graph:
        L = dict(L)
        src = L["inputs"][0]
        if L["op"] == "conv":
            w = L["weight"].detach().double().abs()
            if L["input"] == "pixels":
                zp = L["zero_point"]
                in_b = torch.maximum(zp, 255 - zp).reshape(1, -1, 1, 1)
                acc = (w * in_b).flatten(1).sum(1)
            else:
                acc = w.flatten(1).sum(1) * bound[src]
            L["bound"] = float((acc + L["bias"].detach().double().abs()).max()) \
                * 2 ** L.get("shift", 0)
            L["in_bound"] = bound[src]
            shape[L["name"]] = L["shape"]
        elif L["op"] == "lif":
            x = bound[src]
            theta = float(L["theta"].abs().max())
            # |H| <= max|X| 2^f by induction (H = (V + X 2^f) / 2, |V| <= |H|).
            L["mem_bits"] = quant.bits_for(max(x * 2 ** cfg.f, theta))
            L["bound"] = 1.0
            shape[L["name"]] = shape[src]
        elif L["op"] == "maxpool":
            C, H, W = shape[src]
            shape[L["name"]] = [C, (H + 2 * L["pad"] - L["kernel"]) // L["stride"] + 1,
                                (W + 2 * L["pad"] - L["kernel"]) // L["stride"] + 1]
            L["shape"] = shape[L["name"]]
            L["bound"] = bound[src]
        elif L["op"] == "attention":
            C, H, W = shape[src]
            N, d = H * W, C // L["heads"]
            L["head_dim"], L["tokens"] = d, N
            # Cheaper order for the AC work: K^T V first when head_dim < tokens.
            L["order"] = "kv_first" if d < N else "qk_first"
            L["inner_bound"] = float(N if L["order"] == "kv_first" else d)
            L["bound"] = float(N * d)
            shape[L["name"]] = [C, H, W]
            L["shape"] = [C, H, W]
        elif L["op"] == "add":
            L["bound"] = float(sum(bound[i] for i in L["inputs"]))
            shape[L["name"]] = shape[src]
            L["shape"] = shape[src]
        elif L["op"] == "head":
            w = L["weight"].detach().double().abs()
            L["in_bound"] = bound[src] * L["count"]
            L["bound"] = float((w.sum(1) * L["in_bound"] + L["bias"].detach().abs()).max())
            L["classes"] = int(w.shape[0])
        bound[L["name"]] = L["bound"]
        L["bits"] = quant.bits_for(L["bound"])
        for key in ("bits", "mem_bits"):
            if L.get(key, 0) > MAX_BITS:
                raise CompileError(
                    f"{L['name']}: needs {L[key]}-bit "
                    f"{'membrane' if key == 'mem_bits' else 'values'}, more than the "
                    f"{MAX_BITS} bits the golden model and RTL support")
        out.append(L)
    return out


# -- pass 4: emit_program --------------------------------------------------------------------
def _int_array(t: torch.Tensor, bits: int) -> np.ndarray:
    a = t.detach().double().numpy()
    if not np.array_equal(a, np.round(a)):
        raise CompileError("internal: a tensor meant to be integer is not")
    dtype = np.int8 if bits <= 8 else np.int16 if bits <= 16 else np.int32 if bits <= 32 \
        else np.int64
    return a.astype(dtype)


def emit_program(graph: list[dict], cfg: Config) -> CompiledModel:
    program, tensors = [], {}
    for L in graph:
        op = {k: v for k, v in L.items()
              if k not in ("weight", "bias", "theta", "zero_point", "out_scale")}
        op["tensors"] = {}
        for role, bits in (("weight", cfg.weight_bits), ("bias", cfg.bias_bits),
                           ("zero_point", 16)):
            if role in L:
                key = f"{L['name']}.{role}"
                tensors[key] = _int_array(L[role], bits)
                op["tensors"][role] = key
        if "theta" in L:
            key = f"{L['name']}.theta"
            tensors[key] = _int_array(L["theta"], quant.bits_for(float(L["theta"].max())))
            op["tensors"]["theta"] = key
        if "out_scale" in L:
            op["out_scale"] = float(L["out_scale"].reshape(-1)[0])
        for k, v in list(op.items()):
            if isinstance(v, float) and v.is_integer() and k in ("bound", "in_bound",
                                                                 "inner_bound"):
                op[k] = int(v)
        program.append(op)
    return CompiledModel(config=cfg.to_dict(), program=program, tensors=tensors)


PASSES = ("fold_batchnorm", "quantize", "assign_widths", "emit_program")


@torch.no_grad()
def compile_model(model, meta: dict | None = None, stop_after: str | None = None):
    """Run the passes in order; ``stop_after`` returns the graph after that pass."""
    cfg = model.cfg
    was = model.training
    model.eval()
    try:
        graph = fold_batchnorm(model)
        if stop_after == "fold_batchnorm":
            return graph
        graph = quantize(graph, cfg, residual_of(model, graph))
        if stop_after == "quantize":
            return graph
        graph = assign_widths(graph, cfg)
        if stop_after == "assign_widths":
            return graph
        cm = emit_program(graph, cfg)
    finally:
        model.train(was)
    cm.meta.update(meta or {})
    return cm


@torch.no_grad()
def weight_errors(model) -> list[dict]:
    """How far each conv's integer weights land from its folded real ones, quantized as
    ``quantize`` does (``_conv_int``): per layer, the RMS error of s_c w_int against w'
    relative to the RMS of w', the largest |w_int| of a channel on average (2^(bits-1) - 1
    where the layer has its own scales), whether it shares the residual stream's scale,
    which its largest writer sets for all, and its left shift into the stream."""
    was = model.training
    model.eval()
    try:
        folded = fold_batchnorm(model)
        res = residual_of(model, folded)
    finally:
        model.train(was)
    rows = []
    for L in folded:
        if L["op"] != "conv":
            continue
        w, wq, _, s, shift = _conv_int(L, model.cfg, res)  # s: the weights' scale
        w = w.double()
        err = (wq * s.reshape(-1, 1, 1, 1) - w).pow(2).sum().sqrt() / w.pow(2).sum().sqrt()
        rows.append({"layer": L["name"], "weights": w.numel(), "rel_error": float(err),
                     "max_int": float(wq.abs().flatten(1).amax(1).mean()),
                     "shared": L.get("group") == "residual", "shift": shift})
    return rows


def _scale_note(row: dict) -> str:
    if not row["shared"]:
        return "own, per channel"
    if not row.get("shift"):
        return "residual stream (shared)"
    return f"residual stream (shared), shifted left by {row['shift']}"


def errors_table(rows: list[dict], bits: int) -> str:
    lines = [f"| layer | weights | RMS error / RMS weight ({bits}-bit) | largest integer per "
             f"channel, mean (of {quant.qmax(bits)}) | scale |",
             "| --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {r['layer']} | {r['weights']:,} | {r['rel_error']:.3f} | {r['max_int']:.1f} | "
              f"{_scale_note(r)} |" for r in rows]
    return "\n".join(lines)


@torch.no_grad()
def randomize(model, seed: int = 0, batches: int = 3, batch_size: int = 16):
    """Random weights and BN statistics that give every layer some activity (for tests).

    BN statistics are calibrated on random images, then gamma and beta are drawn so that
    firing rates spread over roughly 5-50 %. With ``residual_shift`` in the config, the
    residual writers' gammas are then divided by 1, 4, 16, ... in turn, so that their shifts
    into the stream differ.
    """
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * (1.0 / math.sqrt(max(1, p[0].numel()))))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    for _ in range(batches):
        model(torch.randint(0, 256, (batch_size, model.cfg.in_channels, model.cfg.img_size,
                                     model.cfg.img_size), generator=g).float())
    for bn in bns:
        bn.momentum = 0.1
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) * 1.5 + 0.5)
        bn.bias.copy_(torch.rand(bn.bias.shape, generator=g) * 1.2 - 0.2)
    room = getattr(model.cfg, "residual_shift", 0)
    if room and hasattr(model, "residual_writers"):
        for i, (_, bn) in enumerate(model.residual_writers()):
            bn.weight.mul_(0.25 ** (i % (room + 1)))
    model.eval()
    return model


def _override(cfg: Config, args) -> Config:
    """The config with --weight-bits and --residual-shift, where given."""
    d = cfg.to_dict()
    if args.weight_bits:
        d["weight_bits"] = args.weight_bits
    if args.residual_shift is not None:
        d["residual_shift"] = args.residual_shift
    return Config.from_dict(d)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.compiler", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a training checkpoint (model.train)")
    src.add_argument("--random", metavar="CONFIG", help="a config name: random weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weight-bits", type=int, default=None, help="override the config's")
    p.add_argument("--residual-shift", type=int, default=None,
                   help="override the config's largest writer shift into the residual stream")
    p.add_argument("--board", default=None,
                   help="check the on-chip memory budget for this board (model.budget)")
    p.add_argument("--out", help="the compiled model file to write")
    p.add_argument("--errors", action="store_true",
                   help="print each conv's weight quantization error (a Markdown table)")
    args = p.parse_args(argv)
    if not (args.out or args.errors):
        p.error("say --out FILE, --errors, or both")
    if args.checkpoint:
        from .train import load_checkpoint
        ck = load_checkpoint(args.checkpoint)
        cfg = _override(Config.from_dict(ck["config"]), args)
        model = build_model(cfg)
        model.load_state_dict(ck["model"])
        meta = {"source": str(args.checkpoint), "epoch": ck.get("epoch")}
    else:
        cfg = _override(get_config(args.random), args)
        model = randomize(build_model(cfg), args.seed)
        meta = {"source": f"random seed {args.seed}"}
    if args.errors:
        print(errors_table(weight_errors(model), cfg.weight_bits))
        if not args.out:
            return None
    cm = compile_model(model, meta)
    if args.board:
        from .budget import check
        _, total, allowed = check(cm, args.board)  # raises BudgetError, saying by how much
        print(f"fits {args.board}: {total} of {allowed} allowed BRAM36", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    digest = cm.save(args.out)
    print(f"{args.out}: {cfg.name}, {len(cm.program)} layers, {cm.weight_count} weights, "
          f"sha256 {digest}", file=sys.stderr)
    return cm


if __name__ == "__main__":
    from model.cli import run

    run(main)
