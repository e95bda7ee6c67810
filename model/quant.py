"""Quantization primitives shared by the torch integer mode and the compiler.

The compiler and the integer mode call the same functions on the same tensors, so the integers
they produce are the same by construction; the golden model only reads them from the file.

- ``fold_bn``: Conv -> BN becomes one affine layer, w' = w * g / sqrt(var + eps),
  b' = (b - mean) * g / sqrt(var + eps) + beta.
- ``channel_scale``: s_c = max |w'_c| / (2^(bits-1) - 1), so the largest weight of every output
  channel maps to the largest integer. A layer's real output is s_c * (sum w_int * x + b_int).
- ``threshold``: theta_c = ceil(v_th * 2^f / s_c), the LIF threshold in integer membrane units.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest (ties to even), with a straight-through gradient."""
    return _RoundSTE.apply(x)


def qmax(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
    """Fold an eval-mode BatchNorm into the preceding conv: returns (w', b') in float64."""
    inv = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    w = weight.double() * inv.reshape(shape)
    b = bias.double() if bias is not None else torch.zeros_like(inv)
    b = (b - bn.running_mean.double()) * inv + bn.bias.double()
    return w, b


def channel_max(w: torch.Tensor) -> torch.Tensor:
    """max |w| per output channel (dim 0)."""
    return w.detach().abs().flatten(1).amax(1)


def scale_from_max(m: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-channel scale from a per-channel max |w|; an all-zero channel gets scale 1."""
    m = m.detach().double()
    return torch.where(m > 0, m / qmax(bits), torch.ones_like(m))


def quantize_weight(w: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer-valued weights round(w / s) clipped to the signed width (STE for gradients)."""
    shape = (-1,) + (1,) * (w.dim() - 1)
    q = qmax(bits)
    return torch.clamp(round_ste(w / scale.reshape(shape)), -q, q)


def quantize_bias(b: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    q = qmax(bits)
    return torch.clamp(round_ste(b / scale), -q, q)


def affine_int(w: torch.Tensor, b: torch.Tensor, bits: int, bias_bits: int, scale=None):
    """Integer weights and bias of a folded affine layer: (w_int, b_int, s).

    ``scale`` forces the per-channel scale (layers that share the residual stream's scale).
    """
    s = scale if scale is not None else scale_from_max(channel_max(w), bits)
    return quantize_weight(w, s, bits), quantize_bias(b, s, bias_bits), s


def head_int(weight: torch.Tensor, bias: torch.Tensor, in_scale: torch.Tensor, count: int,
             bits: int, bias_bits: int):
    """Integer head over the sum of the stream (not its mean): (w_int, b_int, s).

    Real logits = W mean(x) + b = s (w_int . sum(x_int) + b_int), with x = in_scale * x_int and
    ``count`` terms in the sum; one scale s for the whole tensor.
    """
    w = weight.double() * (in_scale.double() / count).reshape(1, -1)
    s = scale_from_max(w.detach().abs().amax().reshape(1), bits)
    wq = quantize_weight(w, s.expand(w.shape[0]), bits)
    return wq, quantize_bias(bias.double(), s, bias_bits), s


def threshold(v_th: float, f: int, scale: torch.Tensor) -> torch.Tensor:
    """theta_c = ceil(v_th * 2^f / s_c), exactly: rational arithmetic on the float64 values.

    (A float division can round v_th 2^f / s onto an integer from above and lose the ceiling.)
    """
    num = Fraction(v_th) * (1 << f)
    vals = [math.ceil(num / Fraction(float(s))) for s in scale.detach().double().reshape(-1)]
    return torch.tensor(vals, dtype=torch.float64).reshape(scale.shape)


def input_affine(mean, std, channels: int):
    """Integer zero point and real scale of the input normalization, per channel.

    x_norm = (pixel - zp_c) / (255 * std_c) with zp_c = round(255 * mean_c).
    """
    zp = torch.tensor([round(255 * m) for m in mean[:channels]], dtype=torch.float64)
    inv = torch.tensor([1.0 / (255 * s) for s in std[:channels]], dtype=torch.float64)
    return zp, inv


def conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """Conv by weight rank: [Co, Ci, k, k] -> conv2d (padding k//2), [Co, Ci, 1] -> conv1d."""
    if w.dim() == 4:
        return F.conv2d(x, w, b, padding=w.shape[-1] // 2)
    if w.dim() == 3:
        return F.conv1d(x, w, b)
    return F.linear(x, w, b)


def bits_for(bound: float) -> int:
    """Signed two's-complement width that holds every integer in [-bound, bound]."""
    bound = int(math.ceil(bound))
    return max(bound.bit_length() + 1, 2)
