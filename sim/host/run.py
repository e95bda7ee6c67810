"""Run the host runtime against the simulated board and compare with the golden model.

    python -m sim.host.run --model m.sfm [-n 4] [--sim verilator|icarus] [--divisor 4]
    python -m sim.host.run --tiny          # a random 8x8 spikingformer-1-16 (fast)

Generates ``hw.board.SimBoard`` for the model (the accelerator behind the UART link, the UART
at ``divisor`` cycles per bit, the host's UART in gateware), builds it with cocotb's runner,
runs ``sim.host.bench`` (hw.host's client over the simulated line: INFO, then per image LOAD,
START, RESULT, COUNTERS; then bad frames), and checks class and logits against
``model.golden``, and that every bad frame got its error reply. Images: the first n of the
bundled CIFAR-10 test set (``--data``), subsampled to the model's image size when it is
smaller. Work files go to ``build/host_sim/<model>/``.
"""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TOP = "host_top"
EXPECTED_ERRORS = {"bad_crc": 1, "unknown_command": 2, "bad_length": 3, "truncated": 4,
                   "counters_out_of_range": 5, "load_out_of_range": 5, "oversized": 3}


def tiny_model(path: Path, seed: int = 0) -> Path:
    """A random spikingformer-1-16 on 8x8 images (as tests/hw/test_top.py): small enough for
    a quick simulation. Needs torch (model.compiler)."""
    import torch

    from model import build_model, get_config
    from model.compiler import compile_model, randomize

    torch.manual_seed(seed)
    cm = compile_model(randomize(build_model(get_config("spikingformer-1-16", img_size=8)),
                                 seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    cm.save(path)
    return path


def images_for(cfg: dict, data: Path, n: int, first: int = 0) -> np.ndarray:
    """uint8 [n, C, S, S]: test images, every k-th pixel when the model's size S is 32 / k."""
    with np.load(data) as d:
        imgs = d["images"][first:first + n]
    if imgs.shape[-1] in (1, 3):
        imgs = imgs.transpose(0, 3, 1, 2)
    S = cfg["img_size"]
    step = imgs.shape[-1] // S
    if step < 1 or imgs.shape[-1] % S:
        raise ValueError(f"Cannot make {S}x{S} images from {list(imgs.shape)}")
    return np.ascontiguousarray(imgs[:, :cfg["in_channels"], ::step, ::step], dtype=np.uint8)


def generate(cm, out: Path, divisor: int, timeout: int):
    """Verilog of SimBoard for the model; (plan, path, board)."""
    from amaranth.back import verilog

    from hw.board import SimBoard
    from hw.program import build_plan

    plan = build_plan(cm)
    board = SimBoard.for_plan(plan, divisor=divisor, timeout=timeout)
    path = out / f"{TOP}.v"
    path.write_text(verilog.convert(board, name=TOP, emit_src=False))
    return plan, path, board


def build(src: Path, sim: str, bdir: Path):
    """Compile once per source (a stamp of its sha256); returns the runner."""
    from cocotb_tools.runner import VerilatorControlFile, get_runner

    from hw.tools import verilator_env
    from sim.run import PUBLIC_VLT, TIMESCALE, VERILATOR_ARGS, _fast_verilator

    os.environ["PATH"] = verilator_env()["PATH"]
    if sim == "verilator" and "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "")
                                   + " CFG_CXXFLAGS_PCH_I=-include").strip()
    runner = _fast_verilator() if sim == "verilator" else get_runner(sim)
    sources = [src]
    if sim == "verilator":
        vlt = bdir / "public.vlt"
        bdir.mkdir(parents=True, exist_ok=True)
        vlt.write_text(PUBLIC_VLT.format(top=TOP))
        sources.append(VerilatorControlFile(vlt))
    digest = hashlib.sha256(src.read_bytes() + sim.encode()).hexdigest()
    stamp = bdir / "build.sha256"
    if not (stamp.exists() and stamp.read_text() == digest):
        runner.build(sources=sources, hdl_toplevel=TOP, build_dir=bdir, timescale=TIMESCALE,
                     build_args=VERILATOR_ARGS if sim == "verilator" else [], always=True,
                     log_file=bdir / "build.log")
        stamp.write_text(digest)
    return runner


def run(model, *, n: int = 4, first: int = 0, sim: str = "verilator", divisor: int = 4,
        timeout: int = 400, data=None, out=None, log=print) -> dict:
    """Simulate, compare, return a summary (``ok`` is True when everything matched)."""
    from cocotb_tools.check_results import get_results

    from model import golden
    from model.modelfile import CompiledModel

    cm = CompiledModel.load(model)
    out = Path(out) if out else REPO / "build" / "host_sim" / Path(model).stem
    out.mkdir(parents=True, exist_ok=True)
    images = images_for(cm.config, Path(data or REPO / "data" / "cifar10_test_256.npz"), n,
                        first)
    t0 = time.time()
    plan, src, board = generate(cm, out, divisor, timeout)
    bdir = out / f"sim_{sim}"
    runner = build(src, sim, bdir)
    t_build = time.time() - t0
    np.save(out / "images.npy", images)
    job = {"images": str(out / "images.npy"), "results": str(out / "results.json"),
           "timeout_cycles": timeout}
    (out / "job.json").write_text(json.dumps(job))
    Path(job["results"]).unlink(missing_ok=True)
    t1 = time.time()
    xml = runner.test(test_module="sim.host.bench", hdl_toplevel=TOP, build_dir=bdir,
                      hdl_toplevel_lang="verilog",
                      test_dir=out, timescale=None if sim == "verilator" else ("1ns", "1ps"),
                      extra_env={"HOST_SIM_JOB": str(out / "job.json"),
                                 "PYTHONPATH": os.pathsep.join(
                                     p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                     if p)},
                      log_file=out / "sim.log")
    t_sim = time.time() - t1
    _, failed = get_results(xml)
    if failed or not Path(job["results"]).exists():
        raise RuntimeError(f"cocotb bench failed; see {out / 'sim.log'}")
    res = json.loads(Path(job["results"]).read_text())
    gold = golden.run(cm, images)
    rows, ok = [], True
    for i, r in enumerate(res["images"]):
        same = r["cls"] == int(gold.classes[i]) and r["logits"] == gold.logits[i].tolist()
        ok &= same
        rows.append({"image": first + i, "class": r["cls"], "golden_class": int(gold.classes[i]),
                     "cycles": r["cycles"], "logits": r["logits"], "equal": same})
        log(f"image {first + i}: class {r['cls']} (golden {int(gold.classes[i])}), "
            f"cycles {r['cycles']}, logits {'equal' if same else 'DIFFER'}")
    errors_ok = {k: res["errors"].get(k) == v for k, v in EXPECTED_ERRORS.items()}
    for k, v in res["errors"].items():
        log(f"{k}: error {v} ({'expected' if errors_ok.get(k) else 'NOT expected'})")
    after = (res["after_errors"]["cls"] == res["images"][-1]["cls"]
             and res["after_errors"]["logits"] == res["images"][-1]["logits"]
             and res["first_again"]["logits"] == res["images"][0]["logits"])
    log(f"after the bad frames: RESULT and a new classification "
        f"{'as before' if after else 'DIFFER'}")
    ok = ok and all(errors_ok.values()) and after
    summary = {"model": str(model), "sha256": cm.checksum, "sim": sim, "divisor": divisor,
               "images": rows, "errors": res["errors"], "errors_as_expected": errors_ok,
               "works_after_errors": after, "ok": ok, "info": res["info"],
               "build_seconds": round(t_build, 1), "sim_seconds": round(t_sim, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log(f"{sum(r['equal'] for r in rows)} of {len(rows)} images equal to the golden model; "
        f"build {t_build:.0f} s, simulation {t_sim:.0f} s; {'OK' if ok else 'FAILED'}")
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sim.host.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model")
    src.add_argument("--tiny", action="store_true",
                     help="a random spikingformer-1-16 on 8x8 images (needs torch)")
    p.add_argument("-n", type=int, default=4)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    p.add_argument("--divisor", type=int, default=4, help="clock cycles per UART bit")
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    model = a.model or tiny_model(REPO / "build" / "host_sim" / "tiny.sfm")
    s = run(model, n=a.n, first=a.first, sim=a.sim, divisor=a.divisor, data=a.data,
            out=a.out)
    return 0 if s["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
