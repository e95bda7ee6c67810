"""On-chip memory budget of a compiled model on an FPGA board.

    python -m model.budget --model models/default.sfm --board arty_a7_35 [--lanes 8]

The accelerator keeps everything on chip and runs layer by layer with the time step innermost
(a neuron's T currents are summed, then its LIF runs over T in registers), so no membrane or
current buffer is needed. What must be stored:

| buffer | contents | shape |
| --- | --- | --- |
| weights | every conv, linear and head weight, in rows of P lanes | P x w bits wide, sum over layers of ceil(Co / P) x Ci x k^2 rows |
| biases | one per output channel | bias_bits wide (the widest layer's), sum of Co deep |
| thresholds | one per LIF channel | the widest membrane, sum of C deep |
| image | the input image | 8-bit pixels |
| spikes | the spike maps alive at the same time, T bits per neuron | the largest live set over the program |
| stream | the residual stream, T values per token and channel | the widest stream value |
| attention | K^T V (or Q K^T) of one head and one time step | its integer width |

Each buffer maps onto BRAM36 primitives in the aspect ratio that needs the fewest (32K x 1 ...
512 x 72). A model fits a board when the total leaves the required spare (15 % by default).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

from .modelfile import CompiledModel

BOARDS = {  # BRAM36 count of the part
    "arty_a7_35": 50,   # XC7A35T: 20,800 LUT, 41,600 FF, 50 BRAM36 (225 KB), 90 DSP48
    "arty_a7_100": 135,  # XC7A100T
}
BRAM36_SHAPES = ((1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024),
                 (72, 512))


class BudgetError(ValueError):
    pass


def bram36(width: int, depth: int) -> int:
    """Fewest BRAM36 that hold ``depth`` words of ``width`` bits."""
    if width <= 0 or depth <= 0:
        return 0
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in BRAM36_SHAPES)


@dataclass
class Buffer:
    name: str
    width: int  # bits per word
    depth: int  # words

    @property
    def bytes(self) -> int:
        return math.ceil(self.width * self.depth / 8)

    @property
    def brams(self) -> int:
        return bram36(self.width, self.depth)


def buffers(cm: CompiledModel, lanes: int = 8) -> list[Buffer]:
    cfg = cm.config
    T = cfg["T"]
    ops = {op["name"]: op for op in cm.program}
    weight_rows = bias_words = theta_words = 0
    bias_bits = theta_bits = stream_bits = attn_bits = 2
    for op in cm.program:
        if op["op"] in ("conv", "head"):
            w = cm.tensors[op["tensors"]["weight"]]
            Co, Ci = w.shape[:2]
            k2 = w.shape[2] * w.shape[3] if w.ndim == 4 else 1
            weight_rows += math.ceil(Co / lanes) * Ci * k2
            bias_words += Co
            bias_bits = max(bias_bits, int(abs(cm.tensors[op["tensors"]["bias"]]).max())
                            .bit_length() + 1)
        if op["op"] == "lif":
            theta_words += len(cm.tensors[op["tensors"]["theta"]])
            theta_bits = max(theta_bits, op["mem_bits"])
        if op["op"] == "add":
            stream_bits = max(stream_bits, op["bits"])
        if op["op"] == "attention":
            attn_bits = max(attn_bits, int(op["inner_bound"]).bit_length() + 1)

    def size(name):  # neurons of a spike map
        C, H, W = ops[name]["shape"] if "shape" in ops[name] else _shape(cm, name)
        return C * H * W

    # Spike maps alive together: a conv's input while it writes its output's LIF spikes
    # (a max pool is applied as the spikes are written); q, k, v with their input until the
    # attention has read them.
    live = 0
    for op in cm.program:
        if op["op"] == "conv" and op["input"] == "spikes":
            src = op["inputs"][0]  # a LIF's or a max pool's map
            out = _consumer_spikes(cm, op["name"])
            live = max(live, size(src) + (size(out) if out else 0))
        if op["op"] == "attention":
            qkv = sum(size(i) for i in op["inputs"])
            q_src = ops[ops[op["inputs"][0]]["inputs"][0]]["inputs"][0]  # q_lif <- q <- input
            live = max(live, qkv + size(q_src) + size(op["name"]))
    D, N = cfg["dim"], (cfg["img_size"] // 4) ** 2
    attn = next((op for op in cm.program if op["op"] == "attention"), None)
    d = attn["head_dim"] if attn else 0
    return [
        Buffer("weights", lanes * cfg["weight_bits"], weight_rows),
        Buffer("biases", bias_bits, bias_words),
        Buffer("thresholds", theta_bits, theta_words),
        Buffer("image", 8 * cfg["in_channels"], cfg["img_size"] ** 2),
        Buffer("spikes", 72, math.ceil(T * live / 72)),
        Buffer("stream", stream_bits * T, D * N),
        Buffer("attention", attn_bits * d, d),
    ]


def _shape(cm, name):
    for op in cm.program:
        if op["name"] == name:
            if "shape" in op:
                return op["shape"]
            return _shape(cm, op["inputs"][0])
    raise BudgetError(f"unknown layer {name!r}")


def _consumer_spikes(cm, conv_name):
    """The spike map written from a conv's output: its LIF, pooled if a max pool follows."""
    lif = next((op["name"] for op in cm.program
                if op["op"] == "lif" and op["inputs"] == [conv_name]), None)
    if lif is None:
        return None
    pool = next((op["name"] for op in cm.program
                 if op["op"] == "maxpool" and op["inputs"] == [lif]), None)
    return pool or lif


def check(cm: CompiledModel, board: str, lanes: int = 8, spare: float = 0.15):
    """(buffers, total BRAM36, allowed); raises BudgetError when the model does not fit."""
    if board not in BOARDS:
        raise BudgetError(f"Unknown board {board!r}; known: {', '.join(BOARDS)}")
    bufs = buffers(cm, lanes)
    total = sum(b.brams for b in bufs)
    allowed = math.floor(BOARDS[board] * (1 - spare))
    if total > allowed:
        worst = sorted(bufs, key=lambda b: -b.brams)[:3]
        raise BudgetError(
            f"Model does not fit {board}: needs {total} BRAM36, {allowed} allowed "
            f"({BOARDS[board]} with {spare:.0%} spare), over by {total - allowed}; largest: "
            + ", ".join(f"{b.name} {b.brams} ({b.bytes:,} B)" for b in worst))
    return bufs, total, allowed


def table(bufs: list[Buffer], board: str) -> str:
    rows = ["| buffer | width (bits) | depth | bytes | BRAM36 |", "| --- | ---: | ---: | ---: | ---: |"]
    rows += [f"| {b.name} | {b.width} | {b.depth:,} | {b.bytes:,} | {b.brams} |" for b in bufs]
    total = sum(b.brams for b in bufs)
    rows.append(f"| total | | | {sum(b.bytes for b in bufs):,} | {total} of {BOARDS[board]} "
                f"({total / BOARDS[board]:.0%}) |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.budget", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--board", default="arty_a7_35", choices=sorted(BOARDS))
    p.add_argument("--lanes", type=int, default=8)
    p.add_argument("--spare", type=float, default=0.15)
    args = p.parse_args(argv)
    cm = CompiledModel.load(args.model)
    bufs = buffers(cm, args.lanes)
    print(table(bufs, args.board))
    try:
        _, total, allowed = check(cm, args.board, args.lanes, args.spare)
        print(f"fits {args.board}: {total} of {allowed} allowed BRAM36")
    except BudgetError as e:
        print(str(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
