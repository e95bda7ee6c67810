"""What the residual stream's shared scale costs at each weight width, and what would recover it.

    python bench/residual_scale.py --checkpoint runs/spikingformer-2-64/best.pt [--bits 4 5 6]
                                   [-n 1000]

Every layer that writes the residual stream (the tokenizer's last conv, each block's attention
projection and second MLP conv) shares one scale per channel, so that the stream adds their
integers as they are (docs/memory_budget.md, the integer contract in README.md). The largest
writer sets that scale; the others keep only part of the integer range
(``python -m model.compiler --errors`` shows how much). This script rounds the weights of a
float checkpoint (batch norm folded, no fine-tuning) four ways and prints the float network's
accuracy on the first n CIFAR-10 test images with each:

- ``shared``: the writers at the stream's shared scale, every other conv at its own
  per-channel scales (what the compiler does);
- ``shift per layer``: each writer at the shared scale divided by a power of two, the largest
  that keeps its integers in range (one per layer), so that its sums enter the stream
  shifted left, without a multiply;
- ``shift per channel``: the same power of two chosen per output channel;
- ``own``: the writers at their own per-channel scales, as if the stream could rescale them
  (it would need a multiply per element; a bound, not a design).

Only weights are rounded; thresholds, biases and the head stay real, and the neurons run in
float, so the figures isolate the weights' rounding.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model import build_model, quant  # noqa: E402
from model.config import Config  # noqa: E402
from model.data import load_split  # noqa: E402
from model.release import float_accuracy  # noqa: E402
from model.train import load_checkpoint  # noqa: E402

WAYS = ("shared", "shift per layer", "shift per channel", "own")


def conv_bn_pairs(model):
    """(conv, bn, input scale or None) of every conv followed by batch norm."""
    pe = getattr(model, "patch_embed", None)
    for mod in model.modules():
        for name, conv in mod.named_children():
            bn = getattr(mod, name.removesuffix("_conv") + "_bn", None) \
                if name.endswith("_conv") else None
            if bn is not None:
                first = mod is pe and name == "block0_conv"
                yield conv, bn, pe.pixel_scale.double() if first else None


@torch.no_grad()
def round_weights(model, way: str):
    """Replace every conv's weights by their rounded values, the writers' scales chosen
    ``way`` (one of WAYS); returns the model."""
    bits = model.cfg.weight_bits
    top = quant.qmax(bits)
    writers = {id(c) for c, _ in model.residual_writers()}
    shared = model.residual_scale().double()
    for conv, bn, in_scale in list(conv_bn_pairs(model)):
        w, _ = quant.fold_bn(conv.weight, conv.bias, bn)
        if in_scale is not None:
            w = w * in_scale.reshape(1, -1, *([1] * (w.dim() - 2)))
        most = quant.channel_max(w).double()
        scale = None
        if id(conv) in writers and way != "own":
            scale = shared
            if way != "shared":  # 2^k: the largest that keeps max |w| / scale within range
                k = torch.floor(torch.log2(top * shared / most.clamp(min=1e-30)) + 1e-9)
                k = k.clamp(min=0)
                scale = shared / 2 ** (k.min() if way == "shift per layer" else k)
        wq, _, s = quant.affine_int(w, torch.zeros(len(w), dtype=torch.float64), bits, 32,
                                    scale)
        shape = (-1,) + (1,) * (w.dim() - 1)
        real = wq * s.reshape(shape)
        if in_scale is not None:
            real = real / in_scale.reshape(1, -1, *([1] * (w.dim() - 2)))
        gain = (bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)).reshape(shape)
        conv.weight.copy_(torch.where(gain != 0, real / gain, torch.zeros_like(real)).float())
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a float training checkpoint")
    p.add_argument("--bits", type=int, nargs="+", default=[4, 5, 6])
    p.add_argument("-n", type=int, default=1000, help="first n test images")
    p.add_argument("--data", default=None, help="CIFAR-10 (default ../shared/data/cifar10)")
    args = p.parse_args(argv)

    ck = load_checkpoint(args.checkpoint)
    images, labels = load_split(args.data, "test")
    images, labels = images[:args.n], labels[:args.n]
    base = Config.from_dict(ck["config"])

    def network(bits):
        m = build_model(Config.from_dict({**base.to_dict(), "weight_bits": bits}))
        m.load_state_dict(ck["model"])
        return m.eval()

    if not hasattr(network(base.weight_bits), "residual_writers"):
        raise SystemExit(f"{base.name} has no residual stream of integer currents to share "
                         f"a scale")
    print(f"{args.checkpoint} (epoch {ck.get('epoch')}), {base.name}; float accuracy on the "
          f"first {len(images)} test images, weights rounded, no fine-tuning; unrounded: "
          f"{100 * float_accuracy(network(base.weight_bits), images, labels):.1f} %\n")
    print("| weight bits | " + " | ".join(WAYS) + " |")
    print("| ---: |" + " ---: |" * len(WAYS))
    for bits in args.bits:
        accs = [float_accuracy(round_weights(network(bits), way), images, labels)
                for way in WAYS]
        print(f"| {bits} | " + " | ".join(f"{100 * a:.1f} %" for a in accs) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
