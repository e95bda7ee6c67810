"""On-chip memory budget of a compiled model on an FPGA board: the accelerator's memories.

    python -m model.budget --model models/default.sfm --board arty_a7_35 [--lanes 8]
    python -m model.budget --config spikingformer-2-64-w5 spikingformer-3-64-w4 ...

``--config`` compiles each named config with random weights (needs torch) and tabulates which
fit: the memories depend on shapes and weight width; trained weights change only the
accumulator widths of the stream, biases and thresholds a little.

The memories are exactly those hw/top.py builds for the model (``hw.program.memory_specs``,
plain Python: no HDL toolchain needed): weights, biases and thresholds in rows of P lanes, the
head's weights, the image, the spike maps in four banks (allocated by liveness, time step
innermost so no membrane or current buffer), the residual stream, the counters and the
attention unit's K^T V scratch. Shallow memories (<= 640 words) are LUT RAM; the others are
block RAM, counted as yosys maps them or a little more (``hw.program.MemorySpec.bram36``): a
memory with a write port in the aspect ratio that needs the fewest BRAM18 / BRAM36 halves, a
ROM in column slices of different ratios. A model fits a board when the block RAM leaves the
required spare (15 % by default).
"""

from __future__ import annotations

import argparse
import math
import sys

from .modelfile import CompiledModel

BOARDS = {  # BRAM36 count of the part
    "arty_a7_35": 50,   # XC7A35T: 20,800 LUT, 41,600 FF, 50 BRAM36 (225 KB), 90 DSP48
    "arty_a7_100": 135,  # XC7A100T
}


class BudgetError(ValueError):
    pass


def buffers(cm: CompiledModel, lanes: int = 8):
    """The accelerator's memories for this model (``hw.program.MemorySpec``: name, width,
    depth, style, bytes, bram36, lutram)."""
    from hw.program import PlanError, build_plan, memory_specs

    try:
        return memory_specs(build_plan(cm, lanes=lanes))
    except PlanError as e:
        raise BudgetError(f"The accelerator cannot run this model: {e}") from None


def allowed_bram36(board: str, spare: float = 0.15) -> int:
    """Most BRAM36 a model may use on ``board`` and leave ``spare`` of its block RAM free."""
    return math.floor(BOARDS[board] * (1 - spare))


def check(cm: CompiledModel, board: str, lanes: int = 8, spare: float = 0.15):
    """(buffers, total BRAM36, allowed); raises BudgetError when the model does not fit."""
    if board not in BOARDS:
        raise BudgetError(f"Unknown board {board!r}; known: {', '.join(BOARDS)}")
    bufs = buffers(cm, lanes)
    total = sum(b.bram36 for b in bufs)
    allowed = allowed_bram36(board, spare)
    if total > allowed:
        worst = sorted(bufs, key=lambda b: -b.bram36)[:3]
        raise BudgetError(
            f"Model does not fit {board}: needs {total:g} BRAM36, {allowed} allowed "
            f"(the board's {BOARDS[board]} less {spare:.0%} kept spare), "
            f"over by {total - allowed:g}; largest: "
            + ", ".join(f"{b.name} {b.bram36:g} ({b.bytes:,} B)" for b in worst))
    return bufs, total, allowed


def table(bufs, board: str) -> str:
    rows = ["| memory | contents | width (bits) | depth | bytes | kind | BRAM36 | LUTs |",
            "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    rows += [f"| {b.name} | {b.contents} | {b.width} | {b.depth:,} | {b.bytes:,} | "
             f"{'block RAM' if b.style == 'block' else 'LUT RAM'} | {b.bram36:g} | "
             f"{b.lutram:,} |" for b in bufs]
    total = sum(b.bram36 for b in bufs)
    rows.append(f"| total | | | | {sum(b.bytes for b in bufs):,} | | {total:g} of "
                f"{BOARDS[board]} ({total / BOARDS[board]:.0%}) | "
                f"{sum(b.lutram for b in bufs):,} |")
    return "\n".join(rows)


def compare(names: list[str], board: str, lanes: int = 8, spare: float = 0.15) -> str:
    """Which configs fit the board: each compiled with random weights (seed 0)."""
    from .compiler import build_model, compile_model, randomize
    from .config import get_config

    allowed = allowed_bram36(board, spare)
    rows = [f"| config | weights | weight bits | weights BRAM36 | design BRAM36 | fits "
            f"({allowed} allowed) |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name in names:
        cfg = get_config(name)
        cm = compile_model(randomize(build_model(cfg), 0, batches=1, batch_size=4),
                           {"source": "random seed 0"})
        bufs = buffers(cm, lanes)
        total = sum(b.bram36 for b in bufs)
        fit = "yes" if total <= allowed else f"no (over by {total - allowed:g})"
        rows.append(f"| {cfg.name} | {cm.weight_count:,} | {cfg.weight_bits} | "
                    f"{next(b.bram36 for b in bufs if b.name == 'weights'):g} | {total:g} | "
                    f"{fit} |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.budget", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a compiled model file")
    src.add_argument("--config", nargs="+", metavar="CONFIG",
                     help="config names (model.config), compiled with random weights")
    p.add_argument("--board", default="arty_a7_35", choices=sorted(BOARDS))
    p.add_argument("--lanes", type=int, default=8)
    p.add_argument("--spare", type=float, default=0.15)
    args = p.parse_args(argv)
    if args.config:
        try:
            print(compare(args.config, args.board, args.lanes, args.spare))
        except (BudgetError, ValueError, KeyError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    cm = CompiledModel.load(args.model)
    try:
        bufs = buffers(cm, args.lanes)
        print(table(bufs, args.board))
        _, total, allowed = check(cm, args.board, args.lanes, args.spare)
        print(f"fits {args.board}: {total:g} of {allowed} allowed BRAM36")
    except BudgetError as e:
        print(str(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from model.cli import run

    run(lambda: sys.exit(main()))  # bad input: one error line
