"""Spikformer for CIFAR (arXiv 2209.15425), the comparison network, as in the authors'
``cifar10/model.py``.

Post-activation everywhere (Conv/Linear -> BN -> LIF), so every branch ends in spikes and the
residual stream holds small non-negative integers: the tokenizer's RPE spikes plus its pooled
spikes (0..2), and every block adds two more spike maps. Every linear after the tokenizer
therefore multiplies integers by weights, not spikes (DESIGN.md section 2). Parameter names
follow the reference code, so its state_dicts load as they are (see ``model.checkpoint``).

Shapes: images [B, 3, H, W] of raw pixel values 0..255; tokenizer tensors [T, B, C, H, W];
tokens [T, B, C, N], channel = head * head_dim + j (head-major). The reference keeps tokens as
[T, B, N, C]; the linears see the same [TB, N, C] view here and BatchNorm1d its transpose, so
the function is the same.

In integer mode the stream is in units of 1 (it is a spike count), so unlike Spikingformer no
scale is shared between layers: every conv and linear gets its own per-channel scale, which
only sets the threshold of the LIF that follows it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import quant
from .config import CIFAR_MEAN, CIFAR_STD, Config
from .layers import Run


def _conv_bn(run: Run, conv, bn, x: torch.Tensor):
    """Conv -> BN on [T, B, C, H, W] spikes; returns ([T, B, C', H, W], scale)."""
    T = x.shape[0]
    y, s = run.affine(conv, bn, x.flatten(0, 1))
    return y.reshape(T, -1, *y.shape[1:]), s


def _linear_bn(run: Run, linear, bn, x: torch.Tensor):
    """Linear -> BatchNorm1d on tokens [T, B, C, N] via the reference's [TB, N, C] view."""
    T, B, C, N = x.shape
    y, s = run.affine(linear, bn, x.flatten(0, 1).transpose(1, 2))
    return y.transpose(1, 2).reshape(T, B, -1, N), s


class SPS(nn.Module):
    """Spiking patch splitting: four Conv3x3 -> BN -> LIF stages (max pool after the last two)
    and a relative position embedding, RPE = Conv3x3 -> BN -> LIF, whose spikes are added to
    the pooled spikes: tokens take values 0, 1, 2."""

    def __init__(self, cfg: Config):
        super().__init__()
        D = cfg.dim
        chans = [cfg.in_channels, D // 8, D // 4, D // 2, D]
        for i in range(4):
            suffix = str(i) if i else ""
            setattr(self, f"proj_conv{suffix}",
                    nn.Conv2d(chans[i], chans[i + 1], 3, stride=1, padding=1, bias=False))
            setattr(self, f"proj_bn{suffix}", nn.BatchNorm2d(chans[i + 1]))
        self.maxpool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, padding=1)
        self.rpe_conv = nn.Conv2d(D, D, 3, stride=1, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(D)
        zp, inv = quant.input_affine(CIFAR_MEAN, CIFAR_STD, cfg.in_channels)
        self.register_buffer("zero_point", zp.float(), persistent=False)
        self.register_buffer("pixel_scale", inv.float(), persistent=False)

    def forward(self, img: torch.Tensor, run: Run, T: int) -> torch.Tensor:
        """Images [B, C, H, W] -> tokens [T, B, D, N] (integers 0..2)."""
        zp = self.zero_point.to(img.dtype).reshape(1, -1, 1, 1)
        if run.integer:  # integer pixels minus zero point; the 1/(255 std) folds into weights
            x, s = run.affine(self.proj_conv, self.proj_bn, img - zp,
                              in_scale=self.pixel_scale.double())
        else:
            x = (img - zp) * self.pixel_scale.reshape(1, -1, 1, 1)
            x, s = run.affine(self.proj_conv, self.proj_bn, x)
        # The input is the same at every step: the first conv runs once, its output repeats.
        x = run.lif("patch_embed.proj_lif", x.unsqueeze(0).expand(T, *x.shape), s)
        for i in (1, 2, 3):
            x, s = _conv_bn(run, getattr(self, f"proj_conv{i}"), getattr(self, f"proj_bn{i}"), x)
            x = run.lif(f"patch_embed.proj_lif{i}", x, s)
            if i >= 2:
                y = getattr(self, f"maxpool{i}")(x.flatten(0, 1))
                x = y.reshape(T, -1, *y.shape[1:])
                run.keep(f"patch_embed.maxpool{i}", x)
        feat = x
        y, s = _conv_bn(run, self.rpe_conv, self.rpe_bn, feat)
        rpe = run.lif("patch_embed.rpe_lif", y, s)
        return (rpe + feat).flatten(3)


class SSA(nn.Module):
    """Spiking self-attention: q, k, v = Linear -> BN -> LIF on the (integer) stream;
    Y = (Q K^T) V * 0.125 -> attn LIF (v_th 0.5); Linear -> BN -> LIF."""

    def __init__(self, cfg: Config):
        super().__init__()
        D = cfg.dim
        self.heads = cfg.heads
        for n in ("q", "k", "v"):
            setattr(self, f"{n}_linear", nn.Linear(D, D))
            setattr(self, f"{n}_bn", nn.BatchNorm1d(D))
        self.proj_linear = nn.Linear(D, D)
        self.proj_bn = nn.BatchNorm1d(D)

    def forward(self, x: torch.Tensor, run: Run, name: str) -> torch.Tensor:
        T, B, C, N = x.shape
        qkv = []
        for n in ("q", "k", "v"):
            y, s = _linear_bn(run, getattr(self, f"{n}_linear"), getattr(self, f"{n}_bn"), x)
            spk = run.lif(f"{name}.{n}_lif", y, s)
            qkv.append(spk.reshape(T, B, self.heads, C // self.heads, N).transpose(-1, -2))
        q, k, v = qkv  # [T, B, heads, N, d]
        # Integer counts; the reference scales Q K^T by 0.125 before multiplying by V, which
        # is the same number (every partial sum is a small multiple of 1/8, exact in float).
        y = (q @ k.transpose(-1, -2)) @ v
        y = y.transpose(-1, -2).reshape(T, B, C, N)
        if run.integer:
            a = run.lif(f"{name}.attn_lif", y, 0.125, v_th=0.5)
        else:
            a = run.lif(f"{name}.attn_lif", y * 0.125, None, v_th=0.5)
        y, s = _linear_bn(run, self.proj_linear, self.proj_bn, a)
        return run.lif(f"{name}.proj_lif", y, s)


class MLP(nn.Module):
    """Linear -> BN -> LIF -> Linear -> BN -> LIF."""

    def __init__(self, cfg: Config):
        super().__init__()
        D, Hd = cfg.dim, cfg.hidden
        self.fc1_linear = nn.Linear(D, Hd)
        self.fc1_bn = nn.BatchNorm1d(Hd)
        self.fc2_linear = nn.Linear(Hd, D)
        self.fc2_bn = nn.BatchNorm1d(D)

    def forward(self, x: torch.Tensor, run: Run, name: str) -> torch.Tensor:
        y, s = _linear_bn(run, self.fc1_linear, self.fc1_bn, x)
        h = run.lif(f"{name}.fc1_lif", y, s)
        y, s = _linear_bn(run, self.fc2_linear, self.fc2_bn, h)
        return run.lif(f"{name}.fc2_lif", y, s)


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.attn = SSA(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, run: Run, name: str) -> torch.Tensor:
        x = x + self.attn(x, run, f"{name}.attn")
        x = x + self.mlp(x, run, f"{name}.mlp")
        return x


class Spikformer(nn.Module):
    """The whole network. ``forward(img, mode='float'|'int', record=False)``."""

    def __init__(self, cfg: Config):
        super().__init__()
        if cfg.arch != "spikformer":
            raise ValueError(f"Spikformer needs arch 'spikformer', not {cfg.arch!r}")
        if cfg.residual_shift:
            raise ValueError("Spikformer's residual stream adds spikes: it has no writer to "
                             f"shift (residual_shift must be 0, not {cfg.residual_shift})")
        self.cfg = cfg
        self.patch_embed = SPS(cfg)
        self.block = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        for m in self.modules():  # the reference's _init_weights: every Linear
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.mode = "float"

    def forward(self, img: torch.Tensor, mode: str | None = None, record: bool = False):
        run = Run.begin(self, img, mode, record)
        T = self.cfg.T
        x = self.patch_embed(img, run, T)  # [T, B, D, N], spike counts
        for j, blk in enumerate(self.block):
            x = blk(x, run, f"block.{j}")
        if run.integer:
            ones = torch.ones(self.cfg.dim, dtype=torch.float64)
            logits = run.head(self.head, x.sum((0, 3)), ones, T * x.shape[3])
        else:
            logits = self.head(x.mean(3).mean(0))
        if record:
            return logits, run.record
        return logits
