"""A stand-in accelerator: a TEST DOUBLE with the ports of ``hw.top.Accelerator``.

It exists to test the simulation plumbing (wrapper, bench, sharding, trace decoding) without
the real accelerator. It computes nothing of the network:

- one instruction (index 0, ``thresh``) scans the image, one pixel per cycle; for every pixel
  and time step t < T it writes a spike word (bit c = pixel channel c >= 128 >> t, so step t
  fires on a lower threshold) to ``base + (t*H + y)*W + x`` of layer ``standin.spikes``
  through the trace port;
- logit k = (sum of channel k % C over the image) - 1000 * k, argmax ties to the lowest;
- counter slots: 0 = spikes_out of ``standin.spikes``, 1 = neuron_updates (C x H x W x T),
  2 = the instruction's cycles.

``reference(images)`` gives the same numbers in numpy; ``plan()`` the matching plan dict.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

LAYER = "standin.spikes"


class StandIn(wiring.Component):
    def __init__(self, *, channels: int = 3, size: int = 8, classes: int = 10, steps: int = 2,
                 word_width: int = 8):
        self.C, self.H, self.W, self.K, self.T = channels, size, size, classes, steps
        self.word_width = word_width
        self.logit_width = 24
        self.addr_width = max(1, (steps * size * size - 1).bit_length())
        npix = size * size
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1),
            "img_addr": In(range(npix)), "img_data": In(8 * channels), "img_we": In(1),
            "class_index": Out(range(classes)), "logit_addr": In(range(classes)),
            "logit_data": Out(signed(self.logit_width)),
            "cnt_addr": In(16), "cnt_data": Out(32), "cycles": Out(32),
            "trace_valid": Out(1), "trace_instr": Out(8),
            "trace_addr": Out(self.addr_width), "trace_data": Out(word_width),
        })

    # -- the model of the double -----------------------------------------------------------
    def plan(self) -> dict:
        C, H, W, T = self.C, self.H, self.W, self.T
        return {
            "config": {"arch": "standin", "in_channels": C, "img_size": H, "T": T,
                       "num_classes": self.K},
            "sha256": "", "lanes": 1, "word_width": self.word_width,
            "image": {"channels": C, "height": H, "width": W, "pixel_width": 8 * C},
            "classes": self.K, "logit_width": self.logit_width,
            "spike_addr_width": self.addr_width,
            "instructions": [{"index": 0, "kind": "thresh", "name": "standin", "layers": [LAYER],
                              "writes": {"layer": LAYER, "base": 0, "channels": C, "height": H,
                                         "width": W, "steps": T, "nwords": 1}}],
            "counters": [
                {"slot": 0, "instruction": 0, "layer": LAYER, "counter": "spikes_out"},
                {"slot": 1, "instruction": 0, "layer": LAYER, "counter": "neuron_updates"},
                {"slot": 2, "instruction": 0, "layer": "standin", "counter": "cycles"}],
        }

    def spikes(self, images: np.ndarray) -> np.ndarray:
        """uint8 [B, T, C, H, W] of images [B, C, H, W]."""
        th = np.array([128 >> t for t in range(self.T)]).reshape(1, -1, 1, 1, 1)
        return (images[:, None].astype(np.int64) >= th).astype(np.uint8)

    def reference(self, images: np.ndarray) -> dict:
        """Logits, classes and counter slots [B, 3] of images uint8 [B, C, H, W]."""
        s = self.spikes(images)
        sums = images.astype(np.int64).sum(axis=(2, 3))  # [B, C]
        k = np.arange(self.K)
        logits = sums[:, k % self.C] - 1000 * k
        B = len(images)
        counters = np.stack([s.reshape(B, -1).sum(1),
                             np.full(B, s[0].size), np.full(B, self.run_cycles())], axis=1)
        return {"logits": logits, "classes": np.argmax(logits, 1), "counters": counters}

    def run_cycles(self) -> int:
        """Cycles of the instruction: a pixel per cycle over T steps, + read latency + argmax."""
        return self.T * self.H * self.W + 3 + self.K

    # -- the gateware ----------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        C, H, W, K, T = self.C, self.H, self.W, self.K, self.T
        npix = H * W
        m.submodules.img = img = Memory(shape=unsigned(8 * C), depth=npix, init=[])
        wp, rp = img.write_port(), img.read_port()
        m.d.comb += [wp.addr.eq(self.img_addr), wp.data.eq(self.img_data),
                     wp.en.eq(self.img_we & ~self.busy)]

        sums = [Signal(range(255 * npix + 1), name=f"sum{c}") for c in range(C)]
        logits = Array(Signal(signed(self.logit_width), name=f"logit{k}") for k in range(K))
        spikes_out = Signal(32)
        cyc = Signal(32)
        best = Signal(range(K))
        t = Signal(range(T))
        pix = Signal(range(npix + 1))
        prev = Signal(range(npix))
        t_prev = Signal(range(T))
        valid = Signal()  # rp.data holds pixel `prev` of step `t_prev`
        k = Signal(range(K + 1))

        m.d.comb += [self.logit_data.eq(logits[self.logit_addr]), self.class_index.eq(best)]
        counters = Array([spikes_out, Signal(32, init=C * npix * T), self.cycles])
        m.d.sync += self.cnt_data.eq(counters[self.cnt_addr[:2]])
        m.d.sync += self.done.eq(0)

        bits = Cat(rp.data[8 * c:8 * c + 8] >= (128 >> t_prev) for c in range(C))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [pix.eq(0), t.eq(0), valid.eq(0), spikes_out.eq(0),
                                 cyc.eq(1)]
                    m.d.sync += [s.eq(0) for s in sums]
                    m.next = "SCAN"
            with m.State("SCAN"):
                # busy comes from the state, combinationally, as in the accelerator: at time 0
                # it is set only by the Verilog's start-up event (Icarus needs sim.run's fix)
                m.d.comb += self.busy.eq(1)
                m.d.sync += cyc.eq(cyc + 1)
                m.d.comb += rp.addr.eq(pix)
                m.d.sync += [valid.eq(pix < npix), prev.eq(pix), t_prev.eq(t)]
                with m.If(pix < npix):
                    m.d.sync += pix.eq(pix + 1)
                with m.Elif(t != T - 1):
                    m.d.comb += rp.addr.eq(0)
                    m.d.sync += [t.eq(t + 1), pix.eq(1), valid.eq(1), prev.eq(0),
                                 t_prev.eq(t + 1)]
                with m.If(valid):
                    m.d.comb += [self.trace_valid.eq(1), self.trace_instr.eq(0),
                                 self.trace_addr.eq((t_prev * H * W) + prev),
                                 self.trace_data.eq(bits)]
                    m.d.sync += spikes_out.eq(spikes_out + sum(bits[c] for c in range(C)))
                    with m.If(t_prev == 0):
                        m.d.sync += [s.eq(s + rp.data[8 * c:8 * c + 8])
                                     for c, s in enumerate(sums)]
                with m.If(~valid & (pix == npix)):
                    m.d.sync += k.eq(0)
                    m.next = "LOGITS"
            with m.State("LOGITS"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += cyc.eq(cyc + 1)
                for kk in range(K):
                    m.d.sync += logits[kk].eq(sums[kk % C] - 1000 * kk)
                m.d.sync += [best.eq(0), k.eq(1)]
                m.next = "ARGMAX"
            with m.State("ARGMAX"):
                m.d.comb += self.busy.eq(1)
                with m.If(k < K):
                    m.d.sync += cyc.eq(cyc + 1)
                    with m.If(logits[k] > logits[best]):
                        m.d.sync += best.eq(k)
                    m.d.sync += k.eq(k + 1)
                with m.Else():
                    m.d.sync += [self.done.eq(1), self.cycles.eq(cyc)]
                    m.next = "IDLE"
        return m
