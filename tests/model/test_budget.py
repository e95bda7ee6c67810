"""The memory budget: BRAM36 mapping, and a clear error for a model that does not fit."""

import pytest

from hw.program import MemorySpec
from model import build_model, get_config
from model.budget import BudgetError, buffers, check
from model.compiler import compile_model, randomize


def ram(width, depth, read_ports=1):
    """BRAM36 of a written memory (one aspect ratio), as the budget counts it."""
    return MemorySpec("stream", width, depth, read_ports, "").bram36


def test_ram_bram36_aspect_ratios():
    assert ram(1, 32768) == 1
    assert ram(72, 1024) == 2  # two 512 x 72
    assert ram(64, 1024) == 2
    assert ram(36, 1024) == 1
    assert ram(8, 4096) == 1  # 4K x 9
    assert ram(9, 2048) == 0.5  # one BRAM18
    assert ram(10, 4096) == 1.5  # three BRAM18 of 4K x 4
    assert ram(36, 1024, read_ports=2) == 2  # a copy per read port
    assert ram(64, 640) == 0  # small enough for LUT RAM


def compiled(name, **overrides):
    return compile_model(randomize(build_model(get_config(name, **overrides)), 0))


def test_int8_spikingformer_2_64_does_not_fit_and_says_by_how_much():
    with pytest.raises(BudgetError, match=r"does not fit arty_a7_35: needs [\d.]+ BRAM36, 42 "
                                          r"allowed .* over by [\d.]+; largest: weights"):
        check(compiled("spikingformer-2-64"), "arty_a7_35")


def test_4_bit_spikingformer_2_64_fits_with_15_percent_spare():
    cm = compiled("spikingformer-2-64-w4")
    bufs, total, allowed = check(cm, "arty_a7_35")
    assert total <= allowed == 42
    weights = next(b for b in bufs if b.name == "weights")
    n = sum(a.size for k, a in cm.tensors.items() if k.endswith(".weight") and a.ndim == 4)
    assert weights.depth * weights.width >= n * 4  # every conv weight has a place
    head = next(b for b in bufs if b.name == "head_w")
    assert head.depth * head.width == cm.tensors["head.weight"].size * 4
    assert check(cm, "arty_a7_100")[1] == total


def test_unknown_board():
    with pytest.raises(BudgetError, match="Unknown board 'zedboard'"):
        check(compiled("spikingformer-1-16"), "zedboard")


def test_spike_banks_hold_the_largest_live_set():
    cm = compiled("spikingformer-1-32")
    bufs = {b.name: b for b in buffers(cm)}
    T = cm.config["T"]
    # 16-bit words: block1's input (4 ch x 32 x 32, one word per position) and its output
    # (8 ch x 32 x 32) are alive together, then block2's 16-channel output with block1's
    assert bufs["spikes0"].width == 16
    assert bufs["spikes0"].depth == T * 32 * 32 * 2
    # Q, K and V: one 32-bit word per token, in LUT RAM
    for b in ("spikes1", "spikes2", "spikes3"):
        assert (bufs[b].width, bufs[b].depth, bufs[b].style) == (32, T * 64, "distributed")


def test_a_model_the_accelerator_cannot_run_is_refused():
    # Spikformer's integer stream is kept as bit planes that must fill 16-bit words
    with pytest.raises(BudgetError, match="cannot run this model.*16-bit words"):
        check(compiled("spikformer-1-24", heads=1), "arty_a7_35")


def test_config_comparison_says_which_fit(capsys):
    from model.budget import main

    assert main(["--config", "spikingformer-2-64-w4", "spikingformer-2-64"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].endswith("| fits (42 allowed) |")
    w4, w8 = rows[2].split(" | "), rows[3].split(" | ")
    assert w4[0] == "| spikingformer-2-64-w4" and w4[1] == "160,216" and w4[2] == "4"
    assert w4[-1] == "yes |"
    assert w8[2] == "8" and w8[-1].startswith("no (over by ")
    # the weights memory grows with their width, and never holds more bits than its BRAM36
    assert float(w8[3]) > float(w4[3])
    for row, bits in ((w4, 4), (w8, 8)):
        assert float(row[3]) * 36 * 1024 >= 160_216 * bits
    assert main(["--config", "spikingformer-2"]) == 1
    assert "does not read" in capsys.readouterr().err
