"""Spike-mask attention: Y = (Q K^T) V per time step and head, event-driven, exact integers.

    att = SpikeAttention(heads_max=4, head_dim_max=32, tokens_max=64, T=4, lanes=8)

Q, K and V are spike maps in the layout of docs/hw_architecture.md: one word of heads_max *
head_dim_max channel bits per (time step t, token n) at ``base + t * N + n`` (n = y * W + x),
channel ``c = h * d + j`` for head h and head channel j. Per time step and head the unit
computes the integers of ``model.golden.ref_attention`` in either order the compiler may choose
(``model.golden.attention_counts``)::

    kv_first   KV[j1, j2] = sum_n K[n, j1] & V[n, j2]    Build-KV: per token, each K spike j1
                                                          adds the V slice's bits into KV row
                                                          j1 (d incrementers, one cycle)
               Y[n, j]   = sum_{j1 in Q[n]} KV[j1, j]     Emit-Y: per group of P channels,
                                                          each Q spike adds P KV entries
    qk_first   A[n, m]   = popcount(Q[n] & K[m])          Emit-Y: per (n, group), one token m
               Y[n, j]   = sum_m A[n, m] * V[m, j]        per cycle: A by popcount, added into
                                                          the lanes where V[m] spikes

Set bits are scanned lowest first, one per cycle (``hw.priority.lowest_set``), so kv_first's
work follows the spikes. The output stream carries P integers Y[t][n][c .. c + P - 1] per
(token, time step, head, group) in the order ``for n: for t: for h: for g`` (time step inside
token, as the LIF array holds a position's membranes over T), ``mask`` marking the lanes that
hold a channel: the attention LIF's currents (its threshold holds the 0.125 scale).

Cycles without back-pressure, popX = set bits of X's head slice at (t, h, n), G = ceil(d / P),
[.] = 1 if true (``attention_cycles``; the tests check it cycle-exact)::

    kv_first  8 + sum_{t,h,n} max(1, popK * [popV > 0]) + sum_{t,h,n} G * max(1, popQ)
    qk_first  5 + T * heads * G * N^2

Back-pressure on ``out`` adds ``stall_cycles``.

Counters (``counter_width`` bits, zeroed by ``clear``): ``sops``, ``spikes_in`` and
``act_reads`` equal ``attention_counts`` (act_reads counts spike bits: d per head slice, once,
although the unit reads a word per head and qk_first re-reads K and V); ``busy_cycles``,
``stall_cycles`` (an output beat waits for ``out.ready``); physical accesses: ``word_reads``
(words read from the Q, K, V ports), ``scratch_reads`` / ``scratch_writes`` (KV rows).

Scratch (kv_first): KV of every (t, h) of the layer, T * heads_max * head_dim_max rows of
head_dim_max entries of bits_for(tokens_max) bits (block RAM), and a ``seen`` mask per (t, h)
(LUT RAM) instead of a clearing pass: a row no K spike has touched reads as zero, and the first
K spike writes its row instead of adding to it. Read and write ports are not transparent: when
two consecutive K spikes hit the same row (the last of a token, the first of the next), the
second adds the first's V bits on top of the data it read (forwarding the increment, not the
row).

A head's slice is the word shifted by h * d; ``head_align`` (a power of two dividing every d
the unit will see) coarsens that shifter: with 128-bit words a 32-bit slice costs about 600
LUTs at head_align 1, 260 at 8, 100 at 16.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from .counters import add_counter, popcount
from .params import check_int as _check
from .priority import lowest_set
from .program import DISTRIBUTED_DEPTH

ORDERS = ("kv_first", "qk_first", "both")
COUNTERS = ("sops", "spikes_in", "act_reads", "busy_cycles", "stall_cycles", "word_reads",
            "scratch_reads", "scratch_writes")


class Order(enum.Enum, shape=1):
    """The ``order`` input of a ``SpikeAttention(order="both")``."""
    KV_FIRST = 0
    QK_FIRST = 1


def _lowest(m: Module, vec: Signal, name: str):
    """(index, one-hot) of the lowest set bit of ``vec``: ``hw.priority.lowest_set`` for the
    index, ``x & -x`` (a carry chain) for the bit to clear."""
    onehot = Signal(len(vec), name=f"{name}_onehot")
    index = Signal(range(max(2, len(vec))), name=f"{name}_index")
    m.d.comb += [onehot.eq(vec & (-vec)[:len(vec)]), index.eq(lowest_set(vec)[1])]
    return index, onehot


class SpikeAttention(wiring.Component):
    """Y = (Q K^T) V on spike maps, per time step and head: ``model.golden.ref_attention``.

    Constructor (keyword-only): ``heads_max``, ``head_dim_max``, ``tokens_max``, ``T`` (time
    steps, the most a layer may have), ``lanes`` (P adders of Emit-Y), ``order``
    (``"kv_first"``, ``"qk_first"`` or ``"both"``: the orders built in; with ``"both"`` the
    ``order`` input picks one per layer), ``head_align`` (d is a multiple of it),
    ``addr_width`` of the spike map ports, ``counter_width``.

    Command interface: ``start`` (one-cycle pulse) samples ``heads`` (<= heads_max),
    ``head_dim`` (<= head_dim_max, a multiple of head_align), ``tokens`` (<= tokens_max),
    ``steps`` (<= T), ``order`` and the three map bases; ``busy`` until ``done`` (one-cycle
    pulse after the last output beat was taken). The sequencer keeps the parameters in range;
    the unit does not check them. ``clear`` zeroes the counters.

    Map ports (``q_``, ``k_``, ``v_``): ``addr``, ``en`` out, ``data`` in one cycle after
    ``en`` (an ``amaranth.lib.memory`` synchronous read port), word width heads_max *
    head_dim_max. Output stream ``out``: ``y`` (P unsigned integers), ``mask`` (lanes that hold
    a channel), ``t``, ``token``, ``channel`` (channel of lane 0) and ``last`` (the layer's
    last beat).
    """

    def __init__(self, *, heads_max: int = 4, head_dim_max: int = 32, tokens_max: int = 64,
                 T: int = 4, lanes: int = 8, order: str = "both", head_align: int = 8,
                 addr_width: int = 16, counter_width: int = 32):
        self._MustUse__silence = True  # a constructor that raises is not "unused"
        self.heads_max = _check("Head count", heads_max)
        self.head_dim_max = _check("Head dimension", head_dim_max)
        self.tokens_max = _check("Token count", tokens_max)
        self.T = _check("Time step count", T)
        self.lanes = _check("Lane count", lanes)
        if order not in ORDERS:
            raise ValueError(f"Order must be one of {', '.join(map(repr, ORDERS))}, "
                             f"not {order!r}")
        self.orders = ("kv_first", "qk_first") if order == "both" else (order,)
        self.head_align = _check("Head alignment", head_align)
        if head_align & (head_align - 1) or head_dim_max % head_align:
            raise ValueError(f"Head alignment must be a power of two that divides the head "
                             f"dimension {head_dim_max}, not {head_align!r}")
        self.addr_width = _check("Address width", addr_width)
        self.counter_width = _check("Counter width", counter_width)
        if 2 ** addr_width < T * tokens_max:
            raise ValueError(f"Address width {addr_width} cannot address the {T * tokens_max} "
                             f"words of a map")
        del self._MustUse__silence

        self.channels = heads_max * head_dim_max  # spike word width
        self.groups_max = -(-head_dim_max // lanes)
        self.kv_bits = bits_for(tokens_max)  # KV[j1, j2] <= N
        self.y_bits = bits_for(tokens_max * head_dim_max)  # Y[n, j] <= N * d
        self.out_layout = data.StructLayout({
            "y": data.ArrayLayout(unsigned(self.y_bits), lanes),
            "mask": unsigned(lanes),
            "t": unsigned(max(1, ceil_log2(T))),
            "token": unsigned(max(1, ceil_log2(tokens_max))),
            "channel": unsigned(max(1, ceil_log2(self.channels))),
            "last": unsigned(1),
        })
        ports = {
            "start": In(1), "clear": In(1), "busy": Out(1), "done": Out(1),
            "heads": In(range(1, heads_max + 1)),
            "head_dim": In(range(1, head_dim_max + 1)),
            "tokens": In(range(1, tokens_max + 1)),
            "steps": In(range(1, T + 1)),
        }
        if len(self.orders) == 2:
            ports["order"] = In(Order)
        for x in "qkv":
            ports[f"{x}_base"] = In(addr_width)
            ports[f"{x}_addr"] = Out(addr_width)
            ports[f"{x}_en"] = Out(1)
            ports[f"{x}_data"] = In(self.channels)
        ports["out"] = Out(stream.Signature(self.out_layout))
        for name in COUNTERS:
            ports[name] = Out(counter_width)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        P, Dm, Hm, Nm, T = (self.lanes, self.head_dim_max, self.heads_max, self.tokens_max,
                            self.T)
        G, E, Cm, A = self.groups_max, self.kv_bits, self.channels, self.head_align
        ka = A.bit_length() - 1

        def units(x):  # a count of head_align channels, in channels
            return Cat(Const(0, ka), x) if ka else x

        has_kv, has_qk = "kv_first" in self.orders, "qk_first" in self.orders

        # -- layer parameters, sampled at start ---------------------------------------------
        heads = Signal.like(self.heads)
        d = Signal.like(self.head_dim)
        N = Signal.like(self.tokens)
        steps = Signal.like(self.steps)
        groups = Signal(range(1, G + 1))  # ceil(d / P)
        d_units = Signal(range(Dm // A + 1))  # d / head_align
        dmask = Signal(Dm)  # the low d bits
        is_qk = Signal()
        base = {x: Signal(self.addr_width, name=f"{x}_base_r") for x in "qkv"}
        ones = Const((1 << Dm) - 1, Dm)
        with m.If(self.start & ~self.busy):
            m.d.sync += [heads.eq(self.heads), d.eq(self.head_dim), N.eq(self.tokens),
                         steps.eq(self.steps), dmask.eq(ones ^ (ones << self.head_dim)[:Dm]),
                         d_units.eq(self.head_dim[ka:])]
            m.d.sync += [base[x].eq(getattr(self, f"{x}_base")) for x in "qkv"]
            with m.Switch(self.head_dim):
                for dd in range(2, Dm + 1):
                    with m.Case(dd):
                        m.d.sync += groups.eq(-(-dd // P))
                with m.Default():
                    m.d.sync += groups.eq(1)
            if has_kv and has_qk:
                m.d.sync += is_qk.eq(self.order == Order.QK_FIRST)
            else:
                m.d.sync += is_qk.eq(has_qk)

        in_kv = Signal()  # state Build-KV
        in_y = Signal()  # state Emit-Y
        stall = Signal()  # an output beat waits for out.ready: the pipeline holds

        # -- item fetch: the next (t, h, n) whose word is read ------------------------------
        # Build-KV reads K[t, n] and V[t, n] per item in the order t, h, n (n innermost);
        # Emit-Y reads Q[t, n] per item in the order n, t, h (h innermost).
        f_n, f_t, f_h = Signal(range(Nm)), Signal(range(T)), Signal(range(Hm))
        f_row = Signal(range(T * Nm))  # t * N + n
        f_tN = Signal(range(T * Nm))  # t * N
        f_shift = Signal(range(max(2, Cm // A)))  # h * d / head_align
        f_more = Signal()
        # the item whose words are at the ports' outputs
        p_n, p_t, p_h = Signal.like(f_n), Signal.like(f_t), Signal.like(f_h)
        p_tN, p_shift = Signal.like(f_tN), Signal.like(f_shift)
        have = Signal()
        fetch = Signal()  # read the words of item f_* now
        consume = Signal()  # item p_* becomes the current item now

        def th(t, h):  # (t, h) -> index of its KV block and seen mask
            return t * Hm + h

        def slice_of(word, shift):  # a head's d bits of a spike word
            return (word >> units(shift))[:Dm] & dmask

        m.d.comb += fetch.eq(f_more & (~have | consume))
        with m.If(fetch):
            m.d.sync += [p_n.eq(f_n), p_t.eq(f_t), p_h.eq(f_h), p_tN.eq(f_tN),
                         p_shift.eq(f_shift), have.eq(1)]
            with m.If(in_kv):  # t, h, n
                with m.If(f_n + 1 < N):
                    m.d.sync += [f_n.eq(f_n + 1), f_row.eq(f_row + 1)]
                with m.Else():
                    m.d.sync += f_n.eq(0)
                    with m.If(f_h + 1 < heads):
                        m.d.sync += [f_h.eq(f_h + 1), f_shift.eq(f_shift + d_units), f_row.eq(f_tN)]
                    with m.Else():
                        m.d.sync += [f_h.eq(0), f_shift.eq(0)]
                        with m.If(f_t + 1 < steps):
                            m.d.sync += [f_t.eq(f_t + 1), f_tN.eq(f_tN + N),
                                         f_row.eq(f_row + 1)]
                        with m.Else():
                            m.d.sync += f_more.eq(0)
            with m.Else():  # n, t, h
                with m.If(f_h + 1 < heads):
                    m.d.sync += [f_h.eq(f_h + 1), f_shift.eq(f_shift + d_units)]
                with m.Else():
                    m.d.sync += [f_h.eq(0), f_shift.eq(0)]
                    with m.If(f_t + 1 < steps):
                        m.d.sync += [f_t.eq(f_t + 1), f_tN.eq(f_tN + N), f_row.eq(f_row + N)]
                    with m.Else():
                        m.d.sync += [f_t.eq(0), f_tN.eq(0)]
                        with m.If(f_n + 1 < N):
                            m.d.sync += [f_n.eq(f_n + 1), f_row.eq(f_n + 1)]
                        with m.Else():
                            m.d.sync += f_more.eq(0)
        with m.Elif(consume):
            m.d.sync += have.eq(0)

        # -- the current item and its operations (one per cycle) ------------------------------
        c_valid = Signal()
        c_n, c_t, c_h = Signal.like(f_n), Signal.like(f_t), Signal.like(f_h)
        c_tN, c_shift = Signal.like(f_tN), Signal.like(f_shift)
        c_q = Signal(Dm)  # Emit-Y: the Q slice, rescanned for every group
        c_v = Signal(Dm)  # Build-KV: the V slice added into KV rows
        c_vpop = Signal(range(Dm + 1))
        c_seen = Signal(Dm)  # Emit-Y: the KV rows of (t, h) that hold counts
        c_rowbase = Signal(range(T * Hm * Dm))
        pend = Signal(Dm)  # set bits still to scan
        g = Signal(range(G))  # channel group
        gP = Signal(range(G * P))  # g * P
        first = Signal()  # the next operation opens a group
        tok = Signal(range(Nm))  # qk_first: the token m of the next operation
        seen = Signal(Dm)  # Build-KV: the KV rows of the current (t, h) written so far
        j, onehot = _lowest(m, pend, "scan")
        pend_rem = Signal(Dm)
        m.d.comb += pend_rem.eq(pend & ~onehot)

        last = Signal()  # the operation closes a group (Emit-Y)
        fin = Signal()  # the operation ends the item
        op = Signal()  # an operation is issued
        with m.If(in_kv):
            m.d.comb += [op.eq(c_valid & (pend != 0)), fin.eq(pend_rem == 0)]
        with m.Else():
            m.d.comb += [op.eq(c_valid),
                         last.eq(Mux(is_qk, tok == N - 1, pend_rem == 0)),
                         fin.eq(last & (g == groups - 1))]
        m.d.comb += consume.eq(have & (~c_valid | fin) & ~stall)

        # slices of the words at the ports (Build-KV and Emit-Y items; qk_first operations)
        ex_shift = Signal.like(f_shift)
        # (a shifter costs ~8 LUTs per head channel bit at head_align 8: kv_first alone slices
        # Q through K's shifter, which Emit-Y leaves idle)
        kv_shift = Mux(in_kv, p_shift, ex_shift)
        q_slice, k_slice, v_slice = Signal(Dm), Signal(Dm), Signal(Dm)
        if has_qk:
            m.d.comb += [q_slice.eq(slice_of(self.q_data, p_shift)),
                         k_slice.eq(slice_of(self.k_data, kv_shift))]
        else:
            qk_word = Signal(Cm)
            m.d.comb += [qk_word.eq(Mux(in_kv, self.k_data, self.q_data)),
                         q_slice.eq(slice_of(qk_word, p_shift)), k_slice.eq(q_slice)]
        m.d.comb += v_slice.eq(slice_of(self.v_data, kv_shift))
        q_pop, k_pop, v_pop = popcount(q_slice), popcount(k_slice), popcount(v_slice)

        with m.If(c_valid & ~stall):
            with m.If(in_kv):
                m.d.sync += pend.eq(pend_rem)
            with m.Elif(last & ~fin):  # next group: rescan Q
                m.d.sync += [g.eq(g + 1), gP.eq(gP + P), pend.eq(c_q), first.eq(1),
                             tok.eq(0)]
            with m.Else():
                m.d.sync += [pend.eq(pend_rem), first.eq(0), tok.eq(tok + 1)]
            with m.If(fin):
                m.d.sync += c_valid.eq(0)
        with m.If(consume):
            m.d.sync += [c_valid.eq(1), c_n.eq(p_n), c_t.eq(p_t), c_h.eq(p_h), c_tN.eq(p_tN),
                         c_shift.eq(p_shift), c_rowbase.eq(th(p_t, p_h) * Dm),
                         g.eq(0), gP.eq(0), first.eq(1), tok.eq(0)]
            with m.If(in_kv):  # a token whose V slice is empty adds nothing
                m.d.sync += [pend.eq(Mux(v_slice != 0, k_slice, 0)), c_v.eq(v_slice),
                             c_vpop.eq(v_pop)]
            with m.Else():
                m.d.sync += [pend.eq(q_slice), c_q.eq(q_slice)]

        # -- map ports -------------------------------------------------------------------------
        m.d.comb += [self.q_addr.eq(base["q"] + f_row), self.q_en.eq(fetch & in_y)]
        for x in "kv":
            addr, en = getattr(self, f"{x}_addr"), getattr(self, f"{x}_en")
            with m.If(in_kv):
                m.d.comb += [addr.eq(base[x] + f_row), en.eq(fetch)]
            with m.Else():  # qk_first: token m of the current item's time step
                m.d.comb += [addr.eq(base[x] + c_tN + tok), en.eq(in_y & is_qk & op & ~stall)]

        # -- the execute stage: one cycle after issue, when the read data is there -------------
        ex_valid, ex_build = Signal(), Signal()
        ex_first, ex_last, ex_empty, ex_seen = Signal(), Signal(), Signal(), Signal()
        ex_g, ex_mask = Signal.like(g), Signal(P)
        ex_q, ex_v, ex_vpop = Signal(Dm), Signal(Dm), Signal.like(c_vpop)
        ex_addr = Signal.like(c_rowbase)
        ex_count_kv, ex_g0 = Signal(), Signal()  # qk_first: count K, V / count coincidences
        # Build-KV: the operation before hits the same row and its write is not in the read
        # data yet (only the last K spike of a token and the first of the next can): forward
        # the increment, V of the operation before, instead of bypassing the whole row
        ex_hazard, ex_prev_seen, ex_prev_v = Signal(), Signal(), Signal(Dm)
        ex_t, ex_n, ex_ch, ex_end = Signal.like(c_t), Signal.like(c_n), Signal(range(Cm)), Signal()
        lane_mask = Signal(P)
        m.d.comb += lane_mask.eq(Cat(*(gP + i < d for i in range(P))))
        with m.If(~stall):
            m.d.sync += [ex_valid.eq(op), ex_build.eq(in_kv), ex_first.eq(first),
                         ex_last.eq(last & in_y), ex_empty.eq(pend == 0),
                         ex_seen.eq((Mux(in_kv, seen, c_seen) & onehot) != 0), ex_g.eq(g),
                         ex_mask.eq(lane_mask),
                         ex_q.eq(c_q), ex_v.eq(c_v), ex_vpop.eq(c_vpop),
                         ex_addr.eq(c_rowbase + j), ex_shift.eq(c_shift),
                         ex_count_kv.eq((c_n == 0) & (g == 0)), ex_g0.eq(g == 0),
                         ex_t.eq(c_t), ex_n.eq(c_n), ex_ch.eq(units(c_shift) + gP),
                         ex_end.eq(fin & ~f_more & ~have),
                         ex_hazard.eq(in_kv & ex_valid & ex_build & (c_rowbase + j == ex_addr)),
                         ex_prev_seen.eq(ex_seen), ex_prev_v.eq(ex_v)]

        ex_add = [Signal(max(E, bits_for(Dm)), name=f"ex_add{i}") for i in range(P)]
        ex_sops = Signal(range(P + Dm + 1))

        # kv_first: the KV scratch and the seen masks
        if has_kv:
            depth = T * Hm * Dm
            kv_mem = memory.Memory(shape=unsigned(Dm * E), depth=depth, init=[], attrs={
                "ram_style": "distributed" if depth <= DISTRIBUTED_DEPTH else "block"})
            m.submodules.kv_mem = kv_mem
            kv_wr = kv_mem.write_port()
            kv_rd = kv_mem.read_port()
            seen_mem = memory.Memory(shape=unsigned(Dm), depth=T * Hm, init=[])
            m.submodules.seen_mem = seen_mem
            seen_wr = seen_mem.write_port()
            seen_rd = seen_mem.read_port(domain="comb")

            kv_read = Signal()
            m.d.comb += [kv_read.eq(op & ~stall & (in_kv | ~is_qk) & (pend != 0)),
                         kv_rd.addr.eq(c_rowbase + j), kv_rd.en.eq(kv_read)]
            # Build-KV: KV[row] = (seen ? KV[row] : 0) + V, one incrementer per column; after a
            # hazard KV[row] = (seen before ? read data : 0) + V before + V
            use_old = Mux(ex_hazard, ex_prev_seen, ex_seen)
            new = [(Mux(use_old, kv_rd.data[i * E:(i + 1) * E], 0) + (ex_hazard & ex_prev_v[i])
                    + ex_v[i])[:E] for i in range(Dm)]
            m.d.comb += [kv_wr.addr.eq(ex_addr), kv_wr.en.eq(ex_valid & ex_build),
                         kv_wr.data.eq(Cat(*new))]
            seen_next = Signal(Dm)
            m.d.comb += [seen_next.eq(seen | Mux(op, onehot, 0)),
                         seen_wr.addr.eq(th(c_t, c_h)), seen_wr.data.eq(seen_next),
                         seen_wr.en.eq(in_kv & c_valid),
                         seen_rd.addr.eq(th(p_t, p_h))]
            with m.If(in_kv & ~stall):
                m.d.sync += seen.eq(Mux(consume & (p_n == 0), 0, seen_next))
            with m.If(consume & in_y):
                m.d.sync += c_seen.eq(seen_rd.data)
            # Emit-Y: the group's P entries of the KV row
            row = kv_rd.data
            padded = Signal(G * P * E)
            m.d.comb += padded.eq(row)
            kv_lanes = padded.word_select(ex_g, P * E)
        # qk_first: A[n, m] by popcount, added where V[m] spikes
        a = popcount(ex_q & k_slice)
        v_padded = Signal(G * P)
        m.d.comb += v_padded.eq(v_slice)
        v_lanes = v_padded.word_select(ex_g, P)

        kv_add = Signal()  # Emit-Y adds KV row entries (kv_first), else A values (qk_first)
        m.d.comb += kv_add.eq(~is_qk)
        for i in range(P):
            if has_kv:
                kv_term = Mux(ex_empty | ~ex_seen, 0, kv_lanes[i * E:(i + 1) * E])
            else:
                kv_term = 0
            qk_term = Mux(v_lanes[i], a, 0) if has_qk else 0
            m.d.comb += ex_add[i].eq(Mux(kv_add, kv_term, qk_term))
        with m.If(ex_build):
            m.d.comb += ex_sops.eq(ex_vpop)
        with m.Elif(kv_add):
            m.d.comb += ex_sops.eq(Mux(ex_empty, 0, popcount(ex_mask)))
        with m.Else():
            m.d.comb += ex_sops.eq(popcount(v_lanes) + Mux(ex_g0, a, 0))

        # accumulate P lanes; a closing operation writes the output register
        acc = [Signal(self.y_bits, name=f"acc{i}") for i in range(P)]
        acc_new = [Signal(self.y_bits, name=f"acc_new{i}") for i in range(P)]
        for i in range(P):
            m.d.comb += acc_new[i].eq(Mux(ex_first, 0, acc[i]) + ex_add[i])
        go = Signal()  # the execute stage completes now
        m.d.comb += [go.eq(ex_valid & ~stall),
                     stall.eq(ex_valid & ex_last & self.out.valid & ~self.out.ready)]
        with m.If(go & ~ex_build & ~ex_last):
            m.d.sync += [acc[i].eq(acc_new[i]) for i in range(P)]
        with m.If(self.out.ready):
            m.d.sync += self.out.valid.eq(0)
        with m.If(go & ex_last):
            pl = self.out.payload
            m.d.sync += [self.out.valid.eq(1), pl.mask.eq(ex_mask), pl.t.eq(ex_t),
                         pl.token.eq(ex_n), pl.channel.eq(ex_ch), pl.last.eq(ex_end)]
            m.d.sync += [pl.y[i].eq(Mux(ex_mask[i], acc_new[i], 0)) for i in range(P)]

        # -- sequencing ------------------------------------------------------------------------
        def start_phase():
            m.d.sync += [f_n.eq(0), f_t.eq(0), f_h.eq(0), f_row.eq(0), f_tN.eq(0),
                         f_shift.eq(0), f_more.eq(1), have.eq(0)]

        idle = Signal()
        with m.FSM(name="attention"):
            with m.State("Idle"):
                m.d.comb += idle.eq(1)
                with m.If(self.start):
                    start_phase()
                    if has_kv and has_qk:
                        with m.If(self.order == Order.QK_FIRST):
                            m.next = "Emit-Y"
                        with m.Else():
                            m.next = "Build-KV"
                    else:
                        m.next = "Build-KV" if has_kv else "Emit-Y"
            if has_kv:
                with m.State("Build-KV"):
                    m.d.comb += in_kv.eq(1)
                    with m.If(~c_valid & ~have & ~f_more):
                        start_phase()
                        m.next = "Emit-Y"
            with m.State("Emit-Y"):
                m.d.comb += in_y.eq(1)
                with m.If(~c_valid & ~have & ~f_more & ~ex_valid & ~self.out.valid):
                    m.d.comb += self.done.eq(1)
                    m.next = "Idle"
        m.d.comb += self.busy.eq(~idle)

        # -- counters ----------------------------------------------------------------------------
        # item slices when an item is consumed; qk_first counts K and V in the operations of
        # its first item and group (n = 0, g = 0), where every K and V word is read once
        spikes = Signal(range(3 * Dm + 1))
        reads = Signal(range(3 * Dm + 1))
        kv_now = Signal()
        m.d.comb += kv_now.eq((consume & in_kv) | (go & ~ex_build & ~kv_add & ex_count_kv))
        m.d.comb += [spikes.eq(Mux(consume & in_y, q_pop, 0) + Mux(kv_now, k_pop + v_pop, 0)),
                     reads.eq(Mux(consume & in_y, d, 0) + Mux(kv_now, 2 * d, 0))]
        cw = self.counter_width
        counts = {
            "sops": Mux(go, ex_sops, 0),
            "spikes_in": spikes,
            "act_reads": reads,
            "busy_cycles": self.busy,
            "stall_cycles": stall,
            "word_reads": self.q_en + self.k_en + self.v_en,
            "scratch_reads": kv_read if has_kv else Const(0, 1),
            "scratch_writes": (ex_valid & ex_build) if has_kv else Const(0, 1),
        }
        for name in COUNTERS:
            m.d.comb += getattr(self, name).eq(
                add_counter(m, f"ctr_{name}", self.clear, counts[name], cw))
        return m


# -- the cycle model -------------------------------------------------------------------------
def attention_cycles(q, k, v, heads: int, order: str, lanes: int) -> int:
    """Busy cycles of one layer (one image, B = 1) without back-pressure: the formula of the
    module docstring on spike maps [1, T, C, H, W] (or [T, C, H, W])."""
    q, k, v = (np.asarray(x).reshape((-1,) + np.asarray(x).shape[-4:])[0] for x in (q, k, v))
    T, C, H, W = q.shape
    d, N = C // heads, H * W
    G = -(-d // lanes)

    def pop(s):  # [T, heads, N] set bits per head slice
        return s.reshape(T, heads, d, N).sum(2).astype(np.int64)

    if order == "kv_first":
        pk, pv, pq = pop(k), pop(v), pop(q)
        build = np.maximum(1, pk * (pv > 0)).sum()
        emit = (G * np.maximum(1, pq)).sum()
        return int(8 + build + emit)
    if order == "qk_first":
        return int(5 + T * heads * N * G * N)
    raise ValueError(f"Order must be 'kv_first' or 'qk_first', not {order!r}")
