"""model.compiler: the weight quantization error report."""

import numpy as np
import pytest
import torch

from model import build_model, get_config
from model.compiler import compile_model, main, randomize, weight_errors


def _model():
    return randomize(build_model(get_config("spikingformer-1-32", weight_bits=4)), 0)


def test_weight_errors_describe_the_integers_the_compiler_writes():
    model = _model()
    rows = {r["layer"]: r for r in weight_errors(model)}
    cm = compile_model(model)
    assert set(rows) == {k.removesuffix(".weight") for k in cm.tensors
                         if k.endswith(".weight") and k != "head.weight"}
    for name, r in rows.items():
        wq = cm.tensor(f"{name}.weight")
        assert r["weights"] == wq.size
        assert r["max_int"] == pytest.approx(np.abs(wq.reshape(len(wq), -1)).max(1).mean())
        assert 0 < r["rel_error"] < 1
    assert {n for n, r in rows.items() if r["shared"]} == {
        "patch_embed.block4", "block.0.attn.proj", "block.0.mlp.mlp2"}
    assert all(r["max_int"] == 7 for r in rows.values() if not r["shared"])


def test_a_small_writer_of_the_stream_gets_few_levels():
    """Shrunk eightfold, the writer that set most of the stream's scale keeps the scale its
    partners now set: it is left with under half the integer range and its error grows;
    layers with their own scales are as before."""
    model = _model()
    before = {r["layer"]: r for r in weight_errors(model)}
    with torch.no_grad():
        model.block[0].attn.proj_bn.weight /= 8
    after = {r["layer"]: r for r in weight_errors(model)}
    proj = "block.0.attn.proj"
    assert before[proj]["max_int"] > 6.5 and after[proj]["max_int"] < 3.5
    assert after[proj]["rel_error"] > 2 * before[proj]["rel_error"]
    assert after["block.0.mlp.mlp1"] == before["block.0.mlp.mlp1"]


def test_errors_on_the_command_line(tmp_path, capsys):
    ck = tmp_path / "ck.pt"
    model = _model()
    torch.save({"model": model.state_dict(), "config": model.cfg.to_dict(), "args": {}}, ck)
    main(["--checkpoint", str(ck), "--errors"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| layer | weights | RMS error / RMS weight (4-bit) |")
    assert any(ln.startswith("| block.0.attn.proj | 1,024 |")
               and ln.endswith("| residual stream (shared) |") for ln in out)
    assert not list(tmp_path.glob("*.sfm"))
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(ck)])
