"""Random-model regression: compiled models with random weights, RTL vs golden, bit for bit.

    python -m sim.random_models                       # 5 configs x 4 images on Verilator
    python -m sim.random_models --configs spikingformer-1-32 -n 2 --sim icarus

Each config is compiled with random weights (``python -m model.compiler --random CONFIG``,
``model.compiler.randomize``: firing rates spread over about 5-50 %) into
``build/random/<config>-s<seed>.sfm`` (kept: compiling needs torch), generated, built and
simulated on the first n bundled test images like ``sim.run``. Exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ("spikingformer-1-32", "spikingformer-2-64", "spikingformer-1-128-h2",
           "spikingformer-2-64-w5-s3", "spikformer-2-64")
BUILD = REPO / "build" / "random"


def random_model(config: str, seed: int = 1, folder: Path = BUILD) -> Path:
    """The compiled random model of ``config`` (compiled once, then reused)."""
    path = Path(folder) / f"{config}-s{seed}.sfm"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "model.compiler", "--random", config,
                        "--seed", str(seed), "--out", str(path)], check=True, cwd=str(REPO),
                       stdout=subprocess.DEVNULL)
    return path


def check_model(model: Path, n: int = 4, sim: str = "verilator", shards: int = 2,
                lanes: int = 8, out: Path | None = None) -> dict:
    """Generate, build and simulate ``model`` on n bundled images; the comparison summary."""
    from hw.generate import generate
    from model.golden import run_batched
    from model.modelfile import CompiledModel

    from .run import (
        build,
        compare,
        debug_image,
        default_maxcycles,
        load_images,
        simulate,
        summarize,
    )

    gen = Path(out) if out else Path(model).with_suffix("")
    cm = CompiledModel.load(model)
    t0 = time.perf_counter()
    generate(model, gen, lanes=lanes)
    plan = json.loads((gen / "plan.json").read_text())
    bdir = build(gen, sim)
    t_build = time.perf_counter() - t0
    images, labels, _ = load_images(None, n)
    golden = run_batched(cm, images, 64)
    maxcycles = default_maxcycles(cm, images[0], lanes)
    run = simulate(gen, bdir, sim, images, gen / f"run_{sim}", shards=shards,
                   maxcycles=maxcycles)
    cmp = compare(plan, golden, run)
    s = summarize(plan, run, golden, labels, cmp)
    s.update(model=str(model), build_s=t_build, mismatches=cmp["mismatched_images"],
             uncounted_list=cmp["uncounted"])
    if cmp["mismatched_images"]:
        idx = min(cmp["mismatched_images"])
        s["first_difference"], _ = debug_image(cm, plan, gen, bdir, sim, images[idx], idx,
                                               gen / f"run_{sim}", maxcycles)
    return s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.random_models", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-n", type=int, default=4)
    p.add_argument("--sim", default="verilator")
    args = p.parse_args(argv)
    bad = 0
    for config in args.configs:
        t0 = time.perf_counter()
        s = check_model(random_model(config, args.seed), args.n, args.sim)
        ok = not s["mismatched_images"] and not s["uncounted"]
        bad += not ok
        print(f"{config}: {'OK' if ok else 'MISMATCH'}: {s['images']} images, "
              f"{s['mismatched_images']} mismatching, {s['uncounted']} uncounted, "
              f"{s['cycles_mean']:,.0f} cycles/image, SOPs/(P x cycles) {s['utilization']:.3f}, "
              f"{time.perf_counter() - t0:.0f} s")
        for idx, items in sorted(s["mismatches"].items())[:3]:
            print(f"  image {idx}: {'; '.join(items[:4])}")
        for u in s["uncounted_list"][:5]:
            print(f"  uncounted: {u}")
        if s.get("first_difference"):
            print(f"  {s['first_difference']}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
