"""hw.host over the simulated UART (sim/host: cocotb + Verilator): images classified equal to
the golden model, bad frames answered with their errors, the device working afterwards."""

from __future__ import annotations

import pytest


@pytest.mark.toolchain
def test_host_over_simulated_uart(tmp_path):
    from sim.host.run import run, tiny_model

    model = tiny_model(tmp_path / "tiny.sfm")
    s = run(model, n=2, out=tmp_path / "sim", log=lambda *_: None)
    assert [r["equal"] for r in s["images"]] == [True, True]
    assert all(s["errors_as_expected"].values()), s["errors"]
    assert s["works_after_errors"] and s["ok"]
    assert s["info"]["height"] == 8 and s["info"]["model_id"] == s["sha256"][:8]
