"""A non-spiking CIFAR-10 teacher for knowledge distillation (``model.train --teacher``).

    python -m model.teacher --out runs/teacher-w32 --width 32 --epochs 20
    python -m model.teacher --out runs/teacher-w32 --resume             # go on where it stopped
    python -m model.train --teacher runs/teacher-w32/best.pt ...          # distil into a student

A small residual CNN (four stages of 3x3 conv -> BN -> ReLU at widths w, 2w, 4w, 8w, max
pooling between them, a residual pair of convs after the second and the fourth stage, global
max pool, a linear head), trained with SGD (Nesterov), a cosine schedule with linear warm-up,
label smoothing and the students' crop + flip. It reads raw pixels 0..255 like the students,
so a batch goes to both as it is. Checkpoints are written per epoch (``last.pt``, ``best.pt``,
``log.jsonl``) and hold the width, so ``load_teacher`` rebuilds the network from the file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .config import CIFAR_MEAN, CIFAR_STD
from .data import augment, load_split
from .train import Dist, _explicit, evaluate, load_checkpoint, lr_at, save_atomic


def _cbr(cin: int, cout: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_cbr(c, c), _cbr(c, c))

    def forward(self, x):
        return x + self.body(x)


class Teacher(nn.Module):
    """Residual CNN of width ``width`` (channels w, 2w, 4w, 8w) on raw pixels 0..255."""

    def __init__(self, width: int = 32, num_classes: int = 10):
        super().__init__()
        if width < 8:
            raise ValueError(f"Teacher width must be at least 8, not {width}")
        w = width
        self.width = w
        self.net = nn.Sequential(
            _cbr(3, w),
            _cbr(w, 2 * w, pool=True), Residual(2 * w),
            _cbr(2 * w, 4 * w, pool=True),
            _cbr(4 * w, 8 * w, pool=True), Residual(8 * w),
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(8 * w, num_classes, bias=False)
        self.register_buffer("mean", 255 * torch.tensor(CIFAR_MEAN).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", 255 * torch.tensor(CIFAR_STD).reshape(1, 3, 1, 1),
                             persistent=False)

    def forward(self, img: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        # ``mode`` is accepted for model.train.evaluate; a teacher has only one.
        if mode not in (None, "float"):
            raise ValueError(f"A teacher runs in float only, not {mode!r}")
        x = (img.float() - self.mean) / self.std
        return self.head(self.net(x)) * 0.125


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint of ``python -m model.teacher`` (refuses any other file)."""
    return load_checkpoint(path, needs=("model", "teacher"),
                           kind="a teacher checkpoint (written by python -m model.teacher)")


def load_teacher(path: str | Path) -> Teacher:
    """The teacher in a checkpoint of ``python -m model.teacher``, in eval mode, frozen."""
    ck = read_checkpoint(path)
    t = Teacher(**ck["teacher"])
    t.load_state_dict(ck["model"])
    t.eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.teacher", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--out", default="runs/teacher", help="run folder")
    p.add_argument("--width", type=int, default=32, help="channels of the first stage")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up epochs")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--data", default=None, help="CIFAR-10 folder or file (default ../shared)")
    p.add_argument("--limit-train", type=int, default=0, help="use only the first N images")
    p.add_argument("--limit-test", type=int, default=0, help="evaluate only the first N images")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: cores)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> float:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    state = None
    if args.resume:
        state = read_checkpoint(out / "last.pt")
        given = _explicit(argv)  # options on the command line win (e.g. a longer --epochs)
        if "width" in given and args.width != state["args"]["width"]:
            raise ValueError(f"--resume: {out / 'last.pt'} is a width-{state['args']['width']} "
                             f"teacher, not width {args.width}")
        for k in ("width", "epochs", "batch_size", "lr", "wd", "warmup", "label_smoothing",
                  "seed", "limit_train", "limit_test", "data"):
            if k not in given:
                setattr(args, k, state["args"][k])
    torch.manual_seed(args.seed)
    model = Teacher(args.width).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                          weight_decay=args.wd)
    start, best = 0, -1.0
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, best = state["epoch"], state["best"]
        print(f"resumed {out / 'last.pt'} at epoch {start}/{args.epochs}, best {best:.4f}",
              file=sys.stderr)
    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "test")
    if args.limit_train:
        train_x, train_y = train_x[:args.limit_train], train_y[:args.limit_train]
    if args.limit_test:
        test_x, test_y = test_x[:args.limit_test], test_y[:args.limit_test]
    steps = len(train_x) // args.batch_size
    if steps == 0:
        raise ValueError(f"{len(train_x)} training images are fewer than one batch "
                         f"({args.batch_size})")
    total, warm = steps * args.epochs, int(args.warmup * steps)
    out.mkdir(parents=True, exist_ok=True)
    acc = best
    for epoch in range(start, args.epochs):
        model.train()
        g = torch.Generator().manual_seed(args.seed * 100003 + epoch)
        perm = torch.randperm(len(train_x), generator=g).numpy()
        seen = correct = loss_sum = 0.0
        t0 = time.time()
        bar = tqdm(range(steps), desc=f"teacher epoch {epoch + 1}/{args.epochs}",
                   disable=args.no_progress, file=sys.stderr)
        for i in bar:
            for grp in opt.param_groups:
                grp["lr"] = lr_at(epoch * steps + i, total, warm, args.lr, 0.0)
            b = perm[i * args.batch_size:(i + 1) * args.batch_size]
            x = augment(torch.from_numpy(train_x[b]), g).float().contiguous(
                memory_format=torch.channels_last)
            y = torch.from_numpy(train_y[b])
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(b)
            loss_sum += loss.item() * len(b)
            correct += float((logits.argmax(1) == y).sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        acc, test_loss = evaluate(model, test_x, test_y, 500, Dist(), "float",
                                  not args.no_progress)
        rec = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "test_acc": acc, "test_loss": test_loss, "lr": opt.param_groups[0]["lr"],
               "seconds": round(time.time() - t0, 1), "images": int(seen),
               "test_images": len(test_x)}
        print(json.dumps(rec), file=sys.stderr)
        with open(out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        ck = {"model": model.state_dict(), "optimizer": opt.state_dict(),
              "teacher": {"width": args.width}, "epoch": epoch + 1, "args": vars(args),
              "best": max(best, acc), "test_acc": acc}
        if acc > best:
            best = acc
            save_atomic(ck, out / "best.pt")
        save_atomic(ck, out / "last.pt")
    return acc


if __name__ == "__main__":
    from model.cli import run

    run(main)
