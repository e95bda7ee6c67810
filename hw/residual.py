"""The residual-stream adder: stream[i] += current[i], P lanes per cycle."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .counters import add_counter, popcount
from .params import check_int as _check


class ResidualAdder(wiring.Component):
    """P lanes of the residual add: ``out = stream + current`` (the golden ``add`` layer).

    out[p] = stream[p] + current[p], signed, for every unmasked lane p; masked lanes output 0.

    Input stream ``i``: ``stream`` (P signed ``stream_width``), ``current`` (P signed
    ``current_width``), ``mask`` (P bits: lanes holding an element) and ``last`` (passed
    through). Output stream ``o``: ``sum`` (P signed ``out_width``), ``last``. The default
    ``out_width`` (one bit more than the wider input) never overflows; a narrower width (the
    compiler's ``bits`` of the add layer, which bounds every sum) keeps the low bits.

    Latency 1 cycle (the output register), throughput one input (P elements) per cycle
    whenever ``o`` is ready.

    Counters (reset by ``clear``), equal to ``model.golden.add_counts``: ``adds`` (one per
    element), ``act_reads`` (two per element: the stream value and the current),
    ``act_writes`` (one per element); ``busy_cycles`` and ``stall_cycles`` as in ``LIFArray``.
    """

    def __init__(self, *, lanes: int, stream_width: int, current_width: int,
                 out_width: int | None = None, counter_width: int = 32):
        self._MustUse__silence = True  # a constructor that raises is not "unused"
        self.lanes = _check("Lane count", lanes, 1)
        self.stream_width = _check("Stream width", stream_width, 2)
        self.current_width = _check("Current width", current_width, 2)
        if out_width is None:
            out_width = max(stream_width, current_width) + 1
        self.out_width = _check("Output width", out_width, 2)
        self.counter_width = _check("Counter width", counter_width, 1)
        del self._MustUse__silence

        P, cw = lanes, counter_width
        self.in_layout = data.StructLayout({
            "stream": data.ArrayLayout(signed(stream_width), P),
            "current": data.ArrayLayout(signed(current_width), P),
            "mask": unsigned(P),
            "last": unsigned(1),
        })
        self.out_layout = data.StructLayout({
            "sum": data.ArrayLayout(signed(self.out_width), P),
            "last": unsigned(1),
        })
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
            "clear": In(1),
            "adds": Out(cw),
            "act_reads": Out(cw),
            "act_writes": Out(cw),
            "busy_cycles": Out(cw),
            "stall_cycles": Out(cw),
        })

    def elaborate(self, platform):
        m = Module()
        inp, out = self.i.payload, self.o.payload

        # One stage: the output register. An input moves in when the register is free or drains.
        accept = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(accept):
            m.d.sync += [self.o.valid.eq(1), out.last.eq(inp.last)]
            for p in range(self.lanes):
                # add: out = stream + current (masked lanes hold no element)
                m.d.sync += out.sum[p].eq(Mux(inp.mask[p], inp.stream[p] + inp.current[p], 0))
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # Activity counters (model.golden.add_counts).
        cw, clear = self.counter_width, self.clear
        elements = Mux(accept, popcount(inp.mask), 0)
        m.d.comb += [
            self.adds.eq(add_counter(m, "ctr_adds", clear, elements, cw)),
            self.act_reads.eq(add_counter(m, "ctr_act_reads", clear, elements << 1, cw)),
            self.act_writes.eq(add_counter(m, "ctr_act_writes", clear, elements, cw)),
            self.busy_cycles.eq(add_counter(m, "ctr_busy_cycles", clear,
                                            self.i.valid | self.o.valid, cw)),
            self.stall_cycles.eq(add_counter(m, "ctr_stall_cycles", clear,
                                             self.o.valid & ~self.o.ready, cw)),
        ]
        return m
