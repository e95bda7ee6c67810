"""Compile a training checkpoint into a bundled model with its manifest.

    python -m model.release --checkpoint runs/spikingformer-2-64/best.pt --name default

Writes ``models/<name>.sfm``, its weights ``models/<name>.pt`` and ``models/<name>.json``:
config, the source checkpoint and its training settings, the file's sha256, the board whose
on-chip memory it fits, and accuracies measured here: torch float and the integer golden model
on the full CIFAR-10 test set (when ``--data`` has it) and on the bundled 256 images.

A model that does not fit the board (``--board``, default the Arty A7-35T, with 15 % of the
block RAM spare: ``model.budget``) is refused before anything is written, with what is over and
by how much.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .compiler import compile_model
from .data import BUNDLED_TEST, REPO, load_split, shown
from .golden import run_batched
from .modelfile import CompiledModel
from .train import model_from_checkpoint


@torch.no_grad()
def float_accuracy(model, images, labels, batch=256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        out = model(torch.from_numpy(images[i:i + batch]).float(), mode="float")
        correct += int((out.argmax(1).numpy() == labels[i:i + batch]).sum())
    return correct / len(images)


def _command(a: dict) -> str:
    """The model.train command line of a checkpoint's arguments (the options that differ
    from the defaults)."""
    from .train import parse_args

    defaults = vars(parse_args([]))
    parts = ["python -m model.train"]
    for k, v in sorted(a.items()):
        if k in ("resume", "no_progress", "threads", "eval_only") or v == defaults.get(k):
            continue
        flag = "--" + k.replace("_", "-")
        parts.append(flag if v is True else f"{flag} {v}")
    return " ".join(parts)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--name", default="default")
    p.add_argument("--data", default=None, help="CIFAR-10 with the full test split")
    p.add_argument("-n", type=int, default=0, help="evaluate the first n test images only")
    p.add_argument("--out-dir", default=str(REPO / "models"))
    p.add_argument("--board", default="arty_a7_35",
                   help="refuse a model that does not fit this board (model.budget); 'none': "
                        "no check")
    args = p.parse_args(argv)
    model, ck = model_from_checkpoint(args.checkpoint)
    cm = compile_model(model, {"name": args.name})
    fits = None
    if args.board != "none":
        from .budget import BudgetError, check

        try:
            _, total, allowed = check(cm, args.board)
        except BudgetError as e:
            raise SystemExit(f"error: {e}; nothing written") from None
        fits = {"board": args.board, "bram36": total, "allowed_bram36": allowed}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = cm.save(out / f"{args.name}.sfm")
    # The weights it came from, without optimizer state, so the compile can be checked later.
    weights = out / f"{args.name}.pt"
    torch.save({k: ck[k] for k in ("model", "config", "epoch", "args", "init_from") if k in ck},
               weights)
    cm = CompiledModel.load(out / f"{args.name}.sfm")
    manifest = {
        "name": args.name, "config": cm.config, "sha256": digest,
        "checkpoint": shown(weights), "trained_from": shown(Path(args.checkpoint)),
        "epoch": ck.get("epoch"),
        "training": {k: ck["args"].get(k) for k in ("config", "epochs", "lr", "wd",
                                                      "batch_size", "seed", "qat", "init",
                                                      "weight_bits", "residual_shift",
                                                      "label_smoothing",
                                                      "warmup")},
        "training_command": _command(ck["args"]),
        "init_from": ck.get("init_from"),
        "weights": cm.weight_count,
        "fits": fits,
    }
    sets = [("bundled_256", BUNDLED_TEST)]
    try:
        load_split(args.data, "test")
        sets.insert(0, ("cifar10_test" if not args.n else f"cifar10_test_first_{args.n}",
                        args.data))
    except FileNotFoundError as e:
        print(f"full test set not found ({e}); bundled images only", file=sys.stderr)
    for key, src in sets:
        x, y = load_split(src, "test")
        if args.n and key.startswith("cifar10_test"):
            x, y = x[:args.n], y[:args.n]
        res = run_batched(cm, x, 64, progress=True)
        acc_int = float((res.classes == y).mean())
        acc_float = float_accuracy(model, x, y)
        manifest[key] = {"images": len(x), "accuracy_int": acc_int, "accuracy_float": acc_float,
                         "gap_points": round((acc_float - acc_int) * 100, 2),
                         "correct_int": int((res.classes == y).sum()),
                         "sops_per_image": float(res.total("sops").mean()),
                         "classes_sha256": hashlib.sha256(
                             res.classes.astype(np.int64).tobytes()).hexdigest()}
        print(f"{key}: {len(x)} images, float {acc_float * 100:.2f} %, integer "
              f"{acc_int * 100:.2f} %", file=sys.stderr)
    (out / f"{args.name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))
    return manifest


if __name__ == "__main__":
    from model.cli import run

    run(main)
