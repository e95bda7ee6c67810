"""hw.maxpool.MaxPool against model.golden.ref_maxpool and maxpool_counts (Amaranth sim)."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import memory
from amaranth.sim import Simulator

from hw.maxpool import MaxPool
from model.golden import maxpool_counts, ref_maxpool

SEED = 20240611
WORD = 12  # channels per word of the unit under test


class Bench(Elaboratable):
    """The unit with its input and output spike memories (as the top would own them)."""

    def __init__(self, depth=1100):
        self.dut = MaxPool(channels=WORD, max_height=9, max_width=9, time_steps=4,
                           addr_width=11, stride_width=2)
        self.src = memory.Memory(shape=WORD, depth=depth, init=[])
        self.dst = memory.Memory(shape=WORD, depth=depth, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut, m.submodules.src, m.submodules.dst = self.dut, self.src, self.dst
        rd, wr = self.src.read_port(), self.dst.write_port()
        m.d.comb += [rd.addr.eq(self.dut.in_addr), rd.en.eq(self.dut.in_en),
                     self.dut.in_data.eq(rd.data),
                     wr.addr.eq(self.dut.out_addr), wr.data.eq(self.dut.out_wdata),
                     wr.en.eq(self.dut.out_we)]
        return m


def words(x):
    """[T, C, H, W] bits -> words [T, H, W] (bit c = channel c)."""
    return (x.astype(np.int64) << np.arange(x.shape[1]).reshape(1, -1, 1, 1)).sum(1)


def bits(w, C):
    """words [T, H, W] -> [T, C, H, W] bits."""
    return ((w[:, None] >> np.arange(C).reshape(1, -1, 1, 1)) & 1).astype(np.uint8)


def rtl_maxpool(cases):
    """Run every case (x [T, C, H, W], stride, in_base, out_base) in one simulation."""
    bench = Bench()
    dut = bench.dut
    results = []

    async def testbench(ctx):
        for x, stride, in_base, out_base in cases:
            T, C, H, W = x.shape
            Ho, Wo = (H - 1) // 2 + 1, (W - 1) // 2 + 1
            for i, v in enumerate(words(x).reshape(-1)):
                ctx.set(bench.src.data[in_base + i * stride], int(v))
            for i in range(T * Ho * Wo):
                ctx.set(bench.dst.data[out_base + i * stride], 0xABC)  # stale marker
            ctx.set(dut.clear, 1)
            for port, v in ((dut.height, H), (dut.width, W), (dut.steps, T),
                            (dut.stride, stride), (dut.in_base, in_base),
                            (dut.out_base, out_base), (dut.n_channels, C), (dut.start, 1)):
                ctx.set(port, v)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.clear, 0)
            cycles = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
            await ctx.tick()
            out = np.array([ctx.get(bench.dst.data[out_base + i * stride])
                            for i in range(T * Ho * Wo)], dtype=np.int64)
            results.append(dict(
                out=bits(out.reshape(T, Ho, Wo), C), cycles=cycles,
                act_reads=ctx.get(dut.act_reads), act_writes=ctx.get(dut.act_writes),
                busy_cycles=ctx.get(dut.busy_cycles)))

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results


def random_cases(rng, n):
    cases = []
    for i in range(n):
        T, C = int(rng.integers(1, 5)), int(rng.integers(1, WORD + 1))
        H, W = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        density = [0.0, 1.0, 0.05, 0.3, 0.7][i % 5] if i < 40 else rng.random()
        x = (rng.random((T, C, H, W)) < density).astype(np.uint8)
        stride = int(rng.integers(1, 4))
        cases.append((x, stride, int(rng.integers(0, 16)), int(rng.integers(0, 16))))
    return cases


def edge_cases():
    cases = []
    for H, W in ((1, 1), (1, 9), (9, 1), (2, 2), (9, 9), (8, 8), (3, 4)):
        for fill in (0, 1):
            cases.append((np.full((4, WORD, H, W), fill, np.uint8), 1, 0, 0))
    # One spike at each corner and edge of an odd and an even map: border windows are exact.
    for H, W in ((7, 7), (6, 8)):
        for y, x in ((0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1), (H // 2, 0), (0, W // 2)):
            a = np.zeros((2, WORD, H, W), np.uint8)
            a[1, 3, y, x] = 1
            cases.append((a, 1, 0, 0))
    return cases


def check(cases, results):
    for i, ((x, stride, _ib, _ob), r) in enumerate(zip(cases, results, strict=True)):
        ref = ref_maxpool(x[None])
        counts = maxpool_counts(x[None], ref)
        where = f"case {i} (seed {SEED}): T,C,H,W={x.shape} stride {stride}"
        assert np.array_equal(r["out"], ref[0]), where
        assert r["act_reads"] == counts["act_reads"][0], where
        assert r["act_writes"] == counts["act_writes"][0], where
        T, _, H, W = x.shape
        assert r["cycles"] == T * H * W + 3, where
        assert r["busy_cycles"] == r["cycles"], where


def test_maxpool_random_and_edges():
    rng = np.random.default_rng(SEED)
    cases = edge_cases() + random_cases(rng, 200)
    check(cases, rtl_maxpool(cases))


def test_maxpool_validates_arguments():
    with pytest.raises(ValueError, match="Channel count must be a positive integer, not 0"):
        MaxPool(channels=0)
    with pytest.raises(ValueError, match="Maximum width must be a positive integer, not 'x'"):
        MaxPool(channels=8, max_width="x")


@pytest.mark.toolchain
def test_maxpool_lints_clean(tmp_path):
    from hw.tools import lint, unexplained

    dut = MaxPool(channels=16, max_height=16, max_width=16)
    assert unexplained(lint(dut, "maxpool", tmp_path), dut) == []
