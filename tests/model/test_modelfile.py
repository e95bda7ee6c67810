"""The compiled model file: round trip, and a clear error for every kind of bad file."""

import json
import struct

import numpy as np
import pytest

from model import build_model
from model.compiler import compile_model, randomize
from model.modelfile import FORMAT_VERSION, MAGIC, CompiledModel, ModelFileError


@pytest.fixture(scope="module")
def data():
    return compile_model(randomize(build_model("spikingformer-1-16"), 0)).to_bytes()


def test_round_trip_keeps_every_tensor_and_the_program(data, tmp_path):
    cm = CompiledModel.from_bytes(data)
    path = tmp_path / "m.sfm"
    digest = cm.save(path)
    again = CompiledModel.load(path)
    assert again.program == cm.program and again.config == cm.config
    assert set(again.tensors) == set(cm.tensors)
    for k in cm.tensors:
        assert again.tensors[k].dtype == cm.tensors[k].dtype
        assert np.array_equal(again.tensors[k], cm.tensors[k])
    assert again.checksum == digest
    # Widths come with the program: every conv and LIF names its accumulator / membrane width.
    for op in cm.program:
        assert op["bits"] >= 2
        if op["op"] == "lif":
            assert op["mem_bits"] > op["bits"]


def test_not_a_model_file(data):
    with pytest.raises(ModelFileError, match="not a compiled model file"):
        CompiledModel.from_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(ModelFileError, match="not a compiled model file"):
        CompiledModel.from_bytes(b"")


def test_wrong_version(data):
    bad = MAGIC + struct.pack("<I", FORMAT_VERSION + 1) + data[12:]
    with pytest.raises(ModelFileError, match=f"format version {FORMAT_VERSION + 1}; this "
                                             f"reader supports version {FORMAT_VERSION}"):
        CompiledModel.from_bytes(bad)


@pytest.mark.parametrize("keep", [0.99, 0.5, 0.02])
def test_truncated(data, keep):
    with pytest.raises(ModelFileError, match="truncated"):
        CompiledModel.from_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("where", [0.3, 0.9])
def test_corrupt_byte(data, where):
    i = int(len(data) * where)
    bad = data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1:]
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        CompiledModel.from_bytes(bad)


def test_inconsistent_program_is_named():
    cm = CompiledModel.from_bytes(compile_model(randomize(build_model("spikingformer-1-16"),
                                                          1)).to_bytes())
    cm.program[3]["inputs"] = ["no.such.layer"]
    with pytest.raises(ModelFileError, match="reads 'no.such.layer'"):
        CompiledModel.from_bytes(cm.to_bytes())
    cm = CompiledModel.from_bytes(compile_model(randomize(build_model("spikingformer-1-16"),
                                                          1)).to_bytes())
    del cm.tensors["head.weight"]
    with pytest.raises(ModelFileError, match="lacks"):
        CompiledModel.from_bytes(cm.to_bytes())


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No compiled model"):
        CompiledModel.load(tmp_path / "none.sfm")


def test_header_is_readable_json(data):
    hlen = struct.unpack("<I", data[12:16])[0]
    header = json.loads(data[16:16 + hlen])
    assert header["config"]["arch"] == "spikingformer"
    assert header["program"][0]["name"] == "patch_embed.block0"
