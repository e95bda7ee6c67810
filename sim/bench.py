"""The cocotb bench: drives the generated wrapper (``hw.generate``'s ``sim_top.v``).

The wrapper does the per-cycle work (image writes, start, waiting for done, reading logits and
counter slots); Python only issues commands and awaits the wrapper's ``finished`` flag, so a
run costs a few Python awaits per image, not one per cycle.

``TB(dut, layout)``: ``await tb.setup()`` (clock, reset), ``await tb.load(images)`` (fill the
wrapper's image store), ``await tb.run_image(slot)`` -> ``ImageResult``. The cocotb test
``run_job`` runs the job file named by ``SIM_JOB`` (written by ``sim.run``): a range of images
from a ``.npy``, one JSON line of results per image appended to the job's results file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CLOCK_NS = 10


@dataclass
class ImageResult:
    logits: list[int]
    class_index: int
    cycles: int
    counters: list[int]
    timeout: bool


def image_words(images: np.ndarray) -> np.ndarray:
    """uint8 [B, C, H, W] -> the wrapper's pixel words [B, H*W]: channel c at bits 8c..8c+7."""
    a = np.asarray(images)
    if a.ndim != 4 or a.dtype != np.uint8:
        raise ValueError(f"Images must be uint8 [B, C, H, W], not {a.dtype} {list(a.shape)}")
    B, C, H, W = a.shape
    words = np.zeros((B, H * W), dtype=object if C > 7 else np.uint64)
    for c in range(C):
        words += a[:, c].reshape(B, -1).astype(words.dtype) << (8 * c)
    return words


def write_hex(path: str | Path, images: np.ndarray, store_images: int):
    """The ``$readmemh`` file of up to ``store_images`` images, zero-padded to the store size."""
    words = image_words(images)
    if len(words) > store_images:
        raise ValueError(f"{len(words)} images exceed the wrapper's store of {store_images}")
    digits = (8 * images.shape[1] + 3) // 4
    npix = words.shape[1]
    lines = [f"{int(v):0{digits}x}" for v in words.reshape(-1)]
    lines += ["0" * digits] * ((store_images - len(words)) * npix)
    Path(path).write_text("\n".join(lines) + "\n")


def unpack(value: int, count: int, width: int, signed: bool) -> list[int]:
    """``count`` fields of ``width`` bits from a flat integer, field 0 at the low bits."""
    mask = (1 << width) - 1
    out = []
    for i in range(count):
        v = (value >> (i * width)) & mask
        if signed and v >> (width - 1):
            v -= 1 << width
        out.append(v)
    return out


class TB:
    """Clock, reset and the wrapper's commands."""

    def __init__(self, dut, layout: dict, hex_path: str | Path):
        self.dut, self.layout, self.hex_path = dut, layout, Path(hex_path)

    async def setup(self, hdl_clock: bool = False):
        """Start the clock (unless the wrapper runs its own: ``hdl_clock``) and reset."""
        from cocotb.clock import Clock
        from cocotb.triggers import ClockCycles

        d = self.dut
        if not hdl_clock:
            Clock(d.clk, CLOCK_NS, unit="ns").start()
        d.rst.value = 1
        d.load.value = 0
        d.go.value = 0
        d.index.value = 0
        d.tag.value = 0
        await ClockCycles(d.clk, 2)
        d.rst.value = 0
        await ClockCycles(d.clk, 1)

    async def _pulse(self, sig):
        from cocotb.triggers import RisingEdge

        sig.value = 1
        await RisingEdge(self.dut.clk)
        sig.value = 0

    async def load(self, images: np.ndarray):
        """Write up to ``store_images`` images to the hex file and have the wrapper read it."""
        write_hex(self.hex_path, images, self.layout["store_images"])
        await self._pulse(self.dut.load)

    async def run_image(self, slot: int, tag: int = 0) -> ImageResult:
        """Run image ``slot`` of the store (``tag`` names it in the trace); returns when the
        wrapper raises ``finished``."""
        from cocotb.triggers import RisingEdge

        d, L = self.dut, self.layout
        d.index.value = slot
        d.tag.value = tag
        await self._pulse(d.go)
        await RisingEdge(d.finished)
        if int(d.timeout.value):  # no done: logits and counters were never read out
            return ImageResult(logits=[0] * L["classes"], class_index=-1,
                               cycles=int(d.res_cycles.value), counters=[0] * L["slots"],
                               timeout=True)
        logits = unpack(d.res_logits.value.to_unsigned(), L["classes"], L["logit_width"],
                        L["logit_signed"])
        counters = (unpack(d.res_counters.value.to_unsigned(), L["slots"],
                           L["counter_width"], False) if L["slots"] else [])
        return ImageResult(logits=logits, class_index=int(d.res_class.value),
                           cycles=int(d.res_cycles.value), counters=counters,
                           timeout=bool(int(d.timeout.value)))


def _job() -> dict:
    path = os.environ.get("SIM_JOB")
    if not path:
        raise RuntimeError("SIM_JOB is not set: run the bench through sim.run")
    return json.loads(Path(path).read_text())


try:
    import cocotb
except ImportError:  # the helpers above are usable without cocotb
    cocotb = None

if cocotb is not None:
    @cocotb.test()
    async def run_job(dut):
        """Every image of the job, results appended one JSON line per image."""
        job = _job()
        images = np.load(job["images"])
        lo, hi = job["range"]
        tb = TB(dut, job["layout"], job["hex"])
        await tb.setup(job.get("hdl_clock", False))
        store = job["layout"]["store_images"]
        out = Path(job["results"])
        with out.open("a") as fh:
            for c0 in range(lo, hi, store):
                chunk = images[c0:min(hi, c0 + store)]
                await tb.load(chunk)
                for j in range(len(chunk)):
                    t0 = time.perf_counter()
                    # the image's index in the data set (a resumed run simulates a subset)
                    idx = (job["index"][c0 + j] if job.get("index") is not None
                           else job["first"] + c0 + j)
                    r = await tb.run_image(j, idx)
                    rec = {"index": idx, "wall": time.perf_counter() - t0, **asdict(r),
                           "build": job.get("build_digest"), "data": job.get("data")}
                    fh.write(json.dumps(rec) + "\n")
                    fh.flush()
                    assert not r.timeout, f"image {rec['index']}: no done within MAXCYCLES"
