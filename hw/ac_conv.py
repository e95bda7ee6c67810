"""The event-driven AC conv engine: a 3x3 or 1x1 conv on binary spikes, one spike per cycle.

``model.golden.ref_conv`` on a spike map, exactly (stride 1, zero padding k // 2), and the
activity counts of ``model.golden.conv_counts(x, w.shape, "spikes")``. See docs/hw_ac_conv.md
for the design, its numbers and the reasoning behind them.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from .counters import add_counter
from .priority import SpikeScanner, lowest_set, one_set

__all__ = ["ACConv"]


def _positive(what: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


def _power_of_two(what: str, value) -> int:
    _positive(what, value)
    if value & (value - 1):
        raise ValueError(f"{what} must be a power of two, not {value!r}")
    return value


def _thermometer(last, width: int):
    """``width`` bits, bit i set when i <= ``last``."""
    return Cat(Const(1) if i == 0 else Const(i, width) <= last for i in range(width))


class ACConv(wiring.Component):
    """Conv on binary spikes by accumulation: each input spike adds a row of P weights.

    For output position (y, x), time step t and output channel o (stride 1, pad p = k // 2)::

        current[t, o, y, x] = bias[o] + sum over taps (dy, dx) inside the map and channels c
                              with spike[t, c, y + dy - p, x + dx - p] == 1 of w[o, c, dy, dx]

    ``ref_conv`` on spikes. Loop order: for position (row-major), for t, for group of P
    output channels (lane l = channel group * P + l), for each spike of the window.

    Layer parameters (sampled at ``start``): ``ci``, ``co``, ``k`` (1 or 3), ``height``,
    ``width``, ``steps`` (T) and the base addresses of the three memories:

    - spikes: one ``word_width``-bit word per (t, y, x) and channel word (``nwords`` =
      ceil(Ci / word_width) consecutive words per position, bit c of word i = channel
      i * word_width + c), address ``spike_base + ((t * H + y) * W + x) * nwords + i``;
    - weights: rows of P weights, row ``weight_base + group * K + tap * Ci + c``, K = k*k*Ci,
      tap = dy * k + dx; lanes beyond Co in the last group hold zeros;
    - biases: rows of P biases, row ``bias_base + group``.

    Bit-plane mode (``planes_max`` > 1, inputs ``planes`` and ``plane_lg``; 1x1 layers only,
    undefined for k = 3): a 1x1 conv on integers x [T, C, H, W], 0 <= x < 2^B, B <=
    ``planes_max``, run bit-serially. The spike map holds the B bit planes as Ci = B * C
    channels (C = 1 << ``plane_lg``, a power of two), channel c' = b * C + c being bit b of
    x[:, c]; ``ci`` is B * C (so the spike layout above is unchanged). The weights are those
    of the C channels, K = C (row ``weight_base + group * C + c``): the bit of channel c' adds
    row c' & (C - 1) shifted left by c' >> plane_lg (weights signed: times 2^b), so that the
    currents are ``ref_conv(x, w, bias)``.

    Every read port returns data one cycle after ``*_addr`` with ``*_en`` and holds it while
    ``*_en`` is low (an ``amaranth.lib.memory`` synchronous read port).

    Output stream ``o``, one beat per (position, t, group): ``current`` (P signed
    ``acc_width``: accumulator + bias), ``mask`` (lanes that hold a channel < Co), ``pos``
    (y * W + x), ``t``, ``group``, ``last`` (the layer's last beat). ``done`` pulses once the
    last beat is taken.

    Dataflow (details in docs/hw_ac_conv.md): a fetcher reads the windows' spike words
    (valid taps only: padding is never fetched) into a LUT RAM window memory, with a flag per
    non-zero part; for a 3x3 layer it keeps a ring of 4 columns per time step and fetches
    only the column a window does not share with the previous position of its row (column
    reuse: 3 words per window instead of 9); a 1x1 window goes into one of ``windows``
    regions. A ``SpikeScanner`` yields the window's set bits, one per cycle, skipping empty
    words in zero cycles, once per group; each bit reads a weight row, and P accumulators add
    it. The next window's flags and first word are read ahead into registers, so that chaining
    windows without a bubble needs no memory read after a window's last bit. Fetching
    overlaps the scanning of earlier windows.
    Throughput: one spike (P synapses) per cycle, max(1, spikes) cycles per (window, group);
    latency from a bit to its output beat 3 cycles.

    Parameters: ``lanes`` P (a power of two), ``ci_max`` (3x3 layers; 1x1 layers take up to
    ``ci_max_1x1`` = 9 x the window's words per tap x ``word_width``), ``co_max``, ``hw_max``,
    ``t_max``, ``word_width`` (spike memory word), ``scan_width`` (the scanner's word: a part of
    a spike word, default min(32, word_width)), widths, ``windows`` (window buffers of a 1x1
    layer, >= 2; a 3x3 layer uses one region per time step), ``planes_max`` (B of the
    bit-plane mode; 1: no plane mode and no ``planes`` / ``plane_lg`` ports) and address
    widths.

    Accumulators are ``acc_width`` bits and wrap: the compiler's bound (the layer's ``bits``,
    from |bias| + 9 Ci max|w|) must fit, which is what makes overflow impossible.

    Counters (``counter_width`` bits, cleared by ``clear``), equal to ``conv_counts``:
    ``sops`` (valid lanes per spike event), ``spikes_in`` (set bits of the input map, counted
    when the centre tap's bit is scanned for group 0), ``weight_reads`` (a weight per synapse
    and a bias per output neuron, read at t = 0 and held over the T steps), ``act_reads``
    (T Ci H W: every map bit once, counted as Ci per window). In bit-plane mode these are the
    bit-serial counts of the plane map (Ci = B C): ``sops`` = set plane bits x Co (a shifted
    row is one synapse event per lane), ``spikes_in`` = set plane bits, ``weight_reads`` =
    sops + Co H W, ``act_reads`` = T B C H W. Besides: ``act_words`` (spike
    words physically read: with column reuse a word once per output row that needs it, up to
    3 times, so this exceeds act_reads / word width), ``weight_rows`` (weight and bias rows
    physically read), ``busy_cycles`` and ``stall_cycles`` (busy cycles that issue no spike
    event or bias-only beat).
    """

    def __init__(self, *, lanes: int = 8, ci_max: int = 64, co_max: int = 256,
                 hw_max: int = 32, t_max: int = 4, word_width: int = 64,
                 scan_width: int | None = None, weight_width: int = 8, bias_width: int = 16,
                 acc_width: int = 20, windows: int = 4, spike_addr_width: int = 16,
                 weight_addr_width: int = 16,
                 bias_addr_width: int = 10, counter_width: int = 32, planes_max: int = 1):
        self.lanes = _power_of_two("Lane count", lanes)
        self.ci_max = _positive("Maximum input channel count", ci_max)
        self.co_max = _positive("Maximum output channel count", co_max)
        self.hw_max = _positive("Maximum height and width", hw_max)
        self.t_max = _positive("Maximum time step count", t_max)
        self.word_width = _power_of_two("Spike word width", word_width)
        scan_width = min(32, word_width) if scan_width is None else scan_width
        self.scan_width = _power_of_two("Scan width", scan_width)
        if scan_width > word_width:
            raise ValueError(f"Scan width {scan_width} exceeds the spike word width "
                             f"{word_width}")
        self.weight_width = _positive("Weight width", weight_width)
        self.bias_width = _positive("Bias width", bias_width)
        self.acc_width = _positive("Accumulator width", acc_width)
        if acc_width < max(weight_width, bias_width):
            raise ValueError(f"Accumulator width {acc_width} is narrower than the weights "
                             f"({weight_width}) or biases ({bias_width})")
        self.windows = _positive("Window buffer count", windows)
        if windows < 2:
            raise ValueError(f"Window buffer count must be at least 2, not {windows}")
        self.spike_addr_width = _positive("Spike address width", spike_addr_width)
        self.weight_addr_width = _positive("Weight address width", weight_addr_width)
        self.bias_addr_width = _positive("Bias address width", bias_addr_width)
        self.counter_width = _positive("Counter width", counter_width)
        self.planes_max = _positive("Maximum bit plane count", planes_max)

        WW, P = word_width, lanes
        self.tap_words = 1 << ceil_log2(-(-ci_max // WW))  # word slots per tap
        self.slots = 9 * self.tap_words  # words of a window
        self.ci_max_1x1 = self.slots * WW  # a 1x1 window uses every slot for its centre
        self.groups_max = -(-co_max // P)

        self.out_layout = data.StructLayout({
            "current": data.ArrayLayout(signed(acc_width), P),
            "mask": unsigned(P),
            "pos": unsigned(max(1, bits_for(hw_max * hw_max - 1))),
            "t": unsigned(max(1, bits_for(t_max - 1))),
            "group": unsigned(max(1, bits_for(self.groups_max - 1))),
            "last": unsigned(1),
        })
        cw = counter_width
        # bit-plane mode (1x1 integer inputs), only built when planes_max > 1
        plane_ports = {
            "planes": In(1),  # plane mode on
            "plane_lg": In(bits_for(ceil_log2(self.ci_max_1x1))),  # log2 C, channels per plane
        } if planes_max > 1 else {}
        super().__init__({
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "clear": In(1),
            # layer parameters, sampled at start
            "ci": In(bits_for(self.ci_max_1x1)),
            "co": In(bits_for(co_max)),
            "k": In(2),
            "height": In(bits_for(hw_max)),
            "width": In(bits_for(hw_max)),
            "steps": In(bits_for(t_max)),
            "spike_base": In(spike_addr_width),
            "weight_base": In(weight_addr_width),
            "bias_base": In(bias_addr_width),
            **plane_ports,
            # memory read ports
            "spike_addr": Out(spike_addr_width),
            "spike_en": Out(1),
            "spike_data": In(WW),
            "weight_addr": Out(weight_addr_width),
            "weight_en": Out(1),
            "weight_data": In(data.ArrayLayout(signed(weight_width), P)),
            "bias_addr": Out(bias_addr_width),
            "bias_en": Out(1),
            "bias_data": In(data.ArrayLayout(signed(bias_width), P)),
            # output currents, one beat per (position, t, group)
            "o": Out(stream.Signature(self.out_layout)),
            # activity counters
            "sops": Out(cw),
            "spikes_in": Out(cw),
            "weight_reads": Out(cw),
            "act_reads": Out(cw),
            "act_words": Out(cw),
            "weight_rows": Out(cw),
            "busy_cycles": Out(cw),
            "stall_cycles": Out(cw),
        })

    def elaborate(self, platform):
        m = Module()
        P, WW, NB = self.lanes, self.word_width, self.windows
        G, TW = self.slots, self.tap_words
        twb = ceil_log2(TW)  # bits of a word index within a tap
        nb_bits = max(1, ceil_log2(NB))
        saw, waw = self.spike_addr_width, self.weight_addr_width
        hwb, tb = bits_for(self.hw_max), bits_for(self.t_max)

        # -- layer registers, sampled at start ----------------------------------------------
        ci = Signal.like(self.ci)
        co = Signal.like(self.co)
        k3 = Signal()
        H = Signal(hwb)
        W = Signal(hwb)
        T = Signal(tb)
        spike_base = Signal(saw)
        weight_base = Signal(waw)
        bias_base = Signal.like(self.bias_base)
        PM = self.planes_max
        sb = ceil_log2(PM)  # bits of a plane number (the shift of a weight row)
        if PM > 1:
            planes = Signal()  # bit-plane mode: Ci = B * C, C = 1 << plane_lg
            plane_lg = Signal.like(self.plane_lg)

        # derived from the layer registers, registered at setup (stable over a layer)
        nwords = Signal(range(G + 1))  # spike words per position
        nwords_m1 = Signal(range(G))
        groups_m1 = Signal(max(1, bits_for(self.groups_max - 1)))  # groups - 1
        last_mask = Signal(P)  # lanes of the last group that hold a channel
        K = Signal(waw)  # weight rows per group (plane mode: C)
        tail = Signal(WW)  # channel bits of a position's last word
        co_m1 = Signal(len(co))
        ci_m1 = Signal(len(ci))
        m.d.comb += [co_m1.eq(co - 1), ci_m1.eq(ci - 1)]
        derived = [
            (nwords_m1, ci_m1 >> ceil_log2(WW)),
            (nwords, (ci_m1 >> ceil_log2(WW)) + 1),
            (groups_m1, co_m1 >> ceil_log2(P)),
            (last_mask, _thermometer(co_m1[:ceil_log2(P)], P)),
            (K, Mux(k3, (ci << 3) + ci, Mux(planes, 1 << plane_lg, ci) if PM > 1 else ci)),
            (tail, _thermometer(ci_m1[:ceil_log2(WW)], WW)),
        ]
        if PM > 1:
            c_mask = Signal(len(ci))  # a 1x1 event's weight row: c' & c_mask (plane mode: C - 1)
            derived.append((c_mask, Mux(planes, (1 << plane_lg) - 1, (1 << len(ci)) - 1)))
        # tap * Ci, tap = 0..8 (registered at setup, read per spike)
        tap_ci = Array(Signal(waw, name=f"tap_ci{i}") for i in range(9))

        # strides of the spike map, from a shift-add multiplier during setup
        rowstride = Signal(saw)  # W * nwords
        frame = Signal(saw)  # H * W * nwords
        mul_a = Signal(saw)
        mul_b = Signal(max(len(nwords), hwb))
        mul_acc = Signal(saw)

        # -- command FSM ----------------------------------------------------------------------
        running = Signal()  # fetch and scan enabled
        finished = Signal()  # the last beat was taken
        with m.FSM(name="cmd"):
            with m.State("Idle"):
                with m.If(self.start):
                    m.d.sync += [
                        ci.eq(self.ci), co.eq(self.co), k3.eq(self.k == 3),
                        H.eq(self.height), W.eq(self.width), T.eq(self.steps),
                        spike_base.eq(self.spike_base), weight_base.eq(self.weight_base),
                        bias_base.eq(self.bias_base),
                    ]
                    if PM > 1:
                        m.d.sync += [planes.eq(self.planes), plane_lg.eq(self.plane_lg)]
                    m.next = "Setup-Rowstride"
            with m.State("Setup-Rowstride"):
                # rowstride = W * nwords; tap_ci[i] = i * Ci
                m.d.comb += self.busy.eq(1)
                m.d.sync += [mul_a.eq(W), mul_b.eq(derived[1][1]), mul_acc.eq(0)]
                m.d.sync += [reg.eq(value) for reg, value in derived]
                m.d.sync += [tap_ci[i].eq(sum(ci << b for b in range(4) if i >> b & 1))
                             for i in range(1, 9)]
                m.next = "Multiply-Rowstride"
            with m.State("Multiply-Rowstride"):
                m.d.comb += self.busy.eq(1)
                with m.If(mul_b.any()):
                    m.d.sync += [mul_acc.eq(mul_acc + Mux(mul_b[0], mul_a, 0)),
                                 mul_a.eq(mul_a << 1), mul_b.eq(mul_b >> 1)]
                with m.Else():
                    m.d.sync += [rowstride.eq(mul_acc), mul_a.eq(mul_acc), mul_b.eq(H),
                                 mul_acc.eq(0)]
                    m.next = "Multiply-Frame"
            with m.State("Multiply-Frame"):
                m.d.comb += self.busy.eq(1)
                with m.If(mul_b.any()):
                    m.d.sync += [mul_acc.eq(mul_acc + Mux(mul_b[0], mul_a, 0)),
                                 mul_a.eq(mul_a << 1), mul_b.eq(mul_b >> 1)]
                with m.Else():
                    m.d.sync += frame.eq(mul_acc)
                    m.next = "Run"
            with m.State("Run"):
                m.d.comb += [self.busy.eq(1), running.eq(1)]
                with m.If(finished):
                    m.next = "Done"
            with m.State("Done"):
                m.d.comb += self.done.eq(1)
                m.next = "Idle"
        setup = Signal()  # the cycle before Run: reset the fetcher and the scanner
        m.d.comb += setup.eq(self.busy & ~running)

        # -- window memory: NR regions of 16 TW words (LUT RAM), a flag per non-zero part -----
        # 3x3 layers: region t holds time step t's spike columns, a ring of 4 column slots
        # (slot = position count mod 4) of 3 rows x TW words, word index Cat(w, slot, dy);
        # consecutive positions of a row share two of their three columns, so a window fetches
        # one new column (two at a row start, none at a row end). 1x1 layers: a region holds
        # one window, word index w < 9 TW, and NB regions are used as a ring. The scanner works
        # on parts of SW bits (R parts per word): its word index is Cat(part, word index).
        SW = self.scan_width
        R = WW // SW
        rb = ceil_log2(R)
        RWB = 4 + twb  # bits of a word index within a region
        NR = max(self.t_max, NB)
        rgb = ceil_log2(NR)
        GS = 12 * TW * R  # scanner words (parts) of a region: 3 rows x 4 slots x TW x R

        def part_of(mem_word, part):
            """(data, exactly one spike) of a part of a window memory word."""
            if R == 1:
                return mem_word[:WW], mem_word[WW]
            return mem_word[:WW].word_select(part, SW), mem_word[WW:].bit_select(part, 1)
        # A memory word: the spike word and, per part, whether it has exactly one spike.
        m.submodules.window_mem = wmem = memory.Memory(shape=WW + R, depth=NR << RWB, init=[])
        wr = wmem.write_port()
        rd = wmem.read_port(domain="comb")  # the scanner's refills
        rd_first = wmem.read_port(domain="comb")  # the next window's first word, read ahead
        flags = [Signal(GS, name=f"flags{r}") for r in range(NR)]

        nalloc = Signal(range(max(NB, 2 * self.t_max) + 1))  # windows fetched, being fetched
        nready = Signal.like(nalloc)  # windows fetched, not yet taken by the scanner
        cap = Signal.like(nalloc)  # windows in flight at most
        # 3x3: window (pos, t) writes slots that windows up to (pos - 2, t) read, so it waits
        # until those are released: at most 2T - 1 windows ahead of it.
        m.d.comb += cap.eq(Mux(k3, T << 1, NB))
        alloc = Signal()
        complete = Signal()
        take = Signal()
        release = Signal()
        m.d.sync += [nalloc.eq(nalloc + alloc - release), nready.eq(nready + complete - take)]

        # -- fetcher ----------------------------------------------------------------------------
        # The window to fetch next: (py, px, pt), its centre word address.
        py, px = Signal(hwb), Signal(hwb)
        pt = Signal(tb)
        p_pos = Signal(saw)  # address of (t = 0, py, px)
        p_center = Signal(saw)  # address of (pt, py, px)
        p_more = Signal()  # windows left to fetch
        p_cs = Signal(2)  # column slot of its centre (3x3)
        p_b = Signal(nb_bits)  # its region (1x1)
        top = Signal()
        bottom = Signal()
        left = Signal()
        right = Signal()
        m.d.comb += [
            top.eq(k3 & (py != 0)), bottom.eq(k3 & (py != H - 1)),
            left.eq(k3 & (px != 0)), right.eq(k3 & (px != W - 1)),
        ]
        # The window being fetched: rows dy (.. dy_hi), columns dx (dx_lo .. dx_hi: 1 the
        # centre, 2 the right one), words w of a tap. A row end fetches nothing (f_null).
        f_active, f_null = Signal(), Signal()
        fa = Signal(saw)  # read address
        row_start = Signal(saw)
        dy, dy_hi = Signal(2), Signal(2)
        dx, dx_lo, dx_hi = Signal(2), Signal(2), Signal(2)
        w = Signal(range(G))
        f_cs = Signal(2)
        f_region = Signal(rgb)
        f_end = Signal()
        m.d.comb += f_end.eq(f_active & (f_null | ((w == nwords_m1) & (dx == dx_hi)
                                                   & (dy == dy_hi))))
        m.d.comb += alloc.eq(running & p_more & (nalloc < cap) & (~f_active | f_end))

        m.d.comb += [self.spike_addr.eq(fa), self.spike_en.eq(f_active & ~f_null)]
        with m.If(f_end):
            m.d.sync += f_active.eq(0)
        with m.Elif(f_active):
            with m.If(w != nwords_m1):
                m.d.sync += [w.eq(w + 1), fa.eq(fa + 1)]
            with m.Elif(dx != dx_hi):
                m.d.sync += [w.eq(0), dx.eq(dx + 1), fa.eq(fa + 1)]
            with m.Else():
                m.d.sync += [w.eq(0), dx.eq(dx_lo), dy.eq(dy + 1),
                             fa.eq(row_start + rowstride), row_start.eq(row_start + rowstride)]
        with m.If(alloc):
            # a row start fetches columns x and x + 1, a row's other windows column x + 1
            start_row = p_center - Mux(top, rowstride, 0) + Mux(left, nwords, 0)
            m.d.sync += [
                f_active.eq(1), f_null.eq(left & ~right), w.eq(0), fa.eq(start_row),
                row_start.eq(start_row), dy.eq(~top), dy_hi.eq(1 + bottom), dx.eq(1 + left),
                dx_lo.eq(1 + left), dx_hi.eq(1 + right), f_cs.eq(p_cs),
                f_region.eq(Mux(k3, pt, p_b)), p_b.eq(Mux(p_b == NB - 1, 0, p_b + 1)),
            ]
            # advance the pending window: t innermost, then x, then y
            with m.If(pt != T - 1):
                m.d.sync += [pt.eq(pt + 1), p_center.eq(p_center + frame)]
            with m.Else():
                m.d.sync += [pt.eq(0), p_pos.eq(p_pos + nwords), p_center.eq(p_pos + nwords),
                             p_cs.eq(p_cs + 1)]
                with m.If(px != W - 1):
                    m.d.sync += px.eq(px + 1)
                with m.Else():
                    m.d.sync += [px.eq(0), py.eq(py + 1)]
                    with m.If(py == H - 1):
                        m.d.sync += p_more.eq(0)
        with m.If(setup):
            m.d.sync += [py.eq(0), px.eq(0), pt.eq(0), p_pos.eq(spike_base), p_cs.eq(0),
                         p_b.eq(0), p_center.eq(spike_base), p_more.eq(1), f_active.eq(0)]

        # Read data arrives a cycle later: write it into the window memory, flag its parts.
        d_valid, d_tail, d_end = Signal(), Signal(), Signal()
        d_idx = Signal(RWB)
        d_region = Signal(rgb)
        m.d.sync += [
            d_valid.eq(f_active & ~f_null), d_tail.eq(w == nwords_m1), d_end.eq(f_end),
            d_idx.eq(Mux(k3, Cat(w[:twb], (f_cs + dx - 1)[:2], dy), w)), d_region.eq(f_region),
        ]
        word = Signal(WW)
        m.d.comb += [
            word.eq(self.spike_data & Mux(d_tail, tail, ~0)),
            wr.addr.eq(Cat(d_idx, d_region)), wr.en.eq(d_valid),
            wr.data.eq(Cat(word, Cat(one_set(word.word_select(i, SW)) for i in range(R)))),
            complete.eq(d_end),
        ]
        parts = Signal(R)  # which parts of the word hold a spike
        m.d.comb += parts.eq(Cat(word.word_select(i, SW).any() for i in range(R)))
        # A word's flags are written with it (so no clearing is needed); flags of words a
        # window does not use (padding rows, other slots) are masked when it is scanned.
        for r, fl in enumerate(flags):
            with m.If(d_valid & (d_region == r)):
                m.d.sync += fl.word_select(d_idx, R).eq(parts)
            with m.If(setup):
                m.d.sync += fl.eq(0)

        # -- the next window to scan (the head of the fetched ones), read ahead -----------------
        hy, hx = Signal(hwb), Signal(hwb)
        ht = Signal(tb)
        h_pos = Signal(len(self.o.payload.pos))
        h_cs = Signal(2)
        h_b = Signal(nb_bits)
        h_region = Signal(rgb)
        h_last = Signal()
        m.d.comb += h_last.eq((hy == H - 1) & (hx == W - 1) & (ht == T - 1))

        def window_mask(cs, x, y):
            """The scanner words of the 3x3 window at (y, x), centre slot cs: valid rows x
            columns (cs - 1, cs, cs + 1); every word of a 1x1 window."""
            rows_ok = [y != 0, Const(1), y != H - 1]
            cols_ok = [(cs == c) | (((cs - 1)[:2] == c) & (x != 0))
                       | (((cs + 1)[:2] == c) & (x != W - 1)) for c in range(4)]
            mask3 = Cat((rows_ok[r] & cols_ok[c]).replicate(TW * R)
                        for r in range(3) for c in range(4))
            return Mux(k3, mask3, (1 << GS) - 1)

        # The head's successor: its region and mask (the mask changes with the position only)
        # are registered from the head's registers, so they lag the head by a cycle: takes are
        # at least two cycles apart.
        succ_pos = Signal()
        row_end = hx == W - 1
        succ_region = Signal(rgb)
        succ_mask = Signal(GS)
        h_mask, n_mask = Signal(GS), Signal(GS)
        m.d.sync += [
            succ_pos.eq(ht == T - 1),
            succ_region.eq(Mux(k3, Mux(ht == T - 1, 0, ht + 1), Mux(h_b == NB - 1, 0, h_b + 1))),
            n_mask.eq(window_mask((h_cs + 1)[:2], Mux(row_end, 0, hx + 1),
                                  Mux(row_end, hy + 1, hy))),
        ]
        m.d.comb += succ_mask.eq(Mux(succ_pos, n_mask, h_mask))
        # h_flags: the head's flags (its region's flags & its mask), a register that follows
        # the head: it holds the flags of a cycle ago, which are the head's final ones when it
        # was complete a cycle ago (h_valid).
        # Its lowest flagged part is encoded with it (both candidates, then take selects).
        flag_arr = Array(flags)
        h_flags = Signal(GS)
        h_valid = Signal()
        same_flags = flag_arr[h_region] & h_mask
        succ_flags = flag_arr[succ_region] & succ_mask
        same_any, same_idx = lowest_set(same_flags)
        succ_any, succ_idx = lowest_set(succ_flags)
        h_any, h_idx = Signal(), Signal(len(same_idx))
        m.d.sync += [
            h_flags.eq(Mux(take, succ_flags, same_flags)),
            h_any.eq(Mux(take, succ_any, same_any)),
            h_idx.eq(Mux(take, succ_idx, same_idx)),
            h_valid.eq(nready > take),
        ]
        # Its first word (lowest flagged part) is read a cycle ahead, so that the scanner's
        # load selects registers; pre_valid: the registers hold the head's.
        pre_word = Signal(SW)
        pre_idx = Signal(len(h_idx))
        pre_rest = Signal(GS)  # its flags without the first word
        pre_any, pre_one, pre_valid = Signal(), Signal(), Signal()
        first_data, first_one = part_of(rd_first.data, h_idx[:rb])
        m.d.comb += rd_first.addr.eq(Cat(h_idx[rb:], h_region))
        m.d.sync += [
            pre_word.eq(Mux(h_any, first_data, 0)), pre_idx.eq(h_idx), pre_one.eq(first_one),
            pre_rest.eq(h_flags & (h_flags - 1)), pre_any.eq(h_any),
            pre_valid.eq(h_valid & ~take),
        ]

        # -- scanner and issue stage ------------------------------------------------------------
        m.submodules.scanner = scan = SpikeScanner(words=GS, word_width=SW, preloaded=True)
        active = Signal()  # a window is being scanned
        s_region = Signal(rgb)  # its region
        s_cs = Signal(2)  # its centre column slot
        s_empty = Signal()  # it has no spike
        s_last = Signal()  # it is the layer's last window
        cw_word, cw_idx, cw_rest = Signal.like(pre_word), Signal.like(pre_idx), Signal(GS)
        cw_one = Signal()
        g = Signal.like(groups_m1)
        g_last = Signal()  # g == groups_m1
        gfirst = Signal()  # the next event is the first of its (window, group)
        wgbase = Signal(waw)  # weight_base + g * K
        spos = Signal(len(self.o.payload.pos))
        st = Signal(tb)

        adv = Signal()  # the pipeline moves: the output register is free or drains
        m.d.comb += adv.eq(~self.o.valid | self.o.ready)
        ev_valid = Signal()
        ev_last = Signal()
        issue = Signal()
        group_end = Signal()
        window_end = Signal()
        m.d.comb += [
            ev_valid.eq(active & (s_empty | scan.valid)),
            ev_last.eq(s_empty | scan.last),
            issue.eq(adv & ev_valid),
            group_end.eq(issue & ev_last),
            window_end.eq(group_end & g_last),
            release.eq(window_end),
        ]
        # The scanner's next vector: the same window for its next group (the first word kept
        # from its take: cw_*), else the next window (pre_*). Both are registers, chosen by
        # registers (to_next); only *whether* it loads depends on this cycle's last bit.
        to_next = Signal()
        m.d.comb += [
            to_next.eq(~active | g_last),
            take.eq(running & adv & pre_valid & (~active | window_end)),
            scan.next.eq(issue & ~s_empty),
            scan.load.eq(Mux(to_next, take, group_end & ~s_empty)),
            scan.flags.eq(Mux(to_next, pre_rest, cw_rest)),
            scan.first.eq(Mux(to_next, pre_word, cw_word)),
            scan.first_word.eq(Mux(to_next, pre_idx, cw_idx)),
            scan.first_one.eq(Mux(to_next, pre_one, cw_one)),
            rd.addr.eq(Cat(scan.word_addr[rb:], s_region)),
            Cat(scan.word_data, scan.word_one).eq(Cat(*part_of(rd.data, scan.word_addr[:rb]))),
        ]
        with m.If(group_end):
            m.d.sync += [g.eq(g + 1), g_last.eq(g + 1 == groups_m1), wgbase.eq(wgbase + K),
                         gfirst.eq(1)]
        with m.Elif(issue):
            m.d.sync += gfirst.eq(0)
        with m.If(window_end):
            m.d.sync += active.eq(0)
        with m.If(take):
            m.d.sync += [
                active.eq(1), s_region.eq(h_region), s_cs.eq(h_cs), st.eq(ht), spos.eq(h_pos),
                s_last.eq(h_last), s_empty.eq(~pre_any),
                cw_word.eq(pre_word), cw_idx.eq(pre_idx), cw_rest.eq(pre_rest),
                cw_one.eq(pre_one),
                g.eq(0), g_last.eq(groups_m1 == 0), wgbase.eq(weight_base), gfirst.eq(1),
                h_b.eq(Mux(h_b == NB - 1, 0, h_b + 1)), h_region.eq(succ_region),
                h_mask.eq(succ_mask),
            ]
            # the head moves on to the next window
            with m.If(ht != T - 1):
                m.d.sync += ht.eq(ht + 1)
            with m.Else():
                m.d.sync += [ht.eq(0), h_pos.eq(h_pos + 1), h_cs.eq(h_cs + 1)]
                with m.If(hx != W - 1):
                    m.d.sync += hx.eq(hx + 1)
                with m.Else():
                    m.d.sync += [hx.eq(0), hy.eq(hy + 1)]
        with m.If(setup):
            m.d.sync += [active.eq(0), hy.eq(0), hx.eq(0), ht.eq(0), h_pos.eq(0), h_cs.eq(0),
                         h_b.eq(0), h_region.eq(0), h_mask.eq(window_mask(Const(0, 2), 0, 0)),
                         nalloc.eq(0), nready.eq(0), h_valid.eq(0), pre_valid.eq(0)]

        # The event: weight row = weight_base + g * K + tap * Ci + c; a 3x3 word index
        # Cat(w, slot, dy) is tap dy * 3 + dx, dx = slot - centre slot + 1 (mod 4).
        ev_idx = scan.word[rb:]
        ev_dy = ev_idx[twb + 2:twb + 4]
        ev_dx = Signal(2)
        ev_tap = Signal(4)
        ev_c = Signal(len(ci))
        ev_c1 = Cat(scan.bit[:ceil_log2(SW)], scan.word)  # a 1x1 window's channel
        m.d.comb += [
            ev_dx.eq(ev_idx[twb:twb + 2] - s_cs + 1),
            ev_tap.eq(Mux(k3, (ev_dy << 1) + ev_dy + ev_dx, 0)),
            ev_c.eq(Mux(k3, Cat(scan.bit[:ceil_log2(SW)], scan.word[:rb + twb]),
                        ev_c1 & c_mask if PM > 1 else ev_c1)),
        ]
        if PM > 1:
            # plane mode: the event's plane b = c' >> plane_lg, its row's shift; bits
            # [plane_lg, plane_lg + sb) of c', a (log2 ci_max_1x1)-input mux per bit
            ev_shift = Signal(sb)
            m.d.comb += ev_shift.eq(Array(ev_c1[lg:lg + sb]
                                          for lg in range(len(ev_c1)))[plane_lg])
        final_window = s_last
        lanes = Signal(P)
        m.d.comb += lanes.eq(Mux(g_last, last_mask, (1 << P) - 1))

        # -- pipeline: E1 (row and bias addresses) -> E2 (data, accumulate) -> output ----------
        e1 = Signal(data.StructLayout({
            "valid": 1, "null": 1, "first": 1, "last": 1, "t0": 1, "centre": 1, "final": 1,
            "row": waw, "group": len(g), "mask": P, "pos": len(spos), "t": tb,
            **({"shift": sb} if PM > 1 else {}),  # plane mode: the row's left shift
        }))
        e2 = Signal.like(e1)
        with m.If(adv):
            m.d.sync += [
                e1.valid.eq(issue), e1.null.eq(s_empty), e1.first.eq(gfirst),
                e1.last.eq(ev_last), e1.t0.eq(st == 0),
                e1.centre.eq(~s_empty & (g == 0) & (~k3 | (ev_tap == 4))),
                e1.final.eq(final_window & g_last),
                e1.row.eq(wgbase + tap_ci[ev_tap] + ev_c),
                e1.group.eq(g), e1.mask.eq(lanes), e1.pos.eq(spos), e1.t.eq(st),
                e2.eq(e1),
            ]
            if PM > 1:
                m.d.sync += e1.shift.eq(Mux(planes, ev_shift, 0))
        with m.If(setup):
            m.d.sync += [e1.valid.eq(0), e2.valid.eq(0)]

        # E1: read the weight row; the bias row at t = 0 (external), else the held copy.
        m.submodules.bias_hold = bmem = memory.Memory(
            shape=data.ArrayLayout(signed(self.bias_width), P), depth=self.groups_max, init=[])
        bwr = bmem.write_port()
        brd = bmem.read_port(transparent_for=(bwr,))
        read_bias = e1.valid & e1.first
        m.d.comb += [
            self.weight_addr.eq(e1.row),
            self.weight_en.eq(adv & e1.valid & ~e1.null),
            self.bias_addr.eq(bias_base + e1.group),
            self.bias_en.eq(adv & read_bias & e1.t0),
            brd.addr.eq(e1.group),
            brd.en.eq(adv & read_bias & ~e1.t0),
        ]

        # E2: acc = (first ? bias : acc) + (null ? 0 : row << shift), shift 0 but in plane mode
        acc = Signal(data.ArrayLayout(signed(self.acc_width), P))
        acc_new = Signal.like(acc)
        bias = Signal.like(self.bias_data)
        m.d.comb += bias.eq(Mux(e2.t0, self.bias_data, brd.data))
        for lane in range(P):
            row = self.weight_data[lane]
            if PM > 1:  # times 2^shift, signed: a PM-input mux
                row = Array(row << b for b in range(PM))[e2.shift]
            m.d.comb += acc_new[lane].eq(
                Mux(e2.first, bias[lane], acc[lane]) + Mux(e2.null, 0, row))
        m.d.comb += [
            bwr.addr.eq(e2.group), bwr.data.eq(self.bias_data),
            bwr.en.eq(adv & e2.valid & e2.first & e2.t0),
        ]
        out = self.o.payload
        with m.If(adv):
            with m.If(e2.valid):
                m.d.sync += acc.eq(acc_new)
            m.d.sync += [
                self.o.valid.eq(e2.valid & e2.last),
                out.current.eq(acc_new), out.mask.eq(e2.mask), out.pos.eq(e2.pos),
                out.t.eq(e2.t), out.group.eq(e2.group), out.last.eq(e2.final),
            ]
        with m.If(setup):
            m.d.sync += self.o.valid.eq(0)
        m.d.comb += finished.eq(self.o.valid & self.o.ready & out.last)

        # -- counters (model.golden.conv_counts) ----------------------------------------------
        cw, clear = self.counter_width, self.clear
        n_lanes = Signal(range(P + 1))
        m.d.comb += n_lanes.eq(Mux(g_last, co_m1[:ceil_log2(P)] + 1, P)
                               if P > 1 else 1)
        spike_ev = issue & ~s_empty
        bias_ev = issue & gfirst & (st == 0)
        ctr = {
            "sops": Mux(spike_ev, n_lanes, 0),
            "spikes_in": spike_ev & (g == 0) & (~k3 | (ev_tap == 4)),
            "weight_reads": Mux(spike_ev, n_lanes, 0) + Mux(bias_ev, n_lanes, 0),
            "act_reads": Mux(complete, ci, 0),
            "act_words": self.spike_en,
            "weight_rows": spike_ev + bias_ev,
            "busy_cycles": self.busy,
            "stall_cycles": self.busy & ~issue,
        }
        for name, inc in ctr.items():
            m.d.comb += getattr(self, name).eq(add_counter(m, f"ctr_{name}", clear, inc, cw))
        return m
