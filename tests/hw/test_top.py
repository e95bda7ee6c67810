"""The whole accelerator (hw/top.py) in Amaranth's simulator on tiny models: equal integers.

Logits, class and every golden counter of every layer equal model.golden's, for random models
and images; the spike maps written (trace port) equal the golden spike maps, and Spikformer's
bit-plane maps decode to the golden residual stream's integers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator

from hw.program import PlanError, build_plan
from hw.top import Accelerator
from model import build_model, get_config, golden
from model.compiler import compile_model, randomize
from sim.trace import stream_values


def tiny_model(name="spikingformer-1-16", seed=0, **overrides):
    overrides.setdefault("img_size", 8)
    torch.manual_seed(seed)
    return compile_model(randomize(build_model(get_config(name, **overrides)), seed))


def simulate(cm, images, lanes=8):
    """Run images [B, C, H, W] through the RTL; per image (logits, class, counters, cycles,
    trace [(instr, addr, data)])."""
    plan = build_plan(cm, lanes=lanes)
    top = Accelerator(plan)
    S, C = cm.config["img_size"], cm.config["in_channels"]
    results = []

    async def bench(ctx):
        for img in images:
            for a in range(S * S):
                y, x = divmod(a, S)
                ctx.set(top.img_addr, a)
                ctx.set(top.img_data, sum(int(img[c, y, x]) << (8 * c) for c in range(C)))
                ctx.set(top.img_we, 1)
                await ctx.tick()
            ctx.set(top.img_we, 0)
            ctx.set(top.start, 1)
            await ctx.tick()
            ctx.set(top.start, 0)
            trace = []
            while True:
                if ctx.get(top.trace_valid):
                    trace.append((ctx.get(top.trace_instr), ctx.get(top.trace_addr),
                                  ctx.get(top.trace_data)))
                if ctx.get(top.done):
                    break
                await ctx.tick()
            await ctx.tick()
            logits = []
            for k in range(cm.config["num_classes"]):
                ctx.set(top.logit_addr, k)
                logits.append(ctx.get(top.logit_data))
            counters = []
            for s in range(len(plan.counter_slots)):
                ctx.set(top.cnt_addr, s)
                await ctx.tick()
                counters.append(ctx.get(top.cnt_data))
            results.append(dict(logits=logits, cls=ctx.get(top.class_index), counters=counters,
                                cycles=ctx.get(top.cycles), trace=trace))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return plan, results


def spike_maps(plan, trace):
    """Per written layer, the map [T, C, H, W] rebuilt from the trace (a map of B bit planes
    decoded to integers: channel c = sum over b of bit b * C + c << b)."""
    maps = {}
    for ins in plan.instructions:
        mp = ins.writes
        if mp is None:
            continue
        arr = maps.setdefault(mp.layer, np.zeros((mp.steps, mp.channels, mp.height, mp.width),
                                                 np.uint8))
        for instr, addr, word in trace:
            if instr != ins.index:
                continue
            WW = mp.word_width
            off = addr - mp.base - plan.bank_offsets[mp.bank]
            pos, w = divmod(off, mp.nwords)
            t, yx = divmod(pos, mp.height * mp.width)
            y, x = divmod(yx, mp.width)
            for c in range(w * WW, min(mp.channels, (w + 1) * WW)):
                if ins.kind == "pool" and c // WW != ins.fields["word"]:
                    continue
                arr[t, c, y, x] = (word >> (c % WW)) & 1
    for ins in plan.instructions:
        mp = ins.writes
        if mp is not None and mp.planes > 1 and mp.layer in maps:
            bits = maps[mp.layer].astype(np.int64)
            C = mp.channels // mp.planes
            maps[mp.layer] = sum(bits[:, b * C:(b + 1) * C] << b for b in range(mp.planes))
    return maps


def golden_maps(cm, ref):
    """The golden spike maps, and the integer maps of adds of spike maps (Spikformer)."""
    return {**ref.spikes, **stream_values(cm.program, ref.spikes)}


def check(cm, images, plan, results):
    ref = golden.run(cm, images, record=True)
    want_maps = golden_maps(cm, ref)
    unmeasured = {(u["layer"], u["counter"]) for u in plan.unmeasured}
    assert all(cm.op(layer)["input"] == "int" and c == "macs" for layer, c in unmeasured)
    for b, r in enumerate(results):
        assert r["logits"] == ref.logits[b].tolist()
        assert r["cls"] == ref.classes[b]
        maps = spike_maps(plan, r["trace"])
        for layer, arr in maps.items():
            np.testing.assert_array_equal(arr, want_maps[layer][b], err_msg=layer)
        sums = {}
        for s, v in zip(plan.counter_slots, r["counters"], strict=True):
            sums[(s["layer"], s["counter"])] = sums.get((s["layer"], s["counter"]), 0) + v
        for layer, st in ref.stats.items():
            for name in golden.COUNTERS:
                if (layer, name) in unmeasured:
                    continue
                want = int(st[name][b])
                got = sums.get((layer, name), 0)
                assert got == want, f"{layer} {name}: RTL {got}, golden {want}"


@pytest.mark.parametrize("name,overrides,n", [
    ("spikingformer-1-16", dict(T=2), 2),  # Q K^T first (head size 16 > 4 tokens)
    ("spikingformer-1-16", dict(T=3, heads=2, img_size=12), 1),  # K^T V first, 9 tokens
    ("spikingformer-1-16", dict(T=2, residual_shift=3), 1),  # writers shifted into the stream
    pytest.param("spikingformer-2-32", dict(T=4, heads=2), 1, marks=pytest.mark.slow),
    pytest.param("spikingformer-1-24", dict(T=1, heads=3, weight_bits=5), 1,
                 marks=pytest.mark.slow),
    # Spikformer: integer stream as bit planes, bit-serial 1x1 convs, plane adds
    ("spikformer-1-16", dict(T=2), 2),
    pytest.param("spikformer-2-32", dict(T=3, heads=2), 1, marks=pytest.mark.slow),
])
def test_tiny_models_equal_golden(name, overrides, n):
    cm = tiny_model(name, **overrides)
    if overrides.get("residual_shift"):
        assert max(op.get("shift", 0) for op in cm.program if op["op"] == "conv") >= 1
    S = cm.config["img_size"]
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 3, S, S), dtype=np.uint8)
    plan, results = simulate(cm, images)
    check(cm, images, plan, results)


def test_plan_refuses_what_the_hardware_cannot_run():
    with pytest.raises(PlanError, match="must fill 16-bit words"):
        build_plan(tiny_model("spikformer-1-24", heads=1))
    cm = tiny_model("spikingformer-1-16", T=2)
    with pytest.raises(PlanError, match="power of two"):
        build_plan(cm, lanes=6)
    with pytest.raises(PlanError, match="Word width must be a power of two"):
        build_plan(cm, word_width=24)
    with pytest.raises(PlanError, match="end with the head"):
        cm.program = [op for op in cm.program if op["op"] != "head"]
        build_plan(cm)


def test_spike_maps_are_reused_once_dead():
    plan = build_plan(tiny_model("spikingformer-2-16", T=2))
    spans = {}
    for ins in plan.instructions:
        if ins.writes is not None and ins.writes.layer not in spans:
            spans[ins.writes.layer] = (ins.index, ins.writes)
    last = {}
    for ins in plan.instructions:
        for mp in ins.reads:
            last[mp.layer] = ins.index
    # two maps share a word only if one is dead before the other is written
    items = list(spans.values())
    for i, (wa, a) in enumerate(items):
        for wb, b in items[i + 1:]:
            overlap = (a.bank == b.bank and a.base < b.base + b.words
                       and b.base < a.base + a.words)
            if overlap:
                assert last.get(a.layer, wa) < wb, (a.layer, b.layer)
    assert plan.spike_depth < sum(mp.words for _, mp in items)


def test_the_default_model_needs_only_its_largest_live_set():
    from model.modelfile import CompiledModel
    plan = build_plan(CompiledModel.load("models/default.sfm"))
    # tokenizer: the 16-channel 32x32 map and the 32-channel one, 16-bit words, T = 4
    assert plan.bank_depths[0] == 4 * 32 * 32 * (1 + 2)
    assert plan.bank_depths[1:] == [4 * 64] * 3  # Q, K, V: one 64-bit word per token
