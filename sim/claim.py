"""Spikformer against Spikingformer on the same engine: the seed paper's claim, measured.

    python -m sim.run --model models/spikingformer.sfm -n 32 --out build/claim/spikingformer
    python -m sim.run --model models/spikformer.sfm -n 32 --out build/claim/spikformer
    python -m sim.claim --runs build/claim/spikingformer/run_verilator \\
        build/claim/spikformer/run_verilator --out docs/claim

Spikformer adds spikes into its residual stream, so its 1x1 convs (Q, K, V and the MLP's
first) read small integers, not spikes; Spikingformer keeps every conv input binary. The
Spikingformer paper counts Spikformer's integer inputs as MACs and reports about 60 % less
energy. Here both run on the same RTL: Spikformer's integer inputs go through the AC engine
bit-serially (each bit plane as spikes, its weights shifted), counted as bit-serial ACs.

From each ``sim.run`` folder (``summary.json``, ``results.npz``, the ``plan.json`` beside it)
and the golden model on the same images, writes ``claim.md``, ``claim.json``,
``claim_energy.png`` (energy per image under three accountings) and ``claim_inputs.png``
(histograms of the values entering each block's convs: the papers' Figures 3 and 4).

Energy accountings, per image (model.energy, 45 nm, Horowitz):
- **papers' formula, as published**: 0.9 pJ x SOP + 4.6 pJ x MAC from dense FLOPs and input
  rates; integer inputs counted as spikes at their non-zero rate (as the Spikformer paper does);
- **papers' formula, integer inputs as MACs**: the same with those layers at 4.6 pJ per
  MAC-equivalent (the Spikingformer paper's reading);
- **measured**: our activity model from the RTL's counters: SOPs, bit-serial ACs, MACs that
  run as MACs (first layer, head), adds, LIF steps and SRAM words.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def block_inputs(cm, spikes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per block, the values entering its attention and its MLP convs, flattened.

    Spikingformer: the spike maps of the LIF in front of Q/K/V and of the MLP's first conv;
    Spikformer: the residual stream (integers) that those convs read.
    """
    from .trace import stream_values

    vals = {**spikes, **stream_values(cm.program, spikes)}
    out = {}
    for j in range(cm.config["depth"]):
        for part, first in (("attn", f"block.{j}.attn.q"), ("mlp", f"block.{j}.mlp.")):
            op = next(o for o in cm.program if o["op"] == "conv" and o["name"].startswith(first))
            out[f"block {j} {part}"] = np.asarray(vals[op["inputs"][0]]).reshape(-1)
    return out


def _accuracy_10k(model: Path) -> float | None:
    manifest = model.with_suffix(".json")
    if manifest.exists():
        m = json.loads(manifest.read_text())
        acc = (m.get("cifar10_test") or {}).get("accuracy_int")
        if acc is not None and (m.get("cifar10_test") or {}).get("images") == 10000:
            return float(acc)
    return None


def arch_row(run_dir: Path) -> dict:
    """Figures of one simulated model, per image."""
    from model.energy import energy_report
    from model.golden import run as golden_run

    from .report import rtl_result
    from .run import load_images, run_model, shown

    cm, summary = run_model(run_dir)
    res = np.load(run_dir / "results.npz")
    plan = json.loads((run_dir.parent / "plan.json").read_text())
    model = REPO / summary["model"]
    images, labels, _ = load_images(str(REPO / summary["data"]), summary["images"],
                                    summary["first"])
    golden = golden_run(cm, images, record=True)
    paper = energy_report(cm, golden)
    measured = energy_report(cm, rtl_result(cm, plan, res["counters"]))
    g, t = paper["totals"], measured["totals"]
    int_macs = float(np.mean(sum(golden.stats[op["name"]]["macs"] for op in cm.program
                                 if op["op"] == "conv" and op["input"] == "int")))
    cfg = cm.config
    cycles = res["cycles"].astype(np.float64)
    return {
        "arch": cfg["arch"], "name": f"{cfg['arch']}-{cfg['depth']}-{cfg['dim']}",
        "run": shown(run_dir),
        "model": summary["model"], "model_sha256": cm.checksum,
        "images": int(summary["images"]), "sim": summary["sim"],
        "mismatched_images": int(summary["mismatched_images"]),
        "accuracy_images": float(np.mean(golden.classes == labels)),
        "accuracy_10k": _accuracy_10k(model),
        "sops": t["sops"], "bit_acs": t["bit_acs"], "int_mac_equivalents": int_macs,
        "macs_run": t["macs"], "adds": t["adds"],
        "cycles": float(cycles.mean()),
        "utilization": float(np.mean((golden.total("sops") + golden.total("bit_acs"))
                                     / (plan["lanes"] * cycles))),
        "paper_pj": g["paper_pj"], "paper_mac_pj": g["paper_mac_pj"],
        "measured_pj": t["ours_pj"], "measured_compute_pj": t["compute_pj"],
        "measured_sram_pj": t["sram_pj"],
        "inputs": {k: np.bincount(v.astype(np.int64)).tolist()
                   for k, v in block_inputs(cm, golden.spikes).items()},
    }


def _saving(a: float, b: float) -> str:
    """How much less ``a`` is than ``b``."""
    return f"{100 * (1 - a / b):.1f} % less" if a <= b else f"{100 * (a / b - 1):.1f} % more"


def verdict(sf: dict, sg: dict) -> list[str]:
    """What the numbers say about the claim (Spikingformer ``sg`` against Spikformer ``sf``)."""
    lines = []
    for key, what in (("paper_pj", "the papers' formula as published (integer inputs as "
                                   "spikes)"),
                      ("paper_mac_pj", "the papers' formula with integer inputs as MACs"),
                      ("measured_pj", "our engine's measured activity (RTL counters)"),
                      ("measured_compute_pj", "our engine's compute alone (no SRAM)")):
        lines.append(f"- By {what}: Spikingformer uses {_saving(sg[key], sf[key])} energy "
                     f"per image than Spikformer ({sg[key] / 1000:,.0f} against "
                     f"{sf[key] / 1000:,.0f} nJ).")
    lines.append(f"- Cycles per image on the same engine: Spikingformer {sg['cycles']:,.0f}, "
                 f"Spikformer {sf['cycles']:,.0f} ({_saving(sg['cycles'], sf['cycles'])}).")
    if sf["int_mac_equivalents"]:
        lines.append(f"- Spikformer's integer inputs: {sf['int_mac_equivalents']:,.0f} "
                     f"MAC-equivalents per image, run as {sf['bit_acs']:,.0f} bit-serial ACs "
                     f"({sf['bit_acs'] / sf['int_mac_equivalents']:.2f} ACs per MAC-equivalent)"
                     f".")
    lines.append(f"- Spikes: Spikingformer does {sg['sops']:,.0f} SOPs per image against "
                 f"Spikformer's {sf['sops']:,.0f} on spike inputs; on integer inputs it does "
                 f"none, Spikformer {sf['bit_acs']:,.0f} bit-serial ACs.")
    if sf["accuracy_10k"] and sg["accuracy_10k"]:
        d = 100 * (sg["accuracy_10k"] - sf["accuracy_10k"])
        lines.append(f"- Accuracy on the 10,000 test images: Spikingformer "
                     f"{100 * sg['accuracy_10k']:.2f} %, Spikformer "
                     f"{100 * sf['accuracy_10k']:.2f} % ({d:+.2f} points for Spikingformer).")
    if sf["int_mac_equivalents"]:
        lines.append(f"- So: the papers' saving needs the integer inputs charged as MACs "
                     f"({_saving(sg['paper_mac_pj'], sf['paper_mac_pj'])} here). An AC engine "
                     f"that feeds those small integers bit-serially pays "
                     f"{sf['bit_acs'] / sf['int_mac_equivalents']:.2f} ACs per MAC-equivalent, "
                     f"not a MAC. Measured on the RTL, Spikingformer's spike-driven residual "
                     f"needs {_saving(sg['measured_pj'], sf['measured_pj'])} energy, and "
                     f"{_saving(sg['cycles'], sf['cycles'])} cycles.")
    return lines


def markdown(rows: list[dict]) -> str:
    sf = next(r for r in rows if r["arch"] == "spikformer")
    sg = next(r for r in rows if r["arch"] == "spikingformer")

    def acc(r):
        a = f"{100 * r['accuracy_images']:.2f} % ({r['images']} images)"
        return a + (f", {100 * r['accuracy_10k']:.2f} % (10,000)" if r["accuracy_10k"] else "")

    table = [("model", lambda r: f"`{r['model']}` ({r['name']})"),
             ("accuracy, integer model", acc),
             ("RTL = golden (mismatching images)", lambda r: f"{r['mismatched_images']} of "
                                                             f"{r['images']} ({r['sim']})"),
             ("SOPs (spike inputs)", lambda r: f"{r['sops']:,.0f}"),
             ("MAC-equivalents on integer inputs", lambda r: f"{r['int_mac_equivalents']:,.0f}"),
             ("bit-serial ACs on integer inputs (RTL)", lambda r: f"{r['bit_acs']:,.0f}"),
             ("MACs run as MACs (first layer, head)", lambda r: f"{r['macs_run']:,.0f}"),
             ("cycles per image (RTL)", lambda r: f"{r['cycles']:,.0f}"),
             ("lane utilization (SOPs + bit-serial ACs) / (P x cycles)",
              lambda r: f"{r['utilization']:.3f}"),
             ("energy, papers' formula as published", lambda r: f"{r['paper_pj'] / 1e3:,.0f} nJ"),
             ("energy, papers' formula, integer inputs as MACs",
              lambda r: f"{r['paper_mac_pj'] / 1e3:,.0f} nJ"),
             ("energy, measured (RTL counters)",
              lambda r: f"{r['measured_pj'] / 1e3:,.0f} nJ (compute "
                        f"{r['measured_compute_pj'] / 1e3:,.0f}, SRAM "
                        f"{r['measured_sram_pj'] / 1e3:,.0f})")]
    lines = ["# Spikformer against Spikingformer on the same engine", "",
             "Generated by `python -m sim.claim` from two `sim.run` folders; per image, "
             "averaged over the simulated images. Accountings: see the module docstring of "
             "`sim/claim.py` and docs/energy.", "",
             "| per image | Spikingformer | Spikformer |", "|---|---|---|"]
    lines += [f"| {k} | {f(sg)} | {f(sf)} |" for k, f in table]
    lines += ["", "## What it says about the claim", ""] + verdict(sf, sg)
    if all(r.get("run") for r in (sg, sf)):
        lines += ["", "Reproduce:", "", "```"]
        lines += [f"python -m sim.run --model {r['model']} -n {r['images']} --sim {r['sim']} "
                  f"--out {Path(r['run']).parent}" for r in (sg, sf)]
        lines += [f"python -m sim.claim --runs {sg['run']} {sf['run']}", "```"]
    lines += ["", "![energy per image](claim_energy.png)", "",
              "## Values entering each block's convs (papers' Figures 3 and 4)", "",
              "Share of the values entering Q/K/V (attn) and the MLP's first conv (mlp):", "",
              "| block input | arch | " + " | ".join(str(v) for v in range(8)) + " |",
              "|---|---|" + "---|" * 8]
    for r in (sg, sf):
        for k, h in r["inputs"].items():
            n = sum(h)
            share = [f"{100 * h[v] / n:.1f} %" if v < len(h) and h[v] else "–"
                     for v in range(8)]
            lines.append(f"| {k} | {r['arch']} | " + " | ".join(share) + " |")
    lines += ["", "![block inputs](claim_inputs.png)", ""]
    return "\n".join(lines)


def plot(rows: list[dict], out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("paper_pj", "papers' formula\n(as published)"),
            ("paper_mac_pj", "papers' formula\n(integer inputs as MACs)"),
            ("measured_compute_pj", "measured compute\n(RTL counters, no SRAM)"),
            ("measured_pj", "measured, all\n(RTL counters)")]
    fig, ax = plt.subplots(figsize=(8.5, 4))
    x = np.arange(len(keys))
    for i, r in enumerate(rows):
        ax.bar(x + (i - 0.5) * 0.38, [r[k] / 1e3 for k, _ in keys], 0.38, label=r["name"])
    ax.set_xticks(x, [label for _, label in keys])
    ax.set_ylabel("energy per image (nJ)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "claim_energy.png", dpi=120)
    plt.close(fig)

    blocks = list(rows[0]["inputs"])
    fig, axes = plt.subplots(len(rows), len(blocks), figsize=(3 * len(blocks), 2.6 * len(rows)),
                             squeeze=False)
    for i, r in enumerate(rows):
        for j, k in enumerate(blocks):
            h = np.array(r["inputs"][k], dtype=np.float64)
            ax = axes[i][j]
            ax.bar(np.arange(len(h)), h / h.sum())
            ax.set_xticks(np.arange(len(h)))
            ax.set_title(f"{r['arch']}: {k}", fontsize=9)
            ax.set_xlabel("input value")
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out / "claim_inputs.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m sim.claim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs=2, required=True, metavar="RUN",
                   help="the sim.run folders (run_verilator or run_icarus) of the two models")
    p.add_argument("--out", default=str(REPO / "docs" / "claim"))
    args = p.parse_args(argv)
    rows = []
    for r in args.runs:
        run = Path(r)
        if not (run / "results.npz").exists():
            raise FileNotFoundError(f"No results.npz in {run}: run `python -m sim.run` first")
        rows.append(arch_row(run))
    archs = sorted(r["arch"] for r in rows)
    if archs != ["spikformer", "spikingformer"]:
        raise ValueError(f"Need one Spikformer and one Spikingformer run, not {archs}")
    rows.sort(key=lambda r: r["arch"] != "spikingformer")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "claim.md").write_text(markdown(rows))
    (out / "claim.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, out)
    print(markdown(rows).split("## Values")[0])
    print(f"wrote {out}/claim.md, claim.json, claim_energy.png, claim_inputs.png",
          file=sys.stderr)
    return rows


if __name__ == "__main__":
    from model.cli import run

    run(main)
