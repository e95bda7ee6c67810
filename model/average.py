"""Average the weights of several checkpoints of one run (stochastic weight averaging).

    python -m model.average --checkpoints runs/spikingformer-2-64/snapshots/epoch_5{5..9}.pt \\
        runs/spikingformer-2-64/snapshots/epoch_60.pt --out runs/spikingformer-2-64/avg.pt

Learned parameters are averaged with equal weight. Batch-norm statistics of an average are not
the average of the statistics, so by default (``--bn measure``) they are measured again: the
averaged network runs over training images (no augmentation, no gradient) in training mode with
a cumulative moving average. ``--bn average`` instead averages the running statistics the
training kept (measured on augmented images), which serves when the checkpoints lie close
together, as the last epochs of a cosine schedule do. The result is tested on the test set in
float mode and written as a checkpoint that ``model.train --qat --init`` and ``model.release``
take like any other; it records which checkpoints it averages (path, epoch, sha256) and the
accuracy of each, so the gain is seen.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import build_model
from .config import Config
from .data import load_split, shown
from .train import Dist, evaluate, load_checkpoint


def _is_bn_stat(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")


def average_states(states: list[dict], names: list[str], stats: bool = False) -> dict:
    """Equal-weight mean of the learned tensors. Batch-norm running means and variances are
    averaged too with ``stats``, else taken from the first state (to be measured again); the
    batch counts always come from the first. Refuses states whose tensors do not line up."""
    keys = set(states[0])
    for s, n in zip(states[1:], names[1:], strict=True):
        if set(s) != keys:
            diff = sorted(keys ^ set(s))[:3]
            raise ValueError(f"{n} holds other tensors than {names[0]} (e.g. {diff})")
        for k in keys:
            if s[k].shape != states[0][k].shape:
                raise ValueError(f"{n}: {k} has shape {tuple(s[k].shape)}, "
                                 f"{names[0]} has {tuple(states[0][k].shape)}")
    out = {}
    for k, v in states[0].items():
        if not v.is_floating_point() or (_is_bn_stat(k) and not stats):
            out[k] = v.clone()
        else:
            out[k] = torch.stack([s[k].to(torch.float64) for s in states]).mean(0).to(v.dtype)
    return out


@torch.no_grad()
def recalibrate_bn(model, images: np.ndarray, batch: int = 128, progress: bool = True) -> int:
    """Measure every batch norm's statistics again on ``images`` (cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in tqdm(range(0, len(images), batch), desc="batch-norm statistics", leave=False,
                  disable=not progress, file=sys.stderr):
        model(torch.from_numpy(images[i:i + batch]).float(), mode="float")
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.eval()
    return len(bns)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m model.average", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=None, help="CIFAR-10 folder or npz (default ../shared)")
    p.add_argument("--bn", choices=("measure", "average"), default="measure",
                   help="batch-norm statistics: measure them again on training images "
                        "(default) or average those the checkpoints hold")
    p.add_argument("--bn-images", type=int, default=10000,
                   help="training images for the batch-norm statistics (default 10,000)")
    p.add_argument("--limit-test", type=int, default=0, help="test on the first N images only")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if len(args.checkpoints) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    if args.threads:
        torch.set_num_threads(args.threads)
    cks = [load_checkpoint(c) for c in args.checkpoints]
    cfg = cks[0]["config"]
    for c, ck in zip(args.checkpoints[1:], cks[1:], strict=True):
        if ck["config"] != cfg:
            raise ValueError(f"{c} is a {Config.from_dict(ck['config']).name}, "
                             f"{args.checkpoints[0]} a {Config.from_dict(cfg).name}: "
                             f"only checkpoints of one network can be averaged")
    model = build_model(Config.from_dict(cfg))
    model.load_state_dict(average_states([ck["model"] for ck in cks], args.checkpoints,
                                         stats=args.bn == "average"))

    bn_images = None
    if args.bn == "measure":
        train_x, _ = load_split(args.data, "train")
        if args.bn_images <= 0:
            raise ValueError("--bn-images must be positive")
        pick = np.random.default_rng(0).permutation(len(train_x))[:args.bn_images]
        recalibrate_bn(model, train_x[np.sort(pick)], progress=not args.no_progress)
        bn_images = len(pick)

    test_x, test_y = load_split(args.data, "test")
    if args.limit_test:
        test_x, test_y = test_x[:args.limit_test], test_y[:args.limit_test]
    acc, loss = evaluate(model, test_x, test_y, 256, Dist(), "float", not args.no_progress)
    sources = [{"path": shown(c), "epoch": ck.get("epoch"), "test_acc": ck.get("test_acc"),
                "sha256": hashlib.sha256(Path(c).read_bytes()).hexdigest()}
               for c, ck in zip(args.checkpoints, cks, strict=True)]
    last = max(cks, key=lambda ck: ck.get("epoch") or 0)
    out = {"model": model.state_dict(), "config": cfg, "epoch": last.get("epoch"),
           "args": last.get("args"), "test_acc": acc, "test_images": len(test_x),
           "averaged": sources, "bn": args.bn, "bn_images": bn_images}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, args.out)
    report = {"out": shown(args.out), "test_acc": acc, "test_loss": loss,
              "test_images": len(test_x), "bn": args.bn,
              "averaged": [{k: s[k] for k in ("path", "epoch", "test_acc")} for s in sources]}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    from model.cli import run

    run(main)
