"""Integer maps as bit planes in the spike memory: the plane adder and the plane reader.

The residual stream of Spikformer is a sum of spike maps: small non-negative integers. The
accelerator keeps such a map in the spike memory as B bit planes of ``word_width`` (WW) bit
words. A map of C channels (a multiple of WW), T steps and H x W positions has
cw = C / WW words per plane per position; with the position index tp = (t * H + y) * W + x,
the word of plane b, channel word w is at

    base + (tp * B + b) * cw + w

and bit j of that word is bit b of channel w * WW + j. A spike map is the case B = 1.

``PlaneAdder`` adds a spike map to a B-plane map (the residual add, bit-serial over planes on
whole words); ``PlaneReader`` streams a B-plane map to the head as rows of P lanes.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from .counters import add_counter, popcount
from .params import check_int as _check


def _check_pow2(what: str, value: int) -> int:
    if value & (value - 1):
        raise ValueError(f"{what} must be a power of two, not {value!r}")
    return value


def _next_group(m, rw, w_last, grp, cur, rp, p_last):
    """After a group's last plane: the next channel word of the position, or the next
    position (``cur`` then points at the position's last word, so the next starts at +1);
    after the map's last group the FSM goes to "Drain"."""
    with m.If(~w_last):
        m.d.sync += [rw.eq(rw + 1), grp.eq(grp + 1), cur.eq(grp + 1)]
    with m.Else():
        m.d.sync += [rw.eq(0), grp.eq(cur + 1), cur.eq(cur + 1)]
        with m.If(~p_last):
            m.d.sync += rp.eq(rp + 1)
        with m.Else():
            m.next = "Drain"


class PlaneAdder(wiring.Component):
    """out = a + s on bit-plane maps: ``a`` has B_a planes, ``s`` is a spike map (one plane).

    All three maps have the same C, T, H, W (layout in the module docstring); ``out`` has
    B_o = B_a or B_a + 1 planes. Per (position, channel word) the unit ripples a carry over the
    planes on whole words (WW channels at once):

        carry = s;  for b in 0 .. B_a - 1:  out_b = a_b ^ carry,  carry = a_b & carry
        out_{B_a} = carry                                          (only if B_o = B_a + 1)

    With B_o = B_a the final carry is dropped (the compiler guarantees it is 0). B_a = 0 (with
    B_o = 1) copies ``s``. ``out_planes`` must be ``a_planes`` or ``a_planes`` + 1.

    Command interface: ``start`` (one cycle, in the idle state) samples ``a_base``,
    ``a_planes`` (B_a), ``s_base``, ``out_base``, ``out_planes`` (B_o), ``words`` (cw) and
    ``positions`` (T * H * W); ``busy`` is high until ``done`` pulses. ``positions`` = 0 or
    ``words`` = 0 is an empty map (``done`` follows at once).

    Memory ports, both on the spike memory: read ``rd_addr`` / ``rd_en`` / ``rd_data`` (data
    one cycle after the address, a synchronous read port), write ``wr_addr`` / ``wr_data`` /
    ``wr_en`` (registered). The output map must not overlap the inputs.

    Schedule: per (position, word) group the reads s, a_0, ..., a_{B_a-1} stream back to back,
    one per cycle, in address order of the groups; plane b is written the cycle after a_b
    arrives, the final carry in the cycle in which the next group's s arrives (a free write
    slot). So a map takes B_a + 1 cycles per group: ``done`` pulses
    positions * words * (B_a + 1) + 3 cycles after ``start`` (+ 4 when B_o = B_a + 1: the
    last carry).

    Counters (reset by ``clear``): ``adds``, ``act_reads``, ``act_writes`` equal
    ``model.golden.add_counts`` of the result (WW, 2 WW and WW per group: one add, two operand
    reads and one result write per element); physical counts ``word_reads``
    (positions * words * (B_a + 1)), ``word_writes`` (positions * words * B_o), ``busy_cycles``;
    and ``nonzero``: output elements != 0 (the popcount of the OR of the written planes of each
    group), a physical count with no golden counterpart (the density of the residual stream).
    """

    def __init__(self, *, word_width: int, planes_max: int, addr_width: int,
                 positions_max: int, words_max: int, counter_width: int = 32):
        self._MustUse__silence = True  # a constructor that raises is not "unused"
        self.word_width = _check_pow2("Word width", _check("Word width", word_width, 1))
        self.planes_max = _check("Maximum plane count", planes_max, 1)
        self.addr_width = _check("Address width", addr_width, 1)
        self.positions_max = _check("Maximum position count", positions_max, 1)
        self.words_max = _check("Maximum word count", words_max, 1)
        self.counter_width = _check("Counter width", counter_width, 1)
        del self._MustUse__silence
        aw, cw, ww = addr_width, counter_width, word_width
        super().__init__({
            "start": In(1),
            "a_base": In(aw),
            "a_planes": In(bits_for(planes_max)),
            "s_base": In(aw),
            "out_base": In(aw),
            "out_planes": In(bits_for(planes_max + 1)),
            "words": In(bits_for(words_max)),
            "positions": In(bits_for(positions_max)),
            "busy": Out(1),
            "done": Out(1),
            "rd_addr": Out(aw),
            "rd_en": Out(1),
            "rd_data": In(ww),
            "wr_addr": Out(aw),
            "wr_data": Out(ww),
            "wr_en": Out(1),
            "clear": In(1),
            "adds": Out(cw),
            "act_reads": Out(cw),
            "act_writes": Out(cw),
            "word_reads": Out(cw),
            "word_writes": Out(cw),
            "busy_cycles": Out(cw),
            "nonzero": Out(cw),
        })

    def elaborate(self, platform):
        m = Module()
        WW, aw = self.word_width, self.addr_width

        # Parameters, sampled at start.
        a_planes = Signal.like(self.a_planes)
        out_planes = Signal.like(self.out_planes)
        words = Signal.like(self.words)
        positions = Signal.like(self.positions)
        extra = Signal()  # B_o = B_a + 1: the final carry is a plane

        # Stage A: the reads. rk = 0 reads s, rk = b + 1 reads a_b; (rp, rw) is the group.
        rk = Signal(range(self.planes_max + 1))
        rw = Signal(range(self.words_max))
        rp = Signal(range(self.positions_max))
        s_ptr = Signal(aw)  # s of group (tp, w): s_base + tp * cw + w, sequential
        a_grp = Signal(aw)  # a_base + tp * B_a * cw + w
        a_cur = Signal(aw)  # a_grp + b * cw
        issue = Signal()
        k_last = rk == a_planes
        w_last = rw == words - 1
        p_last = rp == positions - 1

        # Stage B: a word arrives; the carry ripple and the write.
        b_valid, b_first, b_last = Signal(), Signal(), Signal()
        carry = Signal(WW)
        pending = Signal()  # the final carry of the last group is still to be written
        # The write sequencer: plane wp of group (., ww) at o_cur = o_grp + wp * cw.
        wp = Signal(range(self.planes_max + 1))
        ww = Signal(range(self.words_max))
        o_grp = Signal(aw)
        o_cur = Signal(aw)
        wr_last = Signal()  # the write holds the group's last output plane

        with m.FSM() as fsm:
            with m.State("Idle"):
                with m.If(self.start):
                    m.d.sync += [
                        a_planes.eq(self.a_planes), out_planes.eq(self.out_planes),
                        words.eq(self.words), positions.eq(self.positions),
                        extra.eq(self.out_planes > self.a_planes),
                        rk.eq(0), rw.eq(0), rp.eq(0),
                        s_ptr.eq(self.s_base), a_grp.eq(self.a_base), a_cur.eq(self.a_base),
                        wp.eq(0), ww.eq(0), o_grp.eq(self.out_base), o_cur.eq(self.out_base),
                    ]
                    with m.If((self.positions == 0) | (self.words == 0)):
                        m.next = "Drain"
                    with m.Else():
                        m.next = "Scan"
            with m.State("Scan"):
                m.d.comb += issue.eq(1)
                with m.If(~k_last):
                    m.d.sync += rk.eq(rk + 1)
                    with m.If(rk != 0):
                        m.d.sync += a_cur.eq(a_cur + words)
                with m.Else():
                    m.d.sync += [rk.eq(0), s_ptr.eq(s_ptr + 1)]
                    # (for B_a = 0, a is never read)
                    _next_group(m, rw, w_last, a_grp, a_cur, rp, p_last)
            with m.State("Drain"):
                with m.If(~b_valid & ~pending & ~self.wr_en):
                    m.d.comb += self.done.eq(1)
                    m.next = "Idle"
        m.d.comb += [
            self.busy.eq(~fsm.ongoing("Idle")),
            self.rd_en.eq(issue),
            self.rd_addr.eq(Mux(rk == 0, s_ptr, a_cur)),
        ]
        m.d.sync += [b_valid.eq(issue), b_first.eq(rk == 0), b_last.eq(k_last)]

        # Stage B. After a group's last plane the next arrival is the next group's s (or
        # none), which writes nothing: the final carry takes that write slot.
        word = self.rd_data
        plane = b_valid & ~b_first
        with m.If(b_valid & b_first):
            m.d.sync += carry.eq(word)
        with m.Elif(b_valid):
            m.d.sync += carry.eq(word & carry)
        m.d.sync += pending.eq(b_valid & b_last & extra)
        write = plane | pending
        m.d.sync += self.wr_en.eq(write)
        with m.If(write):
            m.d.sync += [
                self.wr_data.eq(Mux(plane, word ^ carry, carry)),
                self.wr_addr.eq(o_cur),
                wr_last.eq(wp == out_planes - 1),
            ]
            with m.If(wp != out_planes - 1):
                m.d.sync += [wp.eq(wp + 1), o_cur.eq(o_cur + words)]
            with m.Else():
                m.d.sync += wp.eq(0)
                with m.If(ww != words - 1):
                    m.d.sync += [ww.eq(ww + 1), o_grp.eq(o_grp + 1), o_cur.eq(o_grp + 1)]
                with m.Else():
                    m.d.sync += [ww.eq(0), o_grp.eq(o_cur + 1), o_cur.eq(o_cur + 1)]

        # Stage C: the OR of a group's written planes; its popcount when the group is complete.
        nz_acc = Signal(WW)
        nz_word = Signal(WW)
        m.d.comb += nz_word.eq(nz_acc | self.wr_data)
        with m.If(self.wr_en):
            m.d.sync += nz_acc.eq(Mux(wr_last, 0, nz_word))

        # Activity counters: add_counts per group (WW elements), counted at the group's s.
        cw, clear = self.counter_width, self.clear
        group = b_valid & b_first
        m.d.comb += [
            self.adds.eq(add_counter(m, "ctr_adds", clear, Mux(group, WW, 0), cw)),
            self.act_reads.eq(add_counter(m, "ctr_act_reads", clear,
                                          Mux(group, 2 * WW, 0), cw)),
            self.act_writes.eq(add_counter(m, "ctr_act_writes", clear, Mux(group, WW, 0), cw)),
            self.word_reads.eq(add_counter(m, "ctr_word_reads", clear, self.rd_en, cw)),
            self.word_writes.eq(add_counter(m, "ctr_word_writes", clear, self.wr_en, cw)),
            self.busy_cycles.eq(add_counter(m, "ctr_busy_cycles", clear, self.busy, cw)),
            self.nonzero.eq(add_counter(m, "ctr_nonzero", clear,
                                        Mux(self.wr_en & wr_last, popcount(nz_word), 0), cw)),
        ]
        return m


class PlaneReader(wiring.Component):
    """Streams a B-plane map (layout in the module docstring) to the head, P lanes per row.

    For each position tp (in order) and channel word w: the B plane words of word w are read,
    then WW / P rows are emitted, row r holding channels w * WW + r * P + lane:

        value[lane] = sum_b bit (r * P + lane) of plane b  << b     (unsigned, in a signed field)
        group       = w * (WW / P) + r                     (channel c = group * P + lane)
        mask        = all ones;  last = the final row of the map

    Output ``o``: a stream with the layout of ``Head.in_layout`` (``value``: P x
    signed(``value_width``), ``group``: ``group_width`` = bits_for(words_max * WW / P - 1)
    bits, ``mask``: P bits, ``last``), so ``o`` connects to a ``Head`` of
    ``channels`` = words_max * WW, ``lanes`` = P, ``in_width`` = ``value_width``.
    ``value_width`` must exceed ``planes_max`` (the value is non-negative).

    Command interface: ``start`` (one cycle, in the idle state) samples ``base``, ``planes``
    (B), ``words`` (cw) and ``positions`` (T * H * W); ``busy`` is high until ``done`` pulses,
    the cycle after the ``last`` row is accepted. ``positions``, ``words`` or ``planes`` = 0 is
    an empty map: no rows, ``done`` at once. Read port ``rd_addr`` / ``rd_en`` / ``rd_data``
    (data one cycle after the address).

    Buffering: two slots of ``planes_max`` words. The reads of a group fill one slot while the
    other is emitted; a slot is refilled from the cycle its last row is accepted. Every word
    is read once, in address order. Without back-pressure a group takes max(B, WW / P) cycles
    (reads and rows overlap): ``done`` pulses G * max(B, WW / P) + min(B, WW / P) + 2 cycles
    after ``start``, G = positions * words. ``o.valid`` does not depend on ``o.ready``;
    ``o.ready`` may be low in any cycle. No counters: the head counts its inputs.
    """

    def __init__(self, *, word_width: int, lanes: int, planes_max: int, value_width: int,
                 addr_width: int, positions_max: int, words_max: int):
        self._MustUse__silence = True  # a constructor that raises is not "unused"
        self.word_width = _check_pow2("Word width", _check("Word width", word_width, 1))
        self.lanes = _check_pow2("Lane count", _check("Lane count", lanes, 1))
        if lanes > word_width:
            raise ValueError(f"Lane count {lanes} exceeds the word width {word_width}")
        self.planes_max = _check("Maximum plane count", planes_max, 1)
        self.value_width = _check("Value width", value_width, 2)
        if value_width <= planes_max:
            raise ValueError(f"Value width {value_width} cannot hold {planes_max} planes "
                             f"(signed: needs at least {planes_max + 1} bits)")
        self.addr_width = _check("Address width", addr_width, 1)
        self.positions_max = _check("Maximum position count", positions_max, 1)
        self.words_max = _check("Maximum word count", words_max, 1)
        del self._MustUse__silence

        P = lanes
        self.rows = word_width // lanes  # rows per channel word
        self.group_width = max(1, bits_for(words_max * self.rows - 1))
        self.out_layout = data.StructLayout({
            "value": data.ArrayLayout(signed(value_width), P),
            "group": unsigned(self.group_width),
            "mask": unsigned(P),
            "last": unsigned(1),
        })
        aw = addr_width
        super().__init__({
            "start": In(1),
            "base": In(aw),
            "planes": In(bits_for(planes_max)),
            "words": In(bits_for(words_max)),
            "positions": In(bits_for(positions_max)),
            "busy": Out(1),
            "done": Out(1),
            "rd_addr": Out(aw),
            "rd_en": Out(1),
            "rd_data": In(word_width),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        WW, P, R, NP = self.word_width, self.lanes, self.rows, self.planes_max
        out = self.o.payload

        planes = Signal.like(self.planes)
        words = Signal.like(self.words)
        positions = Signal.like(self.positions)

        # Two slots of plane words; valid: filled and not yet emitted; final: the map's last.
        slot = [[Signal(WW, name=f"slot{s}_plane{b}") for b in range(NP)] for s in range(2)]
        valid = [Signal(name=f"slot{s}_valid") for s in range(2)]
        final = [Signal(name=f"slot{s}_final") for s in range(2)]

        # Stage A: the reads of plane rb of group (rp, rw) into slot ws at cur.
        rb = Signal(range(NP))
        rw = Signal(range(self.words_max))
        rp = Signal(range(self.positions_max))
        ws = Signal()
        grp = Signal(self.addr_width)  # base + tp * B * cw + w
        cur = Signal(self.addr_width)  # grp + b * cw
        b_last, w_last, p_last = rb == planes - 1, rw == words - 1, rp == positions - 1

        # The emit side: slot rs, row r, group counter eg within the position.
        rs = Signal()
        r = Signal(range(max(R, 2)))
        eg = Signal(self.group_width)
        r_last = r == R - 1
        rs_valid = Mux(rs, valid[1], valid[0])
        accept = self.o.valid & self.o.ready
        freeing = accept & r_last  # slot rs is emitted this cycle

        ws_valid = Mux(ws, valid[1], valid[0])
        free = ~ws_valid | (freeing & (rs == ws))
        issue = Signal()

        # Stage B: the word arrives into its slot.
        d_valid, d_slot, d_last, d_final = Signal(), Signal(), Signal(), Signal()
        d_plane = Signal(range(NP))

        with m.FSM() as fsm:
            with m.State("Idle"):
                with m.If(self.start):
                    m.d.sync += [
                        planes.eq(self.planes), words.eq(self.words),
                        positions.eq(self.positions),
                        rb.eq(0), rw.eq(0), rp.eq(0), grp.eq(self.base), cur.eq(self.base),
                        ws.eq(0), rs.eq(0), r.eq(0), eg.eq(0),
                    ]
                    empty = (self.positions == 0) | (self.words == 0) | (self.planes == 0)
                    with m.If(empty):
                        m.next = "Drain"
                    with m.Else():
                        m.next = "Read"
            with m.State("Read"):
                m.d.comb += issue.eq(free)
                with m.If(free):
                    with m.If(~b_last):
                        m.d.sync += [rb.eq(rb + 1), cur.eq(cur + words)]
                    with m.Else():
                        m.d.sync += [rb.eq(0), ws.eq(~ws)]
                        _next_group(m, rw, w_last, grp, cur, rp, p_last)
            with m.State("Drain"):
                with m.If(~d_valid & ~valid[0] & ~valid[1]):
                    m.d.comb += self.done.eq(1)
                    m.next = "Idle"
        m.d.comb += [
            self.busy.eq(~fsm.ongoing("Idle")),
            self.rd_en.eq(issue),
            self.rd_addr.eq(cur),
        ]
        m.d.sync += [
            d_valid.eq(issue), d_slot.eq(ws), d_plane.eq(rb), d_last.eq(b_last),
            d_final.eq(b_last & w_last & p_last),
        ]

        # Stage B: store the word; the group's last plane makes the slot valid.
        for s in range(2):
            here = d_valid & (d_slot == s)
            for b in range(NP):
                with m.If(here & (d_plane == b)):
                    m.d.sync += slot[s][b].eq(self.rd_data)
            with m.If(here & d_last):
                m.d.sync += [valid[s].eq(1), final[s].eq(d_final)]
            with m.Elif(freeing & (rs == s)):
                m.d.sync += valid[s].eq(0)

        # The emit side: row r of slot rs, planes >= B masked (stale words of a larger map).
        m.d.comb += [
            self.o.valid.eq(rs_valid),
            out.group.eq(eg),
            out.mask.eq((1 << P) - 1),
            out.last.eq(Mux(rs, final[1], final[0]) & r_last),
        ]
        rows = []
        for b in range(NP):
            word = Mux(rs, slot[1][b], slot[0][b])
            rows.append(Mux(b < planes, word.word_select(r, P) if R > 1 else word, 0))
        for lane in range(P):
            m.d.comb += out.value[lane].eq(Cat(*(row[lane] for row in rows)))
        with m.If(accept):
            with m.If(r_last):
                m.d.sync += [r.eq(0), rs.eq(~rs)]
            with m.Else():
                m.d.sync += r.eq(r + 1)
            last_group = eg == (words << exact_log2(R)) - 1
            m.d.sync += eg.eq(Mux(last_group, 0, eg + 1))
        return m
