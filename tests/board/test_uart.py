"""The host link in Amaranth's simulator: CRC, UART receiver and transmitter, and the frame
engine (hw/uart.py) with random, corrupted and truncated frames against a fake accelerator."""

from __future__ import annotations

import gc
import random
import struct

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw import host
from hw.crc import append_crc, crc16, crc16_byte
from hw.uart import FrameEngine, UARTRx, UARTTx, uart_divisor
from tests.board.fake import FakeAccel


# -- CRC ----------------------------------------------------------------------------------------
def test_crc_check_value_and_residue():
    assert crc16(b"123456789") == 0x29B1
    rng = random.Random(1)
    for n in range(0, 40, 3):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert crc16(append_crc(data)) == 0
        if n:
            bad = bytearray(append_crc(data))
            bad[rng.randrange(n)] ^= 1 << rng.randrange(8)
            assert crc16(bad) != 0


def test_crc_gateware_equals_software():
    crc, byte = Signal(16), Signal(8)
    out = Signal(16)
    m = Module()
    m.d.comb += out.eq(crc16_byte(crc, byte))
    rng = random.Random(2)
    cases = [(rng.randrange(1 << 16), rng.randrange(256)) for _ in range(200)]

    async def bench(ctx):
        for c, b in cases:
            ctx.set(crc, c)
            ctx.set(byte, b)
            await ctx.delay(1e-9)
            assert ctx.get(out) == crc16(bytes([b]), c)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


# -- UART -----------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_uart_divisor():
    assert uart_divisor(100e6, 115200) == 868
    assert uart_divisor(100e6, 3_000_000) == 33
    assert uart_divisor(25e6, 115200) == 217
    with pytest.raises(ValueError, match="at least 4"):
        uart_divisor(10e6, 5_000_000)
    with pytest.raises(ValueError, match="% off"):
        uart_divisor(25e6, 3_000_000)
    with pytest.raises(ValueError, match="integer >= 4"):
        UARTRx(divisor=3)
    gc.collect()  # the half-built UARTRx warns when collected: here, under the filter


def receiver(rx, got, errors):
    """A process that appends the bytes ``rx`` receives to ``got`` and a 1 per framing error
    to ``errors``."""
    async def process(ctx):
        async for _clk, _rst, valid, data, err in ctx.tick().sample(rx.valid, rx.data,
                                                                     rx.error):
            if valid:
                got.append(data)
            if err:
                errors.append(1)
    return process


class Loop(wiring.Component):
    """A transmitter whose line feeds a receiver (each with its own divisor)."""

    def __init__(self, tx_div, rx_div):
        self.tx, self.rx = UARTTx(divisor=tx_div), UARTRx(divisor=rx_div)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize("tx_div,rx_div", [(4, 4), (7, 7), (16, 16), (50, 49), (50, 51)])
def test_uart_loopback_random_bytes(tx_div, rx_div):
    loop = Loop(tx_div, rx_div)
    rng = random.Random(tx_div * 100 + rx_div)
    data = [rng.randrange(256) for _ in range(40)]
    got, errors = [], []

    async def sender(ctx):
        for b in data:
            while not ctx.get(loop.tx.ready):
                await ctx.tick()
            ctx.set(loop.tx.data, b)
            ctx.set(loop.tx.valid, 1)
            await ctx.tick()
            ctx.set(loop.tx.valid, 0)
            for _ in range(rng.randrange(3) * tx_div):  # random idle gaps
                await ctx.tick()

    sim = Simulator(loop)
    sim.add_clock(1e-8)
    sim.add_testbench(sender)
    sim.add_process(receiver(loop.rx, got, errors))
    sim.run_until(1e-8 * (len(data) * 13 * tx_div + 200))
    assert got == data
    assert not errors


def test_uart_framing_error_then_recovers():
    """A byte whose stop bit is low gives ``error`` and no byte; the next bytes arrive."""
    d = 8
    rx = UARTRx(divisor=d)
    got, errs = [], []

    async def line(ctx):
        def bits(b, stop):
            return [0] + [(b >> i) & 1 for i in range(8)] + [stop]

        seq = [1] * 20 + bits(0x55, 0) + [0] * 3 + [1] * 5 + bits(0xC3, 1) + [1] * 3 + \
            bits(0x00, 1) + [1] * 12
        for bit in seq:
            ctx.set(rx.rx, bit)
            for _ in range(d):
                await ctx.tick()

    sim = Simulator(rx)
    sim.add_clock(1e-8)
    sim.add_testbench(line)
    sim.add_process(receiver(rx, got, errs))
    sim.run_until(1e-8 * d * 80)
    assert errs == [1]
    assert got == [0xC3, 0x00]


# -- frame engine, byte level ----------------------------------------------------------------------
TIMEOUT = 60


class Harness(wiring.Component):
    def __init__(self, fake: FakeAccel):
        self.fake = fake
        self.fe = FrameEngine(**fake.geometry(), timeout=TIMEOUT, clk_hz=1_000_000, baud=250_000)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fake = a = self.fake
        m.submodules.fe = fe = self.fe
        m.d.comb += [a.start.eq(fe.start), fe.busy.eq(a.busy), fe.done.eq(a.done),
                     a.img_addr.eq(fe.img_addr), a.img_data.eq(fe.img_data),
                     a.img_we.eq(fe.img_we), fe.class_index.eq(a.class_index),
                     a.logit_addr.eq(fe.logit_addr), fe.logit_data.eq(a.logit_data),
                     a.cnt_addr.eq(fe.cnt_addr), fe.cnt_data.eq(a.cnt_data),
                     fe.cycles.eq(a.cycles)]
        return m


class ByteDriver:
    """Runs hw.host operation generators against the byte ports of the engine."""

    def __init__(self, ctx, fe, rng, gap=2):
        self.ctx, self.fe, self.rng, self.gap = ctx, fe, rng, gap
        self.pending = []  # bytes out of the engine not yet read

    async def write(self, data, gap=None):
        ctx, fe = self.ctx, self.fe
        gap = self.gap if gap is None else gap
        for b in data:
            ctx.set(fe.rx_data, b)
            ctx.set(fe.rx_valid, 1)
            await self._tick()
            ctx.set(fe.rx_valid, 0)
            for _ in range(self.rng.randrange(gap + 1)):
                await self._tick()

    async def _tick(self):
        ctx, fe = self.ctx, self.fe
        ready = self.rng.random() < 0.7
        ctx.set(fe.tx_ready, ready)
        valid, data = ctx.get(fe.tx_valid), ctx.get(fe.tx_data)
        await ctx.tick()
        if ready and valid:
            self.pending.append(data)

    async def read(self, n, timeout=None, limit=5000):
        for _ in range(limit):
            if len(self.pending) >= n:
                out, self.pending = bytes(self.pending[:n]), self.pending[n:]
                return out
            await self._tick()
        out, self.pending = bytes(self.pending), []
        return out

    async def run(self, gen):
        return await host.run_async(gen, self)


def run_engine(bench_body, fake=None, seed=0):
    fake = fake or FakeAccel()
    h = Harness(fake)
    out = {}

    async def bench(ctx):
        drv = ByteDriver(ctx, h.fe, random.Random(seed))
        out["result"] = await bench_body(drv, fake)

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out["result"]


def expect_error(code, cmd=None):
    def check(payload_or_exc):
        assert isinstance(payload_or_exc, host.DeviceError), payload_or_exc
        assert payload_or_exc.code == code, payload_or_exc
        if cmd is not None:
            assert payload_or_exc.cmd == cmd
    return check


async def try_call(drv, gen):
    try:
        return await drv.run(gen)
    except host.DeviceError as e:
        return e


def test_engine_info_and_classify():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(2, 3, 4, 4), dtype=np.uint8)

    async def body(drv, fake):
        dev = host.Device(chunk=5)  # several LOAD frames per image
        info = await drv.run(dev.get_info())
        assert (info.channels, info.height, info.width, info.classes) == (3, 4, 4, 10)
        assert info.model_id == b"\x12\x34\x56\x78" and info.logit_bytes == 3
        assert info.max_payload == 2 + 16 * 3 and info.counter_slots == 12
        out = []
        for img in images:
            out.append(await drv.run(dev.classify(img, counters=True)))
        return out

    fake = FakeAccel()
    for img, r in zip(images, run_engine(body, fake), strict=True):
        ref = fake.reference(img)
        assert (r.cls, r.cycles, r.logits, r.counters) == \
            (ref["cls"], ref["cycles"], ref["logits"], ref["counters"])


def test_engine_random_frames():
    """Random commands with random payloads: each gets the reply or error the protocol says;
    valid LOADs change the image, and a classify after them matches."""
    rng = random.Random(5)
    fake = FakeAccel()
    geom = fake.geometry()
    npix, C = 16, 3

    async def body(drv, fake):
        dev = host.Device()
        await drv.run(dev.get_info())
        image = np.zeros((npix, C), np.uint8)
        for _ in range(60):
            cmd = rng.choice([host.CMD_INFO, host.CMD_LOAD, host.CMD_LOAD, host.CMD_COUNTERS,
                              host.CMD_RESULT, 0x00, 0x42, host.CMD_START])
            if cmd == host.CMD_LOAD:
                a = rng.randrange(npix + 2)
                k = rng.randrange(0, 5)
                pix = bytes(rng.randrange(256) for _ in range(k * C + rng.choice([0, 0, 1])))
                payload = struct.pack("<H", a) + pix
            elif cmd == host.CMD_COUNTERS:
                payload = struct.pack("<HH", rng.randrange(14), rng.randrange(6))
                if rng.random() < 0.2:
                    payload = payload[:3]
            else:
                payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 0, 0, 2])))
            r = await try_call(drv, host.call(cmd, payload))
            if cmd not in host.COMMANDS:
                expect_error(host.ERR_CMD, cmd)(r)
            elif cmd == host.CMD_LOAD:
                n = len(payload) - 2
                for i in range(n // C):  # whole pixels in range are written whatever the reply
                    if a + i < npix:
                        image[a + i] = list(pix[i * C:(i + 1) * C])
                if n % C:
                    expect_error(host.ERR_LEN, cmd)(r)
                elif a + n // C > npix:
                    expect_error(host.ERR_RANGE, cmd)(r)
                else:
                    assert r == struct.pack("<H", a + n // C)
            elif cmd == host.CMD_COUNTERS:
                if len(payload) != 4:
                    expect_error(host.ERR_LEN, cmd)(r)
                else:
                    first, num = struct.unpack("<HH", payload)
                    if first + num > geom["counter_slots"]:
                        expect_error(host.ERR_RANGE, cmd)(r)
                    else:
                        assert len(r) == 4 * num
            elif payload:
                expect_error(host.ERR_LEN, cmd)(r)
            else:
                assert isinstance(r, bytes)
        r = await drv.run(dev.start())
        res = await drv.run(dev.result())
        return image, r, res

    image, (cls, cycles), res = run_engine(body, fake)
    ref = fake.reference(image.T.reshape(C, 4, 4))
    assert (cls, cycles, res.logits) == (ref["cls"], ref["cycles"], ref["logits"])


def test_engine_corrupted_frames():
    """Every single-bit flip after the sync byte is caught (CRC, or the length/command
    checks that a flipped header leads to), and the next good frame works."""
    rng = random.Random(7)
    good = host.encode(host.CMD_COUNTERS, struct.pack("<HH", 2, 3))

    async def body(drv, fake):
        codes = []
        for _ in range(25):
            bad = bytearray(good)
            i = rng.randrange(1, len(bad))
            bad[i] ^= 1 << rng.randrange(8)
            try:
                await drv.run(host.call(host.CMD_COUNTERS, raw=bytes(bad)))
                codes.append(0)
            except host.DeviceError as e:
                codes.append(e.code)
            rsp = await drv.run(host.call(host.CMD_COUNTERS, struct.pack("<HH", 2, 3)))
            assert len(rsp) == 12
        return codes

    codes = run_engine(body)
    assert 0 not in codes
    assert set(codes) <= {host.ERR_CRC, host.ERR_LEN, host.ERR_TIMEOUT}
    assert host.ERR_CRC in codes


def test_engine_truncated_and_oversized_frames():
    async def body(drv, fake):
        out = []
        good = host.encode(host.CMD_LOAD, struct.pack("<H", 0) + bytes(range(12)))
        for cut in (2, 3, 4, 9, len(good) - 1):  # partial frames, then silence
            await drv.write(good[:cut])
            f = await drv.run(host.read_frame())
            out.append((f.cmd, f.payload))
        # a length above any command's: dropped until the line is quiet, then ERR_LEN
        big = bytes([host.SYNC_REQ, host.CMD_LOAD, 0xFF, 0x7F]) + bytes(300)
        await drv.write(big, gap=0)
        f = await drv.run(host.read_frame())
        out.append((f.cmd, f.payload))
        # garbage before the sync byte is skipped
        await drv.write(bytes([0x00, 0x13, 0x5A]))
        info = await drv.run(host.Device().get_info())
        return out, info

    out, info = run_engine(body)
    for cmd, payload in out[:5]:
        assert cmd == host.RSP_ERROR and payload[0] == host.ERR_TIMEOUT
    assert out[5] == (host.RSP_ERROR, bytes([host.ERR_LEN, host.CMD_LOAD]))
    assert info.classes == 10
