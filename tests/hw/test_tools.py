"""hw.tools: the stat parser, the unit registry, and (toolchain) lint and synth on a counter."""

import pytest
from amaranth.hdl import Fragment

from hw import tools
from hw.counters import EventCounter

NEW_STAT = """
=== top ===

        +----------Local Count, excluding submodules.
        |
      102 wires
      140 wire bits
        5 public wires
        5 ports
       73 cells
        1   BUFG
        8   CARRY4
       30   FDRE
        2   FDSE
       24   LUT2
        8   LUT6
        3   RAMB18E1
        2   RAMB36E1
        4   DSP48E1
       16   RAM64X1S
        1   INV
"""

OLD_STAT = """
   Number of wires:                 12
   Number of cells:                 9
     FDRE                            4
     LUT3                            2
     LUT1                            1
     RAMB36E1                        1
     RAM32M                          1
"""


def test_parse_new_stat_format():
    r = tools.summarize(tools.parse_stat(NEW_STAT))
    assert r == {"LUT": 33, "FF": 32, "BRAM": 3.5, "DSP": 4, "LUTRAM": 16, "CARRY4": 8}


def test_parse_old_stat_format():
    cells = tools.parse_stat(OLD_STAT)
    assert "wires" not in cells and "cells" not in cells
    r = tools.summarize(cells)
    assert (r["LUT"], r["FF"], r["BRAM"], r["DSP"], r["LUTRAM"]) == (3, 4, 1, 0, 1)


def test_registry_builds_every_unit():
    for name in tools.UNITS:
        comp = tools.build_unit(name)
        Fragment.get(comp, None)  # elaborates (and marks the component used)


def test_registry_errors():
    with pytest.raises(KeyError, match="No unit named 'nope'"):
        tools.build_unit("nope")
    with pytest.raises(ValueError, match="must read 'module:Class'"):
        tools.register("bad", "hw.lif.LIFArray")


def test_register_and_override():
    tools.register("counter16", "hw.counters:EventCounter", width=16)
    try:
        for width, kw in ((16, {}), (8, {"width": 8})):
            comp = tools.build_unit("counter16", **kw)
            comp._MustUse__silence = True
            assert comp.count.shape().width == width
    finally:
        del tools.UNITS["counter16"]


def test_unexplained_keeps_unused_ports():
    comp = EventCounter(width=8)
    comp._MustUse__silence = True
    warnings = [
        "%Warning-UNUSEDSIGNAL: x.v:1:1: Signal is not used: '$12'",
        "%Warning-UNUSEDSIGNAL: x.v:1:1: Signal is not used: 'clear'",
        "%Warning-PROCASSINIT: x.v:1:1: Procedural assignment to declaration with initial value",
        "%Warning-LATCH: x.v:1:1: Latch inferred for signal 'x'",
    ]
    assert tools.unexplained(warnings, comp) == warnings[1:2] + warnings[3:]


def test_to_verilog_names_the_top():
    comp = EventCounter(width=8)
    Fragment.get(comp, None)
    text = tools.to_verilog(comp, "ctr8")
    assert "module ctr8(" in text


@pytest.mark.toolchain
def test_lint_counter(tmp_path):
    comp = EventCounter(width=16, step_width=4)
    warnings = tools.lint(comp, "ctr", tmp_path)
    assert (tmp_path / "ctr.v").exists()
    assert tools.unexplained(warnings, comp) == []


@pytest.mark.toolchain
def test_synth_counter(tmp_path):
    r = tools.synth(EventCounter(width=16, step_width=4), "ctr", tmp_path)
    assert r["FF"] == 16
    assert 0 < r["LUT"] <= 40
    assert r["BRAM"] == 0 and r["DSP"] == 0


def test_lint_without_verilator(monkeypatch):
    monkeypatch.setattr(tools, "verilator_env", lambda: {"PATH": "/nonexistent"})
    comp = EventCounter(width=8)
    comp._MustUse__silence = True
    with pytest.raises(tools.ToolchainError, match="Verilator not found"):
        tools.lint(comp, "ctr")


@pytest.mark.toolchain
def test_lint_flags_an_unused_input_port(tmp_path):
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Unused(wiring.Component):
        a: In(4)
        spare: In(4)
        y: Out(4)

        def elaborate(self, platform):
            m = Module()
            m.d.sync += self.y.eq(self.a)
            return m

    comp = Unused()
    left = tools.unexplained(tools.lint(comp, "unused", tmp_path), comp)
    assert len(left) == 1 and "'spare'" in left[0]


@pytest.mark.parametrize("kwargs,message", [
    (dict(width=0), "Counter width must be a positive integer, not 0"),
    (dict(step_width=True), "Step width must be a positive integer, not True"),
    (dict(width=4, step_width=8), "Step width 8 exceeds the counter width 4"),
])
def test_counter_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EventCounter(**kwargs)


def test_counter_counts_and_clears():
    from amaranth.sim import Simulator

    dut = EventCounter(width=6, step_width=3)
    seen = []

    async def testbench(ctx):
        for inc, clear in ((3, 0), (7, 0), (1, 1), (5, 0), (7, 0), (7, 0), (7, 0), (7, 0),
                           (7, 0), (0, 0)):
            ctx.set(dut.inc, inc)
            ctx.set(dut.clear, clear)
            await ctx.tick()
            seen.append(ctx.get(dut.count))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    # clear keeps the events of its own cycle
    assert seen == [3, 10, 1, 6, 13, 20, 27, 34, 41, 41]
