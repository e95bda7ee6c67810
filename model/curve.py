"""Training curves: test accuracy per epoch of training runs, against the goal.

    python -m model.curve --runs runs/spikingformer-2-64 runs/spikformer-2-64 \\
        --out docs/training/curve.png

Reads each run's ``log.jsonl`` (one line per epoch, written by ``model.train``) and plots the
test accuracy per epoch (with the number of test images it was measured on), the learning
rate on a second axis, and, as horizontal lines, the integer accuracy of the bundled models on
the 10,000 test images (``models/*.json``) and the goal. Prints the table it plotted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data import REPO, shown


def read_log(run: str | Path) -> list[dict]:
    """The epochs of a run, in order; a clear error for a folder without a readable log."""
    log = Path(run) / "log.jsonl"
    if not log.exists():
        raise FileNotFoundError(f"No training log at {log}")
    rows = []
    for n, line in enumerate(log.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            int(row["epoch"]), float(row["test_acc"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{log}, line {n}: not an epoch record ({e})") from None
        rows.append(row)
    if not rows:
        raise ValueError(f"{log} holds no epochs yet")
    return sorted(rows, key=lambda r: r["epoch"])


def planned_epochs(run: str | Path) -> int | None:
    """The schedule's length, from the run's latest checkpoint (the cosine spans it)."""
    last = Path(run) / "last.pt"
    if not last.exists():
        return None
    from .train import load_checkpoint

    return int(load_checkpoint(last)["args"]["epochs"])


def bundled(models_dir: Path = REPO / "models") -> dict[str, float]:
    """Integer accuracy on the 10,000 test images of each bundled model with a manifest."""
    out = {}
    for f in sorted(models_dir.glob("*.json")):
        t = json.loads(f.read_text()).get("cifar10_test") or {}
        if t.get("images") == 10000:
            out[f.stem] = float(t["accuracy_int"])
    return out


def table(runs: dict[str, list[dict]]) -> str:
    lines = ["| run | epoch | test acc (%) | test images | mode | lr |",
             "| --- | ---: | ---: | ---: | --- | ---: |"]
    for name, rows in runs.items():
        lines += [f"| {name} | {r['epoch']} | {100 * r['test_acc']:.2f} | "
                  f"{r.get('test_images', '?'):,} | {r.get('eval_mode', '?')} | "
                  f"{r.get('lr', float('nan')):.2e} |" for r in rows]
    return "\n".join(lines)


def plot(runs: dict[str, list[dict]], marks: dict[str, float], goal: float | None, out: Path,
         planned: int | None = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    lr_ax = ax.twinx()
    for name, rows in runs.items():
        ep = [r["epoch"] for r in rows]
        line, = ax.plot(ep, [100 * r["test_acc"] for r in rows], "o-", ms=3,
                        label=f"{name} ({rows[-1].get('eval_mode', '?')}, "
                              f"{rows[-1].get('test_images', 0):,} test images)")
        if all("lr" in r for r in rows):
            lr_ax.plot(ep, [r["lr"] for r in rows], ":", color=line.get_color(), alpha=0.6)
    for i, (name, acc) in enumerate(marks.items()):
        ax.axhline(100 * acc, color=f"C{i + len(runs)}", lw=1, ls="--",
                   label=f"models/{name}.sfm, integer: {100 * acc:.2f} %")
    if goal is not None:
        ax.axhline(100 * goal, color="k", lw=1, label=f"goal {100 * goal:.0f} %")
    if planned:
        ax.set_xlim(0, planned + 1)
    ax.set_xlabel("epoch" + (f" (of the {planned}-epoch schedule)" if planned else ""))
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    lr_ax.set_ylabel("learning rate (dotted)")
    lr_ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("training curves")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict[str, list[dict]]:
    p = argparse.ArgumentParser(prog="python -m model.curve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="run folders (with log.jsonl)")
    p.add_argument("--out", default=str(REPO / "docs" / "training" / "curve.png"))
    p.add_argument("--goal", type=float, default=0.86, help="accuracy goal line (0..1)")
    p.add_argument("--no-bundled", action="store_true",
                   help="leave out the bundled models' accuracy lines")
    args = p.parse_args(argv)
    runs = {shown(r).removeprefix("runs/"): read_log(r) for r in args.runs}
    marks = {} if args.no_bundled else bundled()
    plot(runs, marks, args.goal, Path(args.out),
         max((planned_epochs(r) or 0 for r in args.runs), default=0) or None)
    print(table(runs))
    print(f"wrote {shown(args.out)}", file=sys.stderr)
    return runs


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
