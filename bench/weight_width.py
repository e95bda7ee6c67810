"""Weight width against on-chip memory and accuracy: which widths a trained network fits with.

    python bench/weight_width.py --checkpoint runs/spikingformer-2-64/best.pt [--bits 4 5 6 8]
                                 [-n 1000] [--board arty_a7_35]

Compiles one float checkpoint at each weight width (post-training quantization: BN folded,
per-channel scales, rounding; no fine-tuning) and prints per width: the weight memory and the
whole design's block RAM (``model.budget``, the memories hw/top.py builds), whether it fits the
board with 15 % spare, and the integer golden model's accuracy on the first n CIFAR-10 test
images, next to the float network's on the same images. Quantization-aware fine-tuning
(``model.train --qat``) recovers most of what rounding loses; this table says how much there is
to recover and what each extra bit costs in BRAM36.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model import build_model, golden  # noqa: E402
from model.budget import BOARDS, allowed_bram36, buffers  # noqa: E402
from model.compiler import compile_model  # noqa: E402
from model.config import Config  # noqa: E402
from model.data import load_split  # noqa: E402
from model.release import float_accuracy  # noqa: E402
from model.train import load_checkpoint  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a float training checkpoint")
    p.add_argument("--bits", type=int, nargs="+", default=[4, 5, 6, 8])
    p.add_argument("-n", type=int, default=1000, help="first n test images")
    p.add_argument("--data", default=None, help="CIFAR-10 (default ../shared/data/cifar10)")
    p.add_argument("--board", default="arty_a7_35", choices=sorted(BOARDS))
    p.add_argument("--spare", type=float, default=0.15)
    args = p.parse_args(argv)

    ck = load_checkpoint(args.checkpoint)
    images, labels = load_split(args.data, "test")
    images, labels = images[:args.n], labels[:args.n]
    allowed = allowed_bram36(args.board, args.spare)
    base = Config.from_dict(ck["config"])

    model = build_model(base)
    model.load_state_dict(ck["model"])
    acc_float = float_accuracy(model, images, labels)
    print(f"{args.checkpoint} (epoch {ck.get('epoch')}), {base.name}; first {len(images)} test "
          f"images; {args.board}: {BOARDS[args.board]} BRAM36, {allowed} allowed "
          f"({args.spare:.0%} spare)\n")
    print("| weight bits | weights BRAM36 | design BRAM36 | fits | integer acc (PTQ) | "
          "float acc | loss (points) |")
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for bits in args.bits:
        cfg = Config.from_dict({**base.to_dict(), "weight_bits": bits})
        m = build_model(cfg)
        m.load_state_dict(ck["model"])
        cm = compile_model(m)
        bufs = buffers(cm)
        total = sum(b.bram36 for b in bufs)
        wram = sum(b.bram36 for b in bufs if b.name == "weights")
        fits = "yes" if total <= allowed else f"no (over by {total - allowed:g})"
        acc = float(np.mean(golden.run_batched(cm, images).classes == labels))
        print(f"| {bits} | {wram:g} | {total:g} | {fits} | {100 * acc:.1f} % | "
              f"{100 * acc_float:.1f} % | {100 * (acc_float - acc):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
