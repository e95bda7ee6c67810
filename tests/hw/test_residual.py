"""hw.residual.ResidualAdder against the golden add layer and add_counts (Amaranth sim)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.residual import ResidualAdder
from model.golden import add_counts

SEED = 99


def rtl_add(dut, cases, rng, ready_p=1.0):
    """Each case (stream, current: [1, T, C, N] integers) through one simulation."""
    P = dut.lanes
    results = []

    async def testbench(ctx):
        for a, b in cases:
            _, T, C, N = a.shape
            items = []
            for t in range(T):
                for n in range(N):
                    for g in range(-(-C // P)):
                        chans = list(range(g * P, min(C, g * P + P)))
                        pad = [int(v) for v in rng.integers(-9, 9, P - len(chans))]
                        items.append((dict(stream=[int(a[0, t, c, n]) for c in chans] + pad,
                                           current=[int(b[0, t, c, n]) for c in chans] + pad,
                                           mask=(1 << len(chans)) - 1, last=0),
                                      (t, chans, n)))
            items[-1][0]["last"] = 1
            out = np.full(a.shape, 12345, dtype=np.int64)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            pending, expected = list(items), list(items)
            while expected:
                ctx.set(dut.i.valid, bool(pending))
                if pending:
                    ctx.set(dut.i.payload, pending[0][0])
                ready = bool(rng.random() < ready_p)
                ctx.set(dut.o.ready, ready)
                took_in = pending and ctx.get(dut.i.ready)
                if ctx.get(dut.o.valid) and ready:
                    p = ctx.get(dut.o.payload)
                    item, (t, chans, n) = expected.pop(0)
                    assert p.last == item["last"]
                    for lane, c in enumerate(chans):
                        out[0, t, c, n] = p.sum[lane]
                    assert all(p.sum[lane] == 0 for lane in range(len(chans), P))
                await ctx.tick()
                if took_in:
                    pending.pop(0)
            ctx.set(dut.i.valid, 0)
            results.append(dict(out=out, **{k: ctx.get(getattr(dut, k)) for k in (
                "adds", "act_reads", "act_writes", "busy_cycles", "stall_cycles")}))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results


def make_case(rng, sw, cw, kind="random"):
    T, C, N = int(rng.integers(1, 5)), int(rng.integers(1, 12)), int(rng.integers(1, 4))
    slo, shi = -(1 << (sw - 1)), (1 << (sw - 1)) - 1
    clo, chi = -(1 << (cw - 1)), (1 << (cw - 1)) - 1
    shape = (1, T, C, N)
    if kind == "bounds":
        a, b = rng.choice([slo, shi], size=shape), rng.choice([clo, chi], size=shape)
    elif kind == "zero":
        a, b = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    else:
        a = rng.integers(slo, shi, size=shape, endpoint=True)
        b = rng.integers(clo, chi, size=shape, endpoint=True)
    return a.astype(np.int64), b.astype(np.int64)


@pytest.mark.parametrize("P,sw,cw,ready_p,n", [(4, 10, 7, 1.0, 150), (3, 6, 9, 0.5, 60)])
def test_residual_random_and_edges(P, sw, cw, ready_p, n):
    rng = np.random.default_rng(SEED + P)
    dut = ResidualAdder(lanes=P, stream_width=sw, current_width=cw)
    cases = [make_case(rng, sw, cw, k) for k in ("bounds", "zero") for _ in range(5)]
    cases += [make_case(rng, sw, cw) for _ in range(n)]
    for i, ((a, b), r) in enumerate(zip(cases, rtl_add(dut, cases, rng, ready_p), strict=True)):
        ref = a + b  # the golden add layer
        counts = add_counts(ref)
        where = f"case {i} (seed {SEED + P}): shape {a.shape}"
        assert np.array_equal(r["out"], ref), where
        for k in ("adds", "act_reads", "act_writes"):
            assert r[k] == counts[k][0], f"{where}: counter {k}"


def test_residual_narrow_output_keeps_low_bits():
    """out_width from the compiler: sums inside the bound are exact."""
    rng = np.random.default_rng(SEED)
    dut = ResidualAdder(lanes=2, stream_width=8, current_width=8, out_width=6)
    cases = [(rng.integers(-16, 16, (1, 2, 3, 2)), rng.integers(-16, 15, (1, 2, 3, 2)))
             for _ in range(10)]
    for (a, b), r in zip(cases, rtl_add(dut, cases, rng), strict=True):
        assert np.array_equal(r["out"], a + b)


@pytest.mark.parametrize("kwargs,message", [
    (dict(lanes=-1), "Lane count must be a positive integer, not -1"),
    (dict(stream_width=1), "Stream width must be an integer >= 2, not 1"),
    (dict(out_width=0), "Output width must be an integer >= 2, not 0"),
])
def test_residual_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResidualAdder(**{"lanes": 4, "stream_width": 8, "current_width": 8, **kwargs})


@pytest.mark.toolchain
def test_residual_lints_clean(tmp_path):
    from hw.tools import lint, unexplained

    dut = ResidualAdder(lanes=4, stream_width=16, current_width=16)
    assert unexplained(lint(dut, "residual", tmp_path), dut) == []
