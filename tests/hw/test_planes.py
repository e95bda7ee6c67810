"""hw.planes.PlaneAdder and PlaneReader against numpy and model.golden (Amaranth sim).

Maps are [T, C, H, W] non-negative integers held as B bit planes in a word memory (layout in
hw/planes.py); ``encode`` / ``decode`` are the Python side of that layout.
"""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, signed
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from hw.head import Head
from hw.planes import PlaneAdder, PlaneReader
from model.golden import add_counts, argmax_low, head_counts, ref_head

SEED = 20240917
WW = 16  # word width of the spike memory
ADDR_W = 13
DEPTH = 1 << ADDR_W
PLANES_MAX = 3  # B_a of the adder, B of the reader
T_MAX, HW_MAX, CW_MAX = 4, 8, 4  # steps, height / width, words per plane (C <= 64)


def encode(x, B):
    """[T, C, H, W] integers (0 <= x < 2 ** B) -> the words of the B-plane layout."""
    T, C, H, W = x.shape
    assert C % WW == 0 and x.min() >= 0 and x.max() < (1 << B)
    v = x.transpose(0, 2, 3, 1).reshape(T * H * W, C // WW, WW).astype(np.int64)
    bits = (v[..., None] >> np.arange(B)) & 1  # [tp, w, j, b]
    words = (bits << np.arange(WW).reshape(1, 1, -1, 1)).sum(2)  # [tp, w, b]
    return words.transpose(0, 2, 1).reshape(-1)  # address order: (tp * B + b) * cw + w


def decode(words, B, shape):
    """The inverse of ``encode``: words of a B-plane map -> [T, C, H, W] integers."""
    T, C, H, W = shape
    w = np.asarray(words, np.int64).reshape(T * H * W, B, C // WW)
    bits = (w[..., None] >> np.arange(WW)) & 1  # [tp, b, w, j]
    v = (bits << np.arange(B).reshape(1, -1, 1, 1)).sum(1)  # [tp, w, j]
    return v.reshape(T, H, W, C).transpose(0, 3, 1, 2)


def test_encode_decode_layout():
    x = np.zeros((2, 32, 2, 3), np.int64)
    x[1, 17, 1, 2] = 5  # tp = (1 * 2 + 1) * 3 + 2 = 11, w = 1, j = 1, planes 0 and 2
    words = encode(x, 3)
    cw = 2
    assert np.flatnonzero(words).tolist() == [(11 * 3 + 0) * cw + 1, (11 * 3 + 2) * cw + 1]
    assert words[(11 * 3 + 0) * cw + 1] == 2
    assert np.array_equal(decode(words, 3, x.shape), x)


def place(rng, sizes):
    """Non-overlapping regions of the given sizes at random bases in [0, DEPTH)."""
    order = rng.permutation(len(sizes))
    slack = DEPTH - sum(sizes)
    assert slack >= 0
    cuts = np.sort(rng.integers(0, slack + 1, len(sizes)))
    bases, at, prev = [0] * len(sizes), 0, 0
    for i, cut in zip(order, cuts, strict=True):
        at += int(cut) - prev
        prev = int(cut)
        bases[i] = at
        at += sizes[i]
    return bases


# -- PlaneAdder -------------------------------------------------------------------------------
class AdderBench(Elaboratable):
    """The adder on one spike memory (one read port, one write port), random initial words."""

    def __init__(self, rng):
        self.dut = PlaneAdder(word_width=WW, planes_max=PLANES_MAX, addr_width=ADDR_W,
                              positions_max=T_MAX * HW_MAX * HW_MAX, words_max=CW_MAX)
        self.init = [int(v) for v in rng.integers(0, 1 << WW, DEPTH)]
        self.mem = memory.Memory(shape=WW, depth=DEPTH, init=self.init)

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        m.submodules.dut, m.submodules.mem = dut, self.mem
        rd, wr = self.mem.read_port(), self.mem.write_port()
        m.d.comb += [rd.addr.eq(dut.rd_addr), rd.en.eq(dut.rd_en), dut.rd_data.eq(rd.data),
                     wr.addr.eq(dut.wr_addr), wr.data.eq(dut.wr_data), wr.en.eq(dut.wr_en)]
        return m


COUNTERS = ("adds", "act_reads", "act_writes", "word_reads", "word_writes", "busy_cycles",
            "nonzero")


def rtl_add(cases, rng):
    """Run every case (a, s, B_a, B_o) in one simulation; the model memory follows along."""
    bench = AdderBench(rng)
    dut = bench.dut
    model = np.array(bench.init, np.int64)  # what the memory must hold
    results = []

    async def testbench(ctx):
        for a, s, Ba, Bo in cases:
            T, C, H, W = a.shape
            G = T * H * W * (C // WW)
            a_base, s_base, o_base = place(rng, [G * Ba, G, G * Bo])
            for base, words in ((a_base, encode(a, Ba)), (s_base, encode(s, 1))):
                for i, v in enumerate(words):
                    ctx.set(bench.mem.data[base + i], int(v))
                    model[base + i] = v
            ctx.set(dut.clear, 1)
            for port, v in ((dut.a_base, a_base), (dut.a_planes, Ba), (dut.s_base, s_base),
                            (dut.out_base, o_base), (dut.out_planes, Bo),
                            (dut.words, C // WW), (dut.positions, T * H * W), (dut.start, 1)):
                ctx.set(port, v)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.clear, 0)
            cycles, writes = 1, []
            while not ctx.get(dut.done):
                if ctx.get(dut.wr_en):
                    writes.append(ctx.get(dut.wr_addr))
                await ctx.tick()
                cycles += 1
            await ctx.tick()
            words = [ctx.get(bench.mem.data[o_base + i]) for i in range(G * Bo)]
            model[o_base:o_base + G * Bo] = words
            results.append(dict(out=decode(words, Bo, a.shape), cycles=cycles, writes=writes,
                                o_base=o_base,
                                **{k: ctx.get(getattr(dut, k)) for k in COUNTERS}))
        # Nothing outside the output regions changed, in any case.
        final = [ctx.get(bench.mem.data[i]) for i in range(DEPTH)]
        results.append(np.array(final, np.int64) - model)

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results


def random_planes(rng, shape, B, density):
    """Integers of B planes, each bit set with probability ``density``."""
    bits = rng.random((B, *shape)) < density
    return (bits.astype(np.int64) << np.arange(B).reshape(-1, 1, 1, 1, 1)).sum(0)


def adder_case(rng, Ba=None, Bo=None, shape=None, da=None, ds=None):
    Ba = int(rng.integers(1, PLANES_MAX + 1)) if Ba is None else Ba
    Bo = Ba + int(rng.integers(0, 2)) if Bo is None else Bo
    if shape is None:
        shape = (int(rng.integers(1, T_MAX + 1)), int(rng.choice([16, 32, 64])),
                 int(rng.integers(1, HW_MAX + 1)), int(rng.integers(1, HW_MAX + 1)))
    da = rng.random() if da is None else da
    ds = rng.random() if ds is None else ds
    a = random_planes(rng, shape, Ba, da)
    s = (rng.random(shape) < ds).astype(np.int64)
    if Bo == Ba:  # the compiler's guarantee: the sum fits in B_a planes
        s[a == (1 << Ba) - 1] = 0
    return a, s, Ba, Bo


def adder_edge_cases(rng):
    cases = []
    for Ba in range(1, PLANES_MAX + 1):
        full = np.full((2, 32, 3, 2), (1 << Ba) - 1, np.int64)
        ones = np.ones_like(full)
        cases += [(full, ones, Ba, Ba + 1),  # the carry ripples through every plane
                  (full, 0 * ones, Ba, Ba),
                  (0 * full, ones, Ba, Ba),
                  (0 * full, 0 * ones, Ba, Ba + 1)]
        cases.append(adder_case(rng, Ba, Ba + 1, (1, 16, 1, 1)))  # one group
        cases.append(adder_case(rng, Ba, Ba, (4, 64, 8, 8)))  # the largest map
    s = (rng.random((3, 48, 2, 5)) < 0.4).astype(np.int64)
    cases.append((np.zeros_like(s), s, 0, 1))  # B_a = 0: a copy of s
    return cases


def check_adder(cases, results):
    leftover = results.pop()
    assert not leftover.any(), f"words changed outside the output maps: {np.flatnonzero(leftover)}"
    for i, ((a, s, Ba, Bo), r) in enumerate(zip(cases, results, strict=True)):
        T, C, H, W = a.shape
        G = T * H * W * (C // WW)
        ref = a + s
        where = f"case {i} (seed {SEED}): B_a {Ba}, B_o {Bo}, T,C,H,W = {a.shape}"
        assert np.array_equal(r["out"], ref), where
        counts = add_counts(ref[None])
        for k in ("adds", "act_reads", "act_writes"):
            assert r[k] == counts[k][0], f"{where}: counter {k}"
        assert r["word_reads"] == G * (Ba + 1), where
        assert r["word_writes"] == G * Bo, where
        assert r["nonzero"] == np.count_nonzero(ref), where
        # Every output word written once (in (position, word, plane) order); nothing else.
        assert sorted(r["writes"]) == list(range(r["o_base"], r["o_base"] + G * Bo)), where
        assert r["cycles"] == G * (Ba + 1) + 3 + (Bo > Ba), where
        assert r["busy_cycles"] == r["cycles"], where


def test_plane_adder_random_and_edges():
    rng = np.random.default_rng(SEED)
    cases = adder_edge_cases(rng)
    cases += [adder_case(rng, da=d, ds=d) for d in (0.0, 1.0, 0.05, 0.5)]
    cases += [adder_case(rng) for _ in range(200)]
    check_adder(cases, rtl_add(cases, rng))


@pytest.mark.parametrize("kwargs,message", [
    (dict(word_width=12), "Word width must be a power of two, not 12"),
    (dict(planes_max=0), "Maximum plane count must be a positive integer, not 0"),
    (dict(words_max="4"), "Maximum word count must be a positive integer, not '4'"),
])
def test_plane_adder_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PlaneAdder(**{"word_width": 16, "planes_max": 3, "addr_width": 12,
                      "positions_max": 64, "words_max": 4, **kwargs})


# -- PlaneReader ------------------------------------------------------------------------------
VALUE_W = 6


class ReaderBench(Elaboratable):
    """The reader on a word memory (one read port); optionally feeding a ``Head``."""

    def __init__(self, lanes, head=None):
        self.dut = PlaneReader(word_width=WW, lanes=lanes, planes_max=PLANES_MAX,
                               value_width=VALUE_W, addr_width=ADDR_W,
                               positions_max=T_MAX * HW_MAX * HW_MAX, words_max=CW_MAX)
        self.mem = memory.Memory(shape=WW, depth=DEPTH, init=[])
        self.head = head
        if head is not None:
            self.w = memory.Memory(shape=signed(head.weight_width), depth=head.w_depth, init=[])
            self.b = memory.Memory(shape=signed(head.bias_width), depth=head.classes, init=[])

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        m.submodules.dut, m.submodules.mem = dut, self.mem
        rd = self.mem.read_port()
        m.d.comb += [rd.addr.eq(dut.rd_addr), rd.en.eq(dut.rd_en), dut.rd_data.eq(rd.data)]
        if self.head is not None:
            head = self.head
            m.submodules.head, m.submodules.w, m.submodules.b = head, self.w, self.b
            w_rd, b_rd = self.w.read_port(), self.b.read_port()
            m.d.comb += [w_rd.addr.eq(head.w_addr), w_rd.en.eq(head.w_en),
                         head.w_data.eq(w_rd.data), b_rd.addr.eq(head.b_addr),
                         b_rd.en.eq(head.b_en), head.b_data.eq(b_rd.data)]
            wiring.connect(m, dut.o, head.i)
        return m


def rtl_read(lanes, cases, rng, ready_p):
    """Each case (x [T, C, H, W], B, base) through one simulation: the rows as emitted."""
    bench = ReaderBench(lanes)
    dut = bench.dut
    results = []

    async def testbench(ctx):
        for x, B, base in cases:
            T, C, H, W = x.shape
            for i, v in enumerate(encode(x, B)):
                ctx.set(bench.mem.data[base + i], int(v))
            for port, v in ((dut.base, base), (dut.planes, B), (dut.words, C // WW),
                            (dut.positions, T * H * W), (dut.start, 1)):
                ctx.set(port, v)
            ready = bool(rng.random() < ready_p)
            ctx.set(dut.o.ready, ready)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles, rows = 1, []
            while True:
                ready = bool(rng.random() < ready_p)
                ctx.set(dut.o.ready, ready)
                if ctx.get(dut.o.valid) and ready:
                    p = ctx.get(dut.o.payload)
                    rows.append(([int(v) for v in p.value], int(p.group), int(p.mask),
                                 int(p.last)))
                if ctx.get(dut.done):
                    break
                await ctx.tick()
                cycles += 1
            busy_after = ctx.get(dut.busy)
            await ctx.tick()
            results.append(dict(rows=rows, cycles=cycles, busy_after=busy_after,
                                idle=not ctx.get(dut.busy)))

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results


def reader_case(rng, B=None, shape=None, full=False):
    B = int(rng.integers(1, PLANES_MAX + 1)) if B is None else B
    if shape is None:
        shape = (int(rng.integers(1, T_MAX + 1)), int(rng.choice([16, 32, 64])),
                 int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    if full:
        x = np.full(shape, (1 << B) - 1, np.int64)
    else:
        x = random_planes(rng, shape, B, rng.random())
    G = x.size // WW
    return x, B, int(rng.integers(0, DEPTH - G * B + 1))


def check_reader(P, cases, results):
    for i, ((x, B, _), r) in enumerate(zip(cases, results, strict=True)):
        T, C, H, W = x.shape
        where = f"case {i} (seed {SEED}, P {P}): B {B}, T,C,H,W = {x.shape}"
        rows = r["rows"]
        assert len(rows) == T * H * W * C // P, where
        got = np.full((T * H * W, C), -1, np.int64)
        for n, (value, group, mask, last) in enumerate(rows):
            tp, g = divmod(n, C // P)  # rows come in (position, word, row) order
            assert group == g, f"{where}: row {n}"
            assert mask == (1 << P) - 1, where
            assert last == (n == len(rows) - 1), f"{where}: row {n}"
            assert (got[tp, g * P:(g + 1) * P] == -1).all(), where  # each element once
            got[tp, g * P:(g + 1) * P] = value
        ref = x.transpose(0, 2, 3, 1).reshape(T * H * W, C)
        assert np.array_equal(got, ref), where
        # The head's sum over tokens and time, per channel.
        assert np.array_equal(got.sum(0), x.sum(axis=(0, 2, 3))), where
        assert r["busy_after"] and r["idle"], where


@pytest.mark.parametrize("P,ready_p,n", [(4, 0.6, 60), (8, 0.8, 60)])
def test_plane_reader_backpressure(P, ready_p, n):
    rng = np.random.default_rng(SEED + P)
    cases = [reader_case(rng, B, (1, 16, 1, 1)) for B in range(1, PLANES_MAX + 1)]
    cases += [reader_case(rng, B, (2, 64, 3, 2), full=True) for B in range(1, PLANES_MAX + 1)]
    cases += [reader_case(rng) for _ in range(n)]
    check_reader(P, cases, rtl_read(P, cases, rng, ready_p))


def reader_cycles(P, B, G):
    """Cycles from start to done without back-pressure, for G (position, word) groups."""
    R = WW // P
    return G * max(B, R) + min(B, R) + 2


@pytest.mark.parametrize("P", [4, 8])
def test_plane_reader_full_rate(P):
    rng = np.random.default_rng(SEED - P)
    cases = [reader_case(rng, B) for B in range(1, PLANES_MAX + 1) for _ in range(4)]
    results = rtl_read(P, cases, rng, 1.0)
    check_reader(P, cases, results)
    for (x, B, _), r in zip(cases, results, strict=True):
        assert r["cycles"] == reader_cycles(P, B, x.size // WW), (P, B, x.shape)


def test_plane_reader_feeds_head():
    """PlaneReader -> Head: the head's logits and class are those of ref_head on the map."""
    P, K = 8, 5
    head = Head(channels=CW_MAX * WW, classes=K, lanes=P, in_width=VALUE_W, acc_width=14,
                weight_width=6, bias_width=12, logit_width=24)
    bench = ReaderBench(P, head)
    dut = bench.dut
    rng = np.random.default_rng(SEED + 1)
    cases = []
    for _ in range(4):
        x, B, base = reader_case(rng)
        C = x.shape[1]
        w = rng.integers(-32, 32, (K, C))
        b = rng.integers(-2048, 2048, K)
        cases.append((x, B, base, w, b))
    results = []

    async def testbench(ctx):
        for x, B, base, w, b in cases:
            T, C, H, W = x.shape
            for i, v in enumerate(encode(x, B)):
                ctx.set(bench.mem.data[base + i], int(v))
            for i, v in enumerate(w.reshape(-1)):
                ctx.set(bench.w.data[i], int(v))
            for i, v in enumerate(b):
                ctx.set(bench.b.data[i], int(v))
            for port, v in ((head.n_channels, C), (head.n_classes, K), (head.start, 1),
                            (head.clear, 1)):
                ctx.set(port, v)
            await ctx.tick()
            ctx.set(head.start, 0)
            ctx.set(head.clear, 0)
            for port, v in ((dut.base, base), (dut.planes, B), (dut.words, C // WW),
                            (dut.positions, T * H * W), (dut.start, 1)):
                ctx.set(port, v)
            await ctx.tick()
            ctx.set(dut.start, 0)
            while not ctx.get(head.done):
                await ctx.tick()
            await ctx.tick()
            results.append(dict(cls=ctx.get(head.class_index), max_logit=ctx.get(head.max_logit),
                                adds=ctx.get(head.adds), act_reads=ctx.get(head.act_reads)))

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    for (x, _, _, w, b), r in zip(cases, results, strict=True):
        logits = ref_head(x[None], w, b)
        assert r["cls"] == argmax_low(logits)[0]
        assert r["max_logit"] == logits[0].max()
        counts = head_counts(x[None], w.shape)
        assert r["adds"] == counts["adds"][0] and r["act_reads"] == counts["act_reads"][0]


@pytest.mark.parametrize("kwargs,message", [
    (dict(lanes=3), "Lane count must be a power of two, not 3"),
    (dict(lanes=32), "Lane count 32 exceeds the word width 16"),
    (dict(value_width=3), "Value width 3 cannot hold 3 planes"),
])
def test_plane_reader_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PlaneReader(**{"word_width": 16, "lanes": 4, "planes_max": 3, "value_width": 6,
                       "addr_width": 12, "positions_max": 64, "words_max": 4, **kwargs})


def test_plane_reader_layout_matches_head():
    reader = PlaneReader(word_width=16, lanes=8, planes_max=3, value_width=6, addr_width=12,
                         positions_max=64, words_max=4)
    head = Head(channels=64, classes=10, lanes=8, in_width=6)
    reader._MustUse__silence = head._MustUse__silence = True  # never elaborated here
    assert reader.out_layout == head.in_layout
    assert reader.group_width == 3


@pytest.mark.toolchain
@pytest.mark.parametrize("which", ["adder", "reader"])
def test_planes_lint_clean(which, tmp_path):
    from hw.tools import lint, unexplained

    if which == "adder":
        dut = PlaneAdder(word_width=16, planes_max=4, addr_width=16, positions_max=1024,
                         words_max=32)
    else:
        dut = PlaneReader(word_width=16, lanes=8, planes_max=4, value_width=8, addr_width=16,
                          positions_max=1024, words_max=32)
    assert unexplained(lint(dut, f"planes_{which}", tmp_path), dut) == []
