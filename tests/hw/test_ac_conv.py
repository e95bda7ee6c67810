"""hw.ac_conv: the AC conv engine in Amaranth's simulator against model.golden.ref_conv on
spikes and conv_counts, on random layers and edges, many layers per simulation run; and its
bit-plane mode (1x1 convs on small integers) against ref_conv on the integers."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.ac_conv import ACConv
from model.golden import conv_counts, ref_conv

COUNTERS = ("sops", "spikes_in", "weight_reads", "act_reads")
HW_COUNTERS = COUNTERS + ("act_words", "weight_rows", "busy_cycles", "stall_cycles")


@dataclass
class Case:
    """One layer: spikes x [T, Ci, H, W], weights w [Co, Ci, k, k], biases b [Co].

    Bit-plane mode (``planes`` = B > 0, k = 1): x is the plane map of integers [T, C, H, W]
    (Ci = B * C, channel b * C + c = bit b of channel c), w [Co, C, 1, 1]."""
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray
    stall: bool = False  # the output's ready drops at random
    name: str = ""
    planes: int = 0  # B; 0: x is a plain spike map

    @property
    def shape(self):
        """(T, Ci, Co, k, H, W) of the spike map the engine sees (plane mode: Ci = B * C)."""
        T, Ci, H, W = self.x.shape
        return T, Ci, self.w.shape[0], self.w.shape[2], H, W

    @property
    def value(self):
        """The conv's input: the spikes, or the integers of the bit planes."""
        if not self.planes:
            return self.x.astype(np.int64)
        T, Ci, H, W = self.x.shape
        bits = self.x.astype(np.int64).reshape(T, self.planes, Ci // self.planes, H, W)
        return sum(bits[:, b] << b for b in range(self.planes))


# -- memory images (the layout of hw/ac_conv.py's docstring) ---------------------------------
def pack_spikes(x, word_width, rng=None):
    """Words of a spike map [T, Ci, H, W]: per (t, y, x), ceil(Ci / ww) words. With ``rng``,
    the bits above Ci in a position's last word hold garbage (the engine masks them)."""
    T, Ci, H, W = x.shape
    nwords = -(-Ci // word_width)
    bits = np.zeros((T, H, W, nwords * word_width), dtype=np.int64)
    bits[..., :Ci] = x.transpose(0, 2, 3, 1)
    if rng is not None and Ci % word_width:
        bits[..., Ci:] = rng.integers(0, 2, bits[..., Ci:].shape)
    words = bits.reshape(-1, nwords, word_width)
    weights = 1 << np.arange(word_width, dtype=object)
    return [int(sum(int(v) * int(p) for v, p in zip(word, weights, strict=True)))
            for row in words for word in row]


def pack_rows(values, lanes, width):
    """Rows of ``lanes`` two's complement integers, lane l at bits [l * width, (l+1) * width)."""
    mask = (1 << width) - 1
    return [sum((int(v) & mask) << (lane * width) for lane, v in enumerate(row)) for row in values]


def pack_weights(w, lanes):
    """Rows base + g K + tap Ci + c of P weights (lanes beyond Co: 0)."""
    Co, Ci, k, _ = w.shape
    groups = -(-Co // lanes)
    wp = np.zeros((groups * lanes, Ci, k, k), dtype=np.int64)
    wp[:Co] = w
    # [g, tap, c, lane]
    rows = wp.reshape(groups, lanes, Ci, k * k).transpose(0, 3, 2, 1).reshape(-1, lanes)
    return rows


def pack_biases(b, lanes):
    groups = -(-len(b) // lanes)
    bp = np.zeros(groups * lanes, dtype=np.int64)
    bp[:len(b)] = b
    return bp.reshape(groups, lanes)


def expected_beats(case: Case, lanes):
    """(pos, t, group, mask, currents) in the engine's order: position, t, group."""
    T, Ci, Co, k, H, W = case.shape
    y = ref_conv(case.value, case.w, case.b)  # [T, Co, H, W]
    groups = -(-Co // lanes)
    yp = np.zeros((T, groups * lanes, H, W), dtype=np.int64)
    yp[:, :Co] = y
    beats = []
    for pos in range(H * W):
        for t in range(T):
            for g in range(groups):
                mask = sum(1 << lane for lane in range(lanes) if g * lanes + lane < Co)
                cur = [int(v) for v in yp[t, g * lanes:(g + 1) * lanes, pos // W, pos % W]]
                beats.append((pos, t, g, mask, cur))
    return beats


# -- the harness: the engine with its memories and an output recorder ------------------------
class Harness(wiring.Component):
    def __init__(self, cases, *, lanes, word_width, scan_width=None, windows=4, acc_width=18,
                 bias_width=18, planes_max=1):
        self.dut = ACConv(lanes=lanes, ci_max=16, co_max=16, hw_max=8, t_max=4,
                          word_width=word_width, scan_width=scan_width or word_width,
                          weight_width=8, bias_width=bias_width,
                          acc_width=acc_width, windows=windows, spike_addr_width=16,
                          weight_addr_width=16, bias_addr_width=10, planes_max=planes_max)
        rng = np.random.default_rng(len(cases))
        spikes, weights, biases, self.bases, self.nbeats = [], [], [], [], []
        for c in cases:
            self.bases.append((len(spikes), len(weights), len(biases)))
            spikes += pack_spikes(c.x, word_width, rng)
            weights += pack_rows(pack_weights(c.w, lanes), lanes, 8)  # planes: K = C rows
            biases += pack_rows(pack_biases(c.b, lanes), lanes, bias_width)
            T, Ci, Co, k, H, W = c.shape
            self.nbeats.append(T * H * W * -(-Co // lanes))
        self.spike_init, self.weight_init, self.bias_init = spikes, weights, biases
        self.out_depth = max(self.nbeats)
        d = self.dut
        self.params = ("start", "clear", "ci", "co", "k", "height", "width", "steps",
                       "spike_base", "weight_base", "bias_base")
        planes = {}
        if planes_max > 1:
            self.params += ("planes", "plane_lg")
            planes = {"planes": In(1), "plane_lg": In(len(d.plane_lg))}
        super().__init__({
            "start": In(1), "clear": In(1), "stall": In(1),
            "ci": In(len(d.ci)), "co": In(len(d.co)), "k": In(2), "height": In(len(d.height)),
            "width": In(len(d.width)), "steps": In(len(d.steps)),
            "spike_base": In(16), "weight_base": In(16), "bias_base": In(10), **planes,
            "beats": Out(16), "cycle": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = d = self.dut
        P = d.lanes
        m.submodules.spikes = smem = memory.Memory(
            shape=d.word_width, depth=max(1, len(self.spike_init)), init=self.spike_init)
        m.submodules.weights = wmem = memory.Memory(
            shape=P * d.weight_width, depth=len(self.weight_init), init=self.weight_init)
        m.submodules.biases = bmem = memory.Memory(
            shape=P * d.bias_width, depth=len(self.bias_init), init=self.bias_init)
        m.submodules.out = self.omem = omem = memory.Memory(
            shape=len(d.o.payload.as_value()), depth=self.out_depth, init=[])
        for mem, name in ((smem, "spike"), (wmem, "weight"), (bmem, "bias")):
            port = mem.read_port()
            m.d.comb += [port.addr.eq(getattr(d, f"{name}_addr")),
                         port.en.eq(getattr(d, f"{name}_en")),
                         getattr(d, f"{name}_data").eq(port.data)]
        for name in self.params:
            m.d.comb += getattr(d, name).eq(getattr(self, name))
        m.d.sync += self.cycle.eq(self.cycle + 1)
        # ready drops on about 3 cycles in 8 when `stall` (an LFSR)
        lfsr = Signal(16, init=0xACE1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[2] ^ lfsr[3] ^ lfsr[5]))
        m.d.comb += d.o.ready.eq(~(self.stall & lfsr[0] & (lfsr[7] | lfsr[11])))
        wp = omem.write_port()
        m.d.comb += [wp.addr.eq(self.beats), wp.data.eq(d.o.payload.as_value()),
                     wp.en.eq(d.o.valid & d.o.ready)]
        with m.If(self.start):
            m.d.sync += self.beats.eq(0)
        with m.Elif(d.o.valid & d.o.ready):
            m.d.sync += self.beats.eq(self.beats + 1)
        return m


def decode(layout, lanes, acc_width, value):
    fields = {name: (value >> f.offset) & ((1 << f.width) - 1)
              for name, f in layout}
    cur = []
    for lane in range(lanes):
        v = (fields["current"] >> (lane * acc_width)) & ((1 << acc_width) - 1)
        cur.append(v - (1 << acc_width) if v >> (acc_width - 1) else v)
    return fields["pos"], fields["t"], fields["group"], fields["mask"], cur, fields["last"]


def run_cases(cases, *, lanes, word_width, scan_width=None, windows=4, planes_max=1):
    """Run every case in one simulation; return per case (beats, counters, cycles)."""
    h = Harness(cases, lanes=lanes, word_width=word_width, scan_width=scan_width,
                windows=windows, planes_max=planes_max)
    d = h.dut
    results = []

    async def bench(ctx):
        for c, (sb, wb, bb) in zip(cases, h.bases, strict=True):
            T, Ci, Co, k, H, W = c.shape
            for name, v in (("ci", Ci), ("co", Co), ("k", k), ("height", H), ("width", W),
                            ("steps", T), ("spike_base", sb), ("weight_base", wb),
                            ("bias_base", bb), ("stall", int(c.stall))):
                ctx.set(getattr(h, name), v)
            if planes_max > 1:
                ctx.set(h.planes, int(c.planes > 0))
                ctx.set(h.plane_lg, int(c.w.shape[1]).bit_length() - 1 if c.planes else 0)
            ctx.set(h.start, 1)
            ctx.set(h.clear, 1)
            await ctx.tick()
            ctx.set(h.start, 0)
            ctx.set(h.clear, 0)
            t0 = ctx.get(h.cycle)
            await ctx.tick().until(d.done)
            cycles = ctx.get(h.cycle) - t0 + 1
            n = ctx.get(h.beats)
            beats = [decode(d.out_layout, lanes, d.acc_width, ctx.get(h.omem.data[i]))
                     for i in range(n)]
            counters = {name: ctx.get(getattr(d, name)) for name in HW_COUNTERS}
            results.append((beats, counters, cycles))
            await ctx.tick()

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def check(cases, results, lanes, word_width):
    for c, (beats, counters, cycles) in zip(cases, results, strict=True):
        T, Ci, Co, k, H, W = c.shape
        want = expected_beats(c, lanes)
        assert len(beats) == len(want), f"{c.name}: {len(beats)} beats, want {len(want)}"
        for i, (got, exp) in enumerate(zip(beats, want, strict=True)):
            pos, t, g, mask, cur, last = got
            assert (pos, t, g, mask) == exp[:4], f"{c.name}: beat {i} tags {got[:4]} != {exp[:4]}"
            assert cur == exp[4], (f"{c.name}: position {pos} (y {pos // W}, x {pos % W}), "
                                   f"t {t}, group {g}: {cur} != {exp[4]}")
            assert last == (i == len(want) - 1), f"{c.name}: beat {i} last"
        if c.planes:
            gold = plane_counts(c)
        else:
            gold = {k: int(v[0]) for k, v in conv_counts(c.x[None], c.w.shape, "spikes").items()}
        for name in COUNTERS:
            assert counters[name] == gold[name], \
                f"{c.name}: {name} {counters[name]} != golden {gold[name]}"
        groups = -(-Co // lanes)
        spikes = window_spikes(c)
        events = int(np.maximum(spikes, 1).sum()) * groups
        assert counters["busy_cycles"] == counters["stall_cycles"] + events, c.name
        # physical reads: every word of the map once per output row whose window covers it
        # (column reuse along a row; padding is never fetched); a weight row per spike and
        # group, a bias row per position and group
        assert counters["act_words"] == act_words(c, word_width), c.name
        assert counters["weight_rows"] == int(spikes.sum()) * groups + H * W * groups, c.name
        assert counters["busy_cycles"] <= cycles


def plane_counts(c: Case):
    """The bit-serial counts of a plane-mode 1x1 layer, from first principles: each set bit
    of the plane map is one spike event (its only window), of Co synapses (a shifted weight
    row), and reads Co weights; a bias per output neuron; every plane bit is read once."""
    T, Ci, Co, k, H, W = c.shape
    B, C = c.planes, c.w.shape[1]
    assert k == 1 and Ci == B * C
    bits = int(c.x.sum())  # popcount of the planes
    return {"sops": bits * Co, "spikes_in": bits, "weight_reads": bits * Co + Co * H * W,
            "act_reads": T * B * C * H * W}


def act_words(c: Case, word_width):
    """Spike words the fetcher reads: T x W x nwords per (output row, valid input row)."""
    T, Ci, Co, k, H, W = c.shape
    p = k // 2
    rows = sum(min(H - 1, y + p) - max(0, y - p) + 1 for y in range(H))
    return T * W * -(-Ci // word_width) * rows


def window_spikes(c: Case):
    """Spikes in each (position, t) receptive field (valid taps only)."""
    T, Ci, Co, k, H, W = c.shape
    p = k // 2
    xp = np.pad(c.x.sum(1), ((0, 0), (p, p), (p, p)))  # [T, H + 2p, W + 2p]
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2)).sum((-1, -2))
    return win.transpose(1, 2, 0).reshape(-1)  # order: position, t


# -- case generators --------------------------------------------------------------------------
def random_case(rng, name, *, ci=None, co=None, k=None, h=None, w=None, t=None, density=None,
                wmax=127, stall=None):
    Ci = ci or int(rng.integers(1, 17))
    Co = co or int(rng.integers(1, 17))
    k = k or int(rng.choice([1, 3]))
    H = h or int(rng.integers(1, 7))
    W = w or int(rng.integers(1, 7))
    T = t or int(rng.integers(1, 5))
    density = float(rng.random()) if density is None else density
    x = (rng.random((T, Ci, H, W)) < density).astype(np.uint8)
    wt = rng.integers(-wmax, wmax + 1, (Co, Ci, k, k))
    b = rng.integers(-2000, 2001, Co)
    stall = bool(rng.random() < 0.3) if stall is None else stall
    return Case(x, wt, b, stall, name)


def scan_cycles(c: Case, lanes):
    """The engine's issue cycles: max(1, spikes) per (window, group)."""
    return int(np.maximum(window_spikes(c), 1).sum()) * -(-c.shape[2] // lanes)


def small_random_cases(seed, n, lanes, cap=500):
    """Random layers over the whole range (Ci, Co <= 16, H, W <= 6, T <= 4, k 1 or 3, density
    0..1), drawn again while their cycle count exceeds ``cap``, so that a batch simulates in
    seconds: large layers come with low densities, dense ones are small."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        c = random_case(rng, f"seed {seed} case {len(cases)}")
        if scan_cycles(c, lanes) <= cap:
            cases.append(c)
    return cases


def edge_cases(lanes, acc_width=18):
    rng = np.random.default_rng(7 + lanes)
    top = (1 << (acc_width - 1)) - 1
    cases = []
    for k in (1, 3):
        full = k * k * 16 * 127
        # all spikes, +-127 everywhere: the centre window reaches exactly the range's ends
        x = np.ones((1, 16, 3, 3), dtype=np.uint8)
        cases.append(Case(x, np.full((1, 16, k, k), 127), np.full(1, top - full),
                          name=f"k{k} max positive"))
        cases.append(Case(x, np.full((1, 16, k, k), -127), np.full(1, -top - 1 + full),
                          name=f"k{k} max negative", stall=True))
        cases.append(random_case(rng, f"k{k} no spikes", k=k, density=0.0, co=2 * lanes + 1))
        cases.append(random_case(rng, f"k{k} all spikes", k=k, density=1.0, h=3, w=2, t=2,
                                 ci=int(rng.integers(1, 8)), co=lanes - 1 or 1))
        for hh, ww in ((1, 1), (1, 5), (6, 1), (2, 2)):
            cases.append(random_case(rng, f"k{k} {hh}x{ww}", k=k, h=hh, w=ww, t=2,
                                     ci=int(rng.integers(1, 9)), density=0.3))
        cases.append(random_case(rng, f"k{k} co=1 ci=1", k=k, ci=1, co=1))
        cases.append(random_case(rng, f"k{k} co=16 ci=16", k=k, ci=16, co=16, h=3, w=3, t=1,
                                 density=0.1))
        cases.append(random_case(rng, f"k{k} co=P+1", k=k, co=lanes + 1, h=3, w=3,
                                 density=0.2))
    cases.append(random_case(rng, "k3 6x6 T4 sparse", k=3, h=6, w=6, t=4, co=lanes,
                             density=0.05))
    return cases


# -- tests ----------------------------------------------------------------------------------
BATCHES = [  # (lanes, word width, scan width, window buffers, seed): ~70 random layers + edges
    (2, 8, 8, 4, 1),
    (4, 16, 4, 4, 2),  # the scanner sees 4 parts of each 16-bit word
    (4, 4, 4, 2, 3),  # 4 words per tap; two window buffers only
]


@pytest.mark.parametrize("lanes,word_width,scan_width,windows,seed", BATCHES)
def test_random_layers(lanes, word_width, scan_width, windows, seed):
    cases = small_random_cases(seed, 70, lanes) + edge_cases(lanes)
    if word_width == 4:  # a 1x1 layer whose Ci (40) exceeds ci_max uses all 9 tap slots
        rng = np.random.default_rng(11)
        cases += [random_case(rng, f"1x1 ci40 {i}", k=1, ci=40, co=6, h=3, w=3, t=2)
                  for i in range(2)]
    t0 = time.time()
    results = run_cases(cases, lanes=lanes, word_width=word_width, scan_width=scan_width,
                        windows=windows)
    check(cases, results, lanes, word_width)
    print(f"{len(cases)} layers, {sum(r[2] for r in results)} cycles, "
          f"{time.time() - t0:.1f} s")


def fetch_cases(seed, lanes, cap=400):
    """The fetch path's corners: every T in 1..4 and k in {1, 3} on maps of one row, one
    column, two columns, widths that are not multiples of the 4 column slots (so that row
    changes meet the slot ring anywhere), densities 0 and 1 among random ones, backpressure
    on every other layer; Ci and Co drawn again while the layer exceeds ``cap`` cycles."""
    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (1, 2), (2, 1), (1, 5), (6, 1), (2, 2), (3, 5), (2, 7)]
    cases = []
    for k in (1, 3):
        for t in (1, 2, 3, 4):
            for i, (hh, ww) in enumerate(shapes):
                density = (0.0, 1.0, 0.05, 0.3)[(i + t) % 4]
                while True:
                    c = random_case(rng, f"fetch k{k} T{t} {hh}x{ww} density {density}", k=k,
                                    h=hh, w=ww, t=t, density=density, stall=bool(i % 2),
                                    ci=int(rng.integers(1, 10)),
                                    co=int(rng.choice([1, lanes, lanes + 1, 2 * lanes + 1])))
                    if scan_cycles(c, lanes) <= cap:
                        break
                cases.append(c)
    return cases


@pytest.mark.parametrize("lanes,word_width,scan_width,windows,seed", [
    (2, 4, 4, 2, 21),  # up to 3 words per position, 4 slots per tap, 2 window buffers
    (2, 8, 4, 4, 22),  # two scanner parts per word
])
def test_fetch_corners(lanes, word_width, scan_width, windows, seed):
    cases = fetch_cases(seed, lanes)
    results = run_cases(cases, lanes=lanes, word_width=word_width, scan_width=scan_width,
                        windows=windows)
    check(cases, results, lanes, word_width)


def plane_case(x, w, b, planes, name, stall=False):
    """The plane-mode layer of integers x [T, C, H, W] (0 .. 2^planes - 1): its plane map."""
    bits = np.concatenate([(x >> p) & 1 for p in range(planes)], axis=1).astype(np.uint8)
    return Case(bits, w, b, stall, name, planes)


def plane_cases(seed, n, lanes, planes_max, cap=400):
    """Random plane-mode 1x1 layers: B in 1..min(3, planes_max) (1..4 when planes_max is 4),
    C in {8, 16, 32}, Co in {1, P, P + 1, 2P + 1, 16}, H, W in 1..6, T in 1..4, x != 0 with
    densities 0, 0.05, 0.3, 1 in turn, non-zero values uniform in 1..2^B - 1, int8 weights,
    backpressure on every other layer; the map drawn again while the layer exceeds ``cap``
    cycles. Plus edges: all x = 2^B - 1 with +-127 weights, the accumulators at exactly
    their 18-bit ends."""
    rng = np.random.default_rng(seed)
    bmax = 4 if planes_max == 4 else min(3, planes_max)
    cases = []
    for i in range(n):
        B = int(rng.integers(1, bmax + 1))
        C = int(rng.choice([8, 16, 32]))
        Co = int(rng.choice([1, lanes, lanes + 1, 2 * lanes + 1, 16]))
        density = (0.0, 0.05, 0.3, 1.0)[i % 4]
        w = rng.integers(-127, 128, (Co, C, 1, 1))
        b = rng.integers(-2000, 2001, Co)
        while True:
            T, H, W = int(rng.integers(1, 5)), int(rng.integers(1, 7)), int(rng.integers(1, 7))
            x = np.where(rng.random((T, C, H, W)) < density,
                         rng.integers(1, 1 << B, (T, C, H, W)), 0)
            c = plane_case(x, w, b, B, f"planes B{B} C{C} Co{Co} {T}x{H}x{W} density "
                           f"{density} ({i})", stall=bool(i % 2))
            if scan_cycles(c, lanes) <= cap:
                break
        cases.append(c)
    top = (1 << 17) - 1
    B, C = bmax, 32
    full = C * 127 * ((1 << B) - 1)
    x = np.full((1, C, 2, 1), (1 << B) - 1)
    cases.append(plane_case(x, np.full((1, C, 1, 1), 127), np.full(1, top - full), B,
                            "planes max positive"))
    cases.append(plane_case(x, np.full((1, C, 1, 1), -127), np.full(1, -top - 1 + full), B,
                            "planes max negative", stall=True))
    return cases


@pytest.mark.parametrize("lanes,word_width,scan_width,windows,planes_max,seed,n", [
    (4, 16, 8, 4, 3, 31, 200),  # 200 plane layers (B <= 3, a 3-input shift mux) in one run
    (2, 8, 4, 2, 4, 32, 40),  # B up to 4, two window buffers, 4-bit scanner parts
])
def test_plane_layers(lanes, word_width, scan_width, windows, planes_max, seed, n):
    """Bit-plane mode: currents equal ref_conv on the integers, counters the bit-serial
    counts; binary layers (1x1 and 3x3, plane mode off) interleaved in the same run."""
    cases = plane_cases(seed, n, lanes, planes_max)
    binary = small_random_cases(seed, 12, lanes)
    cases = [c for pair in zip(cases[:12], binary, strict=True) for c in pair] + cases[12:]
    t0 = time.time()
    results = run_cases(cases, lanes=lanes, word_width=word_width, scan_width=scan_width,
                        windows=windows, planes_max=planes_max)
    check(cases, results, lanes, word_width)
    print(f"{len(cases)} layers ({sum(c.planes > 0 for c in cases)} plane mode), "
          f"{sum(r[2] for r in results)} cycles, {time.time() - t0:.1f} s")


@pytest.mark.slow
def test_random_layers_full_size():
    """The brief's full random range (H, W <= 6, T <= 4, uniform density): slow."""
    rng = np.random.default_rng(99)
    cases = [random_case(rng, f"full {i}") for i in range(60)]
    check(cases, run_cases(cases, lanes=2, word_width=8, scan_width=4), 2, 8)


@pytest.mark.parametrize("kwargs,message", [
    (dict(lanes=3), "Lane count must be a power of two, not 3"),
    (dict(lanes=0), "Lane count must be a positive integer, not 0"),
    (dict(word_width=24), "Spike word width must be a power of two, not 24"),
    (dict(windows=1), "Window buffer count must be at least 2, not 1"),
    (dict(word_width=16, scan_width=32), "Scan width 32 exceeds the spike word width 16"),
    (dict(acc_width=16, bias_width=32), "Accumulator width 16 is narrower"),
    (dict(planes_max=0), "Maximum bit plane count must be a positive integer, not 0"),
])
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ACConv(**kwargs)
    gc.collect()  # the half-built component warns when collected: here, filtered


@pytest.mark.toolchain
def test_lint():
    tools = pytest.importorskip("hw.tools")
    dut = ACConv()
    warnings = tools.lint(dut, "ac_conv")
    assert tools.unexplained(warnings, dut) == []
