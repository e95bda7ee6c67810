"""Classify CIFAR-10 images with the golden model of a compiled model file.

    python -m model.infer                                  # bundled model, bundled 256 images
    python -m model.infer --model m.sfm --data ../shared/data/cifar10 -n 10000
    python -m model.infer --images a.png b.png             # your own 32x32 RGB images

Prints accuracy (when labels are known), per-image activity (SOPs, MACs, spikes) and the
golden model's throughput on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .data import BUNDLED_TEST, CLASSES, REPO, load_split
from .golden import run_batched
from .modelfile import CompiledModel

DEFAULT_MODEL = REPO / "models" / "default.sfm"


def load_images(paths: list[str]) -> np.ndarray:
    from matplotlib.image import imread

    out = []
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"{p}: no such image file")
        try:
            a = imread(p)
        except (OSError, SyntaxError) as e:  # Pillow's "not an image" errors are OSErrors
            raise ValueError(f"{p}: not an image file this can read ({e})") from None
        if a.dtype != np.uint8:  # PNGs come as floats in 0..1
            a = np.round(a * 255).astype(np.uint8)
        if a.ndim != 3 or a.shape[:2] != (32, 32) or a.shape[2] not in (3, 4):
            raise ValueError(f"{p}: a CIFAR image is 32x32 RGB, not {list(a.shape)}")
        out.append(a[:, :, :3])
    return np.stack(out)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", default=None, help="npz file or CIFAR-10 folder (test split)")
    src.add_argument("--images", nargs="+", help="PNG files, 32x32 RGB")
    p.add_argument("-n", type=int, default=0, help="first n images only")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print one JSON summary line")
    args = p.parse_args(argv)
    cm = CompiledModel.load(args.model)
    if args.images:
        images, labels = load_images(args.images), None
    else:
        images, labels = load_split(args.data or BUNDLED_TEST, "test")
    if args.n < 0:
        raise ValueError(f"-n must be positive, not {args.n}")
    if args.n:
        images = images[:args.n]
        labels = labels[:args.n] if labels is not None else None
    t0 = time.perf_counter()
    res = run_batched(cm, images, args.batch, progress=not args.json)
    dt = time.perf_counter() - t0
    summary = {"model": str(args.model), "config": cm.config, "images": len(images),
               "images_per_s": round(len(images) / dt, 2),
               "sops_per_image": float(res.total("sops").mean()),
               "macs_per_image": float(res.total("macs").mean()),
               "spikes_per_image": float(res.total("spikes_out").mean())}
    if labels is not None:
        summary["accuracy"] = float((res.classes == labels).mean())
    if args.json:
        print(json.dumps(summary))
        return summary
    name = cm.meta.get("name", Path(args.model).stem)
    print(f"model {name}: {cm.config['arch']}-{cm.config['depth']}-{cm.config['dim']}, "
          f"T={cm.config['T']}, {cm.config['weight_bits']}-bit weights")
    if args.images:
        for path, c, lg in zip(args.images, res.classes, res.logits, strict=True):
            print(f"  {path}: {CLASSES[c]} (logits {lg.tolist()})")
    print(f"images           {len(images)}")
    if labels is not None:
        print(f"accuracy         {summary['accuracy'] * 100:.2f} %  "
              f"({int((res.classes == labels).sum())}/{len(images)})")
    print(f"SOPs / image     {summary['sops_per_image']:,.0f}")
    print(f"MACs / image     {summary['macs_per_image']:,.0f}")
    print(f"spikes / image   {summary['spikes_per_image']:,.0f}")
    print(f"golden model     {summary['images_per_s']:.1f} images/s", file=sys.stderr)
    return summary


if __name__ == "__main__":
    from model.cli import run

    run(main)
