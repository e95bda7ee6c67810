"""Multi-step LIF neurons in plain torch: tau = 2, decay_input, hard reset to 0.

    charge:  H[t] = V[t-1] + (X[t] - V[t-1]) / 2
    fire:    S[t] = (H[t] - V_th >= 0)
    reset:   V[t] = H[t] * (1 - S[t])

The spike's gradient is the sigmoid surrogate with alpha = 4; the reset is detached
(as ``detach_reset=True`` in the reference code). State starts at 0 for every input.

The integer form keeps the membrane with f fractional bits in units of the input's scale s:
H = (V + (X << f)) >> 1 and fire when H >= theta = ceil(v_th 2^f / s). With f >= T every H is
even before the shift, so the integer neuron equals the real one exactly.
"""

from __future__ import annotations

import torch

ALPHA = 4.0


def _surrogate(z: torch.Tensor) -> torch.Tensor:
    """d/dz sigmoid(alpha z): the spike's surrogate derivative."""
    sg = torch.sigmoid(ALPHA * z)
    return ALPHA * sg * (1 - sg)


def _charge_fire(x, a: float, theta, u):
    """The forward loop: spikes and the membranes h (kept for backward)."""
    v = torch.zeros_like(x[0])
    hs, out = [], []
    for xt in x.unbind(0):
        h = v * 0.5 + xt * a  # charge
        s = ((h - theta) * u >= 0).to(x.dtype)  # fire
        v = h * (1.0 - s)  # reset
        hs.append(h)
        out.append(s)
    return torch.stack(out), torch.stack(hs)


def _through_time(grad_s, hs, theta, u, a: float):
    """The backward loop: gradient of the input currents, last time step first."""
    grads = []
    gv = torch.zeros_like(hs[0])
    for t in range(hs.shape[0] - 1, -1, -1):
        z = (hs[t] - theta) * u
        s = (z >= 0).to(hs.dtype)
        gh = grad_s[t] * _surrogate(z) * u + gv * (1.0 - s)
        grads.append(gh * a)
        gv = gh * 0.5
    return torch.stack(grads[::-1])


# The loops run eagerly unless compile_loops() swapped in fused kernels.
_loops = {"forward": _charge_fire, "backward": _through_time}


def compile_loops(enable: bool = True):
    """Run the LIF loops as kernels compiled by torch.compile (inductor, a C++ compiler needed):
    each loop becomes a fused kernel instead of a dozen passes over memory; the same spikes,
    gradients equal to the last bits of a float (tested). Compiles once per tensor shape, some
    seconds each."""
    if enable:
        import os
        import shutil

        import torch._dynamo

        cxx = os.environ.get("CXX", "g++")
        if not shutil.which(cxx):
            raise RuntimeError(f"compiling the LIF loops needs a C++ compiler; {cxx!r} is not "
                               f"on PATH (install g++ or set CXX), or leave out --compile")

        torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
        _loops["forward"] = torch.compile(_charge_fire, dynamic=False)
        _loops["backward"] = torch.compile(_through_time, dynamic=False)
    else:
        _loops.update(forward=_charge_fire, backward=_through_time)


def _memory_order(x: torch.Tensor) -> list[int]:
    """Dims of x [T, ...], time first, the others in the order x's memory holds them."""
    rest = sorted(range(1, x.dim()), key=lambda d: (-x.stride(d), d))
    return [0, *rest]


def _flat(t: torch.Tensor, order: list[int]) -> torch.Tensor:
    """t [T, ...] as [T, n] in ``order``: a view when t is laid out so, else a copy."""
    return t.permute(order).reshape(t.shape[0], -1)


def _per_element(p: torch.Tensor, shape, order: list[int]) -> torch.Tensor:
    """A threshold or unit broadcast against x[0] as [n] in x's order (a scalar stays)."""
    if p.numel() == 1:
        return p.reshape(())
    return p.expand(shape).permute([d - 1 for d in order[1:]]).reshape(-1)


class _LIF(torch.autograd.Function):
    """Multi-step LIF with a hand-written backward pass through time.

    charge h_t = v_{t-1} / 2 + a x_t; fire s_t = (z_t >= 0) with z_t = (h_t - theta) u;
    reset v_t = h_t (1 - s_t), the reset detached. Only the membranes h are kept for backward.

    The loops see x as [T, n] in x's own memory order (channels-last maps included), so each
    time step is one dense run of memory and the compiled loops vectorize (a channels-last
    [T, B, C, H, W] view ran them up to 10 times slower). Elementwise, so the spikes are the
    same in any order; the surrogate's sigmoid may differ in the last bits of a float between
    an element in a vector lane and one in a loop's tail, so gradients agree to a few ulp. The
    spikes come back in x's layout, as a view of the loops' output: modify them in place only
    outside autograd (nothing here does).
    """

    @staticmethod
    def forward(ctx, x, a, theta, u):
        order = _memory_order(x)
        shape = x.permute(order).shape
        th, un = (_per_element(p, x.shape[1:], order) for p in (theta, u))
        out, hs = _loops["forward"](_flat(x, order), a, th, un)
        ctx.save_for_backward(hs, th, un)
        back = sorted(range(len(order)), key=order.__getitem__)
        ctx.a, ctx.order, ctx.back, ctx.shape = a, order, back, shape
        return out.reshape(shape).permute(back)

    @staticmethod
    def backward(ctx, grad_s):
        hs, th, un = ctx.saved_tensors
        g = _loops["backward"](_flat(grad_s, ctx.order).contiguous(), hs, th, un, ctx.a)
        return g.reshape(ctx.shape).permute(ctx.back), None, None, None


def lif(x: torch.Tensor, v_th: float = 1.0) -> torch.Tensor:
    """Real-valued multi-step LIF over dim 0 (time). x: [T, ...] -> spikes [T, ...]."""
    one = torch.ones((), dtype=x.dtype)
    return _LIF.apply(x, 0.5, one * v_th, one)


def lif_int(x: torch.Tensor, theta: torch.Tensor, f: int, unit: torch.Tensor) -> torch.Tensor:
    """Integer multi-step LIF over dim 0; x holds integer currents (any float dtype).

    theta and unit broadcast against x[0]; ``unit`` = s / 2^f converts membrane units to real
    ones for the surrogate gradient, so QAT sees the same gradient as the real neuron.
    H = (V + X 2^f) / 2 is exact (the sum is even whenever f >= T).
    """
    return _LIF.apply(x, float(1 << (f - 1)), theta, unit)
