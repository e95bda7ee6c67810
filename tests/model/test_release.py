"""model.release: a training checkpoint becomes a bundled model whose manifest is true."""

import hashlib
import json

import numpy as np
import pytest

from model import budget
from model.golden import run_batched
from model.modelfile import CompiledModel
from model.release import main as release

from .test_train import init_checkpoint, run


def test_release_writes_a_model_its_weights_and_a_true_manifest(data, tmp_path,  # noqa: F811
                                                                 monkeypatch):
    init_checkpoint(tmp_path / "init.pt")
    run(data, tmp_path / "qat", "--init", str(tmp_path / "init.pt"), "--qat", "--epochs", "1",
        "--weight-bits", "4")
    out = tmp_path / "models"
    m = release(["--checkpoint", str(tmp_path / "qat" / "best.pt"), "--name", "t",
                 "--data", str(data), "--out-dir", str(out)])
    assert json.loads((out / "t.json").read_text()) == m
    sfm = (out / "t.sfm").read_bytes()
    assert m["sha256"] == hashlib.sha256(sfm).hexdigest() and m["name"] == "t"
    assert m["config"]["weight_bits"] == 4 and m["training"]["qat"] is True
    assert m["init_from"]["sha256"] == hashlib.sha256(
        (tmp_path / "init.pt").read_bytes()).hexdigest()
    # the accuracy it states is the golden model's on those images
    test = np.load(data / "test.npz")
    res = run_batched(CompiledModel.load(out / "t.sfm"), test["images"].transpose(0, 3, 1, 2))
    t = m["cifar10_test"]
    assert t["images"] == 16 and t["correct_int"] == int((res.classes == test["labels"]).sum())
    assert t["classes_sha256"] == hashlib.sha256(
        res.classes.astype(np.int64).tobytes()).hexdigest()
    assert m["bundled_256"]["images"] == 256
    assert m["fits"]["board"] == "arty_a7_35"
    assert m["fits"]["bram36"] <= m["fits"]["allowed_bram36"] == 42
    # a board too small for it: refused, saying by how much, and nothing written
    monkeypatch.setitem(budget.BOARDS, "one_bram", 1)
    small = tmp_path / "small"
    with pytest.raises(SystemExit, match=r"does not fit one_bram: needs [\d.]+ BRAM36, 0 "
                                         r"allowed .* over by [\d.]+.*nothing written"):
        release(["--checkpoint", str(tmp_path / "qat" / "best.pt"), "--name", "t",
                 "--board", "one_bram", "--out-dir", str(small)])
    assert not small.exists()
