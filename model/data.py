"""CIFAR-10 loading and batch augmentation.

Sources, by what ``--data`` points at:
- a folder with ``train.npz`` / ``test.npz`` (arrays ``images`` uint8 [N, 32, 32, 3] and
  ``labels``), as in ``../shared/data/cifar10``;
- the official CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``), or the folder
  ``cifar-10-batches-py`` that holds them;
- a single ``.npz`` file with ``images`` and ``labels`` (the bundled test set).

Images come out as uint8 tensors [N, 3, 32, 32] (raw pixels; the model normalizes).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10"
BUNDLED_TEST = REPO / "data" / "cifar10_test_256.npz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def shown(path: str | Path) -> str:
    """A path as reports print it: relative to the repository when inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


def _check(images: np.ndarray, labels: np.ndarray, source) -> tuple[np.ndarray, np.ndarray]:
    if images.ndim != 4 or images.shape[1:] not in ((32, 32, 3), (3, 32, 32)):
        raise ValueError(f"{source}: images must be [N, 32, 32, 3] or [N, 3, 32, 32], "
                         f"not {list(images.shape)}")
    if images.dtype != np.uint8:
        raise ValueError(f"{source}: images must be uint8 pixels, not {images.dtype}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{source}: {images.shape[0]} images but labels of shape "
                         f"{list(labels.shape)}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{source}: labels must be in 0..9")
    if images.shape[-1] == 3:
        images = images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # what numpy.savez writes: a zip archive
            raise ValueError(f"{path}: not an .npz archive (numpy.savez with 'images' and "
                             f"'labels')")
    with np.load(path, allow_pickle=False) as d:
        missing = [k for k in ("images", "labels") if k not in d.files]
        if missing:
            raise ValueError(f"{path}: missing array {missing[0]!r} (need 'images' and "
                             f"'labels', found {d.files})")
        return _check(d["images"], d["labels"], path)


def _load_batches(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for f in files:
        with open(f, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[b"labels"]))
    return _check(np.concatenate(xs), np.concatenate(ys), files[0].parent)


def load_split(data: str | Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 3, 32, 32] and labels int64 [N] of 'train' or 'test'."""
    if split not in ("train", "test"):
        raise ValueError(f"Split must be 'train' or 'test', not {split!r}")
    root = Path(data) if data else DEFAULT_DATA
    if root.is_file():
        return load_npz(root)
    if (root / f"{split}.npz").exists():
        return load_npz(root / f"{split}.npz")
    for folder in (root, root / "cifar-10-batches-py"):
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        files = [folder / n for n in names]
        if all(f.exists() for f in files):
            return _load_batches(files)
    raise FileNotFoundError(
        f"No CIFAR-10 {split} data under {root}: expected {split}.npz or the python batches "
        f"(data_batch_1..5, test_batch)")


def crop_fill(model) -> torch.Tensor | None:
    """What augment pads a network's crops with: its input zero point in pixels, if it has
    one (the pixel that enters it as 0), else None (black)."""
    zp = getattr(model.patch_embed, "zero_point", None)
    return None if zp is None else zp.to(torch.uint8)


def augment(images: torch.Tensor, gen: torch.Generator, pad: int = 4,
            fill: torch.Tensor | None = None) -> torch.Tensor:
    """Random crop (padding ``pad``, filled with ``fill`` per channel) and horizontal flip."""
    B, C, H, W = images.shape
    out = torch.empty_like(images)
    padded = images.new_empty(B, C, H + 2 * pad, W + 2 * pad)
    padded[:] = (fill if fill is not None else torch.zeros(C)).to(images.dtype).reshape(1, C, 1, 1)
    padded[:, :, pad:pad + H, pad:pad + W] = images
    off = torch.randint(0, 2 * pad + 1, (B, 2), generator=gen)
    flip = torch.rand(B, generator=gen) < 0.5
    for i in range(B):
        y, x = int(off[i, 0]), int(off[i, 1])
        crop = padded[i, :, y:y + H, x:x + W]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out
