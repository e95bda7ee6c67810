"""The classifier head: sum of the stream over tokens and time, integer linear layer, argmax."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .counters import add_counter, popcount
from .params import check_int as _check


class Head(wiring.Component):
    """Integer head: ``ref_head`` then ``argmax_low``.

        total[c] = sum over t, tokens of stream[t, c, token]         # adds
        logit[k] = b[k] + sum_c W[k, c] * total[c]                    # macs, one per cycle
        class    = the lowest k with the largest logit[k]

    Phases, after ``start`` (which samples ``n_channels`` <= ``channels`` and ``n_classes``
    <= ``classes``, and forgets the previous sums):

    1. "Accumulate": input stream ``i`` of P lanes: ``value`` (signed ``in_width``),
       ``group`` (channel c = group * P + lane), ``mask`` (lanes holding a value), ``last``.
       One input per cycle into per-channel sums (LUT RAM, ``acc_width`` bits). The first
       value of a channel is loaded, the others added: ``adds`` = elements - channels, as the
       golden count. The input with ``last`` ends the phase.
    2. "Multiply": one multiply-accumulate per cycle in (k, c) order: weight W[k, c] read at
       ``w_addr`` = k * n_channels + c (``w_en``, ``w_data`` one cycle later), bias b[k] at
       ``b_addr`` = k with c = 0. Each logit is written to ``logit_addr`` / ``logit_data`` /
       ``logit_we`` and enters the argmax (a later class wins only when strictly larger).
    3. ``done`` pulses; ``class_index`` and ``max_logit`` hold the result until the next start.

    Latency: ``done`` pulses n_classes * n_channels + 2 cycles after the cycle that accepts
    the ``last`` input; the accumulate phase takes one cycle per input (P values).
    ``acc_width`` and ``logit_width`` must hold the sums and logits (the compiler's bounds:
    ``in_bound`` and ``bits`` of the head layer); a value that does not fit keeps its low bits.

    Counters (reset by ``clear``), equal to ``model.golden.head_counts``: ``adds``, ``macs``,
    ``weight_reads`` (K * C weights + K biases), ``act_reads`` (stream values); and
    ``busy_cycles``.
    """

    def __init__(self, *, channels: int, classes: int, lanes: int = 8, in_width: int = 24,
                 acc_width: int = 32, weight_width: int = 8, bias_width: int = 32,
                 logit_width: int = 48, counter_width: int = 32):
        self._MustUse__silence = True  # a constructor that raises is not "unused"
        self.channels = _check("Channel count", channels, 1)
        self.classes = _check("Class count", classes, 1)
        self.lanes = _check("Lane count", lanes, 1)
        self.in_width = _check("Input width", in_width, 2)
        self.acc_width = _check("Accumulator width", acc_width, 2)
        self.weight_width = _check("Weight width", weight_width, 2)
        self.bias_width = _check("Bias width", bias_width, 2)
        self.logit_width = _check("Logit width", logit_width, 2)
        self.counter_width = _check("Counter width", counter_width, 1)
        del self._MustUse__silence

        P = lanes
        self.groups = -(-channels // P)
        self.w_depth = classes * channels
        self.in_layout = data.StructLayout({
            "value": data.ArrayLayout(signed(in_width), P),
            "group": unsigned(max(1, bits_for(self.groups - 1))),
            "mask": unsigned(P),
            "last": unsigned(1),
        })
        cw = counter_width
        super().__init__({
            "start": In(1),
            "n_channels": In(bits_for(channels)),
            "n_classes": In(bits_for(classes)),
            "busy": Out(1),
            "done": Out(1),
            "i": In(stream.Signature(self.in_layout)),
            "w_addr": Out(max(1, bits_for(self.w_depth - 1))),
            "w_en": Out(1),
            "w_data": In(signed(weight_width)),
            "b_addr": Out(max(1, bits_for(classes - 1))),
            "b_en": Out(1),
            "b_data": In(signed(bias_width)),
            "logit_addr": Out(max(1, bits_for(classes - 1))),
            "logit_data": Out(signed(logit_width)),
            "logit_we": Out(1),
            "class_index": Out(max(1, bits_for(classes - 1))),
            "max_logit": Out(signed(logit_width)),
            "clear": In(1),
            "adds": Out(cw),
            "macs": Out(cw),
            "weight_reads": Out(cw),
            "act_reads": Out(cw),
            "busy_cycles": Out(cw),
        })

    def elaborate(self, platform):
        m = Module()
        P, G = self.lanes, self.groups
        inp = self.i.payload

        n_channels = Signal.like(self.n_channels)
        n_classes = Signal.like(self.n_classes)

        m.submodules.sums = sums = memory.Memory(
            shape=data.ArrayLayout(signed(self.acc_width), P), depth=G, init=[])
        rd = sums.read_port(domain="comb")
        wr = sums.write_port()
        loaded = Array(Signal(P, name=f"loaded{g}") for g in range(G))  # sum[g][p] is valid

        # Multiply phase, stage A: (k, c) and the reads; c = group * P + lane.
        k = Signal(range(self.classes + 1))
        c = Signal(range(self.channels + 1))
        c_group = Signal(range(G + 1))
        c_lane = Signal(range(P + 1))
        w_ptr = Signal.like(self.w_addr)
        issue = Signal()
        # Stage B: weight and bias arrive; the MAC. Stage C: the logit and the argmax.
        b_valid, b_first, b_last = Signal(), Signal(), Signal()
        b_k = Signal.like(k)
        b_sum = Signal(signed(self.acc_width))
        acc = Signal(signed(self.logit_width))
        c_valid = Signal()
        c_k = Signal.like(k)
        c_logit = Signal(signed(self.logit_width))

        accept = self.i.valid & self.i.ready
        with m.FSM() as fsm:
            with m.State("Idle"):
                with m.If(self.start):
                    m.d.sync += [n_channels.eq(self.n_channels), n_classes.eq(self.n_classes)]
                    m.d.sync += [loaded[g].eq(0) for g in range(G)]
                    m.next = "Accumulate"
            with m.State("Accumulate"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(accept & inp.last):
                    m.d.sync += [k.eq(0), c.eq(0), c_group.eq(0), c_lane.eq(0), w_ptr.eq(0)]
                    with m.If((n_channels == 0) | (n_classes == 0)):
                        m.next = "Drain"
                    with m.Else():
                        m.next = "Multiply"
            with m.State("Multiply"):
                m.d.comb += issue.eq(1)
                m.d.sync += w_ptr.eq(w_ptr + 1)
                with m.If(c == n_channels - 1):
                    m.d.sync += [c.eq(0), c_group.eq(0), c_lane.eq(0), k.eq(k + 1)]
                    with m.If(k == n_classes - 1):
                        m.next = "Drain"
                with m.Else():
                    m.d.sync += c.eq(c + 1)
                    with m.If(c_lane == P - 1):
                        m.d.sync += [c_lane.eq(0), c_group.eq(c_group + 1)]
                    with m.Else():
                        m.d.sync += c_lane.eq(c_lane + 1)
            with m.State("Drain"):
                with m.If(~b_valid & ~c_valid):
                    m.d.comb += self.done.eq(1)
                    m.next = "Idle"
        m.d.comb += self.busy.eq(~fsm.ongoing("Idle"))

        # Accumulate: total[c] = (loaded ? total[c] : 0) + value, for every unmasked lane.
        m.d.comb += [
            rd.addr.eq(Mux(issue, c_group, inp.group)),
            wr.addr.eq(inp.group),
            wr.en.eq(accept),
        ]
        was_loaded = loaded[inp.group]
        for p in range(P):
            old = Mux(was_loaded[p], rd.data[p], 0)
            m.d.comb += wr.data[p].eq(Mux(inp.mask[p], old + inp.value[p], rd.data[p]))
        with m.If(accept):
            m.d.sync += loaded[inp.group].eq(was_loaded | inp.mask)

        # Multiply, stage A: issue the weight (and at c = 0 the bias) read, fetch total[c].
        m.d.comb += [
            self.w_addr.eq(w_ptr), self.w_en.eq(issue),
            self.b_addr.eq(k), self.b_en.eq(issue & (c == 0)),
        ]
        lane_valid = loaded[c_group].bit_select(c_lane, 1)
        m.d.sync += [
            b_valid.eq(issue), b_first.eq(c == 0), b_last.eq(c == n_channels - 1), b_k.eq(k),
            b_sum.eq(Mux(lane_valid, rd.data[c_lane], 0)),
        ]
        # Stage B: logit[k] = b[k] + sum_c W[k, c] * total[c], one MAC per cycle.
        mac = Mux(b_first, self.b_data, acc) + self.w_data * b_sum
        with m.If(b_valid):
            m.d.sync += acc.eq(mac)
        m.d.sync += c_valid.eq(b_valid & b_last)
        with m.If(b_valid & b_last):
            m.d.sync += [c_logit.eq(mac), c_k.eq(b_k)]
        # Stage C: write the logit; argmax with ties to the lowest class (strictly larger wins).
        m.d.comb += [
            self.logit_we.eq(c_valid), self.logit_addr.eq(c_k), self.logit_data.eq(c_logit),
        ]
        with m.If(c_valid & ((c_k == 0) | (c_logit > self.max_logit))):
            m.d.sync += [self.max_logit.eq(c_logit), self.class_index.eq(c_k)]

        # Activity counters (model.golden.head_counts).
        cw, clear = self.counter_width, self.clear
        m.d.comb += [
            self.adds.eq(add_counter(m, "ctr_adds", clear,
                                     Mux(accept, popcount(inp.mask & was_loaded), 0), cw)),
            self.act_reads.eq(add_counter(m, "ctr_act_reads", clear,
                                          Mux(accept, popcount(inp.mask), 0), cw)),
            self.macs.eq(add_counter(m, "ctr_macs", clear, b_valid, cw)),
            self.weight_reads.eq(add_counter(m, "ctr_weight_reads", clear,
                                             self.w_en + self.b_en, cw)),
            self.busy_cycles.eq(add_counter(m, "ctr_busy_cycles", clear, self.busy, cw)),
        ]
        return m
