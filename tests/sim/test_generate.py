"""hw.generate: files, reproducibility, the wrapper's layout, and errors (no simulator)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hw.generate import GenerateError, port_shapes, wrapper_layout, write_build
from model.modelfile import CompiledModel
from sim.bench import image_words, unpack, write_hex
from sim.standin import StandIn

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_write_build_is_reproducible(tmp_path):
    top = StandIn()
    a = write_build(top, top.plan(), tmp_path / "a", store_images=3)
    b = write_build(StandIn(), top.plan(), tmp_path / "b", store_images=3)
    assert a == b
    for name in ("accel.v", "sim_top.v", "plan.json", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    wrapper = (tmp_path / "a" / "sim_top.v").read_text()
    assert "module sim_top" in wrapper and "accel dut" in wrapper
    assert "reg [23:0] store [0:191];" in wrapper  # 3 images of 8 x 8 pixels, 3 x 8 bits
    assert a["layout"]["slots"] == 3 and a["layout"]["logit_width"] == 24


def test_layout_rejects_a_plan_that_does_not_match_the_ports():
    top = StandIn()
    top._MustUse__silence = True  # never elaborated here
    plan = top.plan()
    plan["image"]["channels"] = 4
    with pytest.raises(GenerateError, match="img_data is 24 bits"):
        wrapper_layout(plan, port_shapes(top))
    plan = top.plan()
    plan["image"]["height"] = 64
    with pytest.raises(GenerateError, match="img_addr"):
        wrapper_layout(plan, port_shapes(top))


def test_hex_words_and_unpack(tmp_path):
    img = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2)
    w = image_words(img)
    px = [int(img[0, c, 0, 1]) for c in range(3)]
    assert w[0, 1] == px[0] | px[1] << 8 | px[2] << 16
    write_hex(tmp_path / "x.hex", img, 3)
    lines = (tmp_path / "x.hex").read_text().split()
    assert len(lines) == 12 and lines[1] == f"{int(w[0, 1]):06x}" and lines[-1] == "000000"
    with pytest.raises(ValueError, match="exceed"):
        write_hex(tmp_path / "x.hex", img, 1)
    assert unpack((5 << 4) | 0xF, 2, 4, True) == [-1, 5]
    assert unpack(0xF, 1, 4, False) == [15]


def _generate(*args):
    return subprocess.run([sys.executable, "-m", "hw.generate", *args], cwd=REPO,
                          capture_output=True, text=True)


def test_cli_errors(tmp_path):
    r = _generate("--model", str(tmp_path / "none.sfm"), "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "No compiled model at" in r.stderr
    bad = tmp_path / "bad.sfm"
    bad.write_bytes(b"not a model at all")
    r = _generate("--model", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "bad model file" in r.stderr and "not a compiled model" in r.stderr
    cut = tmp_path / "cut.sfm"
    cut.write_bytes((REPO / "models" / "default.sfm").read_bytes()[:5000])
    r = _generate("--model", str(cut), "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "truncated" in r.stderr
    r = _generate("--lanes", "3", "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "PlanError" in r.stderr and "power of two" in r.stderr
    assert not (tmp_path / "o" / "accel.v").exists()


def test_plan_error_for_a_model_the_hardware_cannot_run(tmp_path):
    cm = CompiledModel.load(REPO / "models" / "default.sfm")
    pool = next(op for op in cm.program if op["op"] == "maxpool")
    pool["kernel"] = 2
    path = tmp_path / "pool2.sfm"
    cm.save(path)
    r = _generate("--model", str(path), "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "PlanError" in r.stderr and "3x3 / stride 2" in r.stderr


def test_plan_json_of_the_default_model_names_golden_layers():
    from hw.program import build_plan
    from model.golden import COUNTERS

    cm = CompiledModel.load(REPO / "models" / "default.sfm")
    plan = json.loads(json.dumps(build_plan(cm, lanes=8).to_json()))
    names = {op["name"] for op in cm.program}
    for ins in plan["instructions"]:
        assert set(ins["layers"]) <= names
        if ins["writes"]:
            assert ins["writes"]["layer"] in names
    for s in plan["counters"]:
        if s["counter"] in COUNTERS:
            assert s["layer"] in names
