"""The bundled models (the shipped Spikingformer, and the Spikingformer and Spikformer of the
same training budget that docs/claim compares): each manifest is true, and each trained
network compiles bit-exactly."""

import hashlib
import json

import numpy as np
import pytest
import torch

from model.compiler import compile_model
from model.data import BUNDLED_TEST, REPO, load_split
from model.golden import run, run_batched
from model.modelfile import CompiledModel


@pytest.fixture(scope="module", params=["default", "spikingformer", "spikformer"])
def name(request):
    if not (REPO / "models" / f"{request.param}.sfm").exists():
        pytest.skip(f"models/{request.param}.sfm is not bundled")
    return request.param


@pytest.fixture(scope="module")
def manifest(name):
    return json.loads((REPO / "models" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def cm(name):
    return CompiledModel.load(REPO / "models" / f"{name}.sfm")


def test_manifest_names_this_file(name, manifest):
    data = (REPO / "models" / f"{name}.sfm").read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert manifest["name"] == name


def test_bundled_accuracy_is_what_the_manifest_says(manifest, cm):
    x, y = load_split(BUNDLED_TEST, "test")
    res = run_batched(cm, x)
    m = manifest["bundled_256"]
    assert int((res.classes == y).sum()) == m["correct_int"]
    assert hashlib.sha256(res.classes.astype(np.int64).tobytes()).hexdigest() == \
        m["classes_sha256"]


def test_trained_checkpoint_integer_mode_equals_golden(manifest, cm):
    ck = REPO / manifest["checkpoint"]
    if not ck.exists():
        pytest.skip(f"{ck} is not in the repository")
    from model.train import model_from_checkpoint
    model, _ = model_from_checkpoint(ck)
    model.eval()
    # Compiling the same checkpoint again gives the same file, byte for byte.
    assert compile_model(model, {"name": manifest["name"]}).checksum == manifest["sha256"]
    x, _ = load_split(BUNDLED_TEST, "test")
    x = x[:6]
    res = run(cm, x, record=True)
    with torch.no_grad():
        _, rec = model(torch.from_numpy(x).double(), mode="int", record=True)
    assert np.array_equal(rec["logits"].numpy(), res.logits)
    for layer, spikes in res.spikes.items():
        assert np.array_equal(rec[layer].numpy(), spikes), layer
