"""cocotb test: the host runtime (hw.host) against the simulated board (hw.board.SimBoard).

The UART runs at ``divisor`` clock cycles per bit inside the design; the host's own UART is
gateware too, so this bench exchanges bytes with two FIFOs, never bits. The job file
(``HOST_SIM_JOB``, written by ``sim.host.run``) holds the images; the results file gets, per
image, class, cycles, logits and counters, and the answers to a set of bad frames.
"""

import json
import os
import struct

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge

from hw import host

CYCLES_PER_SECOND = 100_000  # a host timeout of t seconds waits t * this many cycles


class SimTransport:
    """``hw.host`` transport over SimBoard's byte FIFOs (drive and sample on falling edges)."""

    def __init__(self, dut):
        self.dut = dut

    async def write(self, data: bytes):
        dut = self.dut
        for b in data:
            await FallingEdge(dut.clk)
            while not int(dut.h_wrdy.value):
                await FallingEdge(dut.clk)
            dut.h_wdata.value = b
            dut.h_we.value = 1
            await FallingEdge(dut.clk)
            dut.h_we.value = 0

    async def read(self, n: int, timeout: float) -> bytes:
        dut = self.dut
        buf = bytearray()
        while len(buf) < n:
            if not int(dut.h_rvalid.value):
                rise = RisingEdge(dut.h_rvalid)
                fired = await First(rise, ClockCycles(dut.clk,
                                                      int(timeout * CYCLES_PER_SECOND)))
                if fired is not rise and not int(dut.h_rvalid.value):
                    break
            await FallingEdge(dut.clk)
            buf.append(int(dut.h_rdata.value))
            dut.h_re.value = 1
            await FallingEdge(dut.clk)
            dut.h_re.value = 0
        return bytes(buf)

    async def quiet(self, cycles: int):
        await ClockCycles(self.dut.clk, cycles)


async def error_of(tr, gen):
    """The error code the device answers (0 when it answers normally)."""
    try:
        await host.run_async(gen, tr)
        return 0
    except host.DeviceError as e:
        return e.code


@cocotb.test()
async def host_over_uart(dut):
    job = json.loads(open(os.environ["HOST_SIM_JOB"]).read())
    images = np.load(job["images"])
    Clock(dut.clk, 10, unit="ns").start()
    dut.h_we.value = 0
    dut.h_re.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    tr = SimTransport(dut)
    dev = host.Device(chunk=job.get("chunk", 64))
    info = await host.run_async(dev.get_info(), tr)
    out = {"info": info.__dict__ | {"model_id": info.model_id.hex()}, "images": [],
           "errors": {}}
    for img in images:
        r = await host.run_async(dev.classify(img, counters=job.get("counters", True)), tr)
        out["images"].append(r.__dict__)
        dut._log.info(f"class {r.cls}, cycles {r.cycles}, logits {r.logits}")

    # bad frames: each gets an error reply, and the device keeps working
    good = host.encode(host.CMD_RESULT)
    bad_crc = good[:-1] + bytes([good[-1] ^ 0x10])
    timeout_s = 1.5 * job["timeout_cycles"] / CYCLES_PER_SECOND
    errs = out["errors"]
    errs["bad_crc"] = await error_of(tr, host.call(host.CMD_RESULT, raw=bad_crc))
    errs["unknown_command"] = await error_of(tr, host.call(0x42))
    errs["bad_length"] = await error_of(tr, host.call(host.CMD_START, b"\x00"))
    errs["counters_out_of_range"] = await error_of(
        tr, host.call(host.CMD_COUNTERS, struct.pack("<HH", info.counter_slots, 1)))
    errs["load_out_of_range"] = await error_of(
        tr, host.call(host.CMD_LOAD, struct.pack("<H", info.height * info.width)
                      + bytes(info.channels)))
    await tr.write(host.encode(host.CMD_LOAD, bytes(8))[:5])  # truncated, then silence
    f = await host.run_async(host.read_frame(timeout_s + 1), tr)
    errs["truncated"] = f.payload[0] if f.cmd == host.RSP_ERROR else 0
    await tr.write(bytes([host.SYNC_REQ, host.CMD_LOAD, 0xFF, 0xFF]) + bytes(40))
    f = await host.run_async(host.read_frame(timeout_s + 1), tr)
    errs["oversized"] = f.payload[0] if f.cmd == host.RSP_ERROR else 0
    last = await host.run_async(dev.result(), tr)
    out["after_errors"] = last.__dict__
    again = await host.run_async(dev.classify(images[0]), tr)
    out["first_again"] = again.__dict__
    with open(job["results"], "w") as fh:
        json.dump(out, fh, indent=1)
