"""Fixtures shared by the model tests."""

import numpy as np
import pytest


@pytest.fixture
def data(tmp_path):
    """train.npz (32 images) and test.npz (16 images) of random pixels and labels."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("test", 16)):
        np.savez(folder / f"{split}.npz", labels=rng.integers(0, 10, n),
                 images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    return folder
