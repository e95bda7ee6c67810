"""The accelerator's layer program: a compiled model file mapped onto the units of hw/.

    plan = build_plan(CompiledModel.load("models/default.sfm"), lanes=8)
    plan.instructions, plan.memories, plan.to_json()

The golden model's program (model/golden.py) is a list of layers; the accelerator runs
*instructions*, each a fused chain of units started together (docs/hw_top.md):

| kind | chain | golden layers |
| --- | --- | --- |
| ``mac`` | image -> MACConv -> T repeats -> LIF -> spike map | pixel conv, its LIF |
| ``ac_lif`` | spike map -> ACConv -> LIF -> spike map | spike conv, its LIF |
| ``ac_store`` | spike map -> ACConv -> residual stream | the conv that starts the stream |
| ``ac_add`` | spike map -> ACConv + stream -> adder -> stream | spike conv, residual add |
| ``lif`` | stream -> LIF -> spike map | a LIF on the stream |
| ``attn`` | Q, K, V maps -> SpikeAttention -> LIF -> spike map | attention, its LIF |
| ``pool`` | spike map -> MaxPool -> spike map (one instruction per word slice) | max pool |
| ``head`` | stream (or bit planes) -> Head -> logits, class | head |
| ``plane_add`` | bit planes + spike map -> PlaneAdder -> bit planes | add of spikes (Spikformer) |

Spikformer (``arch`` "spikformer") adds spike maps into its residual stream, so the stream
holds small non-negative integers. They stay in bank 0 as bit planes (hw/planes.py: a map of
B planes is a spike map of B x C channels, channel b * C + c = bit b of channel c), a
``plane_add`` adds a spike map to them, the 1x1 convs that read them run on the AC engine in
bit-plane mode (``ac_lif`` with ``planes`` = 1: plane b's spikes add weights shifted by b),
and the head reads them through a PlaneReader. Such a conv's MACs (golden ``macs``: its
MAC-equivalents) are not a hardware event; the plan lists them in ``unmeasured``, and its
bit-serial accumulates are counted (golden ``bit_acs``).

Spike maps live in four banks (docs/hw_architecture.md layout in each:
``base + ((t*H + y)*W + x)*nwords + w``), allocated by liveness (``_allocate``), so a map's words
are reused once its last reader has run. Bank 0 (``word_width`` bits, 16 by default: narrow
words waste little on the tokenizer's 8- and 16-channel maps) holds every map but the
attention's Q, K and V; banks 1-3 (``qkv_width`` >= D bits, one word per token) hold Q, K
and V, which the attention unit reads in the same cycle. In the trace and the plan, addresses
are global: bank b's words start at ``bank_offsets[b]``. The residual stream holds rows of P
values in the order the AC engine emits its currents: row ``(pos*T + t)*G + g``.

Each instruction lists the counters the sequencer copies into the counter memory when it
ends (``counters``: unit, counter port, golden layer, golden counter name or a physical one).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from model.golden import input_planes
from model.modelfile import CompiledModel

KINDS = ("mac", "ac_lif", "ac_store", "ac_add", "lif", "attn", "pool", "head", "plane_add")

# Counter ports per unit: (port, golden counter or None for a physical count).
UNIT_COUNTERS = {
    "mac": [("macs", "macs"), ("weight_reads", "weight_reads"), ("act_reads", "act_reads"),
            ("act_words", None), ("weight_rows", None), ("busy_cycles", None),
            ("stall_cycles", None)],
    "ac": [("sops", "sops"), ("spikes_in", "spikes_in"), ("weight_reads", "weight_reads"),
           ("act_reads", "act_reads"), ("act_words", None), ("weight_rows", None),
           ("busy_cycles", None), ("stall_cycles", None)],
    "lif": [("spikes_out", "spikes_out"), ("neuron_updates", "neuron_updates"),
            ("weight_reads", "weight_reads"), ("act_writes", "act_writes"),
            ("busy_cycles", None), ("stall_cycles", None)],
    "add": [("adds", "adds"), ("act_reads", "act_reads"), ("act_writes", "act_writes"),
            ("busy_cycles", None), ("stall_cycles", None)],
    "attn": [("sops", "sops"), ("spikes_in", "spikes_in"), ("act_reads", "act_reads"),
             ("word_reads", None), ("scratch_reads", None), ("scratch_writes", None),
             ("busy_cycles", None), ("stall_cycles", None)],
    "pool": [("act_reads", "act_reads"), ("act_writes", "act_writes"), ("busy_cycles", None)],
    "head": [("adds", "adds"), ("macs", "macs"), ("weight_reads", "weight_reads"),
             ("act_reads", "act_reads"), ("busy_cycles", None)],
    "planes": [("adds", "adds"), ("act_reads", "act_reads"), ("act_writes", "act_writes"),
               ("word_reads", None), ("word_writes", None), ("nonzero", None),
               ("busy_cycles", None)],
}


class PlanError(ValueError):
    """The model cannot run on the accelerator (says what and why)."""


@dataclass
class SpikeMap:
    layer: str  # the golden layer whose spikes it holds
    channels: int
    height: int
    width: int
    steps: int
    nwords: int
    bank: int = 0
    word_width: int = 16
    base: int = -1  # within the bank
    planes: int = 1  # bit planes of an integer map (channels = planes x its channels)

    @property
    def words(self) -> int:
        return self.steps * self.height * self.width * self.nwords


@dataclass
class Instr:
    index: int
    kind: str
    name: str
    layers: list[str]
    fields: dict[str, int] = field(default_factory=dict)
    writes: SpikeMap | None = None
    reads: list[SpikeMap] = field(default_factory=list)
    # (unit, counter port, golden layer, counter name)
    counters: list[tuple[str, str, str, str]] = field(default_factory=list)

    def count(self, unit: str, layer: str, rename: dict[str, str] | None = None):
        for port, golden in UNIT_COUNTERS[unit]:
            golden = (rename or {}).get(golden, golden)
            self.counters.append((unit, port, layer, golden or f"{unit}_{port}"))


@dataclass
class Plan:
    config: dict
    sha256: str
    lanes: int
    word_width: int  # bank 0
    qkv_width: int  # banks 1-3
    instructions: list[Instr]
    memories: dict[str, np.ndarray]  # name -> int64 [depth, lanes] or [depth]
    widths: dict[str, int]  # element widths and unit parameters
    bank_depths: list[int]
    stream_rows: int
    # golden counters no hardware event corresponds to: {layer, counter, reason}
    unmeasured: list[dict] = field(default_factory=list)

    @property
    def bank_offsets(self) -> list[int]:
        return [sum(self.bank_depths[:b]) for b in range(len(self.bank_depths))]

    @property
    def spike_depth(self) -> int:
        return sum(self.bank_depths)

    @property
    def counter_slots(self) -> list[dict]:
        slots = []
        for ins in self.instructions:
            for unit, port, layer, name in ins.counters:
                slots.append(dict(slot=len(slots), instruction=ins.index, unit=unit,
                                  port=port, layer=layer, counter=name))
            slots.append(dict(slot=len(slots), instruction=ins.index, unit="seq",
                              port="cycles", layer=ins.name, counter="cycles"))
        return slots

    def to_json(self) -> dict:
        cfg = self.config
        return {
            "config": cfg, "sha256": self.sha256, "lanes": self.lanes,
            "word_width": self.word_width, "qkv_width": self.qkv_width,
            "banks": [{"bank": b, "word_width": self.word_width if b == 0 else self.qkv_width,
                       "depth": d, "offset": o}
                      for b, (d, o) in enumerate(zip(self.bank_depths, self.bank_offsets,
                                                      strict=True))],
            "image": {"channels": cfg["in_channels"], "height": cfg["img_size"],
                      "width": cfg["img_size"], "pixel_width": 8 * cfg["in_channels"]},
            "classes": cfg["num_classes"], "logit_width": self.widths["logit"],
            "spike_addr_width": self.widths["trace_addr"], "spike_depth": self.spike_depth,
            "stream_rows": self.stream_rows, "widths": self.widths,
            "instructions": [{
                "index": i.index, "kind": i.kind, "name": i.name, "layers": i.layers,
                "fields": i.fields,
                "writes": None if i.writes is None else {
                    "layer": i.writes.layer,
                    "base": i.writes.base + self.bank_offsets[i.writes.bank],
                    "bank": i.writes.bank, "word_width": i.writes.word_width,
                    "channels": i.writes.channels, "height": i.writes.height,
                    "width": i.writes.width, "steps": i.writes.steps,
                    "nwords": i.writes.nwords, "planes": i.writes.planes},
            } for i in self.instructions],
            "counters": self.counter_slots,
            "unmeasured": self.unmeasured,
        }


def _signed_bits(values) -> int:
    """Two's complement width that holds every value."""
    a = np.asarray(values, dtype=np.int64)
    if a.size == 0:
        return 2
    return max(2, int(max(a.max(), -a.min() - 1)).bit_length() + 1)


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n)))


def build_plan(cm: CompiledModel, *, lanes: int = 8, word_width: int = 16) -> Plan:
    """Map a compiled model onto the accelerator; PlanError if it cannot run there."""
    cfg = cm.config
    P = lanes
    if P < 1 or P & (P - 1):
        raise PlanError(f"Lane count must be a power of two, not {lanes}")
    T, D, S = cfg["T"], cfg["dim"], cfg["img_size"]
    WW, WQ = word_width, max(P, _pow2(D))
    if WW < P or WW % P or WW & (WW - 1):
        raise PlanError(f"Word width must be a power of two multiple of the {P} lanes, not {WW}")
    ops = {op["name"]: op for op in cm.program}
    consumers: dict[str, list[str]] = {n: [] for n in ops}
    for op in cm.program:
        for i in op.get("inputs", []):
            if i != "image":
                consumers[i].append(op["name"])

    def shape(name):  # (C, H, W) of a layer's output
        op = ops[name]
        if "shape" in op:
            return tuple(op["shape"])
        return shape(op["inputs"][0])

    weights: list[np.ndarray] = []  # rows of P
    biases: list[np.ndarray] = []
    thetas: list[np.ndarray] = []
    rows = {"weights": 0, "biases": 0, "thetas": 0}

    def add_rows(kind, arr):
        base = rows[kind]
        {"weights": weights, "biases": biases, "thetas": thetas}[kind].append(arr)
        rows[kind] += len(arr)
        return base

    def conv_rows(w):  # [Co, Ci, k, k] -> rows (group, tap, c) of P lanes
        Co, Ci, k, _ = w.shape
        G = -(-Co // P)
        wp = np.zeros((G * P, Ci, k, k), dtype=np.int64)
        wp[:Co] = w
        # row index g*k*k*Ci + (dy*k + dx)*Ci + c, lane l = output channel g*P + l
        return wp.reshape(G, P, Ci, k * k).transpose(0, 3, 2, 1).reshape(-1, P)

    def lane_rows(v):  # [C] -> rows of P (0 beyond C)
        G = -(-len(v) // P)
        out = np.zeros(G * P, dtype=np.int64)
        out[:len(v)] = v
        return out.reshape(G, P)

    maps: dict[str, SpikeMap] = {}
    unmeasured: list[dict] = []

    def spike_map(layer, planes=1):
        C, H, W = shape(layer)
        bank = 0
        for user in consumers[layer]:
            if ops[user]["op"] == "attention":
                bank = 1 + ops[user]["inputs"].index(layer)
        width = WQ if bank else WW
        if planes > 1 and (bank or C % WW):
            raise PlanError(f"{layer}: an integer map's {C} channels per plane must fill "
                            f"{WW}-bit words")
        maps[layer] = SpikeMap(layer, planes * C, H, W, T, -(-planes * C // width), bank,
                               width, planes=planes)
        return maps[layer]

    instrs: list[Instr] = []
    stream: str | None = None  # the golden layer the residual stream holds
    done: set[str] = set()
    widths = dict(conv_acc=2, lif_current=2, lif_mem=2, stream=2, weight=cfg["weight_bits"])

    def lif_of(conv_name):
        lifs = [c for c in consumers[conv_name] if ops[c]["op"] == "lif"]
        return lifs[0] if len(lifs) == 1 and len(consumers[conv_name]) == 1 else None

    def lif_fields(ins, lif_name, source_bits):
        op = ops[lif_name]
        theta = cm.tensor(op["tensors"]["theta"])
        C = len(theta)
        ins.fields["theta_base"] = add_rows("thetas", lane_rows(theta))
        ins.fields["lif_groups"] = -(-C // P)
        m = spike_map(lif_name)
        if m.channels != C:
            raise PlanError(f"{lif_name}: {C} thresholds for {m.channels} channels")
        ins.writes = m
        widths["lif_current"] = max(widths["lif_current"], source_bits)
        widths["lif_mem"] = max(widths["lif_mem"], op["mem_bits"], _signed_bits(theta))
        ins.count("lif", lif_name)
        done.add(lif_name)

    def conv_fields(ins, op):
        w, b = cm.tensor(op["tensors"]["weight"]), cm.tensor(op["tensors"]["bias"])
        Co, Ci, k, _ = w.shape
        C_, H, W = shape(op["name"])
        shift = op.get("shift", 0)  # a residual writer's sum enters the stream shifted left
        ins.fields.update(ci=Ci, co=Co, k=k, height=H, width=W,
                          weight_base=add_rows("weights", conv_rows(w)),
                          bias_base=add_rows("biases", lane_rows(b)), shift=shift)
        widths["conv_acc"] = max(widths["conv_acc"], op["bits"] - shift)
        widths["writer"] = max(widths.get("writer", 2), op["bits"])
        widths["bias"] = max(widths.get("bias", 2), _signed_bits(b))
        if op["input"] in ("spikes", "int"):
            src = maps.get(op["inputs"][0])
            if src is None or src.bank:
                raise PlanError(f"{op['name']}: input {op['inputs'][0]!r} is not a spike map "
                                f"of bank 0")
            ins.reads.append(src)
            ins.fields["spike_base"] = -1  # set after allocation
        if op["input"] == "int":  # bit planes of the integer input
            if src.planes != input_planes(op["in_bound"]) or src.channels != src.planes * Ci:
                raise PlanError(f"{op['name']}: its input is not a map of "
                                f"{input_planes(op['in_bound'])} bit planes of {Ci} channels")
            if k != 1 or Ci & (Ci - 1):
                raise PlanError(f"{op['name']}: an integer-input conv must be 1x1 with a "
                                f"power-of-two channel count, not {k}x{k} on {Ci}")
            ins.fields.update(ci=src.channels, planes=1, plane_lg=Ci.bit_length() - 1)
            widths["planes"] = max(widths.get("planes", 1), src.planes)
            unmeasured.append(dict(layer=op["name"], counter="macs",
                                   reason="MAC-equivalents: the AC engine runs the integer "
                                          "input bit-serially (counted as bit_acs)"))
        done.add(op["name"])

    def new(kind, name, layers):
        ins = Instr(len(instrs), kind, name, layers)
        instrs.append(ins)
        return ins

    for op in cm.program:
        name, kind = op["name"], op["op"]
        if name in done:
            continue
        if kind == "conv" and op["input"] == "pixels":
            lif = lif_of(name)
            if lif is None:
                raise PlanError(f"{name}: a pixel conv must feed exactly one LIF")
            if op["kernel"] != 3:
                raise PlanError(f"{name}: the MAC engine runs 3x3 convs, not {op['kernel']}x"
                                f"{op['kernel']}")
            ins = new("mac", name, [name, lif])
            conv_fields(ins, op)
            ins.fields["zero_point"] = [int(z) for z in cm.tensor(op["tensors"]["zero_point"])]
            ins.count("mac", name)
            lif_fields(ins, lif, op["bits"])
        elif kind == "conv":
            lif = lif_of(name)
            users = consumers[name]
            adds = [u for u in users if ops[u]["op"] == "add"]
            # the engine's accumulates on bit planes are the golden bit-serial ACs
            ac_names = {"sops": "bit_acs"} if op["input"] == "int" else None
            if lif is not None:
                ins = new("ac_lif", name, [name, lif])
                conv_fields(ins, op)
                ins.count("ac", name, ac_names)
                lif_fields(ins, lif, op["bits"])
            elif stream is not None and users == adds and len(adds) == 1 \
                    and stream in ops[adds[0]]["inputs"]:
                add = adds[0]
                ins = new("ac_add", name, [name, add])
                conv_fields(ins, op)
                ins.count("ac", name, ac_names)
                ins.count("add", add)
                widths["stream"] = max(widths["stream"], ops[add]["bits"])
                done.add(add)
                stream = add
            elif adds and stream is None:
                ins = new("ac_store", name, [name])
                conv_fields(ins, op)
                ins.count("ac", name, ac_names)
                widths["stream"] = max(widths["stream"], op["bits"])
                stream = name
            else:
                raise PlanError(f"{name}: a spike conv must feed one LIF or the residual add")
        elif kind == "lif":
            if op["inputs"][0] != stream:
                raise PlanError(f"{name}: a LIF that is not fused with its conv must read the "
                                f"residual stream")
            ins = new("lif", name, [name])
            ins.fields["height"], ins.fields["width"] = shape(name)[1:]
            lif_fields(ins, name, widths["stream"])
        elif kind == "attention":
            lif = lif_of(name)
            if lif is None:
                raise PlanError(f"{name}: attention must feed exactly one LIF")
            ins = new("attn", name, [name, lif])
            srcs = [maps.get(i) for i in op["inputs"]]
            if any(s is None for s in srcs) or [s.bank for s in srcs] != [1, 2, 3]:
                raise PlanError(f"{name}: Q, K and V must be spike maps read only by it")
            ins.reads += srcs
            ins.fields.update(heads=op["heads"], head_dim=op["head_dim"], tokens=op["tokens"],
                              order=int(op["order"] == "qk_first"),
                              q_base=-1, k_base=-1, v_base=-1)
            if op["head_dim"] % P:
                raise PlanError(f"{name}: head size {op['head_dim']} is not a multiple of the "
                                f"{P} lanes")
            ins.count("attn", name)
            lif_fields(ins, lif, op["bits"])  # signed width of the unsigned Y
            done.add(name)
        elif kind == "maxpool":
            if (op["kernel"], op["stride"], op["pad"]) != (3, 2, 1):
                raise PlanError(f"{name}: the pool unit runs 3x3 / stride 2 / pad 1")
            src = maps.get(op["inputs"][0])
            if src is None or src.bank:
                raise PlanError(f"{name}: input is not a spike map of bank 0")
            out = spike_map(name)
            for w in range(src.nwords):
                ins = new("pool", name if src.nwords == 1 else f"{name}[{w}]", [name])
                ins.reads.append(src)
                ins.writes = out
                ins.fields.update(height=src.height, width=src.width, word=w,
                                  n_channels=min(WW, src.channels - w * WW),
                                  in_base=-1, out_base=-1)
                ins.count("pool", name)
            done.add(name)
        elif kind == "head":
            src = maps.get(op["inputs"][0])
            if op["inputs"][0] != stream and (src is None or src.bank):
                raise PlanError(f"{name}: the head must read the residual stream or a map of "
                                f"bank 0")
            ins = new("head", name, [name])
            if op["inputs"][0] != stream:  # the integer stream as bit planes
                ins.reads.append(src)
                ins.fields.update(planes=src.planes, words=src.nwords // src.planes,
                                  positions=T * src.height * src.width, in_base=-1)
                widths["stream"] = max(widths["stream"], src.planes + 1)
            w, b = cm.tensor(op["tensors"]["weight"]), cm.tensor(op["tensors"]["bias"])
            widths.update(head_weight=_signed_bits(w), head_bias=_signed_bits(b),
                          head_acc=int(op["in_bound"]).bit_length() + 1, logit=op["bits"])
            head_w, head_b = w.astype(np.int64), b.astype(np.int64)
            ins.count("head", name)
            done.add(name)
        elif kind == "add":
            srcs = [maps.get(i) for i in op["inputs"]]
            if any(m is None or m.bank for m in srcs):
                raise PlanError(f"{name}: a residual add must follow a spike conv or add two "
                                f"maps of bank 0")
            a, sp = sorted(srcs, key=lambda m: -m.planes)
            if sp.planes != 1 or a.channels // a.planes != sp.channels:
                raise PlanError(f"{name}: adds a spike map to a bit-plane map of the same "
                                f"channels, not {a.planes} and {sp.planes} planes")
            out_planes = input_planes(op["bound"])
            if out_planes not in (a.planes, a.planes + 1):
                raise PlanError(f"{name}: bound {op['bound']} needs {out_planes} planes")
            ins = new("plane_add", name, [name])
            ins.reads += [a, sp]
            out = spike_map(name, out_planes)
            ins.writes = out
            ins.fields.update(a_planes=a.planes, out_planes=out_planes,
                              words=sp.nwords, positions=T * sp.height * sp.width,
                              a_base=-1, s_base=-1)
            widths["planes"] = max(widths.get("planes", 1), out_planes)
            ins.count("planes", name)
            done.add(name)
        else:
            raise PlanError(f"{name}: op {kind!r} has no unit")
    if not instrs or instrs[-1].kind != "head":
        raise PlanError("The program must end with the head")

    # -- spike memory: allocation by liveness -----------------------------------------------
    depths = [max(1, _allocate(instrs, b)) for b in range(4)]
    for ins in instrs:
        f = ins.fields
        if ins.kind in ("ac_lif", "ac_store", "ac_add"):
            f["spike_base"] = ins.reads[0].base
        if ins.kind == "attn":
            f["q_base"], f["k_base"], f["v_base"] = (m.base for m in ins.reads)
        if ins.kind == "plane_add":
            f["a_base"], f["s_base"] = (m.base for m in ins.reads)
        if ins.kind == "head" and ins.reads:
            f["in_base"] = ins.reads[0].base
        if ins.kind == "pool":
            f["in_base"] = ins.reads[0].base + f["word"]
            f["out_base"] = ins.writes.base + f["word"]
            f["stride"] = ins.reads[0].nwords
        if ins.writes is not None and ins.kind != "pool":
            m = ins.writes
            f.update(out_base=m.base, out_nwords=m.nwords, out_bank=m.bank,
                     out_lg=(m.word_width // P).bit_length() - 1,
                     out_plane=m.height * m.width * m.nwords)

    N = (S // 4) ** 2
    uses_stream = any(i.kind in ("ac_store", "ac_add", "lif") for i in instrs)
    stream_rows = N * T * (-(-D // P)) if uses_stream else 0
    widths["spike_addr"] = max(1, (max(depths) - 1).bit_length(), (T * N - 1).bit_length())
    widths["head_in"] = widths["stream"]
    widths["trace_addr"] = max(1, (sum(depths) - 1).bit_length())
    memories = {
        "weights": np.concatenate(weights) if weights else np.zeros((1, P), np.int64),
        "biases": np.concatenate(biases),
        "thetas": np.concatenate(thetas),
        "head_weights": head_w.reshape(-1),
        "head_biases": head_b,
    }
    widths["bias"] = max(widths["bias"], 2)
    sha = hashlib.sha256(cm.to_bytes()).hexdigest()
    return Plan(config=dict(cfg), sha256=sha, lanes=P, word_width=WW, qkv_width=WQ,
                instructions=instrs, memories=memories, widths=widths, bank_depths=depths,
                stream_rows=stream_rows, unmeasured=unmeasured)


def _allocate(instrs: list[Instr], bank: int) -> int:
    """Place the maps of a bank; returns its depth in words.

    Ping-pong: a map goes to the end of the bank away from the maps its instruction reads
    (bottom if those sit high, top-aligned if they sit low), first trying the depth that the
    largest live set needs and growing it until every map fits.
    """
    last_use: dict[str, int] = {}
    for ins in instrs:
        for m in ins.reads:
            last_use[m.layer] = ins.index
    written = [ins for ins in instrs if ins.writes is not None and ins.writes.bank == bank]
    if not written:
        return 0
    # the largest live set: a lower bound of the depth
    need, seen = 0, {}
    for ins in instrs:
        if ins.writes is not None and ins.writes.bank == bank:
            seen.setdefault(ins.writes.layer, ins.writes)
        need = max(need, sum(m.words for k, m in seen.items()
                             if last_use.get(k, -1) >= ins.index or k == getattr(
                                 ins.writes, "layer", None)))
    depth = need
    while True:
        placed: dict[str, SpikeMap] = {}
        ok = True
        for ins in written:
            m = ins.writes
            if m.layer in placed:
                continue
            live = sorted((x for k, x in placed.items() if last_use.get(k, -1) >= ins.index),
                          key=lambda x: x.base)
            gaps, prev = [], 0
            for x in live:
                if x.base - prev >= m.words:
                    gaps.append((prev, x.base))
                prev = max(prev, x.base + x.words)
            if depth - prev >= m.words:
                gaps.append((prev, depth))
            if not gaps:
                ok = False
                depth += m.words
                break
            inputs = [x for x in ins.reads if x.bank == bank and x.base >= 0]
            high = bool(inputs) and 2 * inputs[0].base + inputs[0].words < depth
            m.base = gaps[-1][1] - m.words if high else gaps[0][0]
            placed[m.layer] = m
        if ok:
            return depth
        for ins in written:
            ins.writes.base = -1



# -- memories and their cost on a 7-series FPGA -------------------------------------------
# Simple dual port block RAM shapes (bits wide, words deep): a BRAM36 and a BRAM18, its half.
_BRAM36 = ((1, 32768), (2, 16384), (4, 8192), (9, 4096), (18, 2048), (36, 1024), (72, 512))
_BRAM18 = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
DISTRIBUTED_DEPTH = 640  # memories this shallow go to LUT RAM (ram_style "distributed")
# Memories the accelerator only reads (initialised from the plan): rom_style, not ram_style.
ROMS = frozenset({"weights", "biases", "thetas", "head_w", "head_b"})


def _halves_one_shape(width: int, depth: int) -> int:
    """BRAM18 halves of a memory built in one aspect ratio, the cheapest."""
    return min([2 * math.ceil(width / w) * math.ceil(depth / d) for w, d in _BRAM36]
               + [math.ceil(width / w) * math.ceil(depth / d) for w, d in _BRAM18])


def _halves_sliced(width: int, depth: int, shapes, halves: int) -> int:
    """BRAM18 halves of a memory cut into column slices of different aspect ratios, all of
    one primitive (``halves`` per unit of ``shapes``), the cheapest cut: a 40-bit word as four
    9-bit slices and a 4-bit one."""
    best = [0] + [math.inf] * width
    for bits in range(1, width + 1):
        best[bits] = min(halves * math.ceil(depth / d) + best[max(0, bits - w)]
                         for w, d in shapes)
    return best[width]


def _halves_rom(width: int, depth: int) -> int:
    """BRAM18 halves of a read-only memory as yosys maps it: true dual port shapes, column
    slices of different aspect ratios, all BRAM36 (at most 36 bits wide) or all BRAM18 (at
    most 18); yosys chooses between the two by its own cost, so the dearer of the two cuts."""
    full = _halves_sliced(width, depth, [s for s in _BRAM36 if s[0] <= 36], 2)
    half = _halves_sliced(width, depth, [s for s in _BRAM18 if s[0] <= 18], 1)
    return max(full, half)


@dataclass
class MemorySpec:
    name: str
    width: int  # bits per word
    depth: int
    read_ports: int
    contents: str

    @property
    def style(self) -> str:
        return "distributed" if self.depth <= DISTRIBUTED_DEPTH else "block"

    @property
    def rom(self) -> bool:
        return self.name in ROMS

    @property
    def bytes(self) -> int:
        return math.ceil(self.width * self.depth / 8)

    @property
    def bram36(self) -> float:
        """Block RAM36 primitives (in halves: a BRAM18 is 0.5), one copy per read port, as
        yosys ``synth_xilinx`` maps them, or a little more (``tests/hw/test_bram_cost.py``): a
        memory with a write port in one aspect ratio, a read-only one in column slices."""
        if self.style != "block":
            return 0.0
        if self.rom:
            halves = _halves_rom(self.width, self.depth)
        else:
            halves = _halves_one_shape(self.width, self.depth)
        return halves / 2 * self.read_ports

    @property
    def lutram(self) -> int:
        """LUTs as LUT RAM (RAM64M: 64 words x 3 bits in 4 LUTs), one copy per read port."""
        if self.style != "distributed":
            return 0
        return 4 * math.ceil(self.width / 3) * math.ceil(self.depth / 64) * self.read_ports


def memory_specs(plan: Plan) -> list[MemorySpec]:
    """The accelerator's memories (hw/top.py builds exactly these), largest first."""
    P, wd, cfg = plan.lanes, plan.widths, plan.config
    mem = plan.memories
    specs = [
        MemorySpec("weights", P * wd["weight"], len(mem["weights"]), 1,
                   "conv weights, rows of P lanes"),
        MemorySpec("biases", P * wd["bias"], len(mem["biases"]), 1, "conv biases, rows of P"),
        MemorySpec("thetas", P * wd["lif_mem"], len(mem["thetas"]), 1,
                   "LIF thresholds, rows of P"),
        MemorySpec("head_w", wd["head_weight"], len(mem["head_weights"]), 1, "head weights"),
        MemorySpec("head_b", wd["head_bias"], len(mem["head_biases"]), 1, "head biases"),
        MemorySpec("image", 8 * cfg["in_channels"], cfg["img_size"] ** 2, 1, "input pixels"),
        MemorySpec("spikes0", plan.word_width, plan.bank_depths[0], 1,
                   "spike maps (all but Q, K, V)"),
    ]
    for b, name in ((1, "Q"), (2, "K"), (3, "V")):
        specs.append(MemorySpec(f"spikes{b}", plan.qkv_width, plan.bank_depths[b], 1,
                                f"spike map {name}"))
    if plan.stream_rows:
        specs.append(MemorySpec("stream", P * wd["stream"], plan.stream_rows, 1,
                                "residual stream"))
    specs.append(MemorySpec("counters", 32, len(plan.counter_slots), 1, "activity counters"))
    attn = [i.fields for i in plan.instructions if i.kind == "attn"]
    if any(f["order"] == 0 for f in attn):  # K^T V first: SpikeAttention's scratch
        d, h, n = attn[0]["head_dim"], attn[0]["heads"], attn[0]["tokens"]
        specs.append(MemorySpec("attention", d * n.bit_length(), cfg["T"] * h * d, 1,
                                "K^T V of every head and time step (in SpikeAttention)"))
    return specs
