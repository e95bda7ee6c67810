"""A fake accelerator for the host-link tests: the ports of ``hw.top.Accelerator``, a trivial
computation that depends on every pixel, and its numpy reference (``FakeAccel.reference``)."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Module, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out


class FakeAccel(wiring.Component):
    """Sums each channel over the image (one pixel per cycle after ``start``); logit k =
    sum[k % C] - 300 k, class = sum[0] % K, counter slot s = 1000 s + sum[1], cycles = the
    busy cycles."""

    def __init__(self, *, channels=3, size=4, classes=10, logit_width=20, slots=12, extra=5):
        self.C, self.S, self.K, self.LW, self.NS = channels, size, classes, logit_width, slots
        self.extra = extra  # idle cycles after the scan
        npix = size * size
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1),
            "img_addr": In(range(npix)), "img_data": In(8 * channels), "img_we": In(1),
            "class_index": Out(range(max(2, classes))),
            "logit_addr": In(range(max(2, classes))), "logit_data": Out(signed(logit_width)),
            "cnt_addr": In(16), "cnt_data": Out(32), "cycles": Out(32),
        })

    def geometry(self) -> dict:
        return dict(channels=self.C, height=self.S, width=self.S, classes=self.K,
                    logit_width=self.LW, counter_slots=self.NS, counter_width=32,
                    model_id=b"\x12\x34\x56\x78")

    def reference(self, image: np.ndarray) -> dict:
        """image [C, S, S] uint8 -> class, cycles, logits, counters."""
        sums = image.reshape(self.C, -1).astype(np.int64).sum(1)
        logits = [int(sums[k % self.C] - 300 * k) for k in range(self.K)]
        return dict(cls=int(sums[0] % self.K), cycles=self.S * self.S + self.extra + 3,
                    logits=logits,
                    counters=[(1000 * s + int(sums[1 % self.C])) & 0xFFFFFFFF
                              for s in range(self.NS)])

    def elaborate(self, platform):
        m = Module()
        C, npix = self.C, self.S * self.S
        m.submodules.img = img = memory.Memory(shape=8 * C, depth=npix, init=[])
        wp, rp = img.write_port(), img.read_port()
        m.d.comb += [wp.addr.eq(self.img_addr), wp.data.eq(self.img_data),
                     wp.en.eq(self.img_we & ~self.busy)]
        sums = Array(Signal(16, name=f"sum{c}") for c in range(C))
        a = Signal(range(npix + self.extra + 2))
        cyc = Signal(32)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [a.eq(0), cyc.eq(0)] + [s.eq(0) for s in sums]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), rp.addr.eq(a)]
                m.d.sync += [a.eq(a + 1), cyc.eq(cyc + 1)]
                with m.If((a >= 1) & (a <= npix)):
                    m.d.sync += [sums[c].eq(sums[c] + rp.data[8 * c:8 * c + 8])
                                 for c in range(C)]
                with m.If(a == npix + self.extra):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.done.eq(1)]
                m.d.sync += self.cycles.eq(cyc + 2)
                m.next = "IDLE"
        m.d.comb += [self.logit_data.eq(sums[self.logit_addr % C] - 300 * self.logit_addr),
                     self.class_index.eq(sums[0] % self.K)]
        m.d.sync += self.cnt_data.eq(1000 * self.cnt_addr + sums[1 % C])
        return m
