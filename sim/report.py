"""Cycle and energy report of a simulated run: per instruction and per layer, from RTL counters.

    python -m sim.report                       # after `python -m sim.run` (or `make sim`)
    python -m sim.report --run build/default/run_verilator --out docs/sim/default

Reads the run's ``results.npz`` and ``summary.json`` (written by ``sim.run``), reruns the
golden model on the same images for the papers' formula, and writes ``sim.md``, ``sim.json``
and ``sim.png`` into the output folder (default ``docs/sim/<model stem>/``):

- per instruction: cycles (the sequencer's per-instruction cycle counter), SOPs of its layers
  (RTL counters), lane utilization SOPs / (P x cycles), the units' busy and stall cycles;
- per layer: energy of our activity model computed from the RTL counters (``model.energy``'s
  ``energy_report`` on the RTL counts) beside the papers' formula from the golden model.
Every figure is per image, averaged over the run's images.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def rtl_result(cm, plan: dict, counters: np.ndarray, logits=None, classes=None):
    """A ``model.golden.Result`` whose stats are the RTL counter slots (every program layer)."""
    from model.golden import COUNTERS, Result

    from .run import rtl_stats

    n = len(counters)
    st = rtl_stats(plan, counters)
    stats = {op["name"]: st.get(op["name"], {c: np.zeros(n, np.int64) for c in COUNTERS})
             for op in cm.program}
    return Result(logits=np.zeros((n, 1), np.int64) if logits is None else logits,
                  classes=np.zeros(n, np.int64) if classes is None else classes, stats=stats)


def instruction_rows(plan: dict, counters: np.ndarray) -> list[dict]:
    """Per instruction: mean cycles, SOPs, utilization, busy and stall cycles per unit."""
    P = plan["lanes"]
    c = np.asarray(counters, dtype=np.float64).reshape(len(counters), -1).mean(axis=0)
    rows = []
    for ins in plan["instructions"]:
        slots = [s for s in plan["counters"] if s["instruction"] == ins["index"]]
        cyc = sum(c[s["slot"]] for s in slots if s["counter"] == "cycles")
        sops = sum(c[s["slot"]] for s in slots if s["counter"] in ("sops", "bit_acs"))
        busy = {s["counter"]: c[s["slot"]] for s in slots if s["counter"].endswith("busy_cycles")}
        stall = {s["counter"]: c[s["slot"]] for s in slots
                 if s["counter"].endswith("stall_cycles")}
        rows.append({"index": ins["index"], "kind": ins["kind"], "name": ins["name"],
                     "layers": ins.get("layers", []), "cycles": float(cyc), "sops": float(sops),
                     "utilization": float(sops / (P * cyc)) if cyc else None,
                     "busy": busy, "stall": stall})
    return rows


def build_report(cm, plan: dict, counters: np.ndarray, cycles: np.ndarray, golden,
                 meta: dict | None = None) -> dict:
    from model.energy import energy_report

    from .run import shown

    meta = {k: shown(v) if k in ("model", "data") else v for k, v in (meta or {}).items()}
    rtl = energy_report(cm, rtl_result(cm, plan, counters))
    paper = energy_report(cm, golden)
    layers = []
    for r, g in zip(rtl["layers"], paper["layers"], strict=True):
        layers.append({"name": r["name"], "op": r["op"], "sops": r["sops"], "macs": r["macs"],
                       "adds": r["adds"], "weight_reads": r["weight_reads"],
                       "act_reads": r["act_reads"], "act_writes": r["act_writes"],
                       "ours_pj": r["ours_pj"], "compute_pj": r["compute_pj"],
                       "sram_pj": r["sram_pj"], "paper_pj": g["paper_pj"],
                       "formula": g["formula"], "flops_expr": g["flops_expr"]})
    ins = instruction_rows(plan, counters)
    P = plan["lanes"]
    total_cycles = float(np.mean(cycles))
    total_sops = rtl["totals"]["sops"] + rtl["totals"]["bit_acs"]  # the engines' accumulates
    return {"meta": meta, "lanes": P, "images": int(len(cycles)),
            "config": cm.config, "cycles": total_cycles,
            "instruction_cycles": math.fsum(r["cycles"] for r in ins),
            "sops": total_sops, "bit_acs": rtl["totals"]["bit_acs"],
            "utilization": total_sops / (P * total_cycles),
            "energy": {"ours_pj": rtl["totals"]["ours_pj"],
                       "compute_pj": rtl["totals"]["compute_pj"],
                       "sram_pj": rtl["totals"]["sram_pj"],
                       "paper_pj": paper["totals"]["paper_pj"]},
            "memories": rtl["memories"], "constants": rtl["constants"],
            "instructions": ins, "layers": layers}


def _n(x) -> str:
    return "–" if x is None else f"{x:,.0f}" if x else "0"


def _nj(pj: float) -> str:
    return "–" if not pj else f"{pj / 1000:,.2f}" if pj >= 1000 else f"{pj / 1000:.3g}"


def markdown(rep: dict) -> str:
    m, cfg, e = rep["meta"], rep["config"], rep["energy"]
    P = rep["lanes"]
    lines = [f"# Simulation report: {Path(m.get('model', '?')).name}", "",
             f"Model `{m.get('model', '?')}` ({cfg['arch']}-{cfg['depth']}-{cfg['dim']}, "
             f"{cfg['heads']} heads, T = {cfg['T']}), P = {P} lanes; {rep['images']} images "
             f"of `{m.get('data', '?')}` simulated with {m.get('sim', '?')} "
             f"(RTL = golden model: {m.get('mismatched_images', '?')} mismatching images). "
             f"Per image, averaged over the images. Generated by `python -m sim.report`.", "",
             "## Totals", "", "| per image | value |", "|---|---|",
             f"| cycles (start to done) | {rep['cycles']:,.0f} |",
             f"| cycles in instructions (sum of the per-instruction counters) "
             f"| {rep['instruction_cycles']:,.0f} |",
             f"| SOPs (RTL counters) | {rep['sops']:,.0f} |",
             *([f"| of which bit-serial ACs on integer inputs | {rep['bit_acs']:,.0f} |"]
               if rep.get("bit_acs") else []),
             f"| lane utilization SOPs / (P x cycles) | {rep['utilization']:.3f} |",
             f"| energy, our activity model from the RTL counters | {_nj(e['ours_pj'])} nJ "
             f"(compute {_nj(e['compute_pj'])}, SRAM {_nj(e['sram_pj'])}) |",
             f"| energy, papers' formula (golden model) | {_nj(e['paper_pj'])} nJ |",
             f"| accuracy on these images | {100 * m.get('accuracy', float('nan')):.2f} % |",
             f"| simulator speed | {m.get('sim_s_per_image', float('nan')):.2f} s per image "
             f"in one process, {m.get('images_per_s', float('nan')):.2f} images/s with "
             f"{m.get('shards', '?')} processes |", "",
             "## Per instruction", "",
             "Cycles from the sequencer's per-instruction counter; SOPs from the engines' "
             "counters; utilization = SOPs / (P x cycles) (the physical bound is 1).", "",
             "| # | kind | instruction | cycles | SOPs | SOPs/(P x cycles) | busy cycles "
             "| stall cycles |", "|---|---|---|---|---|---|---|---|"]
    for r in rep["instructions"]:
        util = "–" if not r["sops"] or r["utilization"] is None else f"{r['utilization']:.3f}"
        busy = ", ".join(f"{k.replace('_busy_cycles', '')} {v:,.0f}" for k, v in r["busy"].items())
        stall = ", ".join(f"{k.replace('_stall_cycles', '')} {v:,.0f}"
                          for k, v in r["stall"].items() if v)
        lines.append(f"| {r['index']} | {r['kind']} | {r['name']} | {r['cycles']:,.0f} "
                     f"| {_n(r['sops'])} | {util} | {busy or '–'} | {stall or '–'} |")
    c = rep["constants"]
    lines += ["", "## Energy per layer", "",
              f"Ours: {c['pj_sop']} pJ per SOP, {c['pj_mac']} pJ per MAC, {c['pj_add']} pJ per "
              f"other add and LIF step, plus SRAM words ({c['word_bits']}-bit) by memory size, "
              f"all counted by the RTL (model.energy's activity model on the RTL counters). "
              f"Papers': {c['pj_sop']} pJ x r x T x FLOPs + {c['pj_mac']} pJ x MACs from the "
              f"golden model's firing rates (see docs/energy/ for the formula per layer).", "",
              "| layer | op | SOPs | MACs | adds | weight reads | act reads | act writes "
              "| ours nJ | of it SRAM | papers' nJ | papers' formula |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rep["layers"]:
        sram = f"{r['sram_pj'] / r['ours_pj']:.0%}" if r["ours_pj"] else "–"
        lines.append(f"| {r['name']} | {r['op']} | {_n(r['sops'])} | {_n(r['macs'])} "
                     f"| {_n(r['adds'])} | {_n(r['weight_reads'])} | {_n(r['act_reads'])} "
                     f"| {_n(r['act_writes'])} | {_nj(r['ours_pj'])} | {sram} "
                     f"| {_nj(r['paper_pj'])} | {r['formula'] or '–'} |")
    lines += ["", "![cycles and energy](sim.png)", ""]
    return "\n".join(lines)


def plot(rep: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ins = rep["instructions"]
    P = rep["lanes"]
    x = np.arange(len(ins))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(10.0, 0.35 * len(ins) + 3), 10))
    cyc = np.array([r["cycles"] for r in ins])
    bound = np.array([r["sops"] / P for r in ins])
    ax1.bar(x - 0.2, cyc, 0.4, label="cycles (RTL)", color="tab:blue")
    ax1.bar(x + 0.2, np.where(bound > 0, bound, np.nan), 0.4, label="SOPs / P (bound)",
            color="tab:orange")
    ax1.set_yscale("log")
    ax1.set_xticks(x, [f"{r['index']} {r['name']}" for r in ins], rotation=90, fontsize=7)
    ax1.set_ylabel("cycles per image")
    ax1.set_title(f"Cycles per instruction: {rep['cycles']:,.0f} per image, "
                  f"SOPs/(P x cycles) = {rep['utilization']:.3f} (P = {P})")
    ax1.legend()
    ax1.grid(axis="y", alpha=0.3)
    lay = rep["layers"]
    xl = np.arange(len(lay))
    ours = np.array([r["ours_pj"] for r in lay]) / 1000
    paper = np.array([r["paper_pj"] for r in lay]) / 1000
    ax2.bar(xl - 0.2, np.where(paper > 0, paper, np.nan), 0.4, label="papers' formula (golden)",
            color="tab:blue")
    ax2.bar(xl + 0.2, np.where(ours > 0, ours, np.nan), 0.4,
            label="activity model (RTL counters)", color="tab:orange")
    ax2.set_yscale("log")
    ax2.set_xticks(xl, [r["name"] for r in lay], rotation=90, fontsize=7)
    ax2.set_ylabel("energy per image (nJ)")
    e = rep["energy"]
    ax2.set_title(f"Energy per layer: papers' formula {e['paper_pj'] / 1000:,.1f} nJ, "
                  f"RTL activity model {e['ours_pj'] / 1000:,.1f} nJ per image")
    ax2.legend()
    ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(cm, plan: dict, counters, cycles, golden, out, meta: dict | None = None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rep = build_report(cm, plan, np.asarray(counters), np.asarray(cycles), golden, meta)
    (out / "sim.md").write_text(markdown(rep))
    (out / "sim.json").write_text(json.dumps(rep, indent=1) + "\n")
    plot(rep, out / "sim.png")
    return rep


def main(argv=None) -> dict:
    from model.golden import run_batched

    from .run import load_images, run_model

    p = argparse.ArgumentParser(prog="python -m sim.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=str(REPO / "build" / "default" / "run_verilator"),
                   help="the run folder of sim.run (holds results.npz, summary.json)")
    p.add_argument("--out", default=None, help="default docs/sim/<model stem>/")
    args = p.parse_args(argv)
    run = Path(args.run)
    if not (run / "results.npz").exists():
        raise FileNotFoundError(f"No results.npz in {run}: run `python -m sim.run` first")
    cm, summary = run_model(run)
    res = np.load(run / "results.npz")
    plan = json.loads((run.parent / "plan.json").read_text())
    images, _, _ = load_images(str(REPO / summary["data"]), summary["images"],
                               summary["first"])
    golden = run_batched(cm, images, 64)
    out = Path(args.out) if args.out else REPO / "docs" / "sim" / Path(summary["model"]).stem
    rep = write_report(cm, plan, res["counters"], res["cycles"], golden, out,
                       {**summary, "model_sha256": cm.checksum})
    print(f"wrote {out}/sim.md, sim.json, sim.png", file=sys.stderr)
    return rep


if __name__ == "__main__":
    from model.cli import run

    run(main)
