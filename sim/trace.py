"""Spike maps from the accelerator's write trace, and the first difference from the golden model.

The wrapper (``+TRACE=<file>``) logs every spike-memory write as ``<instr> <addr> <data hex>``,
with a line ``# image <index>`` before each image. The plan's ``writes`` entry of an
instruction says which golden layer's map it writes and where: map [T, C, H, W] at address
``base + ((t*H + y)*W + x)*nwords + w``, channel c in word ``c // word_width``, bit
``c % word_width`` (the map's own ``word_width`` if its entry has one, else the plan's).
Pure Python and numpy: no simulator needed.

    traces = parse_trace(path)                       # image index -> [(instr, addr, data)]
    maps = rebuild_maps(plan, traces[i])             # layer -> RebuiltMap
    diff = first_difference(plan, maps, golden)      # golden: layer -> uint8 [T, C, H, W]
    print(format_difference(diff))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class RebuiltMap:
    layer: str
    instructions: list[int]
    spikes: np.ndarray  # uint8 [T, C, H, W], unwritten words read as 0
    written: np.ndarray  # bool [T, H, W, nwords]: the word was written at least once
    writes: int = 0  # trace lines that landed in the map
    stray: list[tuple[int, int]] = field(default_factory=list)  # (instr, addr) outside the map


def parse_trace(path: str | Path) -> dict[int, list[tuple[int, int, int]]]:
    """Trace lines per image: image index -> [(instr, addr, data)] in write order."""
    out: dict[int, list[tuple[int, int, int]]] = {}
    cur: list | None = None
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line[1:].split()
            if len(parts) == 2 and parts[0] == "image":
                cur = out.setdefault(int(parts[1]), [])
                cur.clear()  # a rerun of the same image replaces the earlier one
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(f"{path}:{n}: expected '<instr> <addr> <data hex>', got {line!r}")
        if cur is None:
            cur = out.setdefault(-1, [])  # writes before any image marker
        try:
            cur.append((int(parts[0]), int(parts[1]), int(parts[2], 16)))
        except ValueError:
            raise ValueError(f"{path}:{n}: not a trace line: {line!r}") from None
    return out


def map_instructions(plan: dict) -> dict[str, list[dict]]:
    """Golden layer -> the instructions that write its map, in program order."""
    out: dict[str, list[dict]] = {}
    for ins in sorted(plan["instructions"], key=lambda i: i["index"]):
        if ins.get("writes"):
            out.setdefault(ins["writes"]["layer"], []).append(ins)
    return out


def map_word_width(plan: dict, m: dict) -> int:
    """Bits per word of a planned map: its own ``word_width`` or the plan's."""
    return int(m.get("word_width") or plan["word_width"])


def rebuild_maps(plan: dict, writes: list[tuple[int, int, int]]) -> dict[str, RebuiltMap]:
    """Every written spike map of one image from its trace (the last write of a word wins)."""
    by_instr = {ins["index"]: ins for ins in plan["instructions"] if ins.get("writes")}
    maps: dict[str, RebuiltMap] = {}
    words: dict[str, np.ndarray] = {}
    for layer, inss in map_instructions(plan).items():
        m = inss[0]["writes"]
        T, C, H, W, nw = m["steps"], m["channels"], m["height"], m["width"], m["nwords"]
        maps[layer] = RebuiltMap(layer, [i["index"] for i in inss],
                                 np.zeros((T, C, H, W), np.uint8),
                                 np.zeros((T, H, W, nw), bool))
        ww = map_word_width(plan, m)
        words[layer] = np.zeros((T, H, W, nw), dtype=np.uint64 if ww <= 64 else object)
    for instr, addr, data in writes:
        ins = by_instr.get(instr)
        if ins is None:
            continue  # an instruction that writes no golden map (scratch, stream)
        m = ins["writes"]
        rm = maps[m["layer"]]
        T, H, W, nw = m["steps"], m["height"], m["width"], m["nwords"]
        rel = addr - m["base"]
        if not 0 <= rel < T * H * W * nw:
            rm.stray.append((instr, addr))
            continue
        w, pos = rel % nw, rel // nw
        x, y, t = pos % W, (pos // W) % H, pos // (H * W)
        words[m["layer"]][t, y, x, w] = data
        rm.written[t, y, x, w] = True
        rm.writes += 1
    for layer, rm in maps.items():
        T, C, H, W = rm.spikes.shape
        wd = words[layer]
        ww = map_word_width(plan, by_instr[rm.instructions[0]]["writes"])
        for c in range(C):
            w, b = divmod(c, ww)
            if w >= wd.shape[3]:
                break
            bit = wd[..., w] >> (np.uint64(b) if wd.dtype == np.uint64 else b)
            rm.spikes[:, c] = (bit & (np.uint64(1) if wd.dtype == np.uint64 else 1)) \
                .astype(np.uint8)
    return maps


def stream_values(program: list[dict], spikes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The integer maps of adds of spike maps (Spikformer's stream), from the golden spike maps
    (any leading axes), in program order: layer -> int64 array."""
    vals: dict[str, np.ndarray] = dict(spikes)
    out = {}
    for op in program:
        if op["op"] == "add" and all(i in vals for i in op["inputs"]):
            vals[op["name"]] = out[op["name"]] = sum(vals[i].astype(np.int64)
                                                     for i in op["inputs"])
    return out


def golden_planes(program: list[dict], plan: dict,
                  spikes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The golden maps as the plan stores them: spike maps, and integer maps as bit planes
    ([T, B x C, H, W], channel b * C + c = bit b of channel c) for the maps of B > 1 planes."""
    planes = {i["writes"]["layer"]: i["writes"].get("planes", 1)
              for i in plan["instructions"] if i["writes"]}
    out = dict(spikes)
    for layer, v in stream_values(program, spikes).items():
        if planes.get(layer, 1) > 1:
            out[layer] = np.concatenate([((v >> b) & 1).astype(np.uint8)
                                         for b in range(planes[layer])], axis=-3)
    return out


def first_difference(plan: dict, maps: dict[str, RebuiltMap],
                     golden: dict[str, np.ndarray]) -> dict:
    """The first layer (program order) whose rebuilt map differs from the golden one.

    Within the layer, the first difference is the earliest time step, then row, column and
    channel. Returns a dict: ``equal`` (layers that matched, in order), ``unchecked`` (written
    maps without a golden map, golden maps the plan never writes) and, if a difference was
    found, ``layer``, ``instructions``, ``t``, ``channel``, ``y``, ``x``, ``rtl``, ``golden``,
    ``written`` (was the word ever written), ``bits`` (differing bits in the layer),
    ``positions`` (differing (t, y, x)), ``stray`` (writes outside the map's address range).
    """
    order = list(map_instructions(plan))
    result: dict = {"equal": [], "unchecked": [], "layer": None}
    for layer in order:
        rm = maps.get(layer)
        if rm is None or layer not in golden:
            result["unchecked"].append(layer)
            continue
        g = np.asarray(golden[layer], dtype=np.uint8)
        if g.shape != rm.spikes.shape:
            result.update(layer=layer, instructions=rm.instructions, shape_rtl=rm.spikes.shape,
                          shape_golden=g.shape, stray=rm.stray)
            return result
        diff = rm.spikes != g  # [T, C, H, W]
        if not diff.any() and not rm.stray:
            result["equal"].append(layer)
            continue
        if not diff.any():  # equal bits, but writes went astray
            result.update(layer=layer, instructions=rm.instructions, stray=rm.stray, bits=0,
                          positions=0)
            return result
        t, c, y, x = min(zip(*np.nonzero(diff), strict=True),
                         key=lambda p: (p[0], p[2], p[3], p[1]))
        nw = rm.written.shape[3]
        ww = map_word_width(plan, next(i for i in plan["instructions"]
                                       if i["index"] == rm.instructions[0])["writes"])
        result.update(layer=layer, instructions=rm.instructions, t=int(t), channel=int(c),
                      y=int(y), x=int(x), rtl=int(rm.spikes[t, c, y, x]), golden=int(g[t, c, y, x]),
                      written=bool(rm.written[t, y, x, min(c // ww, nw - 1)]),
                      bits=int(diff.sum()), positions=int(diff.any(axis=1).sum()),
                      stray=rm.stray)
        return result
    result["unchecked"] += [n for n in golden if n not in maps]
    return result


def format_difference(d: dict) -> str:
    """One paragraph for a person: which layer, where, what."""
    if d.get("layer") is None:
        msg = f"all {len(d['equal'])} traced spike maps equal the golden model"
        if d["unchecked"]:
            msg += f" (not compared: {', '.join(d['unchecked'])})"
        return msg
    where = f"layer {d['layer']} (instruction {', '.join(map(str, d['instructions']))})"
    before = (f"; the {len(d['equal'])} layers before it are equal" if d["equal"]
              else "; it is the first map written")
    if "shape_rtl" in d:
        return f"first difference: {where}: map shape {d['shape_rtl']} vs golden " \
               f"{d['shape_golden']}{before}"
    if not d.get("bits"):
        return (f"first difference: {where}: {len(d['stray'])} writes outside the map "
                f"(first: instruction {d['stray'][0][0]}, address {d['stray'][0][1]}){before}")
    text = (f"first difference: {where}, time step t={d['t']}, channel {d['channel']}, "
            f"position (y, x) = ({d['y']}, {d['x']}): RTL {d['rtl']}, golden {d['golden']}"
            f"{'' if d['written'] else ' (the RTL never wrote this word)'}; "
            f"{d['bits']} bits differ at {d['positions']} (t, y, x) positions in this layer"
            f"{before}")
    if d["stray"]:
        text += f"; {len(d['stray'])} writes outside the map"
    return text


def encode_writes(plan: dict, spikes: dict[str, np.ndarray]) -> list[tuple[int, int, int]]:
    """The trace an exact accelerator would write for spike maps (layer -> [T, C, H, W]):
    every word of every planned map once, in program order and address order."""
    out = []
    for ins in sorted(plan["instructions"], key=lambda i: i["index"]):
        m = ins.get("writes")
        if not m or m["layer"] not in spikes:
            continue
        ww = map_word_width(plan, m)
        s = np.asarray(spikes[m["layer"]])
        T, C, H, W = s.shape
        for t in range(T):
            for y in range(H):
                for x in range(W):
                    for w in range(m["nwords"]):
                        bits = s[t, w * ww:(w + 1) * ww, y, x]
                        data = sum(int(b) << i for i, b in enumerate(bits))
                        addr = m["base"] + ((t * H + y) * W + x) * m["nwords"] + w
                        out.append((ins["index"], addr, data))
    return out


def write_trace(path: str | Path, traces: dict[int, list[tuple[int, int, int]]]):
    """A trace file in the wrapper's format (image index -> writes)."""
    lines = []
    for image, writes in traces.items():
        lines.append(f"# image {image}")
        lines += [f"{i} {a} {d:x}" for i, a, d in writes]
    Path(path).write_text("\n".join(lines) + "\n")
