"""The integer LIF equals the real LIF exactly when f >= T (DESIGN.md section 3)."""

import math
from fractions import Fraction

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.golden import ref_lif
from model.lif import lif, lif_int
from model.quant import threshold


def real_lif(currents, v_th):
    """The real-valued neuron in exact rational arithmetic: no rounding anywhere."""
    v, out = Fraction(0), []
    for x in currents:
        h = v + (x - v) / 2
        s = h >= v_th
        v = Fraction(0) if s else h
        out.append(int(s))
    return out


@settings(max_examples=300, deadline=None)
@given(
    T=st.integers(1, 8),
    extra=st.integers(0, 3),
    xs=st.lists(st.integers(-2000, 2000), min_size=8, max_size=8),
    scale=st.floats(1e-4, 2.0),
    v_th=st.sampled_from([1.0, 0.5]),
)
def test_integer_lif_equals_real_lif(T, extra, xs, scale, v_th):
    f = T + extra
    xs = xs[:T]
    s = Fraction(scale)
    theta = int(threshold(v_th, f, torch.tensor([scale], dtype=torch.float64))[0])
    # The threshold is the exact ceiling of v_th 2^f / s.
    exact = Fraction(v_th) * 2 ** f / s
    assert theta - 1 < exact <= theta
    expected = real_lif([s * x for x in xs], Fraction(v_th))
    golden = ref_lif(np.array(xs, dtype=np.int64).reshape(1, T, 1), np.array([theta]), f)
    assert golden.reshape(-1).tolist() == expected
    x = torch.tensor(xs, dtype=torch.float64).reshape(T, 1, 1)
    unit = torch.tensor([[scale / 2 ** f]], dtype=torch.float64)
    th = torch.tensor([[float(theta)]], dtype=torch.float64)
    assert lif_int(x, th, f, unit).reshape(-1).tolist() == expected


def test_f_below_t_is_not_exact():
    """With f < T the shift drops bits, and some inputs make the neurons disagree."""
    T, f, v_th, s = 4, 1, Fraction(1), Fraction(3, 10)
    theta = 7  # ceil(v_th 2^f / s) = ceil(6.67)
    rng = np.random.default_rng(0)
    differ = 0
    for xs in rng.integers(-3, 7, (500, T)):
        real = real_lif([s * int(x) for x in xs], v_th)
        golden = ref_lif(xs.reshape(1, T, 1), np.array([theta]), f).reshape(-1).tolist()
        differ += golden != real
    assert differ > 0
    # ... while f = T is exact on the same inputs.
    for xs in rng.integers(-3, 7, (500, T)):
        real = real_lif([s * int(x) for x in xs], v_th)
        theta_t = math.ceil(v_th * 2 ** T / s)
        assert ref_lif(xs.reshape(1, T, 1), np.array([theta_t]), T).reshape(-1).tolist() == real


def test_float_lif_matches_the_reference_equations():
    x = torch.tensor([0.9, 0.9, 0.9, 3.0, -1.0, 2.5]).reshape(6, 1)
    # H: 0.45 -> 0.675 -> 0.7875 -> 1.89 (fire, V=0) -> -0.5 -> 1.0 (fire: H - V_th >= 0)
    assert lif(x, 1.0).reshape(-1).tolist() == [0, 0, 0, 1, 0, 1]


def test_compiled_loops_give_the_same_spikes_and_gradients():
    """model.train --compile runs the LIF loops through torch.compile: equal results, float
    neurons and integer ones with per-channel thresholds, forward and backward."""
    import pytest

    from model import lif as lif_mod

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 5, 6, 6, generator=gen) * 2
    xi = torch.randint(-40, 40, (4, 3, 5, 6, 6), generator=gen).double()
    theta = torch.randint(1, 30, (5, 1, 1), generator=gen).double()
    unit = torch.rand(5, 1, 1, generator=gen, dtype=torch.float64) + 0.1

    def run():
        a, b = x.clone().requires_grad_(), xi.clone().requires_grad_()
        s, si = lif(a, 1.0), lif_int(b, theta, 4, unit)
        (s * torch.arange(s.numel()).reshape(s.shape).sin()).sum().backward()
        (si * torch.arange(si.numel()).reshape(si.shape).cos()).sum().backward()
        return s, si, a.grad, b.grad

    eager = run()
    try:
        lif_mod.compile_loops(True)
        compiled = run()
    except Exception as e:  # no C++ compiler for inductor on this machine
        pytest.skip(f"torch.compile unavailable here: {type(e).__name__}: {e}"[:200])
    finally:
        lif_mod.compile_loops(False)
    assert eager[0].sum() > 0 and eager[1].sum() > 0 and eager[3].abs().sum() > 0
    assert torch.equal(eager[0], compiled[0]) and torch.equal(eager[1], compiled[1])
    # The fused kernel evaluates the surrogate's sigmoid with its own vectorized exp, so the
    # gradients may differ in the last bits of a float; nothing else may.
    for e, c in zip(eager[2:], compiled[2:], strict=True):
        torch.testing.assert_close(c, e, rtol=4 * torch.finfo(e.dtype).eps, atol=1e-9)


def test_any_memory_layout_gives_the_same_spikes_and_gradients():
    """The loops run over x in its own memory order: a channels-last map, a transposed one
    and a contiguous one give the same spikes, in x's layout, as the loops applied to x as it
    is shaped (per-channel integer thresholds included), and the same gradients up to the last
    bits of the surrogate's sigmoid, which the CPU computes apart in a vector's tail."""
    from model.lif import _charge_fire, _through_time

    gen = torch.Generator().manual_seed(1)
    T, B, C, H = 4, 3, 5, 6
    base = torch.randint(-40, 40, (T, B, C, H, H), generator=gen).double()
    theta = torch.randint(1, 30, (C, 1, 1), generator=gen).double()
    unit = torch.rand(C, 1, 1, generator=gen, dtype=torch.float64) + 0.1
    weight = torch.randn(T, B, C, H, H, generator=gen, dtype=torch.float64)
    s_ref, hs = _charge_fire(base, 8.0, theta, unit)
    g_ref = _through_time(weight, hs, theta, unit, 8.0)
    assert s_ref.sum() > 0 and g_ref.abs().sum() > 0

    channels_last = base.reshape(T * B, C, H, H).contiguous(
        memory_format=torch.channels_last).reshape(T, B, C, H, H)
    transposed = base.transpose(3, 4).contiguous().transpose(3, 4)
    for x in (base, channels_last, transposed):
        assert torch.equal(x, base)
        a = x.clone(memory_format=torch.preserve_format).requires_grad_()
        s = lif_int(a, theta, 4, unit)
        assert s.stride() == a.stride()
        (s * weight).sum().backward()
        assert torch.equal(s, s_ref)
        torch.testing.assert_close(a.grad, g_ref, rtol=16 * torch.finfo(g_ref.dtype).eps,
                                   atol=0)
