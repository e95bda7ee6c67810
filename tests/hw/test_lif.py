"""hw.lif.LIFArray against model.golden.ref_lif and lif_counts (Amaranth sim)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.lif import LIFArray
from model.golden import lif_counts, ref_lif

SEED = 7011


def make_case(rng, P, cw, tw, f, T=None, C=None, N=None, order=None, kind="random"):
    """A LIF layer: x [1, T, C, N] currents, theta [C], and the order the engine sends it."""
    T = T or int(rng.integers(1, 6))
    C = C or int(rng.integers(1, 3 * P + 1))
    N = N or int(rng.integers(1, 4))
    lo, hi = -(1 << (cw - 1)), (1 << (cw - 1)) - 1
    tlo, thi = -(1 << (tw - 1)), (1 << (tw - 1)) - 1
    if kind == "bounds":  # currents at their width bound, thresholds at the extremes
        x = rng.choice([lo, hi, 0, 1, -1], size=(1, T, C, N))
        theta = rng.choice([tlo, thi, 0, 1, hi << f, lo << f], size=C)
    elif kind == "silent":  # never fires
        x = rng.integers(lo, 0, size=(1, T, C, N), endpoint=True)
        theta = np.full(C, thi)
    elif kind == "always":  # fires every step
        x = rng.integers(0, hi, size=(1, T, C, N), endpoint=True)
        theta = np.full(C, tlo)
    else:
        x = rng.integers(lo, hi, size=(1, T, C, N), endpoint=True)
        scale = rng.choice([1 << f, 1 << (f + cw - 2), 1 << (f + cw // 2)])
        theta = rng.integers(-scale // 8, scale, size=C, endpoint=True)
        theta = np.clip(theta, tlo, thi)
    return dict(x=x.astype(np.int64), theta=theta.astype(np.int64),
                order=order or rng.choice(["t_outer", "g_outer"]), offset=int(rng.integers(0, 8)))


def stream_items(case, P, groups, rng):
    """The inputs of a case in the engine's order: (payload dict, (t, channels, n))."""
    x, theta = case["x"], case["theta"]
    _, T, C, N = x.shape
    G = -(-C // P)
    items = []
    for n in range(N):
        order = [(t, g) for t in range(T) for g in range(G)] if case["order"] == "t_outer" \
            else [(t, g) for g in range(G) for t in range(T)]
        for t, g in order:
            chans = list(range(g * P, min(C, g * P + P)))
            pad = P - len(chans)
            cur = [int(x[0, t, c, n]) for c in chans] + [int(v) for v in rng.integers(-3, 3, pad)]
            th = [int(theta[c]) for c in chans] + [0] * pad
            items.append((dict(current=cur, theta=th, group=(g + case["offset"]) % groups, t=t,
                               mask=(1 << len(chans)) - 1, last=0), (t, chans, n)))
    items[-1][0]["last"] = 1
    return items


def rtl_lif(dut, cases, rng, ready_p=1.0):
    """Run the cases through one simulation; per case the spikes [1, T, C, N] and counters."""
    P, groups = dut.lanes, dut.groups
    results = []

    async def testbench(ctx):
        for case in cases:
            items = stream_items(case, P, groups, rng)
            _, T, C, N = case["x"].shape
            out = np.full((1, T, C, N), 9, dtype=np.uint8)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            pending = list(items)
            expected = list(items)  # outputs come back in input order
            while expected:
                if pending:
                    ctx.set(dut.i.payload, pending[0][0])
                    ctx.set(dut.i.valid, 1)
                else:
                    ctx.set(dut.i.valid, 0)
                ready = bool(rng.random() < ready_p)
                ctx.set(dut.o.ready, ready)
                took_in = pending and ctx.get(dut.i.ready)
                if ctx.get(dut.o.valid) and ready:
                    p = ctx.get(dut.o.payload)
                    meta_in, (t, chans, n) = expected.pop(0)
                    assert (p.t, p.group, p.last) == (meta_in["t"], meta_in["group"],
                                                     meta_in["last"])
                    for lane, c in enumerate(chans):
                        out[0, t, c, n] = (p.spikes >> lane) & 1
                    assert p.spikes >> len(chans) == 0, "a masked lane fired"
                await ctx.tick()
                if took_in:
                    pending.pop(0)
            ctx.set(dut.i.valid, 0)
            results.append(dict(spikes=out, **{k: ctx.get(getattr(dut, k)) for k in (
                "spikes_out", "neuron_updates", "weight_reads", "act_writes", "busy_cycles",
                "stall_cycles")}))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results


def check(dut, cases, results, f):
    for i, (case, r) in enumerate(zip(cases, results, strict=True)):
        ref = ref_lif(case["x"], case["theta"], f)
        counts = lif_counts(ref)
        where = f"case {i} (seed {SEED}): shape {case['x'].shape}, order {case['order']}"
        if not np.array_equal(r["spikes"], ref):
            t, c, n = np.argwhere(r["spikes"][0] != ref[0])[0]
            raise AssertionError(f"{where}: first difference at t={t} channel={c} n={n}: "
                                 f"rtl {r['spikes'][0, t, c, n]} golden {ref[0, t, c, n]}")
        for k in ("spikes_out", "neuron_updates", "weight_reads", "act_writes"):
            assert r[k] == counts[k][0], f"{where}: counter {k}"


@pytest.mark.parametrize("P,cw,f,ready_p,n", [(4, 8, 4, 1.0, 150), (3, 5, 2, 0.6, 60)])
def test_lif_random_and_edges(P, cw, f, ready_p, n):
    rng = np.random.default_rng(SEED + P)
    mw = cw + f
    dut = LIFArray(lanes=P, current_width=cw, mem_width=mw, frac_bits=f, groups=8,
                   time_steps=8)
    cases = [make_case(rng, P, cw, mw, f, kind=k) for k in ("bounds", "silent", "always")
             for _ in range(4)]
    cases += [make_case(rng, P, cw, mw, f, T=8, C=3 * P - 1, N=1, order=o)
              for o in ("t_outer", "g_outer")]
    cases += [make_case(rng, P, cw, mw, f) for _ in range(n)]
    check(dut, cases, rtl_lif(dut, cases, rng, ready_p), f)


def test_lif_latency_and_throughput():
    """One input per cycle in, each output one cycle after its input, no stalls."""
    dut = LIFArray(lanes=2, current_width=6, mem_width=10, frac_bits=4, groups=2)
    n = 20
    log = []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        for k in range(n):
            ctx.set(dut.i.payload, dict(current=[k, -k], theta=[5, 5], group=k % 2, t=k // 2 % 4,
                                        mask=3, last=0))
            assert ctx.get(dut.i.ready)
            log.append(ctx.get(dut.o.valid))
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        log.append(ctx.get(dut.o.valid))
        await ctx.tick()
        assert not ctx.get(dut.o.valid)
        assert ctx.get(dut.busy_cycles) == n + 1
        assert ctx.get(dut.stall_cycles) == 0
        assert ctx.get(dut.neuron_updates) == 2 * n

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert log == [0] + [1] * n


@pytest.mark.parametrize("kwargs,message", [
    (dict(lanes=0), "Lane count must be a positive integer, not 0"),
    (dict(lanes=2.5), "Lane count must be a positive integer, not 2.5"),
    (dict(current_width=1), "Current width must be an integer >= 2, not 1"),
    (dict(frac_bits=-1), "Fractional bit count must be an integer >= 0, not -1"),
    (dict(groups=0), "Group count must be a positive integer, not 0"),
])
def test_lif_validates_arguments(kwargs, message):
    args = dict(lanes=4, current_width=8, mem_width=12, frac_bits=4)
    with pytest.raises(ValueError, match=message):
        LIFArray(**{**args, **kwargs})


@pytest.mark.toolchain
def test_lif_lints_clean(tmp_path):
    from hw.tools import lint, unexplained

    dut = LIFArray(lanes=4, current_width=16, mem_width=20, frac_bits=4, groups=16)
    assert unexplained(lint(dut, "lif", tmp_path), dut) == []
