"""The memory budget: BRAM36 mapping, and a clear error for a model that does not fit."""

import pytest

from model import build_model, get_config
from model.budget import BudgetError, bram36, buffers, check
from model.compiler import compile_model, randomize


def test_bram36_aspect_ratios():
    assert bram36(1, 32768) == 1
    assert bram36(72, 512) == 1
    assert bram36(64, 513) == 2
    assert bram36(36, 1024) == 1
    assert bram36(8, 4096) == 1  # 4K x 9
    assert bram36(10, 4096) == 2
    assert bram36(0, 10) == 0


def compiled(name):
    return compile_model(randomize(build_model(get_config(name)), 0))


def test_int8_spikingformer_2_64_does_not_fit_and_says_by_how_much():
    with pytest.raises(BudgetError, match=r"does not fit arty_a7_35: needs \d+ BRAM36, 42 "
                                          r"allowed .* over by \d+; largest: weights"):
        check(compiled("spikingformer-2-64"), "arty_a7_35")


def test_4_bit_spikingformer_2_64_fits_with_15_percent_spare():
    cm = compiled("spikingformer-2-64-w4")
    bufs, total, allowed = check(cm, "arty_a7_35")
    assert total <= allowed == 42
    weights = next(b for b in bufs if b.name == "weights")
    n = sum(a.size for k, a in cm.tensors.items() if k.endswith(".weight"))
    assert weights.depth * weights.width >= n * 4  # every weight has a place
    assert check(cm, "arty_a7_100")[1] == total


def test_unknown_board():
    with pytest.raises(BudgetError, match="Unknown board 'zedboard'"):
        check(compiled("spikingformer-1-16"), "zedboard")


def test_spike_buffer_holds_the_largest_live_set():
    cm = compiled("spikingformer-1-32")
    spikes = next(b for b in buffers(cm) if b.name == "spikes")
    T = cm.config["T"]
    # block2's input (8 ch x 32 x 32) and block3's pooled output (16 ch x 16 x 16) are alive
    # together; in the transformer block: its input spikes, q, k, v and the attention output.
    tokenizer = (8 * 32 * 32 + 16 * 16 * 16)
    attention = 5 * 32 * 64
    assert spikes.width * spikes.depth >= T * max(tokenizer, attention)
