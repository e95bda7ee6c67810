"""The accelerator: the units of hw/, their memories and the sequencer that runs a layer program.

    plan = hw.program.build_plan(CompiledModel.load("models/default.sfm"))
    top = Accelerator(plan)

One image in (host writes into the image memory, then ``start``); logits, class and the
activity counters out (``done``). docs/hw_top.md describes the datapath; ``hw.program``
describes the instructions.

Ports:

- ``start`` (one-cycle pulse), ``busy``, ``done`` (one-cycle pulse).
- ``img_addr``, ``img_data`` (channel c at bits 8c..8c+7), ``img_we``: the image memory's
  host write port (address y * W + x), used while not busy.
- ``class_index``; ``logit_addr`` -> ``logit_data`` (combinational).
- ``cnt_addr`` -> ``cnt_data`` one cycle later: the counter memory (``plan.counter_slots``).
- ``cycles``: cycles from ``start`` to ``done`` of the last image.
- ``trace_valid``, ``trace_instr``, ``trace_addr``, ``trace_data``: every spike-memory write
  (the address is global: bank b's words start at ``plan.bank_offsets[b]``).

Memories are initialised from the plan (weights, biases, thresholds, head weights, the
program). Between images no state survives that the next image could see: the LIF membranes
restart at t = 0, the attention scratch is marked unseen per layer, spike maps and the stream
are written before they are read.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .ac_conv import ACConv
from .attention import SpikeAttention
from .head import Head
from .lif import LIFArray
from .mac_conv import MACConv
from .maxpool import MaxPool
from .planes import PlaneAdder, PlaneReader
from .program import KINDS, Plan, memory_specs
from .residual import ResidualAdder

KIND = {k: i for i, k in enumerate(KINDS)}


def _bits(v: int) -> int:
    return max(1, int(v).bit_length())


class Accelerator(wiring.Component):
    """The whole network on one image; see the module docstring for the ports."""

    def __init__(self, plan: Plan, *, counter_width: int = 32):
        self.plan = plan
        cfg = plan.config
        self.P, self.WW, self.T = plan.lanes, plan.word_width, cfg["T"]
        self.WQ = plan.qkv_width
        self.WMAX = max(self.WW, self.WQ)
        self.S, self.Cin = cfg["img_size"], cfg["in_channels"]
        self.classes, self.D = cfg["num_classes"], cfg["dim"]
        self.cw = counter_width
        wd = plan.widths
        self.slots = plan.counter_slots
        self.trace_instr_width = max(8, _bits(len(plan.instructions)))
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1),
            "img_addr": In(range(self.S * self.S)), "img_data": In(8 * self.Cin),
            "img_we": In(1),
            "class_index": Out(range(max(2, self.classes))),
            "logit_addr": In(range(max(2, self.classes))),
            "logit_data": Out(signed(wd["logit"])),
            "cnt_addr": In(16), "cnt_data": Out(counter_width),
            "cycles": Out(32),
            "trace_valid": Out(1), "trace_instr": Out(self.trace_instr_width),
            "trace_addr": Out(wd["trace_addr"]), "trace_data": Out(self.WMAX),
        })

    # -- the program memory ---------------------------------------------------------------
    def _program(self):
        plan = self.plan
        per = []
        nslots = {}
        for s in self.slots:
            nslots[s["instruction"]] = nslots.get(s["instruction"], 0) + 1
        for ins in plan.instructions:
            f = {k: v for k, v in ins.fields.items() if k != "zero_point"}
            f["kind"] = KIND[ins.kind]
            f["nslots"] = nslots[ins.index]
            f["last_instr"] = int(ins.index == len(plan.instructions) - 1)
            per.append(f)
        names = sorted({k for f in per for k in f})
        layout = data.StructLayout({k: unsigned(max(_bits(f.get(k, 0)) for f in per))
                                    for k in names})
        init = [{k: f.get(k, 0) for k in names} for f in per]
        return layout, init

    def elaborate(self, platform):
        m = Module()
        plan, P, WW, T, cw = self.plan, self.P, self.WW, self.T, self.cw
        wd, mem = plan.widths, plan.memories
        cfg = plan.config
        instrs = plan.instructions
        f = cfg["frac_bits"] or T
        N = (self.S // 4) ** 2
        GD = -(-self.D // P)
        lp = ceil_log2(P)

        def rows(name):
            return len(mem[name])

        def lanes(dst, values):
            """P lane-by-lane assignments (lanes of different widths and signs)."""
            return [dst[p].eq(values[p]) for p in range(P)]

        # -- memories -------------------------------------------------------------------------
        # Vivado and yosys: ram_style for memories with a write port, rom_style for the ROMs
        style = {s.name: {("rom_style" if s.rom else "ram_style"): s.style}
                 for s in memory_specs(plan)}

        def lane_mem(name, width):
            arr = mem[name]
            return memory.Memory(shape=data.ArrayLayout(signed(width), P), depth=len(arr),
                                 init=[[int(v) for v in r] for r in arr], attrs=style[name])

        acc_w = max(wd["conv_acc"], wd["weight"] + 9, wd["bias"], 17)
        m.submodules.weights = w_mem = lane_mem("weights", wd["weight"])
        m.submodules.biases = b_mem = lane_mem("biases", wd["bias"])
        m.submodules.thetas = th_mem = lane_mem("thetas", wd["lif_mem"])
        m.submodules.head_w = hw_mem = memory.Memory(
            shape=signed(wd["head_weight"]), depth=rows("head_weights"),
            init=[int(v) for v in mem["head_weights"]], attrs=style["head_w"])
        m.submodules.head_b = hb_mem = memory.Memory(
            shape=signed(wd["head_bias"]), depth=rows("head_biases"),
            init=[int(v) for v in mem["head_biases"]], attrs=style["head_b"])
        m.submodules.image = img_mem = memory.Memory(
            shape=data.ArrayLayout(unsigned(8), self.Cin), depth=self.S * self.S, init=[],
            attrs=style["image"])
        banks = []
        for b, depth in enumerate(plan.bank_depths):
            banks.append(memory.Memory(shape=WW if b == 0 else self.WQ, depth=depth, init=[],
                                       attrs=style[f"spikes{b}"]))
            m.submodules[f"spikes{b}"] = banks[-1]
        # Spikformer keeps its integer stream as bit planes in bank 0: no stream memory
        m.submodules.stream = st_mem = memory.Memory(
            shape=data.ArrayLayout(signed(wd["stream"]), P), depth=max(1, plan.stream_rows),
            init=[], attrs=style.get("stream", {}))
        m.submodules.counters = cnt_mem = memory.Memory(shape=cw, depth=len(self.slots),
                                                        init=[], attrs=style["counters"])
        layout, init = self._program()
        m.submodules.program = prog_mem = memory.Memory(shape=layout, depth=len(init),
                                                        init=init)

        # -- units ----------------------------------------------------------------------------
        aw = wd["spike_addr"]
        waw, baw = _bits(rows("weights") - 1), _bits(rows("biases") - 1)
        convs = [i for i in instrs if i.kind in ("ac_lif", "ac_store", "ac_add")]
        mac_i = [i for i in instrs if i.kind == "mac"]
        attn_i = [i for i in instrs if i.kind == "attn"]
        lif_i = [i for i in instrs if "lif_groups" in i.fields]
        ci3 = [i.fields["ci"] for i in convs if i.fields["k"] == 3] or [1]
        planes_max = max([i.reads[0].planes for i in convs if i.fields.get("planes")] or [1])
        ac = ACConv(lanes=P, ci_max=max(ci3), co_max=max(i.fields["co"] for i in convs),
                    hw_max=max(i.fields["height"] for i in convs), t_max=T, word_width=WW,
                    weight_width=wd["weight"], bias_width=wd["bias"], acc_width=acc_w,
                    spike_addr_width=aw, weight_addr_width=waw, bias_addr_width=baw,
                    counter_width=cw, planes_max=planes_max)
        if any(i.fields["ci"] > ac.ci_max_1x1 for i in convs):
            raise ValueError("A 1x1 conv has more input channels than the AC engine's window")
        m.submodules.ac = ac
        mac = None
        if mac_i:
            mac = MACConv(lanes=P, ci_max=self.Cin, co_max=max(i.fields["co"] for i in mac_i),
                          hw_max=self.S, acc_width=acc_w, weight_width=wd["weight"],
                          bias_width=wd["bias"], pixel_addr_width=_bits(self.S * self.S - 1),
                          weight_addr_width=waw, bias_addr_width=baw, counter_width=cw)
            m.submodules.mac = mac
        groups = max(i.fields["lif_groups"] for i in lif_i)
        cur_w = max(wd["lif_current"], acc_w, wd["stream"])
        lif = LIFArray(lanes=P, current_width=cur_w, mem_width=wd["lif_mem"], frac_bits=f,
                       groups=groups, time_steps=T, theta_width=wd["lif_mem"],
                       counter_width=cw)
        m.submodules.lif = lif
        adder = ResidualAdder(lanes=P, stream_width=wd["stream"],
                              current_width=max(acc_w, wd.get("writer", 2)),
                              out_width=wd["stream"], counter_width=cw)
        m.submodules.adder = adder
        att = None
        if attn_i:
            a0 = attn_i[0].fields
            d = a0["head_dim"]
            orders = {i.fields["order"] for i in attn_i}
            order = "both" if len(orders) == 2 else ("qk_first" if 1 in orders else "kv_first")
            att = SpikeAttention(heads_max=a0["heads"], head_dim_max=d, tokens_max=N, T=T,
                                 lanes=P, order=order, head_align=min(8, d & -d),
                                 addr_width=aw, counter_width=cw)
            m.submodules.attn = att
        pool = MaxPool(channels=WW, max_height=self.S, max_width=self.S, time_steps=T,
                       addr_width=aw, stride_width=4, counter_width=cw)
        m.submodules.pool = pool
        padd_i = [i for i in instrs if i.kind == "plane_add"]
        padd = None
        if padd_i:
            padd = PlaneAdder(word_width=WW, planes_max=max(i.fields["a_planes"] for i in padd_i),
                              addr_width=aw,
                              positions_max=max(i.fields["positions"] for i in padd_i),
                              words_max=max(i.fields["words"] for i in padd_i),
                              counter_width=cw)
            m.submodules.planes = padd
        head_i = instrs[-1]
        prd = None
        if head_i.reads:  # the head reads bit planes of bank 0
            hf = head_i.fields
            prd = PlaneReader(word_width=WW, lanes=P, planes_max=hf["planes"],
                              value_width=wd["stream"], addr_width=aw,
                              positions_max=hf["positions"], words_max=hf["words"])
            m.submodules.plane_reader = prd
        head = Head(channels=self.D, classes=self.classes, lanes=P, in_width=wd["stream"],
                    acc_width=wd["head_acc"], weight_width=wd["head_weight"],
                    bias_width=wd["head_bias"], logit_width=wd["logit"], counter_width=cw)
        m.submodules.head = head

        # -- the sequencer --------------------------------------------------------------------
        pc = Signal(range(len(instrs) + 1))
        prog_rd = prog_mem.read_port(domain="comb")
        m.d.comb += prog_rd.addr.eq(pc)
        cur = Signal(layout)  # the running instruction's fields
        kind = cur.kind
        go = Signal()  # one-cycle start of the instruction's units
        clear = Signal()  # counters to zero (start of an instruction)
        instr_done = Signal()
        slot = Signal(range(len(self.slots) + 1))
        nsnap = Signal(range(max(2, len(self.slots) + 1)))
        icycles = Signal(cw)
        total = Signal(32)
        snapping = Signal()
        m.d.comb += [self.trace_instr.eq(pc)]

        def is_(*ks):
            return Array(Const(int(KINDS[i] in ks), 1) for i in range(len(KINDS)))[kind]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pc.eq(0), slot.eq(0), total.eq(0)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += [self.busy.eq(1), clear.eq(1)]
                m.d.sync += [cur.eq(prog_rd.data), icycles.eq(0)]
                m.next = "GO"
            with m.State("GO"):
                m.d.comb += [self.busy.eq(1), go.eq(1)]
                m.d.sync += icycles.eq(icycles + 1)
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += icycles.eq(icycles + 1)
                with m.If(instr_done):
                    m.d.sync += nsnap.eq(0)
                    m.next = "SNAP"
            with m.State("SNAP"):
                m.d.comb += [self.busy.eq(1), snapping.eq(1)]
                m.d.sync += [slot.eq(slot + 1), nsnap.eq(nsnap + 1)]
                with m.If(nsnap == cur.nslots - 1):
                    m.d.sync += pc.eq(pc + 1)
                    with m.If(cur.last_instr):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "SETUP"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.d.sync += self.cycles.eq(total + 1)
                m.next = "IDLE"
        with m.If(self.busy):
            m.d.sync += total.eq(total + 1)

        # -- counter snapshot -----------------------------------------------------------------
        sigs, index = [], {}

        def sig(unit, port):
            key = (unit, port)
            if key not in index:
                obj = {"ac": ac, "mac": mac, "lif": lif, "add": adder, "attn": att,
                       "pool": pool, "head": head, "planes": padd}.get(unit)
                index[key] = len(sigs)
                sigs.append(icycles if unit == "seq" else getattr(obj, port))
            return index[key]

        sel = [sig(s["unit"], s["port"]) for s in self.slots]
        sel_rom = Array(Const(i, range(len(sigs))) for i in sel)
        cnt_wr = cnt_mem.write_port()
        cnt_rd = cnt_mem.read_port()
        m.d.comb += [
            cnt_wr.en.eq(snapping), cnt_wr.addr.eq(slot),
            cnt_wr.data.eq(Array(sigs)[sel_rom[slot]]),
            cnt_rd.addr.eq(self.cnt_addr), self.cnt_data.eq(cnt_rd.data),
        ]
        for u in (ac, mac, lif, adder, att, pool, head, padd):
            if u is not None:
                m.d.comb += u.clear.eq(clear)

        # -- memory ports ---------------------------------------------------------------------
        img_w, img_r = img_mem.write_port(), img_mem.read_port()
        m.d.comb += [img_w.addr.eq(self.img_addr), img_w.data.eq(self.img_data),
                     img_w.en.eq(self.img_we & ~self.busy)]
        w_rd, b_rd, th_rd = w_mem.read_port(), b_mem.read_port(), th_mem.read_port()
        sp_rd = [b.read_port() for b in banks]
        sp_wr = [b.write_port() for b in banks]
        sp_r0 = sp_rd[0]
        st_rd, st_wr = st_mem.read_port(), st_mem.write_port()
        hw_rd, hb_rd = hw_mem.read_port(), hb_mem.read_port()

        # start and parameters of the unit of each kind
        m.d.comb += [
            ac.start.eq(go & is_("ac_lif", "ac_store", "ac_add")),
            ac.ci.eq(cur.ci), ac.co.eq(cur.co), ac.k.eq(cur.k), ac.height.eq(cur.height),
            ac.width.eq(cur.width), ac.steps.eq(T),
            ac.spike_base.eq(cur.spike_base), ac.weight_base.eq(cur.weight_base),
            ac.bias_base.eq(cur.bias_base),
            pool.start.eq(go & is_("pool")), pool.height.eq(cur.height),
            pool.width.eq(cur.width), pool.steps.eq(T), pool.in_base.eq(cur.in_base),
            pool.out_base.eq(cur.out_base), pool.stride.eq(cur.stride),
            pool.n_channels.eq(cur.n_channels),
            head.start.eq(go & is_("head")), head.n_channels.eq(self.D),
            head.n_classes.eq(self.classes),
        ]
        if mac is not None:
            zp = mac_i[0].fields["zero_point"]
            m.d.comb += [
                mac.start.eq(go & is_("mac")), mac.ci.eq(self.Cin), mac.co.eq(cur.co),
                mac.height.eq(cur.height), mac.width.eq(cur.width),
                mac.pixel_base.eq(0), mac.weight_base.eq(cur.weight_base),
                mac.bias_base.eq(cur.bias_base),
                img_r.addr.eq(mac.pixel_addr), img_r.en.eq(mac.pixel_en),
                mac.pixel_data.eq(img_r.data),
            ]
            m.d.comb += [mac.zero_point[c].eq(zp[c]) for c in range(self.Cin)]
        if planes_max > 1:
            m.d.comb += [ac.planes.eq(cur.planes), ac.plane_lg.eq(cur.plane_lg)]
        if padd is not None:
            m.d.comb += [padd.start.eq(go & is_("plane_add")), padd.a_base.eq(cur.a_base),
                         padd.a_planes.eq(cur.a_planes), padd.s_base.eq(cur.s_base),
                         padd.out_base.eq(cur.out_base), padd.out_planes.eq(cur.out_planes),
                         padd.words.eq(cur.words), padd.positions.eq(cur.positions)]
        if prd is not None:
            m.d.comb += [prd.start.eq(go & is_("head")), prd.base.eq(cur.in_base),
                         prd.planes.eq(cur.planes), prd.words.eq(cur.words),
                         prd.positions.eq(cur.positions)]
        if att is not None:
            m.d.comb += [att.start.eq(go & is_("attn")), att.heads.eq(cur.heads),
                         att.head_dim.eq(cur.head_dim), att.tokens.eq(cur.tokens),
                         att.steps.eq(T), att.q_base.eq(cur.q_base),
                         att.k_base.eq(cur.k_base), att.v_base.eq(cur.v_base)]
            if len(att.orders) == 2:
                m.d.comb += att.order.eq(cur.order)
            Dw = att.channels
            for x, port in zip("qkv", sp_rd[1:], strict=True):
                m.d.comb += [port.addr.eq(getattr(att, f"{x}_addr")),
                             port.en.eq(getattr(att, f"{x}_en")),
                             getattr(att, f"{x}_data").eq(port.data[:Dw])]

        # weight and bias ports: the MAC engine in "mac", the AC engine otherwise
        with m.If(is_("mac") if mac is not None else Const(0)):
            m.d.comb += [w_rd.addr.eq(mac.weight_addr), w_rd.en.eq(mac.weight_en),
                         b_rd.addr.eq(mac.bias_addr), b_rd.en.eq(mac.bias_en)]
        with m.Else():
            m.d.comb += [w_rd.addr.eq(ac.weight_addr), w_rd.en.eq(ac.weight_en),
                         b_rd.addr.eq(ac.bias_addr), b_rd.en.eq(ac.bias_en)]
        m.d.comb += [ac.weight_data.eq(w_rd.data), ac.bias_data.eq(b_rd.data)]
        if mac is not None:
            m.d.comb += [mac.weight_data.eq(w_rd.data), mac.bias_data.eq(b_rd.data)]
        # bank 0's read port: AC engine, max pool, plane adder or the head's plane reader
        readers = [(is_("pool"), pool.in_addr, pool.in_en)]
        if padd is not None:
            readers.append((is_("plane_add"), padd.rd_addr, padd.rd_en))
        if prd is not None:
            readers.append((is_("head"), prd.rd_addr, prd.rd_en))
        for i, (cond, addr, en) in enumerate(readers):
            with (m.If if i == 0 else m.Elif)(cond):
                m.d.comb += [sp_r0.addr.eq(addr), sp_r0.en.eq(en)]
        with m.Else():
            m.d.comb += [sp_r0.addr.eq(ac.spike_addr), sp_r0.en.eq(ac.spike_en)]
        m.d.comb += [ac.spike_data.eq(sp_r0.data), pool.in_data.eq(sp_r0.data)]
        for u in (padd, prd):
            if u is not None:
                m.d.comb += u.rd_data.eq(sp_r0.data)
        m.d.comb += [hw_rd.addr.eq(head.w_addr), hw_rd.en.eq(head.w_en),
                     head.w_data.eq(hw_rd.data), hb_rd.addr.eq(head.b_addr),
                     hb_rd.en.eq(head.b_en), head.b_data.eq(hb_rd.data)]

        # -- the stream reader: rows 0 .. R-1 in (pos, t, g) order ----------------------------
        R = max(1, plan.stream_rows)
        rd_next = Signal(range(R + 1))  # next row to read
        rd_valid = Signal()  # st_rd.data holds row rd_next - 1
        rd_g = Signal(range(max(2, GD)))
        rd_t = Signal(range(max(2, T)))
        rd_out_g = Signal.like(rd_g)
        rd_out_t = Signal.like(rd_t)
        rd_last = Signal()
        rd_ready = Signal()
        reading = is_("ac_add", "lif") if prd is not None else is_("ac_add", "lif", "head")
        issue = Signal()
        m.d.comb += [issue.eq(reading & ~go & ~clear & (rd_next < R) & (~rd_valid | rd_ready)),
                     st_rd.addr.eq(rd_next), st_rd.en.eq(issue)]
        with m.If(clear):
            m.d.sync += [rd_next.eq(0), rd_valid.eq(0), rd_g.eq(0), rd_t.eq(0)]
        with m.Elif(issue):
            m.d.sync += [rd_next.eq(rd_next + 1), rd_valid.eq(1), rd_out_g.eq(rd_g),
                         rd_out_t.eq(rd_t), rd_last.eq(rd_next == R - 1),
                         rd_g.eq(Mux(rd_g == GD - 1, 0, rd_g + 1))]
            with m.If(rd_g == GD - 1):
                m.d.sync += rd_t.eq(Mux(rd_t == T - 1, 0, rd_t + 1))
        with m.Elif(rd_ready):
            m.d.sync += rd_valid.eq(0)
        d_mask = Signal(P)  # lanes of group g that hold a channel
        m.d.comb += d_mask.eq(Mux(rd_out_g == GD - 1,
                                  (1 << (self.D - (GD - 1) * P)) - 1, (1 << P) - 1))

        # -- the stream writer: rows 0 .. R-1 in order ----------------------------------------
        wr_next = Signal(range(R + 1))
        with m.If(clear):
            m.d.sync += wr_next.eq(0)
        with m.Elif(st_wr.en):
            m.d.sync += wr_next.eq(wr_next + 1)
        m.d.comb += st_wr.addr.eq(wr_next)

        # -- the LIF's input: current beats with their thresholds ------------------------------
        beat = data.StructLayout({
            "current": data.ArrayLayout(signed(cur_w), P), "mask": unsigned(P),
            "group": unsigned(len(lif.i.payload.group)), "t": unsigned(len(lif.i.payload.t)),
            "last": unsigned(1)})
        src = Signal(beat)
        src_valid, src_ready = Signal(), Signal()

        def feed_lif(valid, mask, group, t, last, current):
            """The LIF's source beat from one producer (under its instruction's m.If)."""
            m.d.comb += [src_valid.eq(valid), src.mask.eq(mask), src.group.eq(group),
                         src.t.eq(t), src.last.eq(last)] + lanes(src.current, current)

        # T repeats of the MAC engine's static current
        rep_t = Signal(range(max(2, T)))
        if mac is not None:
            with m.If(is_("mac")):
                mo = mac.o.payload
                feed_lif(mac.o.valid, mo.mask, mo.group, rep_t, mo.last & (rep_t == T - 1),
                         mo.current)
                m.d.comb += mac.o.ready.eq(src_ready & (rep_t == T - 1))
                with m.If(src_valid & src_ready):
                    m.d.sync += rep_t.eq(Mux(rep_t == T - 1, 0, rep_t + 1))
        with m.If(is_("ac_lif")):
            ao = ac.o.payload
            feed_lif(ac.o.valid, ao.mask, ao.group, ao.t, ao.last, ao.current)
            m.d.comb += ac.o.ready.eq(src_ready)
        if att is not None:
            with m.If(is_("attn")):
                ap = att.out.payload
                feed_lif(att.out.valid, ap.mask, ap.channel >> lp, ap.t, ap.last, ap.y)
                m.d.comb += att.out.ready.eq(src_ready)
        with m.If(is_("lif")):
            feed_lif(rd_valid, d_mask, rd_out_g, rd_out_t, rd_last, st_rd.data)
            m.d.comb += rd_ready.eq(src_ready)
        # the threshold fetch stage
        li = lif.i.payload
        accept = src_valid & src_ready
        m.d.comb += [src_ready.eq(~lif.i.valid | lif.i.ready),
                     th_rd.addr.eq(cur.theta_base + src.group), th_rd.en.eq(accept)]
        with m.If(clear):
            m.d.sync += lif.i.valid.eq(0)
        with m.Elif(accept):
            m.d.sync += [lif.i.valid.eq(1), li.current.eq(src.current), li.mask.eq(src.mask),
                         li.group.eq(src.group), li.t.eq(src.t), li.last.eq(src.last)]
        with m.Elif(lif.i.ready):
            m.d.sync += lif.i.valid.eq(0)
        m.d.comb += lanes(li.theta, th_rd.data)

        # -- the spike writer: LIF output bits into words of the output map --------------------
        lo = lif.o.payload
        # groups per word: 2^out_lg (the destination bank's word width / P)
        gmask = Signal(max(1, ceil_log2(self.WMAX // P)))
        bufs = Array(Signal(self.WMAX, name=f"wbuf{t}") for t in range(T))
        pos_addr = Signal(aw + 1)
        word_end = Signal()
        wbits = Signal(self.WMAX)
        m.d.comb += [
            lif.o.ready.eq(1),
            gmask.eq((Const(1, len(gmask) + 1) << cur.out_lg) - 1),
            word_end.eq(((lo.group & gmask) == gmask) | (lo.group == cur.lif_groups - 1)),
            wbits.eq(bufs[lo.t] | (lo.spikes << ((lo.group & gmask) * P))),
        ]
        lif_write = Signal()
        m.d.comb += lif_write.eq(lif.o.valid & word_end)
        with m.If(clear):
            m.d.sync += [pos_addr.eq(0)] + [b.eq(0) for b in bufs]
        with m.Elif(lif.o.valid):
            m.d.sync += bufs[lo.t].eq(Mux(word_end, 0, wbits))
            with m.If((lo.t == T - 1) & (lo.group == cur.lif_groups - 1)):
                m.d.sync += pos_addr.eq(pos_addr + cur.out_nwords)
        lif_addr = Signal(aw)
        m.d.comb += lif_addr.eq(cur.out_base + lo.t * cur.out_plane + pos_addr
                                + (lo.group >> cur.out_lg))
        w_addr, w_data, w_en = Signal(aw), Signal(self.WMAX), Signal()
        writers = [(is_("pool"), pool.out_addr, pool.out_wdata, pool.out_we)]
        if padd is not None:
            writers.append((is_("plane_add"), padd.wr_addr, padd.wr_data, padd.wr_en))
        for i, (cond, addr, wdata, en) in enumerate(writers):
            with (m.If if i == 0 else m.Elif)(cond):
                m.d.comb += [w_addr.eq(addr), w_data.eq(wdata), w_en.eq(en)]
        with m.Else():
            m.d.comb += [w_addr.eq(lif_addr), w_data.eq(wbits), w_en.eq(lif_write)]
        offsets = Array(Const(o, len(self.trace_addr)) for o in plan.bank_offsets)
        bank = Signal(2)
        m.d.comb += bank.eq(Mux(is_("pool"), 0, cur.out_bank) if len(banks) > 1 else 0)
        for b, port in enumerate(sp_wr):
            m.d.comb += [port.addr.eq(w_addr), port.data.eq(w_data),
                         port.en.eq(w_en & (bank == b))]
        m.d.comb += [self.trace_valid.eq(w_en), self.trace_addr.eq(offsets[bank] + w_addr),
                     self.trace_data.eq(w_data)]

        # -- stream store, residual add, head --------------------------------------------------
        # A residual writer's currents enter the stream shifted left by its instruction's shift
        # (the stream counts in the finest writer's unit; model.compiler).
        if any(i.fields.get("shift") for i in instrs):
            writer = [ac.o.payload.current[p] << cur.shift for p in range(P)]
        else:
            writer = ac.o.payload.current
        with m.If(is_("ac_store")):
            m.d.comb += [ac.o.ready.eq(1), st_wr.en.eq(ac.o.valid)]
            m.d.comb += lanes(st_wr.data, writer)
        with m.If(is_("ac_add")):
            ai = adder.i.payload
            m.d.comb += [adder.i.valid.eq(ac.o.valid & rd_valid),
                         ac.o.ready.eq(adder.i.ready & rd_valid),
                         rd_ready.eq(adder.i.ready & ac.o.valid),
                         ai.mask.eq(ac.o.payload.mask), ai.last.eq(ac.o.payload.last),
                         adder.o.ready.eq(1), st_wr.en.eq(adder.o.valid)]
            m.d.comb += (lanes(ai.stream, st_rd.data) + lanes(ai.current, writer)
                         + lanes(st_wr.data, adder.o.payload.sum))
        if prd is not None:
            hi, po = head.i.payload, prd.o.payload
            m.d.comb += [head.i.valid.eq(prd.o.valid), prd.o.ready.eq(head.i.ready),
                         hi.group.eq(po.group), hi.mask.eq(po.mask), hi.last.eq(po.last)]
            m.d.comb += lanes(hi.value, po.value)
        else:
            with m.If(is_("head")):
                hi = head.i.payload
                m.d.comb += [head.i.valid.eq(rd_valid), rd_ready.eq(head.i.ready),
                             hi.group.eq(rd_out_g), hi.mask.eq(d_mask), hi.last.eq(rd_last)]
                m.d.comb += lanes(hi.value, st_rd.data)

        # logits
        logits = Array(Signal(signed(wd["logit"]), name=f"logit{k}")
                       for k in range(self.classes))
        with m.If(head.logit_we):
            m.d.sync += logits[head.logit_addr].eq(head.logit_data)
        m.d.comb += [self.logit_data.eq(logits[self.logit_addr]),
                     self.class_index.eq(head.class_index)]

        # -- the end of an instruction ---------------------------------------------------------
        stream_last = Signal()
        m.d.comb += stream_last.eq(
            st_wr.en & Mux(is_("ac_store"), ac.o.payload.last, adder.o.payload.last))
        m.d.comb += instr_done.eq(
            (lif.o.valid & lo.last & is_("mac", "ac_lif", "lif", "attn"))
            | (stream_last & is_("ac_store", "ac_add"))
            | (pool.done & is_("pool")) | (head.done & is_("head"))
            | ((padd.done & is_("plane_add")) if padd is not None else Const(0)))
        return m
