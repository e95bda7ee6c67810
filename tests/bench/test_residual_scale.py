"""bench/residual_scale.py: the writers' scales each way, other convs untouched."""

import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from model import build_model, get_config, quant
from model.compiler import randomize

_spec = importlib.util.spec_from_file_location(
    "residual_scale", Path(__file__).resolve().parents[2] / "bench" / "residual_scale.py")
rs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rs)


def _model():
    return randomize(build_model(get_config("spikingformer-1-32", weight_bits=4)), 0)


def _folded(model):
    return [quant.fold_bn(c.weight, c.bias, bn)[0] for c, bn, _ in rs.conv_bn_pairs(model)]


@torch.no_grad()
def test_only_the_writers_change_and_the_shift_is_the_largest_that_fits():
    base = _model()
    shared = base.residual_scale().double()
    writers = {id(c) for c, _ in base.residual_writers()}
    pairs = list(rs.conv_bn_pairs(base))
    assert sum(id(c) in writers for c, _, _ in pairs) == 3 and len(pairs) == 11
    ways = {way: _folded(rs.round_weights(copy.deepcopy(base), way)) for way in rs.WAYS}
    for i, (conv, _, _) in enumerate(pairs):
        same = [torch.allclose(ways[w][i], ways["shared"][i]) for w in rs.WAYS]
        assert all(same) or id(conv) in writers
    top = quant.qmax(4)
    for i, (conv, bn, _) in enumerate(pairs):
        if id(conv) not in writers:
            continue
        w = quant.fold_bn(conv.weight, conv.bias, bn)[0]
        # per layer: w / (shared / 2^k) stays in range, and 2^(k+1) would leave it somewhere
        # (the writer that sets the scale has a ratio of 1, up to rounding: k = 0)
        ratio = (top * shared / quant.channel_max(w)).min()
        k = max(0, int(torch.floor(torch.log2(ratio) + 1e-9)))
        q = ways["shift per layer"][i] / (shared / 2 ** k).reshape(-1, *[1] * (w.dim() - 1))
        assert torch.allclose(q, q.round(), atol=1e-4) and q.abs().max() <= top + 1e-6
        assert (quant.channel_max(w) / (shared / 2 ** (k + 1))).max() > top
        # the finer grids hold the coarser ones and nothing is clipped: no element is worse
        err = {way: float((ways[way][i] - w).pow(2).sum()) for way in rs.WAYS}
        assert err["shift per layer"] <= err["shared"] + 1e-12
        assert err["shift per channel"] <= err["shift per layer"] + 1e-12


def test_a_network_without_a_stream_of_currents_is_refused(tmp_path):
    m = randomize(build_model(get_config("spikformer-1-32")), 0)
    ck = tmp_path / "s.pt"
    torch.save({"model": m.state_dict(), "config": m.cfg.to_dict(), "args": {}}, ck)
    assert not hasattr(m, "residual_writers")  # its stream holds spike counts
    with pytest.raises(SystemExit, match="no residual stream"):
        rs.main(["--checkpoint", str(ck), "-n", "4", "--data",
                 str(Path(__file__).resolve().parents[2] / "data" / "cifar10_test_256.npz")])
