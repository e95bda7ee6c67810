"""Train a Spikingformer / Spikformer on CIFAR-10.

    python -m model.train --config spikingformer-2-64 --epochs 60 --out runs/spikingformer-2-64
    python -m model.train --out runs/spikingformer-2-64 --resume          # go on where it stopped
    torchrun --nproc_per_node 2 -m model.train ...                         # DDP, no code change
    python -m model.train --qat --init runs/x/best.pt --epochs 5 ...       # integer-mode fine-tune

AdamW, cosine schedule with linear warm-up (per step), label smoothing, random crop + flip;
``--teacher`` adds knowledge distillation from a network of ``python -m model.teacher``.
A checkpoint (``last.pt``) is written atomically after every epoch, ``best.pt`` when the test
accuracy improves, and one JSON line per epoch goes to ``log.jsonl``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from . import build_model
from .config import Config, get_config
from .data import augment, crop_fill, load_split
from .layers import conv_precision


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--config", default="spikingformer-2-64", help="config name (model.config)")
    p.add_argument("--data", default=None, help="CIFAR-10 folder or file (default ../shared)")
    p.add_argument("--out", default=None, help="run folder (default runs/<config>)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up epochs")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--init", default=None, help="start from these weights (a checkpoint)")
    p.add_argument("--weight-bits", type=int, default=None,
                   help="weight width of the integer mode (default: the config's)")
    p.add_argument("--residual-shift", type=int, default=None,
                   help="largest left shift of a residual-stream writer (default: the config's; "
                        "0: one shared scale)")
    p.add_argument("--qat", action="store_true",
                   help="train in integer mode (BN folded and frozen, integer weights via STE)")
    p.add_argument("--eval-only", action="store_true")
    p.add_argument("--eval-mode", choices=("float", "int"), default=None,
                   help="mode for evaluation (default: int with --qat, else float)")
    p.add_argument("--limit-train", type=int, default=0, help="use only the first N images")
    p.add_argument("--limit-test", type=int, default=0, help="evaluate only the first N images")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: cores)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="run the LIF loops as kernels from torch.compile (needs a C++ "
                        "compiler; a training step of spikingformer-2-64 about 1.5x faster, "
                        "1.27 s -> 0.85 s on one thread)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                   help="training steps compute the convs in bfloat16 (batch norm, neurons, "
                        "attention and the stream stay float32; evaluation is all float32): "
                        "a training step of spikingformer-2-64 1.2-1.35x faster on a CPU "
                        "with bfloat16 instructions (avx512_bf16 or AMX), 1.2-1.9x slower "
                        "on one without, where they are emulated (bench/train_parallel.py; "
                        "model.train warns). A resumed run keeps its setting unless "
                        "--bf16 or --no-bf16 is given; the integer mode (--qat) ignores it")
    p.add_argument("--teacher", default=None,
                   help="distil from this teacher (a checkpoint of python -m model.teacher)")
    p.add_argument("--kd-alpha", type=float, default=0.5,
                   help="weight of the distillation term (the label loss gets 1 - alpha)")
    p.add_argument("--kd-temperature", type=float, default=4.0,
                   help="softmax temperature of the distillation term")
    p.add_argument("--snapshots", action="store_true",
                   help="also keep every epoch's weights as <out>/snapshots/epoch_N.pt "
                        "(for model.average)")
    return p.parse_args(argv)


class Dist:
    """Rank and world size from torchrun's environment; single process otherwise."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        self.device = torch.device(
            f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available()
            else "cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, *values: float) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        if self.enabled:
            dist.all_reduce(t)
        return t.tolist()

    def close(self):
        if self.enabled:
            # every rank waits for the others (rank 0 may still be writing checkpoints) before
            # the gloo connections close: a rank that tore down first aborted its process
            dist.barrier()
            dist.destroy_process_group()


def native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU computes bfloat16 natively (avx512_bf16 or AMX), from /proc/cpuinfo's
    flags; None where there is no such file to read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    if not flags:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def lr_at(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, p)))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float):
    """KL(teacher || student) of the temperature-softened class distributions, times T^2 (so
    its gradient keeps its size as T changes), averaged over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1),
                    reduction="batchmean", log_target=True) * t * t


def save_atomic(obj, path: Path):
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, needs: tuple[str, ...] = ("model", "config"),
                    kind: str = "a training checkpoint of this project") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ImportError,
            AttributeError) as e:  # not torch.save's, cut short, or another project's classes
        raise ValueError(f"{path} cannot be read as {kind}: torch.load says {e}") from None
    if not isinstance(ck, dict) or any(k not in ck for k in needs):
        raise ValueError(f"{path} is not {kind} (needs "
                         f"{' and '.join(repr(k) for k in needs)})")
    return ck


def model_from_checkpoint(path: str | Path):
    ck = load_checkpoint(path)
    model = build_model(Config.from_dict(ck["config"]))
    model.load_state_dict(ck["model"])
    return model, ck


def set_qat(model, on: bool):
    """Integer mode with BN statistics frozen (BN layers in eval mode; they are folded)."""
    model.mode = "int" if on else "float"
    if on:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


@torch.no_grad()
def evaluate(model, images, labels, batch_size, dev: Dist, mode: str, progress=True):
    model.eval()
    idx = np.arange(dev.rank, len(images), dev.world)
    correct = loss = 0.0
    dtype = torch.float64 if mode == "int" else torch.float32
    bar = tqdm(range(0, len(idx), batch_size), desc=f"eval ({mode})", leave=False,
               disable=not (progress and dev.main), file=sys.stderr)
    for i in bar:
        b = idx[i:i + batch_size]
        x = torch.from_numpy(images[b]).to(dev.device, dtype)
        y = torch.from_numpy(labels[b]).to(dev.device)
        out = model(x, mode=mode)
        loss += float(F.cross_entropy(out.float(), y, reduction="sum"))
        correct += float((out.argmax(1) == y).sum())
    correct, loss, n = dev.sum(correct, loss, len(idx))
    return correct / n, loss / n


def main(argv=None):
    args = parse_args(argv)
    dev = Dist()
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // dev.world))
    if args.compile:
        from .lif import compile_loops

        compile_loops(True)
    out = Path(args.out or f"runs/{args.config}")
    state = None
    if args.resume:
        state = load_checkpoint(out / "last.pt")
        cfg = Config.from_dict(state["config"])
        saved = state["args"]
        for k in ("epochs", "lr", "min_lr", "wd", "warmup", "label_smoothing", "batch_size",
                  "qat", "seed", "limit_train", "limit_test", "data", "eval_mode", "teacher",
                  "kd_alpha", "kd_temperature", "bf16"):
            if k in saved and k not in _explicit(argv):
                setattr(args, k, saved[k])
    elif args.init:
        cfg = Config.from_dict(load_checkpoint(args.init)["config"])
    else:
        cfg = get_config(args.config)
    if args.weight_bits and not state:
        cfg = Config.from_dict({**cfg.to_dict(), "weight_bits": args.weight_bits})
    if args.residual_shift is not None and not state:
        cfg = Config.from_dict({**cfg.to_dict(), "residual_shift": args.residual_shift})
    eval_mode = args.eval_mode or ("int" if args.qat else "float")
    if args.bf16 and args.qat:
        if "bf16" in _explicit(argv):
            raise ValueError("--bf16 does nothing with --qat: the integer mode computes in "
                             "float64")
        args.bf16 = False  # inherited from a resumed float run: the integer mode has no use
    if args.bf16 and dev.device.type == "cpu" and native_bf16() is False and dev.main:
        print("warning: --bf16 on a CPU without bfloat16 instructions (no avx512_bf16 or "
              "amx_bf16 in /proc/cpuinfo): its convs are emulated, a training step 1.2-1.9x "
              "slower than with --no-bf16 (bench/train_parallel.py)", file=sys.stderr)

    torch.manual_seed(args.seed)
    model = build_model(cfg).to(dev.device, memory_format=torch.channels_last)
    init_from = state.get("init_from") if state else None
    if args.init and not state:
        init = load_checkpoint(args.init)
        model.load_state_dict(init["model"])
        # Which weights these were: the file at --init may later hold another epoch.
        init_from = {"path": str(args.init), "epoch": init.get("epoch"),
                     "test_acc": init.get("test_acc"),
                     "sha256": hashlib.sha256(Path(args.init).read_bytes()).hexdigest()}
    teacher, teacher_from = None, state.get("teacher_from") if state else None
    if args.teacher:
        if not 0.0 < args.kd_alpha <= 1.0:
            raise ValueError(f"--kd-alpha must be in (0, 1], not {args.kd_alpha}")
        if args.kd_temperature <= 0:
            raise ValueError(f"--kd-temperature must be positive, not {args.kd_temperature}")
        from .teacher import load_teacher

        teacher = load_teacher(args.teacher).to(dev.device)
        digest = hashlib.sha256(Path(args.teacher).read_bytes()).hexdigest()
        if teacher_from and teacher_from["sha256"] != digest:
            raise ValueError(f"--resume: the teacher at {args.teacher} is not the one this run "
                             f"started with (sha256 {teacher_from['sha256'][:12]}..., now "
                             f"{digest[:12]}...)")
        teacher_from = {"path": str(args.teacher), "sha256": digest}
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    start_epoch, best = 0, -1.0
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, best = state["epoch"], state.get("best", 0.0)
        if dev.main:
            print(f"resumed {out / 'last.pt'} at epoch {start_epoch}/{args.epochs}, "
                  f"best {best:.4f}", file=sys.stderr)

    test_x, test_y = load_split(args.data, "test")
    if args.limit_test:
        test_x, test_y = test_x[:args.limit_test], test_y[:args.limit_test]
    if args.eval_only:
        acc, loss = evaluate(model, test_x, test_y, args.batch_size, dev, eval_mode,
                             not args.no_progress)
        if dev.main:
            print(json.dumps({"config": cfg.name, "mode": eval_mode, "test_acc": acc,
                              "test_loss": loss, "images": len(test_x)}))
        dev.close()
        return acc

    train_x, train_y = load_split(args.data, "train")
    if args.limit_train:
        train_x, train_y = train_x[:args.limit_train], train_y[:args.limit_train]
    net = model
    if dev.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model)
    fill = crop_fill(model)
    steps_per_epoch = len(train_x) // (args.batch_size * dev.world)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_x)} training images are fewer than one batch "
                         f"({args.batch_size} x {dev.world} processes)")
    total = steps_per_epoch * args.epochs
    warm = int(args.warmup * steps_per_epoch)
    if dev.main:
        out.mkdir(parents=True, exist_ok=True)
    acc = best
    paces = []  # seconds per epoch in this process
    _training[0] = True
    for epoch in range(start_epoch, args.epochs):
        net.train()
        set_qat(model, args.qat)
        # The epoch's order depends on seed and epoch only, so a resumed run sees the same data.
        g = torch.Generator().manual_seed(args.seed * 100003 + epoch)
        perm = torch.randperm(len(train_x), generator=g).numpy()
        perm = perm[:steps_per_epoch * args.batch_size * dev.world]
        mine = perm[dev.rank::dev.world]
        seen = correct = loss_sum = 0.0
        t0 = time.time()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}",
                   disable=not dev.main or args.no_progress, file=sys.stderr)
        for i in bar:
            step = epoch * steps_per_epoch + i
            for grp in opt.param_groups:
                grp["lr"] = lr_at(step, total, warm, args.lr, args.min_lr)
            b = mine[i * args.batch_size:(i + 1) * args.batch_size]
            x = augment(torch.from_numpy(train_x[b]), g, fill=fill).to(
                dev.device, torch.float32, memory_format=torch.channels_last)
            y = torch.from_numpy(train_y[b]).to(dev.device)
            with conv_precision(torch.bfloat16 if args.bf16 else None):
                out_ = net(x)
            loss = F.cross_entropy(out_, y, label_smoothing=args.label_smoothing)
            if teacher is not None:
                with torch.no_grad():
                    soft = teacher(x)
                loss = (1 - args.kd_alpha) * loss + args.kd_alpha * distillation_loss(
                    out_, soft, args.kd_temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(b)
            loss_sum += loss.item() * len(b)
            correct += float((out_.argmax(1) == y).sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            lr=f"{opt.param_groups[0]['lr']:.2e}")
        correct, loss_sum, seen = dev.sum(correct, loss_sum, seen)
        acc, test_loss = evaluate(model, test_x, test_y, 256, dev, eval_mode,
                                  not args.no_progress)
        if dev.main:
            rec = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                   "test_acc": acc, "test_loss": test_loss, "eval_mode": eval_mode,
                   "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1),
                   "images": int(seen), "test_images": len(test_x)}
            print(json.dumps(rec), file=sys.stderr)
            paces.append(rec["seconds"])
            left = args.epochs - (epoch + 1)
            rest = eta(left * sum(paces) / len(paces))
            print(f"epoch {epoch + 1}/{args.epochs}: test {acc:.2%} (best {max(best, acc):.2%})"
                  + (f"; {left} epoch{'s' * (left > 1)} left, about {rest} at this session's "
                     f"pace" if left else "; done"), file=sys.stderr)
            with open(out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            ck = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                  "config": cfg.to_dict(), "epoch": epoch + 1, "args": vars(args),
                  "best": max(best, acc), "test_acc": acc}
            if init_from:
                ck["init_from"] = init_from
            if teacher_from:
                ck["teacher_from"] = teacher_from
            if acc > best:
                best = acc
                save_atomic(ck, out / "best.pt")
            save_atomic(ck, out / "last.pt")
            if args.snapshots:
                (out / "snapshots").mkdir(exist_ok=True)
                save_atomic({k: v for k, v in ck.items() if k != "optimizer"},
                            out / "snapshots" / f"epoch_{epoch + 1}.pt")
    dev.close()
    return acc


# Whether main() has reached its epochs: errors before that are the user's input.
_training = [False]


def eta(seconds: float) -> str:
    """A duration as a person reads it: '40 min', '3.2 h'."""
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _explicit(argv) -> set[str]:
    """Option names given on the command line (they win over a resumed run's settings);
    --no-X counts as X."""
    argv = sys.argv[1:] if argv is None else argv
    names = {a[2:].split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}
    return names | {n[3:] for n in names if n.startswith("no_")}


if __name__ == "__main__":
    from model.cli import run

    run(main, keep_traceback=lambda: _training[0])
