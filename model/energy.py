"""Energy report of a compiled model: the papers' formula next to our activity model.

    python -m model.energy --model models/default.sfm                 # bundled 256 test images
    python -m model.energy --model m.sfm --data ../shared/data/cifar10 -n 1000 --out /tmp/e

Runs the golden model over the first n test images and writes ``energy.md`` (the report),
``energy.json`` (the same numbers, machine-readable) and ``energy.png`` (energy per layer on a
log scale, firing rate per LIF layer) into DIR, by default ``docs/energy/<model file stem>/``.
The per-layer table is printed too. Every figure is per image, averaged over the n images.

Two estimates, side by side (DESIGN.md section 4), 45 nm energies from Horowitz, ISSCC 2014:

- **The papers' formula**, as the Spikformer / Spikingformer papers compute it:
  E = 0.9 pJ x SOP + 4.6 pJ x MAC, per layer, with the dense FLOPs of the layer
  (conv: Co x Ci x k^2 x H x W; attention: Q K^T is N x N x D and (Q K^T) V is N x N x D,
  N = tokens = 64 for CIFAR's 8 x 8 map, D = channels over all heads; head: D x classes).
  Spike-input layers: SOP = r x T x FLOPs, r the input firing rate. The first layer (pixels,
  computed once and reused for all T steps) and the head: MAC = FLOPs.
  LIF, max pool and residual adds cost nothing in this formula.
- **Our activity model**, from the golden model's counters (the RTL's counters equal them):
  0.9 pJ per SOP, 4.6 pJ per MAC, 0.1 pJ per other integer add (a 32-bit add) and per LIF
  charge step, plus on-chip SRAM traffic in 64-bit words charged by memory size.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np

from .data import BUNDLED_TEST, REPO, load_split, shown
from .golden import COUNTERS, Result, run_batched
from .modelfile import CompiledModel

PJ_SOP = 0.9  # an accumulate (AC) triggered by a spike
PJ_MAC = 4.6  # a multiply-accumulate
PJ_ADD = 0.1  # any other integer add (Horowitz: 32-bit int add 0.1 pJ)
WORD_BITS = 64
# 45 nm SRAM read energy per 64-bit word against memory size (bytes); log-linear in between.
SRAM_PJ_PER_WORD = ((8 << 10, 10.0), (32 << 10, 20.0), (1 << 20, 100.0))
DEFAULT_MODEL = REPO / "models" / "default.sfm"
SUM_KEYS = ("sops", "macs", "adds", "neuron_updates", "weight_reads", "act_reads", "act_writes",
            "bit_acs", "paper_sops", "paper_macs", "paper_pj", "paper_mac_pj", "ours_pj",
            "compute_pj", "sram_pj")


def sram_pj_per_word(nbytes: float) -> float:
    """Energy of one 64-bit word access in an SRAM of ``nbytes``, clamped outside the table."""
    sizes = [math.log2(s) for s, _ in SRAM_PJ_PER_WORD]
    costs = [c for _, c in SRAM_PJ_PER_WORD]
    return float(np.interp(math.log2(max(nbytes, 1.0)), sizes, costs))


# -- what the program stores ------------------------------------------------------------------
def value_layout(cm: CompiledModel) -> dict[str, dict]:
    """Per value the program produces: elements per image and bits per element.

    Spike maps (LIF, max pool of spikes) hold 1 bit per element, the image 8-bit pixels, and
    integer values (conv currents, attention sums, the residual stream) the producer's ``bits``.
    Values carry T steps except the image and the first layer's current (computed once).
    """
    cfg = cm.config
    C, S = cfg["in_channels"], cfg["img_size"]
    out = {"image": {"elements": C * S * S, "bits": 8, "shape": [C, S, S], "timed": False}}
    for op in cm.program:
        kind, src = op["op"], (op.get("inputs") or ["image"])[0]
        if kind == "head":
            continue
        if kind == "lif":
            shape, timed, bits = out[src]["shape"], True, 1
        elif kind == "maxpool":
            shape, timed, bits = op["shape"], out[src]["timed"], out[src]["bits"]
        elif kind == "add":
            shape, timed, bits = op["shape"], any(out[i]["timed"] for i in op["inputs"]), \
                op["bits"]
        elif kind == "conv":
            shape, timed, bits = op["shape"], op["input"] != "pixels", op["bits"]
        else:  # attention
            shape, timed, bits = op["shape"], True, op["bits"]
        steps = cfg["T"] if timed else 1
        out[op["name"]] = {"elements": steps * int(np.prod(shape)), "bits": bits,
                           "shape": list(shape), "timed": timed}
    return out


def memory_sizes(cm: CompiledModel, layout: dict[str, dict]) -> dict[str, dict]:
    """Bytes of the weight memory and the activation memory, and their cost per word.

    Weights: every conv / linear / head weight at weight_bits. Activations: the largest buffer
    of one image among the values some layer reads from memory (spike maps, the image, the
    residual stream); currents that only a LIF reads stay in registers.
    """
    wb = cm.config["weight_bits"]
    weights = sum(cm.tensor(op["tensors"]["weight"]).size for op in cm.program
                  if "weight" in op.get("tensors", {}))
    stored = {i for op in cm.program if op["op"] != "lif" for i in op.get("inputs", [])}
    largest = max(stored, key=lambda n: layout[n]["elements"] * layout[n]["bits"])
    w_bytes = weights * wb / 8
    a_bytes = layout[largest]["elements"] * layout[largest]["bits"] / 8
    return {"weights": {"bytes": w_bytes, "count": int(weights), "bits": wb,
                        "pj_per_word": sram_pj_per_word(w_bytes)},
            "activations": {"bytes": a_bytes, "largest": largest,
                            "pj_per_word": sram_pj_per_word(a_bytes)}}


# -- the papers' formula ----------------------------------------------------------------------
def paper_terms(op: dict, st: dict[str, float], cm: CompiledModel) -> dict:
    """Dense FLOPs, input rate, SOPs and MACs of one layer by the papers' formula."""
    T, kind = cm.config["T"], op["op"]
    none = {"flops": 0, "flops_expr": "", "rate": None, "paper_sops": 0.0, "paper_macs": 0.0,
            "formula": ""}
    if kind == "conv":
        Co, Ci, k, _ = cm.tensor(op["tensors"]["weight"]).shape
        H, W = op["shape"][1:]
        flops = Co * Ci * k * k * H * W
        expr = f"{Co} x {Ci} x {k}x{k} x {H}x{W} = {flops:,}"
        if op["input"] == "pixels":  # the same image at every step: counted once
            return {**none, "flops": flops, "flops_expr": expr, "paper_macs": float(flops),
                    "formula": f"{PJ_MAC} pJ x {flops:,}"}
        if op["input"] == "spikes":
            rate = st["spikes_in"] / (T * Ci * H * W)
            note = ""
        else:  # integer input (Spikformer): the papers count it as spikes; r = non-zero share
            rate = st["macs"] / (T * flops)
            note = " (integer input counted as spikes)"
    elif kind == "attention":
        D, N = op["shape"][0], op["tokens"]
        flops = 2 * N * N * D  # Q K^T and (Q K^T) V, N x N x D each
        expr = f"2 x {N}x{N} x {D} = {flops:,} (N = {N} tokens)"
        rate = st["spikes_in"] / (3 * T * D * N)  # mean rate of Q, K and V
        note = ""
    elif kind == "head":
        K, D = cm.tensor(op["tensors"]["weight"]).shape
        flops = D * K
        return {**none, "flops": flops, "flops_expr": f"{D} x {K} = {flops:,}",
                "paper_macs": float(flops), "formula": f"{PJ_MAC} pJ x {flops:,}"}
    else:
        return none
    return {**none, "flops": flops, "flops_expr": expr, "rate": rate,
            "paper_sops": rate * T * flops,
            "formula": f"{PJ_SOP} pJ x {rate:.3f} x {T} x {flops:,}{note}"}


# -- the report -------------------------------------------------------------------------------
def energy_report(cm: CompiledModel, result: Result) -> dict:
    """Per-layer activity and both energy estimates, per image (mean over the images)."""
    layout = value_layout(cm)
    mem = memory_sizes(cm, layout)
    wb, pj_w, pj_a = (cm.config["weight_bits"], mem["weights"]["pj_per_word"],
                      mem["activations"]["pj_per_word"])
    layers = []
    for op in cm.program:
        name, kind = op["name"], op["op"]
        st = {c: float(np.mean(result.stats[name][c])) for c in COUNTERS}
        row = {"name": name, "op": kind, "input": op.get("input"), **st}
        if kind == "lif":
            row["firing_rate"] = st["spikes_out"] / st["neuron_updates"]
        row.update(paper_terms(op, st, cm))
        row["paper_pj"] = PJ_SOP * row["paper_sops"] + PJ_MAC * row["paper_macs"]
        integer = kind == "conv" and op["input"] == "int"
        # The papers' formula with integer inputs as MACs (Spikingformer's reading of
        # Spikformer): r x T x FLOPs multiply-accumulates instead of SOPs.
        row["paper_mac_pj"] = row["paper_pj"] + (
            (PJ_MAC - PJ_SOP) * row["paper_sops"] if integer else 0.0)
        # Our activity model: compute, then SRAM words (bits / 64, packed).
        ins = op.get("inputs", [])
        if integer:  # read as bit planes: 1 bit per element read
            read_bits = st["act_reads"]
        else:
            read_bits = st["act_reads"] * (np.mean([layout[i]["bits"] for i in ins])
                                           if ins else 0)
        write_bits = st["act_writes"] * (layout[name]["bits"] if name in layout else 0)
        row["weight_words"] = st["weight_reads"] * wb / WORD_BITS
        row["act_words"] = float(read_bits + write_bits) / WORD_BITS
        # integer-input convs run bit-serially on the AC engine: their MACs are equivalents
        row["compute_pj"] = (PJ_SOP * (st["sops"] + st["bit_acs"])
                             + PJ_MAC * (0.0 if integer else st["macs"])
                             + PJ_ADD * (st["adds"] + st["neuron_updates"]))
        row["sram_pj"] = row["weight_words"] * pj_w + row["act_words"] * pj_a
        row["ours_pj"] = row["compute_pj"] + row["sram_pj"]
        layers.append(row)
    totals = {k: math.fsum(r[k] for r in layers) for k in SUM_KEYS}
    totals["ratio"] = totals["ours_pj"] / totals["paper_pj"] if totals["paper_pj"] else None
    first = layers[0]
    totals["first_layer"] = first["name"]
    totals["first_layer_share_paper"] = first["paper_pj"] / totals["paper_pj"]
    totals["first_layer_share_ours"] = first["ours_pj"] / totals["ours_pj"]
    attn = next((op for op in cm.program if op["op"] == "attention"), None)
    return {"config": cm.config, "meta": cm.meta, "images": int(len(result.classes)),
            "tokens": attn["tokens"] if attn else None,
            "constants": {"pj_sop": PJ_SOP, "pj_mac": PJ_MAC, "pj_add": PJ_ADD,
                          "word_bits": WORD_BITS,
                          "sram_pj_per_word": [list(p) for p in SRAM_PJ_PER_WORD]},
            "memories": mem, "layers": layers, "totals": totals}


def _n(x: float) -> str:
    return f"{x:,.0f}" if x else "0"


def _nj(pj: float) -> str:
    nj = pj / 1000
    if nj == 0:
        return "–"
    return f"{nj:,.0f}" if nj >= 100 else f"{nj:.2f}" if nj >= 1 else f"{nj:.3g}"


def layer_table(rep: dict) -> str:
    head = ("| # | layer | op | rate | SOPs | MACs | adds | weight reads | act reads | act writes "
            "| dense FLOPs | papers' formula | papers nJ | ours nJ | ours: SRAM |")
    lines = [head, "|" + "---|" * 15]
    for i, r in enumerate(rep["layers"]):
        rate = r.get("firing_rate", r["rate"])
        sram = f"{r['sram_pj'] / r['ours_pj']:.0%}" if r["ours_pj"] else "–"
        op = r["op"] + (f" ({r['input']})" if r["input"] else "")
        lines.append(
            f"| {i} | {r['name']} | {op} | {'–' if rate is None else f'{rate:.3f}'} "
            f"| {_n(r['sops'])} | {_n(r['macs'])} | {_n(r['adds'])} | {_n(r['weight_reads'])} "
            f"| {_n(r['act_reads'])} | {_n(r['act_writes'])} | {r['flops_expr'] or '–'} "
            f"| {r['formula'] or '–'} | {_nj(r['paper_pj'])} | {_nj(r['ours_pj'])} | {sram} |")
    return "\n".join(lines)


def totals_table(rep: dict) -> str:
    t = rep["totals"]
    ratio = "–" if t["ratio"] is None else f"{t['ratio']:.2f}"
    rows = [("SOPs (measured)", _n(t["sops"])), ("MACs (measured)", _n(t["macs"])),
            ("other integer adds (measured)", _n(t["adds"])),
            ("LIF charge steps", _n(t["neuron_updates"])),
            ("SOPs (papers' formula)", _n(t["paper_sops"])),
            ("MACs (papers' formula)", _n(t["paper_macs"])),
            ("energy, papers' formula", f"{t['paper_pj'] / 1000:,.2f} nJ")]
    if t["bit_acs"]:
        rows += [("bit-serial ACs of integer inputs (measured)", _n(t["bit_acs"])),
                 ("energy, papers' formula with integer inputs as MACs",
                  f"{t['paper_mac_pj'] / 1000:,.2f} nJ")]
    rows += [
            ("energy, our activity model", f"{t['ours_pj'] / 1000:,.2f} nJ "
                                           f"(compute {t['compute_pj'] / 1000:,.2f}, "
                                           f"SRAM {t['sram_pj'] / 1000:,.2f})"),
            ("ratio ours / papers'", ratio),
            (f"first layer ({t['first_layer']}) share",
             f"papers' {t['first_layer_share_paper']:.1%}, ours "
             f"{t['first_layer_share_ours']:.1%}")]
    return "\n".join(["| per image | value |", "|---|---|"]
                     + [f"| {k} | {v} |" for k, v in rows])


def markdown(rep: dict, model: str, data: str) -> str:
    cfg, mem, c = rep["config"], rep["memories"], rep["constants"]
    w, a = mem["weights"], mem["activations"]
    sram = ", ".join(f"{p:g} pJ at {s / 1024:,.0f} KB" for s, p in c["sram_pj_per_word"])
    name = f"{cfg['arch']}-{cfg['depth']}-{cfg['dim']}"
    n_tok = rep["tokens"]
    return f"""# Energy report: {Path(model).name}

Model `{model}` ({name}, {cfg['heads']} heads, T = {cfg['T']},
{cfg['weight_bits']}-bit weights), {rep['images']} images of `{data}`.
Every number is per image, averaged over the images; energies in nJ.
Generated by `python -m model.energy`.

## How the numbers are computed

- Energy per operation, 45 nm (Horowitz, ISSCC 2014): {c['pj_sop']} pJ per accumulate (SOP,
  one weight added because a spike arrived), {c['pj_mac']} pJ per multiply-accumulate (MAC),
  {c['pj_add']} pJ per other 32-bit integer add.
- **Papers' formula** (Spikformer / Spikingformer): E = {c['pj_sop']} pJ x SOP +
  {c['pj_mac']} pJ x MAC per layer, from the layer's dense FLOPs:
  conv Co x Ci x k x k x H x W; attention Q K^T (N x N x D) plus (Q K^T) V (N x N x D),
  with **N = {n_tok} tokens** (the 8 x 8 map of a 32 x 32 image; not the channel count, not
  the image's pixels) and D = {cfg['dim']} channels over all heads; head D x classes.
  Spike-input layers: SOP = r x T x FLOPs with r = spikes in / (T x Ci x H x W) (attention:
  the mean rate of Q, K and V). First layer and head: MAC = FLOPs, counted once (the first
  layer's input is the same image at every step). LIF, max pool and residual adds cost nothing.
  Integer-input layers (Spikformer's stream) are counted as spikes with r = their non-zero
  share (measured MACs / (T x FLOPs), exact for 1 x 1 convs), as the papers do.
- **Our activity model**, from the golden model's counters (the RTL counts the same events):
  {c['pj_sop']} pJ per measured SOP (attention: K^T V or Q K^T increments and the rows added per
  spike), {c['pj_mac']} pJ per MAC (only valid taps: the border of a 3 x 3 conv reaches fewer
  outputs; an integer-input conv's MACs are MAC-equivalents, not charged: the accelerator runs
  it bit-serially, {c['pj_sop']} pJ per bit-serial AC, and reads its input as 1-bit planes),
  {c['pj_add']} pJ per residual / head-sum add and per LIF charge step, plus on-chip SRAM
  traffic in {c['word_bits']}-bit words (bits / {c['word_bits']}, packed, no rounding):
  - weight reads (weights, biases and thresholds, each read per use) at {w['bits']} bits each
    (a simplification: biases and thresholds are wider in the model file);
  - activation reads and writes at 1 bit per spike, 8 bits per pixel, and the producing
    layer's `bits` per integer value (residual stream, currents read by an add);
  - a word costs by the size of its memory, log-linear in size between {sram},
    clamped outside: weight memory = all {w['count']:,} weights x {w['bits']} bits
    = {w['bytes'] / 1024:,.1f} KB -> {w['pj_per_word']:.1f} pJ/word; activation memory = the
    largest buffer of one image (`{a['largest']}`, T x C x H x W x bits)
    = {a['bytes'] / 1024:,.1f} KB -> {a['pj_per_word']:.1f} pJ/word.
  - Not counted: control, clock tree, leakage, off-chip traffic.
- Column "rate": a LIF layer's firing rate (spikes out / neuron updates); a conv's or the
  attention's input rate r (as in the formula).

## Totals

{totals_table(rep)}

## Per layer

{layer_table(rep)}

![energy per layer and firing rates](energy.png)
"""


def plot(rep: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = rep["layers"]
    names = [r["name"] for r in layers]
    x = np.arange(len(layers))
    lif = [r for r in layers if "firing_rate" in r]
    fig, (ax1, ax2) = plt.subplots(
        2, 1, figsize=(max(10.0, 0.3 * len(layers) + 2), 10),
        gridspec_kw={"height_ratios": [3, 2]})
    paper = np.array([r["paper_pj"] for r in layers]) / 1000
    ours = np.array([r["ours_pj"] for r in layers]) / 1000
    ax1.bar(x - 0.2, np.where(paper > 0, paper, np.nan), 0.4, label="papers' formula",
            color="tab:blue")
    ax1.bar(x + 0.2, np.where(ours > 0, ours, np.nan), 0.4, label="our activity model",
            color="tab:orange")
    ax1.set_yscale("log")
    ax1.set_ylabel("energy per image (nJ)")
    ax1.set_xticks(x, names, rotation=90, fontsize=7)
    ax1.set_xlim(-0.7, len(layers) - 0.3)
    ax1.grid(axis="y", which="major", alpha=0.3)
    t = rep["totals"]
    ax1.set_title(f"Energy per layer: papers' formula {t['paper_pj'] / 1000:,.1f} nJ, "
                  f"our activity model {t['ours_pj'] / 1000:,.1f} nJ per image "
                  f"({rep['images']} images)")
    ax1.legend()
    xl = np.arange(len(lif))
    ax2.bar(xl, [r["firing_rate"] for r in lif], 0.6, color="tab:green")
    ax2.set_xticks(xl, [r["name"] for r in lif], rotation=90, fontsize=7)
    ax2.set_xlim(-0.7, len(lif) - 0.3)
    ax2.set_ylabel("firing rate")
    ax2.set_ylim(0, max(0.05, 1.15 * max((r["firing_rate"] for r in lif), default=0)))
    ax2.grid(axis="y", alpha=0.3)
    ax2.set_title("Firing rate per LIF layer (spikes out / neuron updates)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- the CLI ----------------------------------------------------------------------------------
def default_out_dir(model: str | Path) -> Path:
    return REPO / "docs" / "energy" / Path(model).stem


def load_images(data: str | None) -> tuple[np.ndarray, str]:
    """Test images from anything ``load_split`` accepts; a clear error for anything else."""
    src = data or (str(BUNDLED_TEST) if BUNDLED_TEST.exists() else None)
    label = shown(src) if src else "../shared/data/cifar10 (test split)"
    try:
        images, _ = load_split(src, "test")
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile,
            pickle.UnpicklingError) as e:
        raise ValueError(f"{label}: not CIFAR-10 images ({e})") from None
    return images, label


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m model.energy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="compiled model file (.sfm)")
    p.add_argument("--data", default=None,
                   help="npz file or CIFAR-10 folder (test split); default: the bundled images")
    p.add_argument("-n", type=int, default=256, help="the first n images (default 256)")
    p.add_argument("--out", default=None, help="output folder (default docs/energy/<stem>/)")
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args(argv)
    if args.n < 1:
        raise ValueError(f"Image count -n must be a positive integer, not {args.n!r}")
    if args.batch < 1:
        raise ValueError(f"Batch size must be a positive integer, not {args.batch!r}")
    cm = CompiledModel.load(args.model)
    images, label = load_images(args.data)
    if len(images) < args.n:
        print(f"{label} holds {len(images)} images, fewer than -n {args.n}: using all",
              file=sys.stderr)
    images = images[:args.n]
    result = run_batched(cm, images, args.batch, progress=True)
    rep = energy_report(cm, result)
    rep["model"], rep["model_sha256"], rep["data"] = shown(args.model), cm.checksum, label
    out = Path(args.out) if args.out else default_out_dir(args.model)
    out.mkdir(parents=True, exist_ok=True)
    (out / "energy.md").write_text(markdown(rep, shown(args.model), label))
    (out / "energy.json").write_text(json.dumps(rep, indent=1) + "\n")
    plot(rep, out / "energy.png")
    print(layer_table(rep))
    print()
    print(totals_table(rep))
    print(f"\nwrote {out / 'energy.md'}, energy.json, energy.png", file=sys.stderr)
    return rep


if __name__ == "__main__":
    from model.cli import run

    run(main)
