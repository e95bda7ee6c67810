"""Network configurations: the reference Spikingformer / Spikformer for CIFAR and small variants.

A config name reads ``{arch}-{depth}-{dim}``, optionally followed by ``-h{heads}``,
``-w{weight_bits}``, ``-t{T}`` and ``-s{residual_shift}``, e.g. ``spikingformer-4-384`` (the
paper's) or ``spikingformer-2-64-h4-w6-s2``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

ARCHS = ("spikingformer", "spikformer")

# CIFAR-10 channel statistics (RGB). The zero point is an integer pixel value so that the
# first layer sees integer inputs and pads with the zero point (DESIGN.md section 3).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Config:
    """Everything that fixes the network's shape and its integer contract."""

    arch: str = "spikingformer"
    depth: int = 2
    dim: int = 64
    heads: int = 4
    mlp_ratio: int = 4
    T: int = 4
    num_classes: int = 10
    img_size: int = 32
    in_channels: int = 3
    weight_bits: int = 8
    bias_bits: int = 32
    frac_bits: int = 0  # membrane fractional bits f; 0 means "f = T" (the smallest exact choice)
    # Largest left shift of a residual-stream writer into the stream (Spikingformer): each
    # writer's scale is the shared one over 2^k, k <= residual_shift; 0: one shared scale.
    residual_shift: int = 0

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"Architecture must be one of {ARCHS}, not {self.arch!r}")
        for field in ("depth", "dim", "heads", "mlp_ratio", "T", "num_classes", "img_size",
                      "in_channels"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{field} must be a positive integer, not {value!r}")
        if self.dim % 8:
            raise ValueError(f"Embedding dim must be a multiple of 8, not {self.dim}")
        if self.dim % self.heads:
            raise ValueError(f"Embedding dim {self.dim} is not divisible by {self.heads} heads")
        if self.img_size % 4:
            raise ValueError(f"Image size must be a multiple of 4, not {self.img_size}")
        if not 2 <= self.weight_bits <= 16:
            raise ValueError(f"Weight width must be 2..16 bits, not {self.weight_bits}")
        if not 8 <= self.bias_bits <= 48:
            raise ValueError(f"Bias width must be 8..48 bits, not {self.bias_bits}")
        if not isinstance(self.residual_shift, int) or not 0 <= self.residual_shift <= 8:
            raise ValueError(f"Residual shift must be 0..8 bits, not {self.residual_shift!r}")
        if self.frac_bits and self.frac_bits < self.T:
            raise ValueError(
                f"Membrane fractional bits f={self.frac_bits} < T={self.T}: the integer LIF "
                f"would not equal the real one (DESIGN.md section 3 needs f >= T)")

    @property
    def f(self) -> int:
        """Fractional bits of the integer membrane."""
        return self.frac_bits or self.T

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def tokens(self) -> int:
        return (self.img_size // 4) ** 2

    @property
    def hidden(self) -> int:
        return self.dim * self.mlp_ratio

    @property
    def name(self) -> str:
        name = f"{self.arch}-{self.depth}-{self.dim}"
        if self.heads != default_heads(self.dim):
            name += f"-h{self.heads}"
        if self.weight_bits != 8:
            name += f"-w{self.weight_bits}"
        if self.T != 4:
            name += f"-t{self.T}"
        if self.residual_shift:
            name += f"-s{self.residual_shift}"
        return name

    def to_dict(self) -> dict:
        """All fields; ``residual_shift`` only where set, so that files written before it
        existed read and compile back to the same bytes."""
        d = dataclasses.asdict(self)
        if not d["residual_shift"]:
            del d["residual_shift"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Unknown config fields: {sorted(unknown)}")
        return cls(**d)


def default_heads(dim: int) -> int:
    """12 heads at D=384 as in the paper; head size 16 for small models, 32 for larger ones."""
    if dim == 384:
        return 12
    return max(1, dim // 16) if dim <= 128 else dim // 32


_NAME = re.compile(r"^(?P<arch>[a-z]+)-(?P<depth>\d+)-(?P<dim>\d+)(?P<opts>(-[htws]\d+)*)$")


def get_config(name: str, **overrides) -> Config:
    """Parse a config name such as ``spikingformer-2-64`` or ``spikformer-4-384-h12``."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(
            f"Config name {name!r} does not read "
            f"'{{arch}}-{{depth}}-{{dim}}[-hH][-wW][-tT][-sS]', e.g. 'spikingformer-2-64'")
    dim = int(m["dim"])
    kw = dict(arch=m["arch"], depth=int(m["depth"]), dim=dim, heads=default_heads(dim))
    for opt in filter(None, m["opts"].split("-")):
        key = {"h": "heads", "w": "weight_bits", "t": "T", "s": "residual_shift"}[opt[0]]
        kw[key] = int(opt[1:])
    kw.update(overrides)
    return Config(**kw)


NAMED = ("spikingformer-4-384", "spikingformer-2-384", "spikingformer-4-256",
         "spikingformer-2-64", "spikingformer-1-64", "spikingformer-2-96", "spikformer-4-384",
         "spikformer-2-64")
