"""model.compiler: the weight quantization error report."""

import numpy as np
import pytest
import torch

from model import build_model, get_config, quant
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


def test_a_shift_gives_a_small_writer_its_range_back():
    """Shrunk 64-fold, a writer is left with mostly zeros under the shared scale; allowed to
    shift into the stream, it takes that scale over a power of two (4: one channel keeps it
    from 8) and gets its range back, for a finer stream unit."""
    model = _model()
    with torch.no_grad():
        model.block[0].attn.proj_bn.weight /= 64
    shifted = build_model(get_config("spikingformer-1-32", weight_bits=4, residual_shift=3))
    shifted.load_state_dict(model.state_dict())
    shrunk = {room: {r["layer"]: r for r in weight_errors(m)}
              for room, m in ((0, model), (3, shifted))}
    proj = "block.0.attn.proj"
    assert shifted.residual_shifts()[1] == [2, 0, 2]
    assert shrunk[0][proj]["max_int"] < 0.5 and shrunk[3][proj]["max_int"] > 1.5
    assert shrunk[3][proj]["rel_error"] < shrunk[0][proj]["rel_error"] / 1.5
    assert shrunk[3]["block.0.mlp.mlp1"] == shrunk[0]["block.0.mlp.mlp1"]


@pytest.mark.parametrize("bits,room", [(4, 3), (6, 1), (5, 8)])
def test_writer_shifts_keep_weights_in_range_and_take_the_largest_power(bits, room):
    """Every writer's weights w' / (u 2^shift) stay within the integer range, and one more
    power of two would take some channel out of it, unless the writer is at the limit."""
    model = randomize(build_model(get_config("spikingformer-2-16", weight_bits=bits,
                                             residual_shift=room)), 1)
    unit, shifts = model.residual_shifts()
    K = max(shifts)
    assert 0 <= K <= room and min(shifts) == 0 and (room < 3 or K >= 1)
    top = (1 << (bits - 1)) - 1
    for (conv, bn), shift in zip(model.residual_writers(), shifts, strict=True):
        w = quant.fold_bn(conv.weight, conv.bias, bn)[0]
        ratio = quant.channel_max(w).double() / (unit * 2.0 ** shift)
        assert bool((ratio <= top * (1 + 1e-12)).all())
        k = K - shift  # this writer's scale is the shared one over 2^k
        assert k == room or bool((2 * ratio > top).any())
    cm = compile_model(model)
    writers = [op for op in cm.program if op["op"] == "conv" and op["name"] in (
        "patch_embed.block4", "block.0.attn.proj", "block.0.mlp.mlp2", "block.1.attn.proj",
        "block.1.mlp.mlp2")]
    assert [op.get("shift", 0) for op in writers] == shifts
    for op in writers:  # the compiled bound is the shifted one
        w = cm.tensor(op["tensors"]["weight"]).astype(np.int64)
        b = cm.tensor(op["tensors"]["bias"]).astype(np.int64)
        unshifted = (np.abs(w).reshape(len(w), -1).sum(1) + np.abs(b)).max()
        assert op["bound"] == unshifted << op.get("shift", 0)


def test_no_shift_is_one_shared_scale_and_the_old_file_format():
    model = randomize(build_model(get_config("spikingformer-2-16")), 1)
    unit, shifts = model.residual_shifts()
    most = torch.stack([quant.channel_max(quant.fold_bn(c.weight, c.bias, bn)[0])
                        for c, bn in model.residual_writers()]).amax(0)
    assert shifts == [0] * 5 and torch.equal(unit, quant.scale_from_max(most, 8))
    assert all("shift" not in op for op in compile_model(model).program)


def test_residual_shift_in_config_names_and_its_limits():
    cfg = get_config("spikingformer-2-64-w6-s2")
    assert (cfg.weight_bits, cfg.residual_shift, cfg.name) == (6, 2, "spikingformer-2-64-w6-s2")
    with pytest.raises(ValueError, match="Residual shift must be 0..8 bits, not 9"):
        get_config("spikingformer-2-64", residual_shift=9)
    with pytest.raises(ValueError, match="Spikformer's residual stream adds spikes"):
        build_model(get_config("spikformer-2-64-s1"))


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
