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


class _LIF(torch.autograd.Function):
    """Multi-step LIF with a hand-written backward pass through time.

    charge h_t = v_{t-1} / 2 + a x_t; fire s_t = (z_t >= 0) with z_t = (h_t - theta) u;
    reset v_t = h_t (1 - s_t), the reset detached. Only the membranes h are kept for backward.
    """

    @staticmethod
    def forward(ctx, x, a, theta, u):
        v = torch.zeros_like(x[0])
        hs, out = [], []
        for xt in x.unbind(0):
            h = v * 0.5 + xt * a  # charge
            s = ((h - theta) * u >= 0).to(x.dtype)  # fire
            v = h * (1.0 - s)  # reset
            hs.append(h)
            out.append(s)
        ctx.save_for_backward(torch.stack(hs), theta, u)
        ctx.a = a
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad_s):
        hs, theta, u = ctx.saved_tensors
        grad_x = torch.empty_like(hs)
        gv = torch.zeros_like(hs[0])
        for t in range(hs.shape[0] - 1, -1, -1):
            z = (hs[t] - theta) * u
            s = (z >= 0).to(hs.dtype)
            gh = grad_s[t] * _surrogate(z) * u + gv * (1.0 - s)
            grad_x[t] = gh * ctx.a
            gv = gh * 0.5
        return grad_x, None, None, None


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
