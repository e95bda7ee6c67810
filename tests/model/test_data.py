"""CIFAR-10 loading from npz files and from the official python batches; augmentation."""

import pickle

import numpy as np
import pytest
import torch

from model.data import BUNDLED_TEST, augment, load_split


def write_batches(folder, rng):
    folder.mkdir()
    for name, n in [(f"data_batch_{i}", 5) for i in range(1, 6)] + [("test_batch", 7)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels}, fh)


def test_official_python_batches(tmp_path):
    rng = np.random.default_rng(0)
    write_batches(tmp_path / "cifar-10-batches-py", rng)
    x, y = load_split(tmp_path, "train")
    assert x.shape == (25, 3, 32, 32) and x.dtype == np.uint8 and y.shape == (25,)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    xt, yt = load_split(tmp_path / "cifar-10-batches-py", "test")
    assert np.array_equal(xt.reshape(7, -1), raw[b"data"]) and yt.tolist() == raw[b"labels"]


def test_bundled_set_is_the_first_256_test_images():
    x, y = load_split(BUNDLED_TEST, "test")
    assert x.shape == (256, 3, 32, 32)
    # test[0]'s first red row, from the official pickles (../shared/data/cifar10/README.md)
    assert x[0, 0, 0, :9].tolist() == [158, 159, 165, 166, 160, 156, 162, 159, 158]
    assert y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_bad_data_is_named(tmp_path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((4, 28, 28, 3), np.uint8),
             labels=np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match=r"images must be \[N, 32, 32, 3\]"):
        load_split(tmp_path / "bad.npz", "test")
    np.savez(tmp_path / "nolabels.npz", images=np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="missing array 'labels'"):
        load_split(tmp_path / "nolabels.npz", "test")
    with pytest.raises(FileNotFoundError, match="No CIFAR-10 train data"):
        load_split(tmp_path, "train")
    (tmp_path / "text.npz").write_text("not an archive")
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("text.npz", "array.npy"):
        with pytest.raises(ValueError, match=f"{name}: not an .npz archive"):
            load_split(tmp_path / name, "test")


def test_augment_crops_and_flips_within_the_padded_image():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).reshape(2, 3, 32, 32) % 251
    x = x.to(torch.uint8)
    g = torch.Generator().manual_seed(0)
    fill = torch.tensor([7, 8, 9], dtype=torch.uint8)
    out = augment(x, g, fill=fill)
    assert out.shape == x.shape
    for i in range(2):
        padded = torch.empty(3, 40, 40, dtype=torch.uint8)
        padded[:] = fill.reshape(3, 1, 1)
        padded[:, 4:36, 4:36] = x[i]
        found = any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1))
                    for c in (padded[:, a:a + 32, b:b + 32] for a in range(9) for b in range(9)))
        assert found
