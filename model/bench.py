"""Throughput of the model side: golden model, torch float and torch integer mode.

    python -m model.bench --config spikingformer-2-64 --images 256
    python -m model.bench --model models/default.sfm --checkpoint runs/x/best.pt

Prints images per second for each path on this machine (batch 64 unless --batch), with the
thread count torch used. Random weights (same shapes) unless a checkpoint is given: the golden
model and torch run dense arithmetic, so their speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from . import build_model, get_config
from .compiler import compile_model, randomize
from .golden import run


def _rate(fn, images: np.ndarray, batch: int) -> float:
    fn(images[:batch])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(images), batch):
        fn(images[i:i + batch])
    return len(images) / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="spikingformer-2-64")
    p.add_argument("--checkpoint", default=None, help="a training checkpoint to measure")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--skip-int", action="store_true", help="skip the torch integer mode")
    args = p.parse_args(argv)
    if args.checkpoint:
        from .train import model_from_checkpoint
        model, _ = model_from_checkpoint(args.checkpoint)
    else:
        model = randomize(build_model(get_config(args.config)), 0)
    model.eval()
    cm = compile_model(model)
    images = np.random.default_rng(0).integers(0, 256, (args.images, 3, 32, 32), np.uint8)

    def torch_fn(mode, dtype):
        def fn(x):
            with torch.no_grad():
                return model(torch.from_numpy(x).to(dtype), mode=mode)
        return fn

    print(f"config {model.cfg.name}, T={model.cfg.T}, {args.images} images, batch {args.batch}, "
          f"torch threads {torch.get_num_threads()}, cores {os.cpu_count()}")
    rows = [("golden model (numpy, integer)", _rate(lambda x: run(cm, x), images, args.batch)),
            ("torch float (eval)", _rate(torch_fn("float", torch.float32), images, args.batch))]
    if not args.skip_int:
        rows.append(("torch integer mode (float64)",
                     _rate(torch_fn("int", torch.float64), images, args.batch)))
    for name, r in rows:
        print(f"{name:32s} {r:8.1f} images/s")
    return dict(rows)


if __name__ == "__main__":
    from model.cli import run

    run(main)
