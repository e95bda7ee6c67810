"""Load the authors' Spikingformer / Spikformer checkpoints into this project's models.

    python -m model.checkpoint --reference FILE --heads 12 --out runs/imported.pt

converts an authors' checkpoint into this project's training-checkpoint format (``model``,
``config``, ``epoch``, ``args``, as ``model.train`` writes), ready for ``--init`` or
``--eval-only --init``. It evaluates nothing.

A reference file is a state_dict, or a dict that wraps one under ``state_dict`` (timm's
training script) or ``model``; keys may carry DDP's ``module.`` prefix. The reference blocks
hold LayerNorms ``norm1`` / ``norm2`` that their forward never uses: they are dropped.
Parameter names are the reference's own; ``map_key`` is the one place that translates them.

The head count cannot be read from weights (it only splits channels in the attention), so it
is an argument; depth, dim, mlp_ratio, num_classes and in_channels come from the shapes.
"""

from __future__ import annotations

import argparse
import pickle
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from .config import Config, default_heads

_PREFIXES = ("module.",)  # DDP / DataParallel wrappers
_DROPPED = re.compile(r"^block\.\d+\.norm[12]\.")  # unused LayerNorms of the reference blocks
# (reference pattern, our replacement) pairs, applied in order; empty while the names agree.
_RENAMES: tuple[tuple[re.Pattern, str], ...] = ()


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model (or is no checkpoint at all)."""


def map_key(ref_key: str) -> str | None:
    """This project's name for a reference parameter name; None for keys we drop."""
    key = ref_key
    stripped = True
    while stripped:
        stripped = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, stripped = key[len(p):], True
    if _DROPPED.match(key):
        return None
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    return key


def read_state_dict(source: str | Path | Mapping) -> dict[str, torch.Tensor]:
    """The raw reference state_dict of a file or dict (unwrapped, keys not yet mapped)."""
    name = "the given dict"
    obj = source
    if not isinstance(source, Mapping):
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"No checkpoint file at {path}")
        obj = _torch_load(path)
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name} is not a checkpoint: it holds a {type(obj).__name__}, "
                              f"not a state_dict (a dict of tensors)")
    if not obj:
        raise CheckpointError(f"{name} is not a checkpoint: its state_dict is empty")
    bad = [f"{k!r} ({type(v).__name__})" for k, v in obj.items()
           if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CheckpointError(
            f"{name} is not a checkpoint: a state_dict maps names to tensors, but it holds "
            f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''} "
            f"(expected the weights at the top level or under 'state_dict' or 'model')")
    return dict(obj)


def _torch_load(path: Path):
    """Tensors-only unpickling first; timm checkpoints also pickle their argparse Namespace,
    so a file that needs more is unpickled in full (only load files you trust)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass
    except Exception as e:  # not a torch file at all (zip, pickle) or truncated
        raise CheckpointError(f"{path} is not a torch checkpoint: {e}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{path} is not a torch checkpoint: {e}") from None


def map_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference names -> our names, dropping unused keys; two keys onto one name is an error."""
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for k, v in state.items():
        ours = map_key(k)
        if ours is None:
            continue
        if ours in out:
            raise CheckpointError(f"Checkpoint keys {origin[ours]!r} and {k!r} both map to "
                                  f"{ours!r}")
        out[ours], origin[ours] = v, k
    return out


def _shape(state, key):
    t = state.get(key)
    return tuple(t.shape) if t is not None else None


def infer_config(source: str | Path | Mapping, heads: int | None = None, **overrides) -> Config:
    """The Config a reference state_dict was trained with, from its shapes.

    ``heads`` defaults to ``default_heads(dim)`` (it cannot be inferred); other Config fields
    that leave no trace in the weights (T, img_size, widths) come from ``overrides``.
    """
    state = map_state_dict(read_state_dict(source))
    if _shape(state, "patch_embed.block0_conv.weight"):
        arch, first, mlp1 = "spikingformer", "patch_embed.block0_conv.weight", "mlp.mlp1_conv"
    elif _shape(state, "patch_embed.proj_conv.weight"):
        arch, first, mlp1 = "spikformer", "patch_embed.proj_conv.weight", "mlp.fc1_linear"
    else:
        raise CheckpointError(
            "Cannot tell the architecture: the state_dict has neither "
            "'patch_embed.block0_conv.weight' (Spikingformer) nor "
            "'patch_embed.proj_conv.weight' (Spikformer)")
    head = _shape(state, "head.weight")
    if head is None or len(head) != 2:
        raise CheckpointError(f"Cannot read dim and classes: 'head.weight' has shape {head}, "
                              f"expected [classes, dim]")
    num_classes, dim = head
    blocks = {int(m[1]) for k in state if (m := re.match(r"^block\.(\d+)\.", k))}
    if not blocks:
        raise CheckpointError("The state_dict has no transformer blocks ('block.0. ...')")
    depth = max(blocks) + 1
    hidden = _shape(state, f"block.0.{mlp1}.weight")
    if hidden is None:
        raise CheckpointError(f"Cannot read the MLP width: no 'block.0.{mlp1}.weight'")
    if hidden[0] % dim:
        raise CheckpointError(f"MLP hidden width {hidden[0]} is not a multiple of dim {dim}")
    kw = dict(arch=arch, depth=depth, dim=dim, mlp_ratio=hidden[0] // dim,
              num_classes=num_classes, in_channels=_shape(state, first)[1],
              heads=heads or default_heads(dim))
    kw.update(overrides)
    return Config(**kw)


def _describe(cfg: Config) -> str:
    return (f"{cfg.name} (arch={cfg.arch}, depth={cfg.depth}, dim={cfg.dim}, "
            f"mlp_ratio={cfg.mlp_ratio}, num_classes={cfg.num_classes}, "
            f"in_channels={cfg.in_channels})")


_INFERRED = ("arch", "depth", "dim", "mlp_ratio", "num_classes", "in_channels")


def _suggestion(state, mine: Config | None) -> str:
    """'The checkpoint's shapes imply ...' when they imply another config than the model's."""
    custom = mine is not None and mine.heads != default_heads(mine.dim)
    for heads in ((mine.heads,) if custom else ()) + (None,):
        try:
            cfg = infer_config(state, heads=heads)
            break
        except ValueError:  # CheckpointError, or heads that do not divide the dim
            continue
    else:
        return ""
    if mine is not None and all(getattr(cfg, f) == getattr(mine, f) for f in _INFERRED):
        return ""
    return f"The checkpoint's shapes imply {_describe(cfg)}: build the model with that config."


def load_reference_state_dict(model: torch.nn.Module, source: str | Path | Mapping):
    """Load an authors' checkpoint (file or dict) into ``model``; returns the model.

    Raises CheckpointError naming every missing key, every unexpected key and every shape
    mismatch (with the config the checkpoint's shapes imply).
    """
    raw = read_state_dict(source)
    state = map_state_dict(raw)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"  {k}: the model expects {list(own[k].shape)}, the checkpoint has "
                  f"{list(state[k].shape)}"
                  for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        mine = getattr(model, "cfg", None)
        lines = [f"The checkpoint does not fit the model"
                 f"{' ' + _describe(mine) if mine is not None else ''}."]
        lines += filter(None, [_suggestion(raw, mine)])
        if missing:
            lines.append(f"Missing keys ({len(missing)}, in the model, not in the checkpoint): "
                         f"{', '.join(missing)}")
        if unexpected:
            lines.append(f"Unexpected keys ({len(unexpected)}, in the checkpoint, not in the "
                         f"model): {', '.join(unexpected)}")
        if mismatched:
            lines += [f"Shape mismatch ({len(mismatched)} keys):", *mismatched]
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state)
    return model


def convert(reference: str | Path, heads: int | None = None, **overrides) -> dict:
    """An authors' checkpoint as this project's training checkpoint (a dict for torch.save)."""
    from . import build_model

    raw = read_state_dict(reference)
    cfg = infer_config(raw, heads=heads, **overrides)
    model = load_reference_state_dict(build_model(cfg), raw)
    return {"model": model.state_dict(), "config": cfg.to_dict(), "epoch": 0,
            "args": {"reference": str(reference), "heads": cfg.heads, "imported": True}}


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="python -m model.checkpoint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, help="the authors' checkpoint file")
    p.add_argument("--heads", type=int, default=None,
                   help="attention heads (not in the weights; default: default_heads(dim))")
    p.add_argument("--T", type=int, default=4, help="time steps the model was trained with")
    p.add_argument("--out", required=True, help="where to write the converted checkpoint")
    args = p.parse_args(argv)
    from .train import save_atomic

    ck = convert(args.reference, heads=args.heads, T=args.T)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(ck, out)
    cfg = Config.from_dict(ck["config"])
    n = sum(t.numel() for k, t in ck["model"].items() if not k.endswith("num_batches_tracked"))
    print(f"{args.reference} -> {out}: {_describe(cfg)}, heads={cfg.heads}, T={cfg.T}, "
          f"{n} values", file=sys.stderr)
    return out


if __name__ == "__main__":
    from model.cli import run

    run(main, prefix="python -m model.checkpoint")
