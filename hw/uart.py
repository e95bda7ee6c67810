"""The host link's gateware: UART receiver and transmitter, and the frame engine that turns
request frames into accelerator port operations (docs/board.md; protocol constants in
``hw.host``).

    rx = UARTRx(divisor=868)          # 100 MHz / 115200 baud
    tx = UARTTx(divisor=868)
    fe = FrameEngine(channels=3, height=32, width=32, classes=10, logit_width=35,
                     counter_slots=332, timeout=5_000_000)

- ``UARTRx``: 8N1, a two-flop synchroniser, the start bit checked at its middle, data bits
  sampled at their middles, the stop bit checked (a low stop bit is a framing error, the byte
  is dropped and the receiver waits for the line to go high). ``data``/``valid`` (one cycle).
- ``UARTTx``: 8N1; ``data``/``valid``/``ready`` (the byte is taken when both are high).
- ``FrameEngine``: bytes in, bytes out, and the accelerator's host ports (``start``, ``busy``,
  ``done``, ``img_*``, ``class_index``, ``logit_*``, ``cnt_*``, ``cycles``). It never waits
  for a byte forever: a partial frame is answered ``ERR_TIMEOUT`` after ``timeout`` cycles
  without a byte, and a length above the largest valid payload makes it drop bytes until the
  line has been quiet for ``timeout`` cycles, then answer ``ERR_LEN``.

Pixels of a LOAD frame are written into the image memory as they arrive (no frame buffer):
a LOAD answered with an error may have written some pixels; the host sends it again.
"""


from amaranth.hdl import Array, Cat, Const, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .crc import INIT, crc16_byte
from .host import (
    CMD_COUNTERS,
    CMD_INFO,
    CMD_LOAD,
    CMD_RESULT,
    CMD_START,
    ERR_CMD,
    ERR_CRC,
    ERR_LEN,
    ERR_RANGE,
    ERR_TIMEOUT,
    INFO_SIZE,
    RSP_ERROR,
    RSP_FLAG,
    SYNC_REQ,
    SYNC_RSP,
    VERSION,
    Info,
)


def uart_divisor(clk_hz: float, baud: float, tolerance: float = 0.02) -> int:
    """Clock cycles per bit; ValueError when the rate is off by more than ``tolerance`` or
    the divisor is below 4."""
    if baud <= 0 or clk_hz <= 0:
        raise ValueError(f"Clock and baud rate must be positive, not {clk_hz} and {baud}")
    d = round(clk_hz / baud)
    if d < 4:
        raise ValueError(f"{baud} baud needs at least 4 clock cycles per bit; {clk_hz / 1e6:g} "
                         f"MHz gives {clk_hz / baud:.2f}")
    err = abs(clk_hz / d - baud) / baud
    if err > tolerance:
        raise ValueError(f"{baud} baud from {clk_hz / 1e6:g} MHz: divisor {d} gives "
                         f"{clk_hz / d:.0f} baud, {100 * err:.1f} % off (limit "
                         f"{100 * tolerance:g} %)")
    return d


class _UART(wiring.Component):
    def __init__(self, *, divisor: int):
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"UART divisor must be an integer >= 4, not {divisor!r}")
        self.divisor = divisor  # clock cycles per bit
        super().__init__()


class UARTRx(_UART):
    """8N1 receiver: ``rx`` line in; ``data`` with a one-cycle ``valid``; ``error`` pulses on a
    framing error (stop bit low)."""

    rx: In(1, init=1)
    data: Out(8)
    valid: Out(1)
    error: Out(1)

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        meta = Signal(2, init=0b11)
        m.d.sync += meta.eq(Cat(self.rx, meta[0]))
        line = meta[1]
        timer = Signal(range(d))
        nbit = Signal(range(8))
        sh = Signal(8)
        m.d.sync += [self.valid.eq(0), self.error.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(d - 1), nbit.eq(0)]
                    m.next = "DATA"
                    with m.If(line):  # a glitch, not a start bit
                        m.next = "IDLE"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(d - 1), sh.eq(Cat(sh[1:], line)), nbit.eq(nbit + 1)]
                    with m.If(nbit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += [self.data.eq(sh), self.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(_UART):
    """8N1 transmitter: a byte on ``data`` is taken when ``valid`` and ``ready``."""

    tx: Out(1, init=1)
    data: In(8)
    valid: In(1)
    ready: Out(1)

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        sh = Signal(10, init=0x3FF)
        left = Signal(range(11))
        timer = Signal(range(d))
        m.d.comb += [self.ready.eq(left == 0), self.tx.eq(sh[0])]
        with m.If(left == 0):
            with m.If(self.valid):
                m.d.sync += [sh.eq(Cat(Const(0, 1), self.data, Const(1, 1))), left.eq(10),
                             timer.eq(d - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [sh.eq(Cat(sh[1:], Const(1, 1))), left.eq(left - 1), timer.eq(d - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


# reply kinds of the transmit sequencer
K_ERR, K_INFO, K_LOAD, K_START, K_RESULT, K_CNT = range(6)


class FrameEngine(wiring.Component):
    """Request frames in (``rx_data``/``rx_valid``), reply frames out (``tx_*``), and the
    accelerator's host ports. ``ok``/``err`` pulse when a reply / an error reply starts."""

    def __init__(self, *, channels: int, height: int, width: int, classes: int,
                 logit_width: int, counter_slots: int, counter_width: int = 32,
                 timeout: int, clk_hz: int = 0, baud: int = 0, model_id: bytes = bytes(4)):
        for name, v in (("channels", channels), ("height", height), ("width", width),
                        ("classes", classes), ("logit_width", logit_width),
                        ("counter_slots", counter_slots), ("counter_width", counter_width),
                        ("timeout", timeout)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if classes > 255 or counter_slots > 0xFFFF or height * width > 0xFFFF:
            raise ValueError(f"{classes} classes, {counter_slots} counter slots or "
                             f"{height}x{width} pixels: above the protocol's fields")
        self.C, self.H, self.W, self.K = channels, height, width, classes
        self.npix = height * width
        self.LW, self.NS, self.CW = logit_width, counter_slots, counter_width
        self.LB, self.CB = -(-logit_width // 8), -(-counter_width // 8)
        self.timeout = timeout
        self.max_payload = max(2 + self.npix * channels, 4)
        if self.max_payload > 0xFFFF or counter_slots * self.CB > 0xFFFF:
            raise ValueError(f"An image of {self.npix * channels} bytes or {counter_slots} "
                             f"counters of {self.CB} bytes do not fit one frame")
        self.info = Info(VERSION, channels, height, width, classes, self.LB, counter_slots,
                         self.CB, self.max_payload, int(clk_hz), int(baud), bytes(model_id[:4]))
        super().__init__({
            "rx_data": In(8), "rx_valid": In(1),
            "tx_data": Out(8), "tx_valid": Out(1), "tx_ready": In(1),
            "start": Out(1), "busy": In(1), "done": In(1),
            "img_addr": Out(range(self.npix)), "img_data": Out(8 * channels), "img_we": Out(1),
            "class_index": In(range(max(2, classes))),
            "logit_addr": Out(range(max(2, classes))), "logit_data": In(signed(logit_width)),
            "cnt_addr": Out(16), "cnt_data": In(counter_width), "cycles": In(32),
            "ok": Out(1), "err": Out(1), "active": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        C, K, LB, CB, NS = self.C, self.K, self.LB, self.CB, self.NS
        byte = self.rx_data
        got = self.rx_valid

        crc = Signal(16, init=INIT)
        cmd = Signal(8)
        length = Signal(16)
        count = Signal(16)  # payload bytes received
        args = Signal(32)  # the first four payload bytes
        addr = Signal(17)  # LOAD: next pixel address
        chan = Signal(range(max(2, C)))
        pix = Signal(8 * C)
        range_err = Signal()
        idle = Signal(range(self.timeout + 1))  # cycles since the last byte
        wr = Signal()
        wr_addr = Signal(range(self.npix))

        err_code = Signal(8)
        err_cmd = Signal(8)
        kind = Signal(range(6))
        rsp_cmd = Signal(8)
        rsp_len = Signal(16)
        items = Signal(16)
        item = Signal(16)
        ww = max(40, 8 * LB, 8 * CB, 17)
        word = Signal(ww)
        nb = Signal(range(max(6, LB, CB) + 1))
        cnt_ptr = Signal(17)

        m.d.comb += [self.img_addr.eq(wr_addr), self.img_data.eq(pix), self.img_we.eq(wr),
                     self.cnt_addr.eq(cnt_ptr), self.logit_addr.eq(item - 1)]
        m.d.sync += [wr.eq(0), self.ok.eq(0), self.err.eq(0)]

        len_full = Cat(length[:8], byte)
        info_rom = Array(Const(b, 8) for b in self.info.pack())
        first, num = args[:16], args[16:32]

        def error(code):
            m.d.sync += [err_code.eq(code), kind.eq(K_ERR), rsp_cmd.eq(RSP_ERROR),
                         rsp_len.eq(2), items.eq(1), self.err.eq(1)]
            m.next = "T_SYNC"

        def reply(k, n_bytes, n_items):
            m.d.sync += [kind.eq(k), rsp_cmd.eq(cmd | RSP_FLAG), rsp_len.eq(n_bytes),
                         items.eq(n_items), self.ok.eq(1)]
            m.next = "T_SYNC"

        receiving = Signal()
        with m.If(receiving):
            with m.If(got):
                m.d.sync += [idle.eq(0), crc.eq(crc16_byte(crc, byte))]
            with m.Elif(idle != self.timeout):
                m.d.sync += idle.eq(idle + 1)
        timed_out = receiving & ~got & (idle == self.timeout)

        def rx_state(code=ERR_TIMEOUT):
            m.d.comb += [receiving.eq(1), self.active.eq(1)]
            with m.If(timed_out):
                m.d.sync += err_cmd.eq(cmd)
                error(code)

        def send(value, nxt, update_crc=True):
            m.d.comb += [self.tx_valid.eq(1), self.tx_data.eq(value)]
            with m.If(self.tx_ready):
                if update_crc:
                    m.d.sync += crc.eq(crc16_byte(crc, self.tx_data))
                m.next = nxt

        with m.FSM():
            with m.State("HUNT"):
                with m.If(got & (byte == SYNC_REQ)):
                    m.d.sync += [crc.eq(INIT), idle.eq(0), cmd.eq(0), count.eq(0), length.eq(0),
                                 chan.eq(0), range_err.eq(0), args.eq(0), addr.eq(0)]
                    m.next = "CMD"
            with m.State("CMD"):
                rx_state()
                with m.If(got):
                    m.d.sync += cmd.eq(byte)
                    m.next = "LEN0"
            with m.State("LEN0"):
                rx_state()
                with m.If(got):
                    m.d.sync += length[:8].eq(byte)
                    m.next = "LEN1"
            with m.State("LEN1"):
                rx_state()
                with m.If(got):
                    m.d.sync += length[8:].eq(byte)
                    with m.If(len_full > self.max_payload):
                        m.next = "DRAIN"
                    with m.Elif(len_full == 0):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAY"
            with m.State("PAY"):
                rx_state()
                with m.If(got):
                    m.d.sync += count.eq(count + 1)
                    with m.Switch(count):
                        for i in range(4):
                            with m.Case(i):
                                m.d.sync += args[8 * i:8 * i + 8].eq(byte)
                    with m.If(count == 1):
                        m.d.sync += addr.eq(Cat(args[:8], byte))
                    with m.If((count >= 2) & (cmd == CMD_LOAD)):
                        m.d.sync += pix.word_select(chan, 8).eq(byte)
                        with m.If(chan == C - 1):
                            m.d.sync += [chan.eq(0), addr.eq(addr + 1), wr_addr.eq(addr)]
                            with m.If(addr < self.npix):
                                m.d.sync += wr.eq(~self.busy)
                            with m.Else():
                                m.d.sync += range_err.eq(1)
                        with m.Else():
                            m.d.sync += chan.eq(chan + 1)
                    with m.If(count == length - 1):
                        m.next = "CRC0"
            with m.State("CRC0"):
                rx_state()
                with m.If(got):
                    m.next = "CRC1"
            with m.State("CRC1"):
                rx_state()
                with m.If(got):
                    m.next = "CHECK"
            with m.State("DRAIN"):  # a length no command takes: wait for the line to be quiet
                rx_state(ERR_LEN)
            with m.State("CHECK"):
                m.d.comb += self.active.eq(1)
                m.d.sync += err_cmd.eq(cmd)
                known = Signal()
                len_ok = Signal()
                m.d.comb += known.eq((cmd == CMD_INFO) | (cmd == CMD_LOAD) | (cmd == CMD_START)
                                     | (cmd == CMD_RESULT) | (cmd == CMD_COUNTERS))
                with m.Switch(cmd):
                    with m.Case(CMD_LOAD):
                        m.d.comb += len_ok.eq((length >= 2) & (chan == 0))
                    with m.Case(CMD_COUNTERS):
                        m.d.comb += len_ok.eq(length == 4)
                    with m.Default():
                        m.d.comb += len_ok.eq(length == 0)
                with m.If(crc != 0):
                    error(ERR_CRC)
                with m.Elif(~known):
                    error(ERR_CMD)
                with m.Elif(~len_ok):
                    error(ERR_LEN)
                with m.Elif(((cmd == CMD_LOAD) & range_err)
                            | ((cmd == CMD_COUNTERS) & (first + num > NS))):
                    error(ERR_RANGE)
                with m.Else():
                    with m.Switch(cmd):
                        with m.Case(CMD_INFO):
                            reply(K_INFO, INFO_SIZE, INFO_SIZE)
                        with m.Case(CMD_LOAD):
                            reply(K_LOAD, 2, 1)
                        with m.Case(CMD_START):
                            m.next = "RUN"
                        with m.Case(CMD_RESULT):
                            reply(K_RESULT, 5 + K * LB, 1 + K)
                        with m.Case(CMD_COUNTERS):
                            m.d.sync += cnt_ptr.eq(first)
                            reply(K_CNT, num * CB, num)
            with m.State("RUN"):
                m.d.comb += [self.start.eq(1), self.active.eq(1)]
                m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.active.eq(1)
                with m.If(self.done):
                    reply(K_START, 5, 1)
            # -- the reply -----------------------------------------------------------------------
            with m.State("T_SYNC"):
                m.d.comb += self.active.eq(1)
                m.d.sync += [crc.eq(INIT), item.eq(0)]
                send(SYNC_RSP, "T_CMD", update_crc=False)
            with m.State("T_CMD"):
                m.d.comb += self.active.eq(1)
                send(rsp_cmd, "T_LEN0")
            with m.State("T_LEN0"):
                m.d.comb += self.active.eq(1)
                send(rsp_len[:8], "T_LEN1")
            with m.State("T_LEN1"):
                m.d.comb += self.active.eq(1)
                send(rsp_len[8:], "T_NEXT")
            with m.State("T_NEXT"):
                m.d.comb += self.active.eq(1)
                with m.If(item == items):
                    m.next = "T_CRC0"
                with m.Else():
                    m.d.sync += item.eq(item + 1)
                    m.next = "T_SHIFT"
                    status = Cat(self.class_index.as_unsigned()[:8], Const(0, 8))[:8]
                    with m.Switch(kind):
                        with m.Case(K_ERR):
                            m.d.sync += [word.eq(Cat(err_code, err_cmd)), nb.eq(2)]
                        with m.Case(K_INFO):
                            m.d.sync += [word.eq(info_rom[item]), nb.eq(1)]
                        with m.Case(K_LOAD):
                            m.d.sync += [word.eq(addr[:16]), nb.eq(2)]
                        with m.Case(K_START):
                            m.d.sync += [word.eq(Cat(status, self.cycles)), nb.eq(5)]
                        with m.Case(K_RESULT):
                            with m.If(item == 0):
                                m.d.sync += [word.eq(Cat(status, self.cycles)), nb.eq(5)]
                            with m.Else():
                                m.d.sync += [word.eq(self.logit_data), nb.eq(LB)]
                        with m.Case(K_CNT):
                            m.d.sync += [word.eq(self.cnt_data), nb.eq(CB),
                                         cnt_ptr.eq(cnt_ptr + 1)]
            with m.State("T_SHIFT"):
                m.d.comb += self.active.eq(1)
                m.d.comb += [self.tx_valid.eq(1), self.tx_data.eq(word[:8])]
                with m.If(self.tx_ready):
                    m.d.sync += [crc.eq(crc16_byte(crc, self.tx_data)), word.eq(word >> 8),
                                 nb.eq(nb - 1)]
                    with m.If(nb == 1):
                        m.next = "T_NEXT"
            with m.State("T_CRC0"):
                m.d.comb += self.active.eq(1)
                send(crc[8:], "T_CRC1", update_crc=False)
            with m.State("T_CRC1"):
                m.d.comb += self.active.eq(1)
                send(crc[:8], "HUNT", update_crc=False)
        return m
