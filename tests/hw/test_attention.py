"""hw.attention.SpikeAttention against model.golden.ref_attention and attention_counts.

Amaranth simulation: a bench wraps the unit with the spike map memory (three read ports) and a
capture memory for the output stream, so a case runs without Python in the cycle loop; many
cases share one simulation. Run ``python tests/hw/test_attention.py`` for the cycle table of
docs/hw_attention.md (N = 64, d = 16, P = 8).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Cat, Elaboratable, Module, Signal, unsigned
from amaranth.lib import memory
from amaranth.sim import Simulator

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hw.attention import COUNTERS, Order, SpikeAttention, attention_cycles  # noqa: E402
from model.golden import attention_counts, ref_attention  # noqa: E402

SEED = 4711
ALWAYS = 16  # ready level: out.ready every cycle


class Bench(Elaboratable):
    """The unit, its Q/K/V map memory (one memory, three read ports, maps at bases 0, W, 2W),
    a capture memory written by every output beat, and an LFSR that drives ``out.ready``
    high in ``level`` of 16 cycles (16: always)."""

    def __init__(self, dut: SpikeAttention):
        self.dut = dut
        self.words = dut.T * dut.tokens_max  # one map
        self.maps = memory.Memory(shape=unsigned(dut.channels), depth=3 * self.words, init=[])
        beats = dut.tokens_max * dut.T * dut.heads_max * dut.groups_max
        self.capture = memory.Memory(shape=dut.out_layout, depth=beats, init=[])
        self.beats = Signal(range(beats + 1))
        self.level = Signal(5, init=ALWAYS)

    def elaborate(self, platform):
        m = Module()
        dut = self.dut
        m.submodules.dut = dut
        m.submodules.maps = self.maps
        m.submodules.capture = self.capture
        for x in "qkv":
            rp = self.maps.read_port()
            m.d.comb += [rp.addr.eq(getattr(dut, f"{x}_addr")), rp.en.eq(getattr(dut, f"{x}_en")),
                         getattr(dut, f"{x}_data").eq(rp.data)]
        lfsr = Signal(16, init=0xACE1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[2] ^ lfsr[3] ^ lfsr[5]))
        m.d.comb += dut.out.ready.eq(lfsr[:4] < self.level)
        wp = self.capture.write_port()
        m.d.comb += [wp.addr.eq(self.beats), wp.data.eq(dut.out.payload),
                     wp.en.eq(dut.out.valid & dut.out.ready)]
        with m.If(dut.start):
            m.d.sync += self.beats.eq(0)
        with m.Elif(wp.en):
            m.d.sync += self.beats.eq(self.beats + 1)
        return m


def make_case(rng, dut, order, heads=None, d=None, N=None, T=None, dens=None, level=ALWAYS,
              fill=None):
    """Spike maps q, k, v [1, T, heads * d, H, W] (H * W = N) and the layer's parameters."""
    heads = heads or int(rng.integers(1, dut.heads_max + 1))
    d = d or int(rng.integers(1, dut.head_dim_max + 1))
    N = N or int(rng.integers(1, dut.tokens_max + 1))
    T = T or int(rng.integers(1, dut.T + 1))
    H = int(rng.choice([h for h in range(1, N + 1) if N % h == 0]))
    shape = (1, T, heads * d, H, N // H)
    if fill is not None:
        maps = [np.full(shape, fill, dtype=np.uint8) for _ in range(3)]
    else:
        dens = rng.random(3) if dens is None else np.broadcast_to(dens, 3)
        maps = [(rng.random(shape) < p).astype(np.uint8) for p in dens]
    return dict(q=maps[0], k=maps[1], v=maps[2], heads=heads, order=order, level=level)


def words_of(s: np.ndarray) -> list[int]:
    """Spike map [1, T, C, H, W] -> words at t * N + n, bit c = channel c."""
    _, T, C, H, W = s.shape
    flat = s[0].reshape(T, C, H * W).transpose(0, 2, 1).astype(object)  # [T, N, C]
    weights = np.array([1 << c for c in range(C)], dtype=object)
    return [int(w) for w in (flat * weights).sum(axis=2).reshape(-1)]


def rtl_attention(dut: SpikeAttention, cases: list[dict], clear_every: bool = True):
    """Run the cases through one simulation; per case the beats, Y [T, C, N] and counters."""
    bench = Bench(dut)
    results = []

    async def testbench(ctx):
        for case in cases:
            for i, x in enumerate("qkv"):
                for a, w in enumerate(words_of(case[x])):
                    ctx.set(bench.maps.data[i * bench.words + a], w)
            _, T, C, H, W = case["q"].shape
            ctx.set(dut.heads, case["heads"])
            ctx.set(dut.head_dim, C // case["heads"])
            ctx.set(dut.tokens, H * W)
            ctx.set(dut.steps, T)
            if len(dut.orders) == 2:
                ctx.set(dut.order, Order.QK_FIRST if case["order"] == "qk_first"
                        else Order.KV_FIRST)
            for i, x in enumerate("qkv"):
                ctx.set(getattr(dut, f"{x}_base"), i * bench.words)
            ctx.set(bench.level, case["level"])
            ctx.set(dut.start, 1)
            ctx.set(dut.clear, int(clear_every))
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.clear, 0)
            await ctx.tick().until(dut.done)
            await ctx.tick()  # the counters show the last cycle's events
            beats = [ctx.get(bench.capture.data[i]) for i in range(ctx.get(bench.beats))]
            results.append(dict(beats=beats, **{k: ctx.get(getattr(dut, k)) for k in COUNTERS}))

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results


def expected_beats(case, lanes):
    """(t, token, channel, mask, last) of every output beat, in the unit's order."""
    _, T, C, H, W = case["q"].shape
    d = C // case["heads"]
    G = -(-d // lanes)
    out = [(t, n, h * d + g * lanes, (1 << min(lanes, d - g * lanes)) - 1, 0)
           for n in range(H * W) for t in range(T) for h in range(case["heads"])
           for g in range(G)]
    out[-1] = out[-1][:4] + (1,)
    return out


def physical(case, lanes):
    """Expected word_reads, scratch_reads, scratch_writes."""
    q, k, v = (case[x][0] for x in "qkv")
    T, C, H, W = q.shape
    heads, N = case["heads"], H * W
    d = C // heads
    G = -(-d // lanes)

    def pop(s):
        return s.reshape(T, heads, d, N).sum(2).astype(np.int64)

    if case["order"] == "qk_first":
        return dict(word_reads=T * heads * N * (1 + 2 * G * N), scratch_reads=0,
                    scratch_writes=0)
    writes = int((pop(k) * (pop(v) > 0)).sum())
    return dict(word_reads=3 * T * heads * N, scratch_writes=writes,
                scratch_reads=writes + int((G * pop(q)).sum()))


def check(dut, cases, results, seed):
    for i, (case, r) in enumerate(zip(cases, results, strict=True)):
        q, k, v, heads, order = case["q"], case["k"], case["v"], case["heads"], case["order"]
        _, T, C, H, W = q.shape
        N = H * W
        where = (f"case {i} (seed {seed}): heads {heads}, d {C // heads}, N {N}, T {T}, "
                 f"{order}, ready level {case['level']}")
        got = [(b.t, b.token, b.channel, b.mask, b.last) for b in r["beats"]]
        want = expected_beats(case, dut.lanes)
        first = next((j for j, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                     min(len(got), len(want)))
        assert got == want, f"{where}: beat order/fields differ, first at {first}"
        y = np.zeros((T, C, N), dtype=np.int64)
        for b in r["beats"]:
            for lane in range(dut.lanes):
                if (b.mask >> lane) & 1:
                    y[b.t, b.channel + lane, b.token] = b.y[lane]
                else:
                    assert b.y[lane] == 0, f"{where}: masked lane {lane} not zero"
        ref = ref_attention(q, k, v, heads)[0].reshape(T, C, N)
        if not np.array_equal(y, ref):
            t, c, n = np.argwhere(y != ref)[0]
            raise AssertionError(f"{where}: first difference at t={t} channel={c} token={n}: "
                                 f"rtl {y[t, c, n]} golden {ref[t, c, n]}")
        counts = attention_counts(q, k, v, heads, order)
        for name in ("sops", "spikes_in", "act_reads"):
            assert r[name] == counts[name][0], f"{where}: {name} {r[name]} != {counts[name][0]}"
        for name, value in physical(case, dut.lanes).items():
            assert r[name] == value, f"{where}: {name} {r[name]} != {value}"
        cycles = attention_cycles(q, k, v, heads, order, dut.lanes)
        if case["level"] == ALWAYS:
            assert (r["busy_cycles"], r["stall_cycles"]) == (cycles, 0), where
        else:
            assert r["busy_cycles"] >= cycles + r["stall_cycles"], where


SMALL = dict(heads_max=3, head_dim_max=8, tokens_max=16, T=4, lanes=4, head_align=1,
             addr_width=8)


def edge_cases(rng, dut):
    """No spikes, all spikes (Y = N * d, the bound, at the largest N and d), one head, d = 1,
    one token; qk_first's full cases at T = 1 (it takes T * heads * G * N^2 cycles)."""
    Nm, Dm, Hm = dut.tokens_max, dut.head_dim_max, dut.heads_max
    cases = []
    for order, T in (("kv_first", 2), ("qk_first", 1)):
        full = dict(heads=Hm, d=Dm, N=Nm, T=T)
        cases += [make_case(rng, dut, order, fill=0, **full),
                  make_case(rng, dut, order, fill=1, **full),
                  make_case(rng, dut, order, fill=1, **full, level=5),
                  make_case(rng, dut, order, heads=1, d=1, N=1, T=1, fill=1),
                  make_case(rng, dut, order, heads=1, d=1, N=Nm),
                  make_case(rng, dut, order, heads=1, N=min(Nm, 8), dens=0.5),
                  make_case(rng, dut, order, d=1, N=min(Nm, 8), T=dut.T)]
    return cases


def random_cases(rng, dut, n, stall_every):
    """n random cases alternating kv_first / qk_first, densities uniform in [0, 1), every
    stall_every-th with back-pressure. qk_first draws N <= 2 d (the compiler picks it when
    d >= N; N > d is still covered) to keep its N^2 cycles within the time budget."""
    cases = []
    for i in range(n):
        order = ("kv_first", "qk_first")[i % 2]
        d = int(rng.integers(1, dut.head_dim_max + 1))
        n_max = dut.tokens_max if order == "kv_first" else min(dut.tokens_max, max(2, 2 * d))
        level = int(rng.integers(2, 15)) if i % stall_every == 0 else ALWAYS
        cases.append(make_case(rng, dut, order, d=d, N=int(rng.integers(1, n_max + 1)),
                               level=level))
    return cases


def test_random_and_edges_both_orders():
    """200 random cases (a third with back-pressure) and the edges, both orders, P = 4."""
    rng = np.random.default_rng(SEED)
    dut = SpikeAttention(**SMALL)
    cases = edge_cases(rng, dut) + random_cases(rng, dut, 200, 3)
    results = rtl_attention(dut, cases)
    check(dut, cases, results, SEED)
    full = [r for c, r in zip(cases, results, strict=True) if c["q"].all() and
            c["q"].shape[2] == 3 * 8 and c["q"][0, 0, 0].size == 16]
    assert len(full) == 4 and all(b.y[0] == 16 * 8 for r in full for b in r["beats"])  # N * d


def test_odd_sizes_three_lanes():
    """P = 3 (a partial last group for most d), maxima that are not powers of two."""
    seed = SEED + 1
    rng = np.random.default_rng(seed)
    dut = SpikeAttention(heads_max=2, head_dim_max=7, tokens_max=9, T=3, lanes=3,
                         head_align=1, addr_width=7)
    cases = edge_cases(rng, dut) + random_cases(rng, dut, 40, 4)
    check(dut, cases, rtl_attention(dut, cases), seed)


@pytest.mark.parametrize("order", ["kv_first", "qk_first"])
def test_single_order_builds(order):
    """A unit built with one order (no ``order`` input, no KV scratch for qk_first), P = 8 >
    d, heads aligned to 4 channels (d = 4 or 8)."""
    seed = SEED + 2
    rng = np.random.default_rng(seed)
    dut = SpikeAttention(**{**SMALL, "order": order, "lanes": 8, "head_align": 4})
    assert "order" not in dut.signature.members
    cases = [make_case(rng, dut, order, d=int(rng.choice([4, 8])), N=int(rng.integers(1, 9)))
             for _ in range(8)]
    check(dut, cases, rtl_attention(dut, cases), seed)


def test_counters_accumulate_until_clear():
    """Without ``clear`` the counters add up over layers (one image = several layers)."""
    rng = np.random.default_rng(SEED + 3)
    dut = SpikeAttention(**SMALL)
    cases = [make_case(rng, dut, o) for o in ("kv_first", "qk_first", "kv_first")]
    r = rtl_attention(dut, cases, clear_every=False)
    for name in ("sops", "spikes_in", "act_reads"):
        want = np.cumsum([attention_counts(c["q"], c["k"], c["v"], c["heads"], c["order"])
                          [name][0] for c in cases])
        assert [x[name] for x in r] == want.tolist(), name
    cycles = np.cumsum([attention_cycles(c["q"], c["k"], c["v"], c["heads"], c["order"],
                                         dut.lanes) for c in cases])
    assert [x["busy_cycles"] for x in r] == cycles.tolist()


@pytest.mark.parametrize("kwargs,message", [
    (dict(lanes=0), "Lane count must be a positive integer, not 0"),
    (dict(heads_max=2.0), "Head count must be a positive integer, not 2.0"),
    (dict(head_dim_max=-1), "Head dimension must be a positive integer, not -1"),
    (dict(tokens_max=True), "Token count must be a positive integer, not True"),
    (dict(T=0), "Time step count must be a positive integer, not 0"),
    (dict(order="v_first"), "Order must be one of 'kv_first', 'qk_first', 'both', not 'v_first'"),
    (dict(addr_width=7), "Address width 7 cannot address the 256 words of a map"),
    (dict(head_align=3), "Head alignment must be a power of two that divides the head "
                         "dimension 32, not 3"),
    (dict(head_align=64), "Head alignment must be a power of two that divides the head "
                          "dimension 32, not 64"),
])
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpikeAttention(**{**dict(tokens_max=64, T=4), **kwargs})


@pytest.mark.toolchain
@pytest.mark.parametrize("kwargs", [{}, dict(**SMALL, order="qk_first")],
                         ids=["default", "small-qk_first"])
def test_verilog_lint(kwargs, tmp_path):
    """Verilator --lint-only -Wall: only the warnings hw.tools explains for every Amaranth
    design (docs/hw_attention.md lists them)."""
    from hw import tools
    try:
        tools.find_verilator()
    except tools.ToolchainError as e:
        pytest.skip(str(e))
    dut = SpikeAttention(**kwargs)
    warnings = tools.lint(dut, "attention", workdir=tmp_path)
    assert tools.unexplained(warnings, dut) == []


@pytest.mark.slow
def test_random_many_slow():
    seed = SEED + 4
    rng = np.random.default_rng(seed)
    dut = SpikeAttention(**SMALL)
    cases = [make_case(rng, dut, ("kv_first", "qk_first")[i % 2],
                       level=ALWAYS if i % 3 else int(rng.integers(1, 16))) for i in range(600)]
    check(dut, cases, rtl_attention(dut, cases), seed)


def cycle_table(densities=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0), heads=4, d=16, N=64, T=4,
                lanes=8, seed=SEED):
    """Measured cycles against SOPs at N = 64, d = 16, P = 8 (kv_first), one layer each."""
    rng = np.random.default_rng(seed)
    dut = SpikeAttention(heads_max=heads, head_dim_max=d, tokens_max=N, T=T, lanes=lanes,
                         order="kv_first")
    cases = [make_case(rng, dut, "kv_first", heads=heads, d=d, N=N, T=T, dens=p)
             for p in densities]
    t0 = time.time()
    results = rtl_attention(dut, cases)
    seconds = time.time() - t0
    check(dut, cases, results, seed)
    rows = []
    for p, c, r in zip(densities, cases, results, strict=True):
        qk = attention_counts(c["q"], c["k"], c["v"], heads, "qk_first")["sops"][0]
        rows.append(dict(density=p, sops=r["sops"], cycles=r["busy_cycles"],
                         per_th=r["busy_cycles"] / (T * heads),
                         ratio=r["busy_cycles"] / (r["sops"] / lanes),
                         qk_sops=int(qk), qk_cycles=attention_cycles(
                             c["q"], c["k"], c["v"], heads, "qk_first", lanes)))
    return rows, seconds


@pytest.mark.slow
def test_cycle_table_slow():
    rows, _ = cycle_table(densities=(0.05, 0.3))
    assert all(r["cycles"] < r["qk_cycles"] for r in rows)


if __name__ == "__main__":
    rows, seconds = cycle_table()
    print("| density | SOPs | cycles | cycles per (t, h) | cycles / (SOPs / P) "
          "| qk_first SOPs | qk_first cycles |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['density']:g} | {r['sops']} | {r['cycles']} | {r['per_th']:.1f} "
              f"| {r['ratio']:.2f} | {r['qk_sops']} | {r['qk_cycles']} |")
    print(f"(simulated in {seconds:.1f} s)")
