"""hw.head.Head against model.golden.ref_head, argmax_low and head_counts (Amaranth sim)."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, signed
from amaranth.lib import memory
from amaranth.sim import Simulator

from hw.head import Head
from model.golden import argmax_low, head_counts, ref_head

SEED = 4242
P, C_MAX, K_MAX = 4, 20, 10
IN_W, ACC_W, W_W, B_W, LOGIT_W = 8, 14, 6, 16, 26


class Bench(Elaboratable):
    """The head with its weight, bias and logit memories."""

    def __init__(self):
        self.dut = Head(channels=C_MAX, classes=K_MAX, lanes=P, in_width=IN_W, acc_width=ACC_W,
                        weight_width=W_W, bias_width=B_W, logit_width=LOGIT_W)
        self.w = memory.Memory(shape=signed(W_W), depth=C_MAX * K_MAX, init=[])
        self.b = memory.Memory(shape=signed(B_W), depth=K_MAX, init=[])
        self.logits = memory.Memory(shape=signed(LOGIT_W), depth=K_MAX, init=[])

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        m.submodules.dut = dut
        m.submodules.w, m.submodules.b, m.submodules.logits = self.w, self.b, self.logits
        w_rd, b_rd, l_wr = self.w.read_port(), self.b.read_port(), self.logits.write_port()
        m.d.comb += [w_rd.addr.eq(dut.w_addr), w_rd.en.eq(dut.w_en), dut.w_data.eq(w_rd.data),
                     b_rd.addr.eq(dut.b_addr), b_rd.en.eq(dut.b_en), dut.b_data.eq(b_rd.data),
                     l_wr.addr.eq(dut.logit_addr), l_wr.data.eq(dut.logit_data),
                     l_wr.en.eq(dut.logit_we)]
        return m


def rtl_head(cases, rng):
    """Run every case (stream [1, T, C, H, W], w [K, C], b [K]) in one simulation."""
    bench = Bench()
    dut = bench.dut
    results = []

    async def testbench(ctx):
        for stream, w, b in cases:
            _, T, C, H, W = stream.shape
            K = w.shape[0]
            for i, v in enumerate(w.reshape(-1)):
                ctx.set(bench.w.data[i], int(v))
            for i, v in enumerate(b):
                ctx.set(bench.b.data[i], int(v))
            for i in range(K):
                ctx.set(bench.logits.data[i], 0x155555)  # stale marker
            items = []
            for t in range(T):
                for y in range(H):
                    for x in range(W):
                        for g in range(-(-C // P)):
                            chans = range(g * P, min(C, g * P + P))
                            vals = [int(stream[0, t, c, y, x]) for c in chans]
                            vals += [int(v) for v in rng.integers(-5, 5, P - len(vals))]
                            items.append(dict(value=vals, group=g, mask=(1 << len(chans)) - 1,
                                              last=0))
            rng.shuffle(items)
            items[-1]["last"] = 1
            ctx.set(dut.clear, 1)
            ctx.set(dut.n_channels, C)
            ctx.set(dut.n_classes, K)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            ctx.set(dut.start, 0)
            ctx.set(dut.i.valid, 1)
            for item in items:
                ctx.set(dut.i.payload, item)
                assert ctx.get(dut.i.ready)
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            cycles = 0
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
            results.append(dict(
                logits=np.array([ctx.get(bench.logits.data[i]) for i in range(K)]),
                cls=ctx.get(dut.class_index), max_logit=ctx.get(dut.max_logit), cycles=cycles,
                **{k: ctx.get(getattr(dut, k)) for k in ("adds", "macs", "weight_reads",
                                                         "act_reads")}))
            await ctx.tick()
            assert not ctx.get(dut.busy)

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results


def bound(width):
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


def make_case(rng, kind="random"):
    T, C, K = int(rng.integers(1, 5)), int(rng.integers(1, C_MAX + 1)), int(rng.integers(1, 11))
    H, W = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    (ilo, ihi), (wlo, whi), (blo, bhi) = bound(IN_W), bound(W_W), bound(B_W)
    if kind == "bounds":  # values and weights at their width bounds
        s = rng.choice([ilo, ihi], size=(1, T, C, H, W))
        w = rng.choice([wlo, whi], size=(K, C))
        b = rng.choice([blo, bhi], size=K)
    elif kind == "ties":  # equal logits: the lowest class wins
        s = rng.integers(ilo, ihi, size=(1, T, C, H, W), endpoint=True)
        w = np.repeat(rng.integers(wlo, whi, size=(1, C), endpoint=True), K, axis=0)
        b = np.full(K, int(rng.integers(-100, 100)))
    elif kind == "zero":  # no activity
        s = np.zeros((1, T, C, H, W), np.int64)
        w = rng.integers(wlo, whi, size=(K, C), endpoint=True)
        b = rng.integers(-50, 50, size=K)
    else:
        s = rng.integers(ilo, ihi, size=(1, T, C, H, W), endpoint=True)
        w = rng.integers(wlo, whi, size=(K, C), endpoint=True)
        b = rng.integers(blo, bhi, size=K, endpoint=True)
    return s.astype(np.int64), w.astype(np.int64), b.astype(np.int64)


def test_head_random_and_edges():
    rng = np.random.default_rng(SEED)
    cases = [make_case(rng, k) for k in ("bounds", "ties", "zero") for _ in range(5)]
    cases += [make_case(rng) for _ in range(200)]
    results = rtl_head(cases, rng)
    for i, ((s, w, b), r) in enumerate(zip(cases, results, strict=True)):
        logits = ref_head(s, w, b)
        counts = head_counts(s, w.shape)
        where = f"case {i} (seed {SEED}): stream {s.shape}, classes {w.shape[0]}"
        assert r["logits"].tolist() == logits[0].tolist(), where
        assert r["cls"] == argmax_low(logits)[0], where
        assert r["max_logit"] == logits[0].max(), where
        for k in ("adds", "macs", "weight_reads", "act_reads"):
            assert r[k] == counts[k][0], f"{where}: counter {k}"
        assert r["cycles"] == w.size + 2, where  # done: K * C + 2 cycles after the last input


@pytest.mark.parametrize("kwargs,message", [
    (dict(channels=0), "Channel count must be a positive integer, not 0"),
    (dict(classes=None), "Class count must be a positive integer, not None"),
    (dict(weight_width=1), "Weight width must be an integer >= 2, not 1"),
])
def test_head_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Head(**{"channels": 8, "classes": 4, **kwargs})


@pytest.mark.toolchain
def test_head_lints_clean(tmp_path):
    from hw.tools import lint, unexplained

    dut = Head(channels=16, classes=10, lanes=4)
    assert unexplained(lint(dut, "head", tmp_path), dut) == []
