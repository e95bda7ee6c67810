"""hw.priority: lowest_set exhaustively; SpikeScanner exhaustively for small widths, randomly
for wide ones (the AC engine's 9 x 64 window and a 1536-bit 1x1 window)."""

import gc
import random

import pytest
from amaranth.hdl import Cat, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.priority import SpikeScanner, lowest_set, one_set


def ref_scan(vector: int) -> list[int]:
    """The golden order: set bits, lowest index first."""
    return [i for i in range(vector.bit_length()) if vector >> i & 1]


def run_sim(dut, bench, clock=True):
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


class Comb(wiring.Component):
    def __init__(self, n):
        self.n = n
        super().__init__({"bits": In(n), "any": Out(1), "index": Out(max(1, (n - 1).bit_length())),
                          "one": Out(1)})

    def elaborate(self, platform):
        m = Module()
        any_, idx = lowest_set(self.bits)
        m.d.comb += [self.any.eq(any_), self.index.eq(idx), self.one.eq(one_set(self.bits))]
        return m


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 11])
def test_lowest_set_and_one_set_exhaustive(n):
    dut = Comb(n)

    async def bench(ctx):
        for v in range(1 << n):
            ctx.set(dut.bits, v)
            assert ctx.get(dut.any) == (v != 0)
            assert ctx.get(dut.one) == (bin(v).count("1") == 1), v
            if v:
                assert ctx.get(dut.index) == ref_scan(v)[0], v

    run_sim(dut, bench, clock=False)


class Harness(wiring.Component):
    """A SpikeScanner whose words come from a vector register set by the testbench."""

    def __init__(self, words, word_width, preloaded=False):
        self.G, self.B = words, word_width
        self.scanner = SpikeScanner(words=words, word_width=word_width, preloaded=preloaded)
        super().__init__({"vec": In(words * word_width), "load": In(1), "next": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.scanner = s = self.scanner
        G, B = self.G, self.B
        flags = Cat(self.vec.word_select(i, B).any() for i in range(G))
        m.d.comb += [
            s.load.eq(self.load),
            s.next.eq(self.next),
            s.word_data.eq(self.vec.word_select(s.word_addr, B)),
        ]
        if s.preloaded:  # the first word read ahead, as the AC engine does
            first_any, first = lowest_set(flags)
            first_data = Mux(first_any, self.vec.word_select(first, B), 0)
            m.d.comb += [s.flags.eq(flags & (flags - 1)), s.first_word.eq(first),
                         s.first.eq(first_data), s.first_one.eq(one_set(first_data)),
                         s.word_one.eq(one_set(s.word_data))]
        else:
            m.d.comb += s.flags.eq(flags)
        return m


def check_vectors(G, B, vectors, seed=0, stall=0.0, preloaded=False):
    """Scan ``vectors`` back to back (each loaded on the cycle the previous one's last bit is
    taken), with ``next`` withheld at random (probability ``stall``); check every bit."""
    h = Harness(G, B, preloaded)
    s = h.scanner
    rng = random.Random(seed)

    async def bench(ctx):
        ctx.set(h.vec, vectors[0])
        ctx.set(h.load, 1)
        await ctx.tick()
        ctx.set(h.load, 0)
        for i, v in enumerate(vectors):
            expect = ref_scan(v)
            nxt = vectors[i + 1] if i + 1 < len(vectors) else 0
            if not expect:
                assert not ctx.get(s.valid) and ctx.get(s.empty), f"vector {v:#x}"
                ctx.set(h.vec, nxt)
                ctx.set(h.load, 1)
                await ctx.tick()
                ctx.set(h.load, 0)
                continue
            j = 0
            while j < len(expect):
                assert ctx.get(s.valid) and not ctx.get(s.empty), f"vector {v:#x} bit {j}"
                assert ctx.get(s.index) == expect[j], f"vector {v:#x}: bit {j}"
                assert ctx.get(s.index) == ctx.get(s.word) * B + ctx.get(s.bit)
                assert ctx.get(s.last) == (j == len(expect) - 1), f"vector {v:#x}: last"
                go = rng.random() >= stall
                ctx.set(h.next, go)
                if go and j == len(expect) - 1:
                    ctx.set(h.vec, nxt)
                    ctx.set(h.load, 1)
                await ctx.tick()
                ctx.set(h.load, 0)
                ctx.set(h.next, 0)
                j += go

    run_sim(h, bench)


@pytest.mark.parametrize("preloaded", [False, True])
@pytest.mark.parametrize("G,B", [(1, 8), (2, 4), (4, 2), (8, 1), (3, 2), (5, 2)])
def test_scanner_exhaustive(G, B, preloaded):
    n = G * B
    vectors = list(range(1 << n))
    random.Random(n).shuffle(vectors)
    check_vectors(G, B, vectors, seed=G * 100 + B, stall=0.2, preloaded=preloaded)


def random_vector(rng, n, density):
    return sum(1 << i for i in range(n) if rng.random() < density)


@pytest.mark.parametrize("G,B,preloaded", [(9, 64, False), (24, 64, False), (7, 16, False),
                                            (24, 32, True)])
def test_scanner_random_wide(G, B, preloaded):
    rng = random.Random(G * B)
    n = G * B
    vectors = [0, 1, 1 << (n - 1), (1 << n) - 1 if n <= 128 else 3 << (n - 2)]
    for density in (0.0005, 0.002, 0.01, 0.03, 0.1):
        vectors += [random_vector(rng, n, density) for _ in range(6)]
    # one set bit in each word in turn; words alternating empty and full
    vectors += [sum(1 << (w * B + rng.randrange(B)) for w in range(G))]
    vectors += [sum(((1 << B) - 1) << (w * B) for w in range(0, G, 2))] if n <= 256 else []
    check_vectors(G, B, vectors, seed=n, stall=0.1, preloaded=preloaded)


@pytest.mark.parametrize("preloaded", [False, True])
def test_scanner_load_discards_rest(preloaded):
    """A load in the middle of a vector starts the new one at once."""
    h = Harness(3, 4, preloaded)
    s = h.scanner

    async def bench(ctx):
        ctx.set(h.vec, 0b1010_0000_0110)
        ctx.set(h.load, 1)
        await ctx.tick()
        ctx.set(h.load, 0)
        assert ctx.get(s.index) == 1
        ctx.set(h.next, 1)
        await ctx.tick()
        assert ctx.get(s.index) == 2
        ctx.set(h.vec, 0b0001_0000_0000)
        ctx.set(h.load, 1)
        await ctx.tick()
        ctx.set(h.load, 0)
        assert ctx.get(s.valid) and ctx.get(s.index) == 8 and ctx.get(s.last)
        await ctx.tick()
        assert ctx.get(s.empty)

    run_sim(h, bench)


@pytest.mark.parametrize("kwargs,message", [
    (dict(words=0, word_width=8), "Word count must be a positive integer, not 0"),
    (dict(words=4, word_width=6), "Word width must be a power of two, not 6"),
])
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_scanner_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpikeScanner(**kwargs)
    gc.collect()  # the half-built component warns when collected: here, filtered


@pytest.mark.toolchain
@pytest.mark.parametrize("preloaded", [False, True])
def test_scanner_lint(preloaded):
    tools = pytest.importorskip("hw.tools")
    dut = SpikeScanner(words=9, word_width=64, preloaded=preloaded)
    warnings = tools.lint(dut, "spike_scanner")
    assert tools.unexplained(warnings, dut) == []
