"""The board top: the accelerator behind a UART host link, status on the LEDs (docs/board.md).

    core = BoardCore.for_plan(plan, clk_hz=100e6, baud=115200)   # platform-free, tested in sim
    top = BoardTop(plan, baud=115200)                             # + an amaranth-boards platform
    sim = SimBoard.for_plan(plan, divisor=4)                      # + a host-side UART and FIFOs

``BoardCore`` has the serial lines (``uart_rx``, ``uart_tx``) and the status outputs
(``led_idle``, ``led_busy``, ``led_error`` held for ``error_hold_s`` after an error reply,
``led_class``: the last class, ``heartbeat``: about 1.5 Hz). ``BoardTop`` wires them to the
board: on the Arty A7, LD4-LD7 show the class in binary and RGB LED LD0 is green when idle,
blue when busy, red after an error (dimmed to 1/8), LD1 blue blinks the heartbeat; on the
ULX3S, LEDs 0-3 show the class, 4 idle, 5 busy, 6 error, 7 heartbeat.

The clock is the board's (100 MHz on the Arty, 25 MHz on the ULX3S) in the platform's default
``sync`` domain, with its reset (the Arty's reset button; power-on only on the ULX3S).

``SimBoard`` is for simulation: ``BoardCore`` at a fast bit rate (``divisor`` cycles per bit)
with the host's side of the line in gateware, so a testbench exchanges bytes through two FIFOs
(``h_wdata``/``h_we``/``h_wrdy`` to the device; ``h_rdata``/``h_rvalid``/``h_re`` and
``h_rlevel`` from it)
instead of bits.
"""


from amaranth.hdl import Cat, Module, Shape, Signal
from amaranth.lib import fifo, io, wiring
from amaranth.lib.wiring import In, Out

from .uart import FrameEngine, UARTRx, UARTTx, uart_divisor


def geometry(plan, accel) -> dict:
    """The frame engine's parameters for an accelerator built from ``plan``."""
    cfg = plan.config
    members = accel.signature.members
    return dict(channels=cfg["in_channels"], height=cfg["img_size"], width=cfg["img_size"],
                classes=cfg["num_classes"],
                logit_width=Shape.cast(members["logit_data"].shape).width,
                counter_slots=len(plan.counter_slots),
                counter_width=Shape.cast(members["cnt_data"].shape).width,
                model_id=bytes.fromhex(plan.sha256[:8]) if plan.sha256 else bytes(4))


class BoardCore(wiring.Component):
    """The accelerator, the frame engine and the UART; serial lines and status out."""

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    led_idle: Out(1)
    led_busy: Out(1)
    led_error: Out(1)
    led_class: Out(4)
    heartbeat: Out(1)

    def __init__(self, accel, *, geometry: dict, clk_hz: float, baud: float | None = None,
                 divisor: int | None = None, timeout: int | None = None,
                 timeout_s: float = 0.05, error_hold_s: float = 0.5):
        self.accel = accel
        self.clk_hz = int(clk_hz)
        if divisor is None:
            divisor = uart_divisor(clk_hz, baud)
        self.divisor = divisor
        self.baud = round(clk_hz / divisor)
        # at least 3 byte times, so a frame sent without gaps never times out
        self.timeout = timeout if timeout is not None else max(int(clk_hz * timeout_s),
                                                               30 * divisor)
        self.error_hold = max(1, int(clk_hz * error_hold_s))
        self.geometry = dict(geometry)
        super().__init__()

    @classmethod
    def for_plan(cls, plan, **kwargs):
        from .top import Accelerator

        accel = Accelerator(plan)
        return cls(accel, geometry=geometry(plan, accel), **kwargs)

    def engine(self) -> FrameEngine:
        return FrameEngine(**self.geometry, timeout=self.timeout, clk_hz=self.clk_hz,
                           baud=self.baud)

    def elaborate(self, platform):
        m = Module()
        m.submodules.accel = acc = self.accel
        m.submodules.rx = rx = UARTRx(divisor=self.divisor)
        m.submodules.tx = tx = UARTTx(divisor=self.divisor)
        m.submodules.engine = fe = self.engine()
        m.d.comb += [
            rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx),
            fe.rx_data.eq(rx.data), fe.rx_valid.eq(rx.valid),
            tx.data.eq(fe.tx_data), tx.valid.eq(fe.tx_valid), fe.tx_ready.eq(tx.ready),
            acc.start.eq(fe.start), fe.busy.eq(acc.busy), fe.done.eq(acc.done),
            acc.img_addr.eq(fe.img_addr), acc.img_data.eq(fe.img_data),
            acc.img_we.eq(fe.img_we), fe.class_index.eq(acc.class_index),
            acc.logit_addr.eq(fe.logit_addr), fe.logit_data.eq(acc.logit_data),
            acc.cnt_addr.eq(fe.cnt_addr), fe.cnt_data.eq(acc.cnt_data),
            fe.cycles.eq(acc.cycles),
        ]
        # status
        hold = Signal(range(self.error_hold + 1))
        with m.If(fe.err):
            m.d.sync += hold.eq(self.error_hold)
        with m.Elif(hold != 0):
            m.d.sync += hold.eq(hold - 1)
        beat = Signal(max(1, (self.clk_hz // 3).bit_length()))
        m.d.sync += beat.eq(beat + 1)
        cls = Signal(4)
        with m.If(acc.done):
            m.d.sync += cls.eq(acc.class_index)
        m.d.comb += [self.led_busy.eq(acc.busy), self.led_idle.eq(~acc.busy & ~fe.active),
                     self.led_error.eq(hold != 0), self.led_class.eq(cls),
                     self.heartbeat.eq(beat[-1])]
        return m


class BoardTop(wiring.Component):
    """``BoardCore`` on an amaranth-boards platform (Arty A7, ULX3S): no ports of its own."""

    def __init__(self, plan=None, *, baud: float = 115200, core_factory=None, **core_kwargs):
        self.plan, self.baud = plan, baud
        self.core_factory = core_factory or BoardCore.for_plan
        self.core_kwargs = core_kwargs
        self.core = None
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        clk_hz = platform.default_clk_frequency
        core = self.core = self.core_factory(self.plan, clk_hz=clk_hz, baud=self.baud,
                                             **self.core_kwargs)
        m.submodules.core = core
        def buf(direction, port, name):
            m.submodules[name] = b = io.Buffer(direction, port)
            return b

        def led(name, number=0):
            return buf("o", platform.request(name, number, dir="-"), f"{name}_{number}").o

        uart = platform.request("uart", 0, dir="-")
        m.d.comb += [core.uart_rx.eq(buf("i", uart.rx, "uart_rx").i),
                     buf("o", uart.tx, "uart_tx").o.eq(core.uart_tx)]
        names = {r[0] for r in platform.resources}
        if "rgb_led" in names:  # Arty A7: 4 green LEDs, 4 RGB LEDs
            for i in range(4):
                m.d.comb += led("led", i).eq(core.led_class[i])
            dim = Signal(3)
            m.d.sync += dim.eq(dim + 1)
            on = dim == 0
            rgb = [platform.request("rgb_led", i, dir="-") for i in range(2)]
            m.d.comb += [buf("o", rgb[0].r, "rgb0_r").o.eq(on & core.led_error),
                         buf("o", rgb[0].g, "rgb0_g").o.eq(on & core.led_idle
                                                           & ~core.led_error),
                         buf("o", rgb[0].b, "rgb0_b").o.eq(on & core.led_busy),
                         buf("o", rgb[1].b, "rgb1_b").o.eq(on & core.heartbeat)]
        else:  # ULX3S: 8 LEDs
            status = Cat(core.led_class, core.led_idle, core.led_busy, core.led_error,
                         core.heartbeat)
            for i in range(8):
                m.d.comb += led("led", i).eq(status[i])
            if "uart_tx_enable" in names:
                m.d.comb += led("uart_tx_enable").eq(1)
        return m


class SimBoard(wiring.Component):
    """``BoardCore`` plus the host's UART and two byte FIFOs, for testbenches."""

    h_wdata: In(8)
    h_we: In(1)
    h_wrdy: Out(1)
    h_rdata: Out(8)
    h_re: In(1)
    h_rlevel: Out(16)
    h_rvalid: Out(1)
    led_idle: Out(1)
    led_busy: Out(1)
    led_error: Out(1)
    led_class: Out(4)

    def __init__(self, core: BoardCore, *, rx_depth: int = 4096, tx_depth: int = 16):
        self.core = core
        self.rx_depth, self.tx_depth = rx_depth, tx_depth
        super().__init__()

    @classmethod
    def for_plan(cls, plan, *, divisor: int = 4, timeout: int = 400, clk_hz: float = 100e6,
                 **kwargs):
        return cls(BoardCore.for_plan(plan, clk_hz=clk_hz, divisor=divisor, timeout=timeout,
                                      error_hold_s=1e-6, **kwargs))

    def elaborate(self, platform):
        m = Module()
        core = self.core
        m.submodules.core = core
        m.submodules.htx = htx = UARTTx(divisor=core.divisor)
        m.submodules.hrx = hrx = UARTRx(divisor=core.divisor)
        m.submodules.to_dev = to_dev = fifo.SyncFIFOBuffered(width=8, depth=self.tx_depth)
        m.submodules.from_dev = from_dev = fifo.SyncFIFOBuffered(width=8, depth=self.rx_depth)
        m.d.comb += [
            to_dev.w_data.eq(self.h_wdata), to_dev.w_en.eq(self.h_we),
            self.h_wrdy.eq(to_dev.w_rdy),
            htx.data.eq(to_dev.r_data), htx.valid.eq(to_dev.r_rdy),
            to_dev.r_en.eq(htx.ready),
            core.uart_rx.eq(htx.tx), hrx.rx.eq(core.uart_tx),
            from_dev.w_data.eq(hrx.data), from_dev.w_en.eq(hrx.valid),
            self.h_rdata.eq(from_dev.r_data), from_dev.r_en.eq(self.h_re),
            self.h_rlevel.eq(from_dev.r_level), self.h_rvalid.eq(from_dev.r_rdy),
            self.led_idle.eq(core.led_idle), self.led_busy.eq(core.led_busy),
            self.led_error.eq(core.led_error), self.led_class.eq(core.led_class),
        ]
        return m
