"""Random-weight models at configs other than the default (one of them a Spikformer, whose
integer stream runs as bit planes): RTL = golden, bit for bit.

Compiles each config with random weights (model.compiler --random; needs torch), generates,
builds (Verilator) and simulates 4 bundled test images. Several minutes: marked slow.
"""

import pytest

from sim.random_models import CONFIGS, check_model, random_model

pytestmark = [pytest.mark.toolchain, pytest.mark.slow]


@pytest.mark.parametrize("config", CONFIGS)
def test_random_model_bit_exact(config):
    pytest.importorskip("torch")
    s = check_model(random_model(config, seed=1), n=4)
    assert s["images"] == 4
    assert not s["mismatches"], (s["mismatches"], s.get("first_difference"))
    assert not s["uncounted_list"], s["uncounted_list"]
