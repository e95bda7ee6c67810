"""The first layer's MAC conv: a 3x3 conv on integer pixels minus a per-channel zero point.

``model.golden.ref_conv(pixels - zero_point, w, b)`` exactly, computed once per image (the
input is the same at every time step, so the LIF array runs its T steps on one current), and
the counts of ``model.golden.conv_counts(x, w.shape, "pixels")``.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from .ac_conv import _positive, _power_of_two, _thermometer
from .counters import add_counter

__all__ = ["MACConv"]


class MACConv(wiring.Component):
    """Conv on pixels by multiply-accumulate, P lanes (P output channels) per cycle.

    For output position (y, x) and output channel o (3x3, stride 1, the padding equal to the
    zero point, so a padding tap adds 0 and is skipped)::

        current[o, y, x] = bias[o] + sum over taps (dy, dx) inside the image and channels c
                           of (pixel[c, y + dy - 1, x + dx - 1] - zero_point[c]) * w[o, c, dy, dx]

    Loop order: for position (row-major), for group of P output channels, for valid tap, for
    input channel c: one cycle, P multiply-accumulates (one DSP48 per lane: a 10-bit signed
    difference times a ``weight_width``-bit weight).

    Layer parameters (sampled at ``start``): ``ci``, ``co``, ``height``, ``width``,
    ``zero_point`` (one per input channel) and base addresses:

    - pixels: one word per (y, x) holding the Ci pixels (channel c at bits [8c, 8c + 8)),
      address ``pixel_base + y * W + x``; a tap's word is read once per (position, group) and
      serves its Ci cycles;
    - weights: rows of P weights, row ``weight_base + group * 9 Ci + tap * Ci + c``
      (tap = dy * 3 + dx), lanes beyond Co zero; biases: rows of P, ``bias_base + group``.

    Read ports as in ``ACConv``: data one cycle after ``*_addr`` with ``*_en``, held while
    ``*_en`` is low.

    Output stream ``o``, one beat per (position, group): ``current`` (P signed ``acc_width``),
    ``mask``, ``pos`` (y * W + x), ``group``, ``last``. Pipeline: issue -> E1 (pixel word and
    weight row arrive) -> E2 (pixel - zero point registered) -> E3 (products registered) ->
    accumulate into the output register: latency 4 cycles, throughput P MACs per cycle,
    busy cycles = MACs / P + 5 (setup, pipeline) when Co is a multiple of P.

    ``acc_width`` must hold the compiler's bound (|bias| + 27 x 255 x max|w| for 3 channels):
    accumulators wrap otherwise.

    Counters, equal to ``conv_counts(x, w.shape, "pixels")``: ``macs`` (valid lanes per MAC
    cycle), ``weight_reads`` (a weight per MAC, a bias per output neuron), ``act_reads``
    (Ci H W: each pixel once, counted Ci per position). Besides: ``act_words`` (pixel words
    physically read: once per valid tap and group), ``weight_rows`` (weight and bias rows
    read), ``busy_cycles``, ``stall_cycles`` (busy cycles without a MAC).
    """

    def __init__(self, *, lanes: int = 8, ci_max: int = 3, co_max: int = 64, hw_max: int = 32,
                 pixel_width: int = 8, weight_width: int = 8, bias_width: int = 16,
                 acc_width: int = 20, pixel_addr_width: int = 10, weight_addr_width: int = 16,
                 bias_addr_width: int = 10, counter_width: int = 32):
        self.lanes = _power_of_two("Lane count", lanes)
        self.ci_max = _positive("Maximum input channel count", ci_max)
        self.co_max = _positive("Maximum output channel count", co_max)
        self.hw_max = _positive("Maximum height and width", hw_max)
        self.pixel_width = _positive("Pixel width", pixel_width)
        self.weight_width = _positive("Weight width", weight_width)
        self.bias_width = _positive("Bias width", bias_width)
        self.acc_width = _positive("Accumulator width", acc_width)
        if acc_width < max(weight_width + pixel_width + 1, bias_width):
            raise ValueError(f"Accumulator width {acc_width} is narrower than a product "
                             f"({weight_width + pixel_width + 1}) or a bias ({bias_width})")
        self.pixel_addr_width = _positive("Pixel address width", pixel_addr_width)
        self.weight_addr_width = _positive("Weight address width", weight_addr_width)
        self.bias_addr_width = _positive("Bias address width", bias_addr_width)
        self.counter_width = _positive("Counter width", counter_width)
        self.groups_max = -(-co_max // lanes)

        P = lanes
        self.out_layout = data.StructLayout({
            "current": data.ArrayLayout(signed(acc_width), P),
            "mask": unsigned(P),
            "pos": unsigned(max(1, bits_for(hw_max * hw_max - 1))),
            "group": unsigned(max(1, bits_for(self.groups_max - 1))),
            "last": unsigned(1),
        })
        cw = counter_width
        super().__init__({
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "clear": In(1),
            "ci": In(bits_for(ci_max)),
            "co": In(bits_for(co_max)),
            "height": In(bits_for(hw_max)),
            "width": In(bits_for(hw_max)),
            "zero_point": In(data.ArrayLayout(unsigned(pixel_width), ci_max)),
            "pixel_base": In(pixel_addr_width),
            "weight_base": In(weight_addr_width),
            "bias_base": In(bias_addr_width),
            "pixel_addr": Out(pixel_addr_width),
            "pixel_en": Out(1),
            "pixel_data": In(data.ArrayLayout(unsigned(pixel_width), ci_max)),
            "weight_addr": Out(weight_addr_width),
            "weight_en": Out(1),
            "weight_data": In(data.ArrayLayout(signed(weight_width), P)),
            "bias_addr": Out(bias_addr_width),
            "bias_en": Out(1),
            "bias_data": In(data.ArrayLayout(signed(bias_width), P)),
            "o": Out(stream.Signature(self.out_layout)),
            "macs": Out(cw),
            "weight_reads": Out(cw),
            "act_reads": Out(cw),
            "act_words": Out(cw),
            "weight_rows": Out(cw),
            "busy_cycles": Out(cw),
            "stall_cycles": Out(cw),
        })

    def elaborate(self, platform):
        m = Module()
        P = self.lanes
        paw, waw = self.pixel_addr_width, self.weight_addr_width
        hwb = bits_for(self.hw_max)
        gbits = max(1, bits_for(self.groups_max - 1))

        # -- layer registers, sampled at start ----------------------------------------------
        ci = Signal.like(self.ci)
        co = Signal.like(self.co)
        H, W = Signal(hwb), Signal(hwb)
        zp = Signal.like(self.zero_point)
        pixel_base = Signal(paw)
        weight_base = Signal(waw)
        bias_base = Signal.like(self.bias_base)
        co_m1 = Signal(len(co))
        groups_m1 = Signal(gbits)
        last_mask = Signal(P)
        K = Signal(waw)  # 9 Ci rows per group
        m.d.comb += [
            co_m1.eq(co - 1),
            groups_m1.eq(co_m1 >> ceil_log2(P)),
            last_mask.eq(_thermometer(co_m1[:ceil_log2(P)], P)),
            K.eq((ci << 3) + ci),
        ]
        tap_ci = Array(Signal(waw, name=f"tap_ci{i}") for i in range(9))  # tap * Ci

        # -- command FSM ----------------------------------------------------------------------
        running = Signal()
        finished = Signal()
        with m.FSM(name="cmd"):
            with m.State("Idle"):
                with m.If(self.start):
                    m.d.sync += [
                        ci.eq(self.ci), co.eq(self.co), H.eq(self.height), W.eq(self.width),
                        zp.eq(self.zero_point), pixel_base.eq(self.pixel_base),
                        weight_base.eq(self.weight_base), bias_base.eq(self.bias_base),
                    ]
                    m.next = "Setup"
            with m.State("Setup"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [tap_ci[i].eq(sum(ci << b for b in range(4) if i >> b & 1))
                             for i in range(1, 9)]
                m.next = "Run"
            with m.State("Run"):
                m.d.comb += [self.busy.eq(1), running.eq(1)]
                with m.If(finished):
                    m.next = "Done"
            with m.State("Done"):
                m.d.comb += self.done.eq(1)
                m.next = "Idle"
        setup = Signal()
        m.d.comb += setup.eq(self.busy & ~running)

        # -- issue: (position, group, tap, channel) -------------------------------------------
        y, x = Signal(hwb), Signal(hwb)
        pos = Signal(len(self.o.payload.pos))
        pos_addr = Signal(paw)  # pixel_base + y * W + x
        g = Signal(gbits)
        wgbase = Signal(waw)  # weight_base + g * K
        dy, dy_hi, dx, dx_lo, dx_hi = (Signal(2, name=n) for n in
                                       ("dy", "dy_hi", "dx", "dx_lo", "dx_hi"))
        tap, row_tap = Signal(4), Signal(4)
        row_addr = Signal(paw)  # pixel address of (dy, dx_lo)
        pix_addr = Signal(paw)
        c = Signal(len(ci))
        first = Signal()  # the first MAC of (position, group)
        more = Signal()  # MACs left in the layer
        top, bottom, left, right = (Signal(name=n) for n in ("top", "bottom", "left", "right"))
        m.d.comb += [top.eq(y != 0), bottom.eq(y != H - 1), left.eq(x != 0),
                     right.eq(x != W - 1)]

        adv = Signal()
        issue = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), issue.eq(running & more & adv)]
        tap_end = c == ci - 1
        row_end = tap_end & (dx == dx_hi)
        group_end = row_end & (dy == dy_hi)
        pos_end = group_end & (g == groups_m1)
        layer_end = pos_end & (y == H - 1) & (x == W - 1)

        def enter_position(ny, nx, addr):
            """Counters for the first tap of position (ny, nx) at pixel address ``addr``."""
            ny, nx = Value.cast(ny), Value.cast(nx)
            ntop, nleft = ny != 0, nx != 0
            return [
                dy.eq(~ntop), dy_hi.eq(1 + (ny != H - 1)),
                dx.eq(~nleft), dx_lo.eq(~nleft), dx_hi.eq(1 + (nx != W - 1)),
                tap.eq(Mux(ntop, 0, 3) + ~nleft), row_tap.eq(Mux(ntop, 0, 3) + ~nleft),
                row_addr.eq(addr - Mux(ntop, W, 0) - nleft),
                pix_addr.eq(addr - Mux(ntop, W, 0) - nleft),
            ]

        with m.If(issue):
            m.d.sync += [c.eq(c + 1), first.eq(0)]
            with m.If(tap_end):
                m.d.sync += c.eq(0)
            with m.If(tap_end & ~row_end):
                m.d.sync += [dx.eq(dx + 1), tap.eq(tap + 1), pix_addr.eq(pix_addr + 1)]
            with m.If(row_end & ~group_end):
                m.d.sync += [dy.eq(dy + 1), dx.eq(dx_lo), tap.eq(row_tap + 3),
                             row_tap.eq(row_tap + 3), row_addr.eq(row_addr + W),
                             pix_addr.eq(row_addr + W)]
            with m.If(group_end):
                m.d.sync += first.eq(1)
                with m.If(~pos_end):  # the next group: the same taps again
                    m.d.sync += [g.eq(g + 1), wgbase.eq(wgbase + K)]
                    m.d.sync += enter_position(y, x, pos_addr)
                with m.Else():
                    m.d.sync += [g.eq(0), wgbase.eq(weight_base), pos.eq(pos + 1),
                                 pos_addr.eq(pos_addr + 1)]
                    with m.If(x != W - 1):
                        m.d.sync += x.eq(x + 1)
                        m.d.sync += enter_position(y, x + 1, pos_addr + 1)
                    with m.Else():
                        m.d.sync += [x.eq(0), y.eq(y + 1)]
                        m.d.sync += enter_position(y + 1, 0, pos_addr + 1)
            with m.If(layer_end):
                m.d.sync += more.eq(0)
        with m.If(setup):
            m.d.sync += [y.eq(0), x.eq(0), pos.eq(0), pos_addr.eq(pixel_base), g.eq(0),
                         wgbase.eq(weight_base), c.eq(0), first.eq(1), more.eq(1)]
            m.d.sync += enter_position(0, 0, pixel_base)

        # reads: a tap's pixel word at its first channel, the weight row, the bias row
        m.d.comb += [
            self.pixel_addr.eq(pix_addr), self.pixel_en.eq(issue & (c == 0)),
            self.weight_addr.eq(wgbase + tap_ci[tap] + c), self.weight_en.eq(issue),
            self.bias_addr.eq(bias_base + g), self.bias_en.eq(issue & first),
        ]
        lanes = Signal(P)
        m.d.comb += lanes.eq(Mux(g == groups_m1, last_mask, (1 << P) - 1))

        # -- E1: pixel - zero point; E2: products; E3: accumulate -----------------------------
        # (each stage a register, so a lane maps onto a DSP48 with its input, product and
        # accumulator registers)
        tags = {"valid": 1, "first": 1, "last": 1, "final": 1, "group": gbits, "mask": P,
                "pos": len(pos)}
        e1 = Signal(data.StructLayout({**tags, "c": len(ci)}))
        e2 = Signal(data.StructLayout(tags))
        e3 = Signal(data.StructLayout(tags))
        diff = Signal(signed(self.pixel_width + 1))  # registered at E1 -> E2
        weights = Signal.like(self.weight_data)
        prod = Signal(data.ArrayLayout(signed(self.pixel_width + 1 + self.weight_width), P))
        bias2, bias = Signal.like(self.bias_data), Signal.like(self.bias_data)
        # pixel - zero point: a 9-bit signed difference (0 on padding, never issued)
        zps = Array(zp[i] for i in range(self.ci_max))
        pixels = Array(self.pixel_data[i] for i in range(self.ci_max))
        with m.If(adv):
            m.d.sync += [
                e1.valid.eq(issue), e1.first.eq(first), e1.last.eq(group_end),
                e1.final.eq(layer_end), e1.c.eq(c), e1.group.eq(g), e1.mask.eq(lanes),
                e1.pos.eq(pos),
                # E1 -> E2: the difference (unsigned - unsigned: signed), the weight row
                e2.eq(e1.as_value()[:len(e2.as_value())]),  # the tags: c is last
                diff.eq(pixels[e1.c] - zps[e1.c]),
                weights.eq(self.weight_data), bias2.eq(self.bias_data),
                # E2 -> E3: the products
                e3.eq(e2), bias.eq(bias2),
            ]
            m.d.sync += [prod[lane].eq(diff * weights[lane]) for lane in range(P)]
        with m.If(setup):
            m.d.sync += [e1.valid.eq(0), e2.valid.eq(0), e3.valid.eq(0)]

        acc = Signal(data.ArrayLayout(signed(self.acc_width), P))
        acc_new = Signal.like(acc)
        for lane in range(P):
            m.d.comb += acc_new[lane].eq(Mux(e3.first, bias[lane], acc[lane]) + prod[lane])
        out = self.o.payload
        with m.If(adv):
            with m.If(e3.valid):
                m.d.sync += acc.eq(acc_new)
            m.d.sync += [
                self.o.valid.eq(e3.valid & e3.last),
                out.current.eq(acc_new), out.mask.eq(e3.mask), out.pos.eq(e3.pos),
                out.group.eq(e3.group), out.last.eq(e3.final),
            ]
        with m.If(setup):
            m.d.sync += self.o.valid.eq(0)
        m.d.comb += finished.eq(self.o.valid & self.o.ready & out.last)

        # -- counters (model.golden.conv_counts, "pixels") ------------------------------------
        cw, clear = self.counter_width, self.clear
        n_lanes = Signal(range(P + 1))
        m.d.comb += n_lanes.eq(Mux(g == groups_m1, co_m1[:ceil_log2(P)] + 1, P)
                               if P > 1 else 1)
        mac = Mux(issue, n_lanes, 0)
        bias_ev = issue & first
        ctr = {
            "macs": mac,
            "weight_reads": mac + Mux(bias_ev, n_lanes, 0),
            "act_reads": Mux(bias_ev & (g == 0), ci, 0),
            "act_words": self.pixel_en,
            "weight_rows": issue + bias_ev,
            "busy_cycles": self.busy,
            "stall_cycles": self.busy & ~issue,
        }
        for name, inc in ctr.items():
            m.d.comb += getattr(self, name).eq(add_counter(m, f"ctr_{name}", clear, inc, cw))
        return m
