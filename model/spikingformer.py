"""Spikingformer for CIFAR (arXiv 2304.11954), as in the authors' ``cifar10/model.py``.

Every conv sees binary spikes: the residual stream stays real-valued and each branch starts
with a LIF (LIF -> Conv -> BN). Parameter names follow the reference code, so its state_dicts
load as they are (see ``model.checkpoint``).

Shapes: images [B, 3, H, W] of raw pixel values 0..255; internal tensors [T, B, C, H, W];
tokens [T, B, C, N], channel = head * head_dim + j (head-major).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import quant
from .config import CIFAR_MEAN, CIFAR_STD, Config
from .layers import Run


class SpikingTokenizer(nn.Module):
    """block0: Conv3x3 -> BN (on pixels); block1..4: LIF -> [MaxPool] -> Conv3x3 -> BN."""

    def __init__(self, cfg: Config):
        super().__init__()
        D = cfg.dim
        chans = [cfg.in_channels, D // 8, D // 4, D // 2, D, D]
        for i in range(5):
            setattr(self, f"block{i}_conv",
                    nn.Conv2d(chans[i], chans[i + 1], 3, stride=1, padding=1, bias=False))
            setattr(self, f"block{i}_bn", nn.BatchNorm2d(chans[i + 1]))
        self.block3_mp = nn.MaxPool2d(3, stride=2, padding=1)
        self.block4_mp = nn.MaxPool2d(3, stride=2, padding=1)
        zp, inv = quant.input_affine(CIFAR_MEAN, CIFAR_STD, cfg.in_channels)
        self.register_buffer("zero_point", zp.float(), persistent=False)
        self.register_buffer("pixel_scale", inv.float(), persistent=False)

    def forward(self, img: torch.Tensor, run: Run, T: int, res=None):
        zp = self.zero_point.to(img.dtype).reshape(1, -1, 1, 1)
        if run.integer:  # integer pixels minus zero point; the 1/(255 std) folds into weights
            x, s = run.affine(self.block0_conv, self.block0_bn, img - zp,
                              in_scale=self.pixel_scale.double())
        else:
            x = (img - zp) * self.pixel_scale.reshape(1, -1, 1, 1)
            x, s = run.affine(self.block0_conv, self.block0_bn, x)
        # The input is the same at every step: block0 runs once, its output repeats T times.
        x = x.unsqueeze(0).expand(T, *x.shape)
        for i in range(1, 5):
            spikes = run.lif(f"patch_embed.block{i}_lif", x, s)
            y = spikes.flatten(0, 1)
            if i >= 3:
                y = getattr(self, f"block{i}_mp")(y)
                run.keep(f"patch_embed.block{i}_mp", y.reshape(T, -1, *y.shape[1:]))
            unit, shift = res if i == 4 and res is not None else (None, 0)
            y, s = run.affine(getattr(self, f"block{i}_conv"), getattr(self, f"block{i}_bn"), y,
                              scale=unit, shift=shift)
            x = y.reshape(T, -1, *y.shape[1:])
        return x


class SpikingSelfAttention(nn.Module):
    """LIF -> q, k, v = Conv1x1 -> BN -> LIF; Y = (Q K^T) V * 0.125; attn LIF; Conv1x1 -> BN."""

    def __init__(self, cfg: Config):
        super().__init__()
        D = cfg.dim
        self.heads = cfg.heads
        for n in ("q", "k", "v"):
            setattr(self, f"{n}_conv", nn.Conv1d(D, D, 1, bias=False))
            setattr(self, f"{n}_bn", nn.BatchNorm1d(D))
        self.proj_conv = nn.Conv1d(D, D, 1)
        self.proj_bn = nn.BatchNorm1d(D)

    def forward(self, x, run: Run, name: str, res=None):
        """``res``: (the stream's unit, this block's proj shift), or None in float mode."""
        T, B, C, H, W = x.shape
        unit, shift = res or (None, 0)
        s = run.lif(f"{name}.proj_lif", x, unit).flatten(3).flatten(0, 1)  # [TB, C, N]
        qkv = []
        for n in ("q", "k", "v"):
            y, sc = run.affine(getattr(self, f"{n}_conv"), getattr(self, f"{n}_bn"), s)
            spk = run.lif(f"{name}.{n}_lif", y.reshape(T, B, C, -1), sc)
            qkv.append(spk.reshape(T, B, self.heads, C // self.heads, -1).transpose(-1, -2))
        q, k, v = qkv  # [T, B, heads, N, d]
        y = (q @ k.transpose(-1, -2)) @ v  # integer counts
        y = y.transpose(-1, -2).reshape(T, B, C, -1)
        if run.integer:
            a = run.lif(f"{name}.attn_lif", y, 0.125, v_th=0.5)
        else:
            a = run.lif(f"{name}.attn_lif", y * 0.125, None, v_th=0.5)
        out, _ = run.affine(self.proj_conv, self.proj_bn, a.flatten(0, 1), scale=unit,
                            shift=shift)
        return out.reshape(T, B, C, H, W)


class MLP(nn.Module):
    """LIF -> Conv1x1 -> BN -> LIF -> Conv1x1 -> BN."""

    def __init__(self, cfg: Config):
        super().__init__()
        D, Hd = cfg.dim, cfg.hidden
        self.mlp1_conv = nn.Conv2d(D, Hd, 1)
        self.mlp1_bn = nn.BatchNorm2d(Hd)
        self.mlp2_conv = nn.Conv2d(Hd, D, 1)
        self.mlp2_bn = nn.BatchNorm2d(D)

    def forward(self, x, run: Run, name: str, res=None):
        T, B, C, H, W = x.shape
        unit, shift = res or (None, 0)
        s = run.lif(f"{name}.mlp1_lif", x, unit)
        y, s1 = run.affine(self.mlp1_conv, self.mlp1_bn, s.flatten(0, 1))
        s = run.lif(f"{name}.mlp2_lif", y.reshape(T, B, -1, H, W), s1)
        out, _ = run.affine(self.mlp2_conv, self.mlp2_bn, s.flatten(0, 1), scale=unit,
                            shift=shift)
        return out.reshape(T, B, C, H, W)


class SpikingTransformer(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.attn = SpikingSelfAttention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, run: Run, name: str, unit=None, shifts=(0, 0)):
        x = x + self.attn(x, run, f"{name}.attn", None if unit is None else (unit, shifts[0]))
        x = x + self.mlp(x, run, f"{name}.mlp", None if unit is None else (unit, shifts[1]))
        return x


class Spikingformer(nn.Module):
    """The whole network. ``forward(img, mode='float'|'int', record=False)``."""

    def __init__(self, cfg: Config):
        super().__init__()
        if cfg.arch != "spikingformer":
            raise ValueError(f"Spikingformer needs arch 'spikingformer', not {cfg.arch!r}")
        self.cfg = cfg
        self.patch_embed = SpikingTokenizer(cfg)
        self.block = nn.ModuleList(SpikingTransformer(cfg) for _ in range(cfg.depth))
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.mode = "float"

    def residual_writers(self):
        """(conv, bn) of every layer that writes the residual stream: one scale for all."""
        yield self.patch_embed.block4_conv, self.patch_embed.block4_bn
        for blk in self.block:
            yield blk.attn.proj_conv, blk.attn.proj_bn
            yield blk.mlp.mlp2_conv, blk.mlp.mlp2_bn

    def residual_shifts(self) -> tuple[torch.Tensor, list[int]]:
        """The residual stream's unit per channel and each writer's left shift into it.

        The shared scale maps the largest weight of a channel over all writers to the largest
        integer. A writer whose weights are smaller takes that scale over 2^k, k the largest
        (at most ``cfg.residual_shift``) that keeps all its weights in range, so its integers
        use more of their width. The stream counts in the finest writer's unit, the shared
        scale over 2^K (K the largest k), and a writer's integer sum enters it shifted left by
        K - k: no multiply. With ``residual_shift`` 0 every shift is 0 and the unit is the
        shared scale.
        """
        bits, room = self.cfg.weight_bits, self.cfg.residual_shift
        most = [quant.channel_max(quant.fold_bn(c.weight, c.bias, bn)[0]).double()
                for c, bn in self.residual_writers()]
        shared = quant.scale_from_max(torch.stack(most).amax(0), bits)
        limit = quant.qmax(bits) * shared
        ks = []
        for m in most:
            k = 0
            while k < room and bool((m * 2.0 ** (k + 1) <= limit).all()):
                k += 1
            ks.append(k)
        K = max(ks)
        return shared / 2.0 ** K, [K - k for k in ks]

    def residual_scale(self) -> torch.Tensor:
        """The residual stream's unit per channel (``residual_shifts``)."""
        return self.residual_shifts()[0]

    def forward(self, img: torch.Tensor, mode: str | None = None, record: bool = False):
        run = Run.begin(self, img, mode, record)
        T = self.cfg.T
        res, shifts = (self.residual_shifts() if run.integer
                       else (None, [0] * (1 + 2 * len(self.block))))
        x = self.patch_embed(img, run, T, None if res is None else (res, shifts[0]))
        for j, blk in enumerate(self.block):
            x = blk(x, run, f"block.{j}", res, shifts[1 + 2 * j:3 + 2 * j])
        if run.integer:
            logits = run.head(self.head, x.flatten(3).sum((0, 3)), res, T * x[0, 0, 0].numel())
        else:
            logits = self.head(x.flatten(3).mean(3).mean(0))
        if record:
            return logits, run.record
        return logits
