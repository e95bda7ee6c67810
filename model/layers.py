"""Mode-aware building blocks shared by Spikingformer and Spikformer.

Every network runs in one of two modes:

- ``float``: the trainable real-valued network (BN in train or eval mode as usual).
- ``int``: the integer contract of DESIGN.md section 3, computed in torch: BN folded, weights and
  biases rounded to integers (straight-through gradients, so the same forward fine-tunes with
  QAT), currents in integer units of a per-channel scale, integer LIF with integer thresholds.
  With float64 inputs every value is an exact integer, and the result equals the numpy golden
  model bit for bit.

A ``Run`` carries the mode, the quantization settings and, on request, a record of every
layer's spike map (named as the layer in the compiled model and the golden model).
"""

from __future__ import annotations

import contextlib

import torch

from . import quant
from .lif import lif, lif_int

# The dtype float-mode convs compute in (None: their own, float32); see conv_precision.
_conv_dtype: list[torch.dtype | None] = [None]


@contextlib.contextmanager
def conv_precision(dtype: torch.dtype | None):
    """Within this block, float-mode convs and linears compute in ``dtype`` (torch.bfloat16 for
    model.train --bf16) and hand back float32: spikes are exact in bfloat16, weights and sums
    keep 8 significant bits, and batch norm, the residual stream, the neurons, attention and
    the classifier head stay float32. The integer mode is never affected."""
    before = _conv_dtype[0]
    _conv_dtype[0] = dtype
    try:
        yield
    finally:
        _conv_dtype[0] = before


class Run:
    """One forward pass: mode, widths and an optional record of spikes and integer logits."""

    def __init__(self, mode: str, cfg, record: bool = False):
        if mode not in ("float", "int"):
            raise ValueError(f"Mode must be 'float' or 'int', not {mode!r}")
        self.mode = mode
        self.cfg = cfg
        self.f = cfg.f
        self.bits = cfg.weight_bits
        self.bias_bits = cfg.bias_bits
        self.record: dict[str, torch.Tensor] | None = {} if record else None

    @classmethod
    def begin(cls, model, img: torch.Tensor, mode: str | None, record: bool) -> Run:
        """A run of ``model`` on images [B, C, H, W], checked against its config."""
        cfg = model.cfg
        if img.dim() != 4 or tuple(img.shape[1:]) != (cfg.in_channels, cfg.img_size,
                                                       cfg.img_size):
            raise ValueError(f"Images must be [B, {cfg.in_channels}, {cfg.img_size}, "
                             f"{cfg.img_size}], not {list(img.shape)}")
        return cls(mode or model.mode, cfg, record)

    @property
    def integer(self) -> bool:
        return self.mode == "int"

    def keep(self, name: str, spikes: torch.Tensor):
        """Record a spike map given as [T, B, C, ...] as [B, T, C, H, W] integers."""
        if self.record is None:
            return
        T, B, C = spikes.shape[:3]
        s = spikes.detach()
        if s.dim() == 4:  # tokens [T, B, C, N]
            side = int(round(s.shape[-1] ** 0.5))
            s = s.reshape(T, B, C, side, side)
        self.record[name] = s.transpose(0, 1).to(torch.int8)

    def affine(self, conv, bn, x, scale=None, in_scale=None, shift: int = 0):
        """Conv -> BN. Float: as trained. Int: folded, integer weights; returns (y, scale).

        ``scale`` forces the output scale (residual-stream writers: the stream's unit);
        ``shift`` then sets the weights' scale to ``scale`` 2^shift and shifts the integer
        sum left by ``shift`` into units of ``scale``. ``in_scale`` folds a per-input-channel
        factor into the weights first (the input normalization).
        """
        if not self.integer:
            if _conv_dtype[0] is None:
                y = conv(x)
            else:
                with torch.autocast(x.device.type, dtype=_conv_dtype[0]):
                    y = conv(x)
                y = y.to(x.dtype)
            if bn is not None:
                y = bn(y.transpose(1, 2)).transpose(1, 2) if _tokens_last(conv, x) else bn(y)
            return y, None
        w, b = folded(conv, bn)
        if in_scale is not None:
            w = w * in_scale.reshape((1, -1) + (1,) * (w.dim() - 2))
        if scale is None:
            wq, bq, s = quant.affine_int(w, b, self.bits, self.bias_bits)
            shift = 0
        else:
            wq, bq, _ = quant.affine_int(w, b, self.bits, self.bias_bits, scale * 2.0 ** shift)
            s = scale
        wq, bq = wq.to(x.dtype), bq.to(x.dtype)
        y = quant.conv(x, wq, bq)
        return (y * float(1 << shift) if shift else y), s

    def lif(self, name: str, x: torch.Tensor, scale, v_th: float = 1.0) -> torch.Tensor:
        """LIF over time on x [T, B, C, ...]; int mode: x in integer units of ``scale`` [C]."""
        if not self.integer:
            s = lif(x, v_th)
        else:
            shape = (-1,) + (1,) * (x.dim() - 3)
            scale = torch.as_tensor(scale, dtype=torch.float64).expand(x.shape[2])
            theta = quant.threshold(v_th, self.f, scale).reshape(shape).to(x.dtype)
            unit = (scale / float(1 << self.f)).reshape(shape).to(x.dtype)
            s = lif_int(x, theta, self.f, unit)
        self.keep(name, s)
        return s

    def head(self, linear, feat_sum: torch.Tensor, in_scale, count: int) -> torch.Tensor:
        """Integer head: logits = W_int . sum(stream over tokens and time) + b_int.

        ``feat_sum`` [B, C] is that sum (in units ``in_scale`` per channel); the float head sees
        the mean, so the real weight per input unit is W * in_scale / count. One scale per
        tensor. Returns real-valued logits (for the loss) and records the integers.
        """
        wq, bq, s = quant.head_int(linear.weight, linear.bias, in_scale, count, self.bits,
                                   self.bias_bits)
        wq, bq = wq.to(feat_sum.dtype), bq.to(feat_sum.dtype)
        logits = feat_sum @ wq.t() + bq
        if self.record is not None:
            self.record["logits"] = logits.detach().to(torch.int64)
        return logits * s.to(logits.dtype)


def folded(conv, bn):
    """(w', b') of a conv (or linear) followed by an optional BN, in float64."""
    if bn is None:
        w = conv.weight.double()
        b = conv.bias.double() if conv.bias is not None else torch.zeros(w.shape[0]).double()
        return w, b
    return quant.fold_bn(conv.weight, conv.bias, bn)


def _tokens_last(conv, x) -> bool:
    """A Linear applied to [.., N, C] tokens needs its BatchNorm1d over the transposed view."""
    return isinstance(conv, torch.nn.Linear) and x.dim() == 3
