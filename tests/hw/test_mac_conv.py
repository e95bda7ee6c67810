"""hw.mac_conv: the first layer's MAC conv in Amaranth's simulator against
model.golden.ref_conv(pixels - zero point) and conv_counts(..., "pixels")."""

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

from hw.mac_conv import MACConv
from model.golden import conv_counts, ref_conv

COUNTERS = ("macs", "weight_reads", "act_reads")
HW_COUNTERS = COUNTERS + ("act_words", "weight_rows", "busy_cycles", "stall_cycles")
CI_MAX = 4


@dataclass
class Case:
    """One image: pixels [Ci, H, W] (0..255), zero points [Ci], weights [Co, Ci, 3, 3], b."""
    x: np.ndarray
    zp: np.ndarray
    w: np.ndarray
    b: np.ndarray
    stall: bool = False
    name: str = ""

    @property
    def shape(self):
        Ci, H, W = self.x.shape
        return Ci, self.w.shape[0], H, W


def pack_rows(values, width):
    mask = (1 << width) - 1
    return [sum((int(v) & mask) << (i * width) for i, v in enumerate(row)) for row in values]


def images(c: Case, lanes):
    """Pixel words (Ci pixels per (y, x)), weight rows, bias rows of a case."""
    Ci, Co, H, W = c.shape
    groups = -(-Co // lanes)
    pixels = pack_rows(c.x.transpose(1, 2, 0).reshape(-1, Ci), 8)
    wp = np.zeros((groups * lanes, Ci, 3, 3), dtype=np.int64)
    wp[:Co] = c.w
    rows = wp.reshape(groups, lanes, Ci, 9).transpose(0, 3, 2, 1).reshape(-1, lanes)
    bp = np.zeros(groups * lanes, dtype=np.int64)
    bp[:Co] = c.b
    return pixels, pack_rows(rows, 8), pack_rows(bp.reshape(groups, lanes), 24)


def expected_beats(c: Case, lanes):
    Ci, Co, H, W = c.shape
    y = ref_conv(c.x.astype(np.int64) - c.zp.reshape(-1, 1, 1), c.w, c.b)  # [Co, H, W]
    groups = -(-Co // lanes)
    yp = np.zeros((groups * lanes, H, W), dtype=np.int64)
    yp[:Co] = y
    return [(pos, g, sum(1 << lane for lane in range(lanes) if g * lanes + lane < Co),
             [int(v) for v in yp[g * lanes:(g + 1) * lanes, pos // W, pos % W]])
            for pos in range(H * W) for g in range(groups)]


class Harness(wiring.Component):
    def __init__(self, cases, *, lanes):
        self.dut = MACConv(lanes=lanes, ci_max=CI_MAX, co_max=16, hw_max=32, bias_width=24,
                           acc_width=24, pixel_addr_width=14, weight_addr_width=14,
                           bias_addr_width=10)
        pixels, weights, biases, self.bases = [], [], [], []
        for c in cases:
            self.bases.append((len(pixels), len(weights), len(biases)))
            p, w, b = images(c, lanes)
            pixels += p
            weights += w
            biases += b
        self.inits = pixels, weights, biases
        self.out_depth = max(c.shape[2] * c.shape[3] * -(-c.shape[1] // lanes) for c in cases)
        d = self.dut
        super().__init__({
            "start": In(1), "clear": In(1), "stall": In(1),
            "ci": In(len(d.ci)), "co": In(len(d.co)), "height": In(len(d.height)),
            "width": In(len(d.width)), "zero_point": In(len(d.zero_point.as_value())),
            "pixel_base": In(14), "weight_base": In(14), "bias_base": In(10),
            "beats": Out(16), "cycle": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = d = self.dut
        P = d.lanes
        pixels, weights, biases = self.inits
        mems = {
            "pixel": memory.Memory(shape=CI_MAX * 8, depth=len(pixels), init=pixels),
            "weight": memory.Memory(shape=P * 8, depth=len(weights), init=weights),
            "bias": memory.Memory(shape=P * 24, depth=len(biases), init=biases),
        }
        for name, mem in mems.items():
            m.submodules[name] = mem
            port = mem.read_port()
            m.d.comb += [port.addr.eq(getattr(d, f"{name}_addr")),
                         port.en.eq(getattr(d, f"{name}_en")),
                         getattr(d, f"{name}_data").eq(port.data)]
        m.submodules.out = self.omem = omem = memory.Memory(
            shape=len(d.o.payload.as_value()), depth=self.out_depth, init=[])
        for name in ("start", "clear", "ci", "co", "height", "width", "pixel_base",
                     "weight_base", "bias_base"):
            m.d.comb += getattr(d, name).eq(getattr(self, name))
        m.d.comb += d.zero_point.as_value().eq(self.zero_point)
        m.d.sync += self.cycle.eq(self.cycle + 1)
        lfsr = Signal(16, init=0xBEEF)
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
    f = {name: (value >> fl.offset) & ((1 << fl.width) - 1) for name, fl in layout}
    cur = []
    for lane in range(lanes):
        v = (f["current"] >> (lane * acc_width)) & ((1 << acc_width) - 1)
        cur.append(v - (1 << acc_width) if v >> (acc_width - 1) else v)
    return f["pos"], f["group"], f["mask"], cur, f["last"]


def run_cases(cases, *, lanes):
    h = Harness(cases, lanes=lanes)
    d = h.dut
    results = []

    async def bench(ctx):
        for c, (pb, wb, bb) in zip(cases, h.bases, strict=True):
            Ci, Co, H, W = c.shape
            zp = sum(int(v) << (8 * i) for i, v in enumerate(c.zp))
            for name, v in (("ci", Ci), ("co", Co), ("height", H), ("width", W),
                            ("zero_point", zp), ("pixel_base", pb), ("weight_base", wb),
                            ("bias_base", bb), ("stall", int(c.stall))):
                ctx.set(getattr(h, name), v)
            ctx.set(h.start, 1)
            ctx.set(h.clear, 1)
            await ctx.tick()
            ctx.set(h.start, 0)
            ctx.set(h.clear, 0)
            t0 = ctx.get(h.cycle)
            await ctx.tick().until(d.done)
            cycles = ctx.get(h.cycle) - t0 + 1
            beats = [decode(d.out_layout, lanes, d.acc_width, ctx.get(h.omem.data[i]))
                     for i in range(ctx.get(h.beats))]
            results.append((beats, {n: ctx.get(getattr(d, n)) for n in HW_COUNTERS}, cycles))
            await ctx.tick()

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def check(cases, results, lanes):
    for c, (beats, counters, _cycles) in zip(cases, results, strict=True):
        Ci, Co, H, W = c.shape
        want = expected_beats(c, lanes)
        assert len(beats) == len(want), f"{c.name}: {len(beats)} beats, want {len(want)}"
        for i, (got, exp) in enumerate(zip(beats, want, strict=True)):
            pos, g, mask, cur, last = got
            assert (pos, g, mask) == exp[:3], f"{c.name}: beat {i} tags {got[:3]} != {exp[:3]}"
            assert cur == exp[3], (f"{c.name}: position {pos} (y {pos // W}, x {pos % W}), "
                                   f"group {g}: {cur} != {exp[3]}")
            assert last == (i == len(want) - 1), f"{c.name}: beat {i} last"
        gold = conv_counts(c.x[None], c.w.shape, "pixels")
        for name in COUNTERS:
            assert counters[name] == int(gold[name][0]), \
                f"{c.name}: {name} {counters[name]} != golden {int(gold[name][0])}"
        # one MAC cycle per (position, group, valid tap, channel)
        mac_cycles = int(gold["macs"][0]) // Co * -(-Co // lanes) if Co else 0
        assert counters["busy_cycles"] - counters["stall_cycles"] == mac_cycles, c.name


def random_case(rng, name, *, ci=None, co=None, h=None, w=None, zp=None, pixels=None,
                wmax=127, stall=None):
    Ci = ci or int(rng.integers(1, CI_MAX + 1))
    Co = co or int(rng.integers(1, 17))
    H = h or int(rng.integers(1, 7))
    W = w or int(rng.integers(1, 7))
    x = rng.integers(0, 256, (Ci, H, W)) if pixels is None else np.full((Ci, H, W), pixels)
    zps = rng.integers(0, 256, Ci) if zp is None else np.full(Ci, zp)
    wt = rng.integers(-wmax, wmax + 1, (Co, Ci, 3, 3))
    b = rng.integers(-100000, 100001, Co)
    stall = bool(rng.random() < 0.3) if stall is None else stall
    return Case(x.astype(np.uint8), zps, wt, b, stall, name)


def mac_cycles(c: Case, lanes):
    Ci, Co, H, W = c.shape
    return int(conv_counts(c.x[None], c.w.shape, "pixels")["macs"][0]) // Co * -(-Co // lanes)


def random_cases(seed, n, lanes, cap=1000):
    """Random images over the whole range (Ci <= 4, Co <= 16, H, W <= 6), drawn again while
    their MAC cycles exceed ``cap``, so that a batch simulates in seconds."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        c = random_case(rng, f"seed {seed} case {len(cases)}")
        if mac_cycles(c, lanes) <= cap:
            cases.append(c)
    return cases


def edge_cases(lanes):
    rng = np.random.default_rng(5 + lanes)
    cases = []
    for pixels in (0, 255):
        for zp in (0, 255):
            cases.append(random_case(rng, f"pixels {pixels} zp {zp}", pixels=pixels, zp=zp,
                                     ci=3, co=lanes + 1, h=3, w=4))
    # largest products: |255 - 0| * 127 at every tap, both signs; all-zero pixels, zp 255
    for sign in (1, -1):
        cases.append(Case(np.full((3, 3, 3), 255, np.uint8), np.zeros(3, np.int64),
                          np.full((1, 3, 3, 3), 127 * sign), np.array([sign * 1000]),
                          name=f"max product {sign:+d}"))
        wmin = -128 if sign > 0 else 127  # the int8 range's ends
        cases.append(Case(np.zeros((3, 3, 3), np.uint8), np.full(3, 255),
                          np.full((2, 3, 3, 3), wmin), np.array([0, sign * 7]),
                          name=f"min pixel, zp 255, weight {wmin}"))
    for hh, ww in ((1, 1), (1, 6), (6, 1), (2, 2)):
        cases.append(random_case(rng, f"{hh}x{ww}", h=hh, w=ww, co=lanes))
    cases.append(random_case(rng, "ci 1 co 1", ci=1, co=1))
    cases.append(random_case(rng, "co 16", ci=3, co=16, h=2, w=3, stall=True))
    return cases


@pytest.mark.parametrize("lanes,seed", [(2, 1), (4, 2)])
def test_random_images(lanes, seed):
    cases = random_cases(seed, 105, lanes) + edge_cases(lanes)
    t0 = time.time()
    results = run_cases(cases, lanes=lanes)
    check(cases, results, lanes)
    print(f"{len(cases)} images, {sum(r[2] for r in results)} cycles, {time.time() - t0:.1f} s")


@pytest.mark.slow
def test_random_images_32x32():
    """The real first layer's shape: 3 -> 8 channels on a 32 x 32 image (~55 k cycles)."""
    rng = np.random.default_rng(3)
    cases = [random_case(rng, "32x32", ci=3, co=8, h=32, w=32)]
    check(cases, run_cases(cases, lanes=4), 4)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kwargs,message", [
    (dict(lanes=6), "Lane count must be a power of two, not 6"),
    (dict(ci_max=0), "Maximum input channel count must be a positive integer, not 0"),
    (dict(acc_width=16), "Accumulator width 16 is narrower"),
])
def test_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MACConv(**kwargs)
    gc.collect()  # the half-built component warns when collected: here, filtered


@pytest.mark.toolchain
def test_lint():
    tools = pytest.importorskip("hw.tools")
    dut = MACConv()
    warnings = tools.lint(dut, "mac_conv")
    assert tools.unexplained(warnings, dut) == []
