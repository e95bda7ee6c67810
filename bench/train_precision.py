"""Training in bfloat16 convs (model.train --bf16) against float32: speed, gradients, accuracy.

    python bench/train_precision.py [--checkpoint runs/spikingformer-2-64/best.pt] [--threads 1]
                                    [--batches 3] [-n 1000]

From one trained float checkpoint, prints:

- the time of a training step (64 augmented training images, forward, backward, AdamW) with
  float32 convs and with bfloat16 ones, best of three rounds of four steps;
- how far the bfloat16 gradient is from the float32 one on the same batch (cosine of the whole
  parameter gradient), beside two yardsticks: the float32 gradient of the same batch with its
  pixels perturbed by 1e-7 and by 1e-3 relative (a spiking network's surrogate gradient moves
  with every spike that flips), and the float32 gradient of the next batch (the noise of
  minibatch training itself);
- the float network's accuracy on the first n test images evaluated both ways.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from model import build_model  # noqa: E402
from model.config import Config  # noqa: E402
from model.data import augment, crop_fill, load_split  # noqa: E402
from model.layers import conv_precision  # noqa: E402
from model.lif import compile_loops  # noqa: E402
from model.train import Dist, evaluate, load_checkpoint  # noqa: E402

BATCH = 64


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(REPO / "runs/spikingformer-2-64/best.pt"),
                   help="a float training checkpoint")
    p.add_argument("--data", default=None, help="CIFAR-10 folder or file (default ../shared)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", type=int, default=3, help="batches to compare gradients on")
    p.add_argument("-n", type=int, default=1000, help="first n test images")
    p.add_argument("--no-compile", action="store_true", help="eager LIF loops")
    args = p.parse_args(argv)
    if args.batches < 1 or args.n < 1:
        p.error("--batches and -n must be at least 1")

    torch.set_num_threads(args.threads)
    if not args.no_compile:
        compile_loops(True)
    ck = load_checkpoint(args.checkpoint)
    cfg = Config.from_dict(ck["config"])
    net = build_model(cfg).to(memory_format=torch.channels_last)
    net.load_state_dict(ck["model"])
    train_x, train_y = load_split(args.data, "train")
    gen = torch.Generator().manual_seed(0)
    fill = crop_fill(net)

    def batch(i):
        b = np.arange(i * BATCH, (i + 1) * BATCH)
        x = augment(torch.from_numpy(train_x[b]), gen, fill=fill).to(
            torch.float32, memory_format=torch.channels_last)
        return x, torch.from_numpy(train_y[b])

    print(f"{cfg.name} from {args.checkpoint} (epoch {ck.get('epoch')}), "
          f"{args.threads} thread(s)")

    # Step time: on a copy, so the gradients below see the checkpoint's weights.
    work = copy.deepcopy(net).train()
    opt = torch.optim.AdamW(work.parameters(), lr=1e-4)
    x, y = batch(0)

    def step(dtype):
        with conv_precision(dtype):
            out = work(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = {}
    for name, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
        step(dtype)
        step(dtype)  # compiled loops and allocator warm
        rounds = []
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(4):
                step(dtype)
            rounds.append((time.perf_counter() - t) / 4)
        times[name] = min(rounds)
    print(f"\ntraining step ({BATCH} images): float32 convs {times['float32']:.3f} s, "
          f"bfloat16 convs {times['bfloat16']:.3f} s "
          f"({times['float32'] / times['bfloat16']:.2f}x)")

    net.train()
    state = copy.deepcopy(net.state_dict())

    def grad(xb, yb, dtype=None):
        net.zero_grad(set_to_none=True)
        with conv_precision(dtype):
            out = net(xb)
        F.cross_entropy(out, yb, label_smoothing=0.1).backward()
        net.load_state_dict(state)  # batch norm's running statistics as they were
        return torch.cat([q.grad.flatten() for q in net.parameters()])

    def cos(a, b):
        return float(F.cosine_similarity(a, b, dim=0))

    noise = torch.Generator().manual_seed(1)

    def perturbed(xb, eps):
        r = torch.randn(xb.shape, generator=noise)
        return (xb * (1 + eps * r)).contiguous(memory_format=torch.channels_last)

    print("\ncosine to the float32 gradient of the same batch:")
    print("| batch | bfloat16 convs | pixels x (1 + 1e-7 noise) | pixels x (1 + 1e-3 noise) "
          "| the next batch (float32) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for i in range(args.batches):
        (xa, ya), (xb, yb) = batch(2 * i), batch(2 * i + 1)
        g = grad(xa, ya)
        row = (cos(g, grad(xa, ya, torch.bfloat16)), cos(g, grad(perturbed(xa, 1e-7), ya)),
               cos(g, grad(perturbed(xa, 1e-3), ya)), cos(g, grad(xb, yb)))
        rows.append(row)
        print(f"| {2 * i} | " + " | ".join(f"{c:.3f}" for c in row) + " |")
    print("| mean | " + " | ".join(f"{c:.3f}" for c in np.mean(rows, axis=0)) + " |")

    test_x, test_y = load_split(args.data, "test")
    test_x, test_y = test_x[:args.n], test_y[:args.n]
    accs = {}
    for name, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
        with conv_precision(dtype):
            accs[name] = evaluate(net, test_x, test_y, 250, Dist(), "float", progress=False)
    print(f"\nfirst {len(test_x)} test images, float network: float32 convs "
          f"{accs['float32'][0]:.2%} (loss {accs['float32'][1]:.4f}), bfloat16 convs "
          f"{accs['bfloat16'][0]:.2%} (loss {accs['bfloat16'][1]:.4f})")


if __name__ == "__main__":
    main()
