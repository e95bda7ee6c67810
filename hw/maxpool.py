"""Max pool on spike maps (3x3, stride 2, pad 1): OR over the window, streamed row by row."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .counters import add_counter
from .params import check_int as _check


class MaxPool(wiring.Component):
    """3x3 / stride 2 / pad 1 max pool of a spike map in memory: ``ref_maxpool`` exactly.

    out[t, c, yo, xo] = OR of in[t, c, y, x] over y in 2yo-1..2yo+1, x in 2xo-1..2xo+1 inside
    the map (padding never fires), for every channel bit c of a word at once.

    Layout (docs/hw_architecture.md): one word of ``channels`` bits per (t, y, x) at
    ``in_base + ((t * H + y) * W + x) * stride``; the pooled map is written the same way at
    ``out_base`` with Ho = (H - 1) // 2 + 1, Wo = (W - 1) // 2 + 1. A map with more channels
    than a word is pooled one word slice at a time (``stride`` words per position, the slice's
    offset added to both bases).

    Dataflow: every input word is read exactly once, in address order. A column window closes
    at an odd x (or the last x): the OR of x = 2k-1, 2k, 2k+1 (``h``). A line buffer of Wo
    words (LUT RAM) holds, per output column, the OR of the rows seen so far of the current
    output row: an even row y adds ``h``, an odd row y closes output row (y - 1) // 2 with
    ``buffer | h`` and restarts the buffer with ``h`` (row y also belongs to the next output
    row); an even last row closes the last output row. So the borders are exact for even and
    odd sizes.

    Command interface: ``start`` (one cycle, in the idle state) samples ``height``, ``width``,
    ``steps`` (T), ``in_base``, ``out_base``, ``stride`` and ``n_channels`` (valid channels in
    the word, for the counters); ``busy`` is high until ``done`` pulses. Throughput one input
    word per cycle: T * H * W + 3 cycles from ``start`` to ``done``. Memory ports: ``in_addr``,
    ``in_en``, ``in_data`` (data one cycle after the address), ``out_addr``, ``out_wdata``,
    ``out_we``.

    Counters (reset by ``clear``), equal to ``model.golden.maxpool_counts``: ``act_reads``
    (``n_channels`` per word read = elements of the input map), ``act_writes``
    (``n_channels`` per word written); ``busy_cycles``.
    """

    def __init__(self, *, channels: int, max_height: int = 32, max_width: int = 32,
                 time_steps: int = 4, addr_width: int = 16, stride_width: int = 4,
                 counter_width: int = 32):
        self._MustUse__silence = True  # a constructor that raises is not "unused"
        self.channels = _check("Channel count", channels, 1)
        self.max_height = _check("Maximum height", max_height, 1)
        self.max_width = _check("Maximum width", max_width, 1)
        self.time_steps = _check("Time step count", time_steps, 1)
        self.addr_width = _check("Address width", addr_width, 1)
        self.stride_width = _check("Stride width", stride_width, 1)
        self.counter_width = _check("Counter width", counter_width, 1)
        cw, aw = counter_width, addr_width
        del self._MustUse__silence
        super().__init__({
            "start": In(1),
            "height": In(bits_for(max_height)),
            "width": In(bits_for(max_width)),
            "steps": In(bits_for(time_steps)),
            "in_base": In(aw),
            "out_base": In(aw),
            "stride": In(stride_width),
            "n_channels": In(bits_for(channels)),
            "busy": Out(1),
            "done": Out(1),
            "in_addr": Out(aw),
            "in_en": Out(1),
            "in_data": In(channels),
            "out_addr": Out(aw),
            "out_wdata": Out(channels),
            "out_we": Out(1),
            "clear": In(1),
            "act_reads": Out(cw),
            "act_writes": Out(cw),
            "busy_cycles": Out(cw),
        })

    def elaborate(self, platform):
        m = Module()
        C = self.channels
        wo_max = (self.max_width - 1) // 2 + 1

        # Parameters, sampled at start.
        height = Signal.like(self.height)
        width = Signal.like(self.width)
        steps = Signal.like(self.steps)
        stride = Signal.like(self.stride)
        n_channels = Signal.like(self.n_channels)

        # Stage A: the scan over (t, y, x) in address order, one read per cycle.
        t = Signal(range(self.time_steps + 1))
        y = Signal(range(self.max_height + 1))
        x = Signal(range(self.max_width + 1))
        rd_addr = Signal(self.addr_width)
        issue = Signal()
        x_last, y_last, t_last = x == width - 1, y == height - 1, t == steps - 1

        # Stage B: the word arrives; column and row windows. Stage C: the write.
        b_valid = Signal()
        b_x0, b_xodd, b_xlast = Signal(), Signal(), Signal()
        b_y0, b_yodd, b_ylast = Signal(), Signal(), Signal()
        b_col = Signal(range(wo_max))
        hacc = Signal(C)  # OR of columns 2k-1, 2k of the window being built
        hprev = Signal(C)  # the last odd column: also the first column of the next window
        wr_ptr = Signal(self.addr_width)

        m.submodules.line = line = memory.Memory(shape=unsigned(C), depth=wo_max, init=[])
        line_rd = line.read_port(domain="comb")
        line_wr = line.write_port()

        with m.FSM() as fsm:
            with m.State("Idle"):
                with m.If(self.start):
                    m.d.sync += [
                        height.eq(self.height), width.eq(self.width), steps.eq(self.steps),
                        stride.eq(self.stride), n_channels.eq(self.n_channels),
                        t.eq(0), y.eq(0), x.eq(0),
                        rd_addr.eq(self.in_base), wr_ptr.eq(self.out_base),
                    ]
                    empty = (self.height == 0) | (self.width == 0) | (self.steps == 0)
                    with m.If(empty):
                        m.next = "Drain"
                    with m.Else():
                        m.next = "Scan-Map"
            with m.State("Scan-Map"):
                m.d.comb += issue.eq(1)
                m.d.sync += rd_addr.eq(rd_addr + stride)
                with m.If(~x_last):
                    m.d.sync += x.eq(x + 1)
                with m.Else():
                    m.d.sync += x.eq(0)
                    with m.If(~y_last):
                        m.d.sync += y.eq(y + 1)
                    with m.Else():
                        m.d.sync += [y.eq(0), t.eq(t + 1)]
                        with m.If(t_last):
                            m.next = "Drain"
            with m.State("Drain"):
                with m.If(~b_valid & ~self.out_we):
                    m.d.comb += self.done.eq(1)
                    m.next = "Idle"
        m.d.comb += self.busy.eq(~fsm.ongoing("Idle"))

        m.d.comb += [self.in_en.eq(issue), self.in_addr.eq(rd_addr)]
        m.d.sync += [
            b_valid.eq(issue),
            b_x0.eq(x == 0), b_xodd.eq(x[0]), b_xlast.eq(x_last),
            b_y0.eq(y == 0), b_yodd.eq(y[0]), b_ylast.eq(y_last),
            b_col.eq(x >> 1),
        ]

        # Columns: h = word(2k-1) | word(2k) | word(2k+1), closed at odd x or the last x.
        word = self.in_data
        h = Signal(C)
        col_done = Signal()
        start_acc = Mux(b_x0, 0, hprev) | word  # even x: the window's first two columns
        m.d.comb += [
            h.eq(Mux(b_xodd, hacc | word, start_acc)),
            col_done.eq(b_valid & (b_xodd | b_xlast)),
        ]
        with m.If(b_valid):
            with m.If(b_xodd):
                m.d.sync += hprev.eq(word)
            with m.Else():
                m.d.sync += hacc.eq(start_acc)

        # Rows: the line buffer holds the OR of the rows seen so far of each output column.
        m.d.comb += [line_rd.addr.eq(b_col), line_wr.addr.eq(b_col)]
        above = Mux(b_y0, 0, line_rd.data)
        emit = col_done & (b_yodd | b_ylast)
        m.d.comb += [
            line_wr.en.eq(col_done),
            line_wr.data.eq(Mux(b_yodd, h, above | h)),
        ]
        m.d.sync += self.out_we.eq(emit)
        with m.If(emit):
            m.d.sync += [
                self.out_wdata.eq(above | h),
                self.out_addr.eq(wr_ptr),
                wr_ptr.eq(wr_ptr + stride),
            ]

        # Activity counters (model.golden.maxpool_counts).
        cw, clear = self.counter_width, self.clear
        m.d.comb += [
            self.act_reads.eq(add_counter(m, "ctr_act_reads", clear,
                                          Mux(issue, n_channels, 0), cw)),
            self.act_writes.eq(add_counter(m, "ctr_act_writes", clear,
                                           Mux(self.out_we, n_channels, 0), cw)),
            self.busy_cycles.eq(add_counter(m, "ctr_busy_cycles", clear, self.busy, cw)),
        ]
        return m
