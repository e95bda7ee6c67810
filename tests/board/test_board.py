"""The board top (hw/board.py) in Amaranth's simulator: hw.host's client over the UART line
bits (SimBoard), with a fake accelerator; status LEDs; the top on the boards' platforms."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw import host
from hw.board import BoardCore, BoardTop, SimBoard
from tests.board.fake import FakeAccel


class FifoTransport:
    """hw.host transport over SimBoard's byte FIFOs, in Amaranth's simulator."""

    def __init__(self, ctx, sb, cycles_per_second=20_000):
        self.ctx, self.sb, self.cps = ctx, sb, cycles_per_second

    async def write(self, data):
        ctx, sb = self.ctx, self.sb
        for b in data:
            while not ctx.get(sb.h_wrdy):
                await ctx.tick()
            ctx.set(sb.h_wdata, b)
            ctx.set(sb.h_we, 1)
            await ctx.tick()
            ctx.set(sb.h_we, 0)

    async def read(self, n, timeout):
        ctx, sb = self.ctx, self.sb
        buf = bytearray()
        for _ in range(int(timeout * self.cps)):
            if len(buf) == n:
                break
            if ctx.get(sb.h_rvalid):
                buf.append(ctx.get(sb.h_rdata))
                ctx.set(sb.h_re, 1)
                await ctx.tick()
                ctx.set(sb.h_re, 0)
            else:
                await ctx.tick()
        return bytes(buf)


def sim_board(fake, divisor=4, timeout=200):
    core = BoardCore(fake, geometry=fake.geometry(), clk_hz=1e6, divisor=divisor,
                     timeout=timeout, error_hold_s=1e-3)
    return SimBoard(core)


def run_board(sb, body):
    out = {}

    async def bench(ctx):
        out["r"] = await body(ctx, FifoTransport(ctx, sb))

    sim = Simulator(sb)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out["r"]


def test_host_over_uart_bits_with_fake_accelerator():
    fake = FakeAccel(size=3)
    sb = sim_board(fake)
    rng = np.random.default_rng(11)
    imgs = rng.integers(0, 256, size=(2, 3, 3, 3), dtype=np.uint8)

    async def body(ctx, tr):
        dev = host.Device(chunk=5)
        info = await host.run_async(dev.get_info(), tr)
        assert ctx.get(sb.led_idle) == 1
        res = [await host.run_async(dev.classify(img, counters=True), tr) for img in imgs]
        led_class = ctx.get(sb.led_class)
        # a corrupted frame: error reply, error LED on, then the link still works
        bad = bytearray(host.encode(host.CMD_INFO))
        bad[-1] ^= 0xFF
        with pytest.raises(host.DeviceError) as e:
            await host.run_async(host.call(host.CMD_INFO, raw=bytes(bad)), tr)
        err_led = ctx.get(sb.led_error)
        again = await host.run_async(dev.get_info(), tr)
        return info, res, led_class, e.value.code, err_led, again

    info, res, led_class, code, err_led, again = run_board(sb, body)
    assert info.baud == 250_000 and info.clk_hz == 1_000_000 and again == info
    for img, r in zip(imgs, res, strict=True):
        ref = fake.reference(img)
        assert (r.cls, r.cycles, r.logits, r.counters) == \
            (ref["cls"], ref["cycles"], ref["logits"], ref["counters"])
    assert led_class == res[-1].cls
    assert code == host.ERR_CRC and err_led == 1


def test_load_then_start_replies_only_when_done():
    fake = FakeAccel(size=3, extra=300)  # a long run: START's reply waits for it
    sb = sim_board(fake)

    async def body(ctx, tr):
        dev = host.Device()
        await host.run_async(dev.get_info(), tr)
        await host.run_async(dev.load(np.full((3, 3, 3), 7, np.uint8)), tr)
        await tr.write(host.encode(host.CMD_START))
        busy_seen = 0
        for _ in range(500):
            busy_seen |= ctx.get(sb.led_busy)
            assert not ctx.get(sb.h_rvalid)  # no reply while the accelerator runs
            await ctx.tick()
        f = await host.run_async(host.read_frame(), tr)
        return busy_seen, f

    busy_seen, f = run_board(sb, body)
    assert busy_seen
    assert f.cmd == host.CMD_START | host.RSP_FLAG
    cls, cycles = struct.unpack("<BI", f.payload)
    assert cycles == 9 + 300 + 3 and cls == (7 * 9) % 10


@pytest.mark.parametrize("board", ["arty_a7_35", "arty_a7_100", "ulx3s_85f"])
def test_board_top_elaborates_on_the_platform(board, tmp_path):
    """The board top with a fake accelerator: pins and clock constraints in the build tree."""
    from hw.build import board as get_board
    from hw.build import platform_of, write_tree

    b = get_board(board)
    platform = platform_of(b)
    def core(plan, **kw):
        fake = FakeAccel()
        return BoardCore(fake, geometry=fake.geometry(), **kw)

    top = BoardTop(None, core_factory=core)
    write_tree(platform, top, tmp_path / "build")
    files = {p.name for p in (tmp_path / "build").iterdir()}
    if b.family == "xilinx":
        xdc = (tmp_path / "build" / "top.xdc").read_text()
        assert {"top.v", "top.tcl", "top.xdc", "build_top.sh"} <= files
        assert "A9" in xdc and "D10" in xdc  # the USB-UART's RX and TX pins
        assert "create_clock" in xdc and "10.0" in xdc  # 100 MHz
        assert top.core.divisor == 868
    else:
        lpf = (tmp_path / "build" / "top.lpf").read_text()
        assert {"top.il", "top.lpf", "build_top.sh"} <= files
        assert '"M1"' in lpf and '"L4"' in lpf
        assert top.core.divisor == 217  # 25 MHz / 115200
