"""The LIF array: P integer LIF neurons per cycle, membranes held per group of P neurons."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .counters import add_counter, popcount
from .params import check_int as _check


class LIFArray(wiring.Component):
    """P leaky integrate-and-fire neurons per cycle, time step innermost: ``ref_lif`` exactly.

    For the neuron in lane p of group g at time step t, with current X and threshold theta::

        V = 0 if t == 0 else membrane[g][p]
        H = (V + (X << f)) >> 1          # charge (arithmetic shift)
        S = H >= theta                   # fire
        membrane[g][p] = 0 if S else H   # reset

    which is ``model.golden.ref_lif`` with f = ``frac_bits``. The membranes of up to
    ``groups`` groups of ``lanes`` neurons live in a LUT RAM (asynchronous read, synchronous
    write) indexed by the group, so the inputs of different groups may interleave in any order
    (``for t: for g:`` or ``for g: for t:``) as long as each neuron sees t = 0, 1, ... in order.

    Input stream ``i``: ``current`` (P signed ``current_width``), ``theta`` (P signed
    ``theta_width``), ``group``, ``t``, ``mask`` (P bits: lanes that hold a neuron; a partial
    last group clears the rest) and ``last`` (passed through). Output stream ``o``: ``spikes``
    (P bits, 0 on masked lanes), ``group``, ``t``, ``last``.

    Latency 1 cycle (the output register), throughput one input per cycle whenever ``o`` is
    ready. The membrane must hold every H: |H| <= max|X| 2^f, which ``mem_width`` = the
    compiler's ``mem_bits`` guarantees (``current_width + frac_bits`` always suffices).

    Counters (``counter_width`` bits, reset by ``clear``), equal to ``model.golden.lif_counts``:
    ``spikes_out`` (spikes fired), ``neuron_updates`` (charge steps, one per unmasked lane and
    input), ``weight_reads`` (threshold reads: one per neuron, counted at t == 0),
    ``act_writes`` (spike bits written, one per neuron update); and ``busy_cycles`` (cycles
    with an input or output pending) and ``stall_cycles`` (an output waits for ``o.ready``).
    """

    def __init__(self, *, lanes: int, current_width: int, mem_width: int, frac_bits: int,
                 groups: int = 64, time_steps: int = 4, theta_width: int | None = None,
                 counter_width: int = 32):
        self._MustUse__silence = True  # a constructor that raises is not "unused"
        self.lanes = _check("Lane count", lanes, 1)
        self.current_width = _check("Current width", current_width, 2)
        self.mem_width = _check("Membrane width", mem_width, 2)
        self.frac_bits = _check("Fractional bit count", frac_bits, 0)
        self.groups = _check("Group count", groups, 1)
        self.time_steps = _check("Time step count", time_steps, 1)
        self.theta_width = _check("Threshold width",
                                  mem_width if theta_width is None else theta_width, 2)
        self.counter_width = _check("Counter width", counter_width, 1)

        P = lanes
        self.in_layout = data.StructLayout({
            "current": data.ArrayLayout(signed(current_width), P),
            "theta": data.ArrayLayout(signed(self.theta_width), P),
            "group": unsigned(max(1, bits_for(groups - 1))),
            "t": unsigned(max(1, bits_for(time_steps - 1))),
            "mask": unsigned(P),
            "last": unsigned(1),
        })
        self.out_layout = data.StructLayout({
            "spikes": unsigned(P),
            "group": unsigned(max(1, bits_for(groups - 1))),
            "t": unsigned(max(1, bits_for(time_steps - 1))),
            "last": unsigned(1),
        })
        cw = counter_width
        del self._MustUse__silence
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
            "clear": In(1),
            "spikes_out": Out(cw),
            "neuron_updates": Out(cw),
            "weight_reads": Out(cw),
            "act_writes": Out(cw),
            "busy_cycles": Out(cw),
            "stall_cycles": Out(cw),
        })

    def elaborate(self, platform):
        m = Module()
        P, f = self.lanes, self.frac_bits
        inp, out = self.i.payload, self.o.payload

        m.submodules.membranes = mem = memory.Memory(
            shape=data.ArrayLayout(signed(self.mem_width), P), depth=self.groups, init=[])
        rd = mem.read_port(domain="comb")
        wr = mem.write_port()

        # One stage: the output register. An input moves in when the register is free or drains.
        accept = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)

        m.d.comb += [rd.addr.eq(inp.group), wr.addr.eq(inp.group), wr.en.eq(accept)]
        first = Signal()  # t == 0: the neuron starts from V = 0
        m.d.comb += first.eq(~inp.t.any())
        spikes = []
        for p in range(P):
            v = Mux(first, 0, rd.data[p])
            # charge: H = (V + (X << f)) >> 1
            h = (v + (inp.current[p] << f)) >> 1
            # fire: S = H >= theta (masked lanes hold no neuron and never fire)
            s = (h >= inp.theta[p]) & inp.mask[p]
            # reset: V = 0 on a spike, else H
            m.d.comb += wr.data[p].eq(Mux(s, 0, h))
            spikes.append(s)
        fired = Cat(*spikes)

        with m.If(accept):
            m.d.sync += [
                self.o.valid.eq(1),
                out.spikes.eq(fired),
                out.group.eq(inp.group),
                out.t.eq(inp.t),
                out.last.eq(inp.last),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # Activity counters (model.golden.lif_counts).
        cw, clear = self.counter_width, self.clear
        neurons = Mux(accept, popcount(inp.mask), 0)
        m.d.comb += [
            self.spikes_out.eq(add_counter(m, "ctr_spikes_out", clear,
                                           Mux(accept, popcount(fired), 0), cw)),
            self.neuron_updates.eq(add_counter(m, "ctr_neuron_updates", clear, neurons, cw)),
            self.weight_reads.eq(add_counter(m, "ctr_weight_reads", clear,
                                             Mux(first, neurons, 0), cw)),
            self.act_writes.eq(add_counter(m, "ctr_act_writes", clear, neurons, cw)),
            self.busy_cycles.eq(add_counter(m, "ctr_busy_cycles", clear,
                                            self.i.valid | self.o.valid, cw)),
            self.stall_cycles.eq(add_counter(m, "ctr_stall_cycles", clear,
                                             self.o.valid & ~self.o.ready, cw)),
        ]
        return m
