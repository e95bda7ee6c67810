"""Model side: torch Spikingformer / Spikformer, quantization, compiler and golden model."""

from __future__ import annotations

from .config import Config, get_config


def build_model(cfg: Config | str):
    """The torch network for a config (or config name)."""
    if isinstance(cfg, str):
        cfg = get_config(cfg)
    if cfg.arch == "spikingformer":
        from .spikingformer import Spikingformer
        return Spikingformer(cfg)
    from .spikformer import Spikformer
    return Spikformer(cfg)


__all__ = ["Config", "get_config", "build_model"]
