"""Host runtime: run images on the accelerator over its UART link (docs/board.md).

    python -m hw.host --port /dev/ttyUSB1 --images data/cifar10_test_256.npz --count 4
    python -m hw.host --port /dev/ttyUSB1 --images a.png b.png --golden models/default.sfm
    python -m hw.host --port /dev/ttyUSB1 --info

Prints class, logits and cycles per image; with ``--golden MODEL`` also the golden model's
class and logits and whether they are equal (exit status 1 if any differs).

The protocol lives here in plain Python (no Amaranth): frame format, commands, error codes,
the encoder and the decoder. ``hw.uart`` builds the gateware side from the same constants.

Frames, both directions::

    SYNC  CMD  LEN_LO LEN_HI  PAYLOAD[LEN]  CRC_HI CRC_LO

SYNC is 0xA5 to the device and 0x5A from it. The CRC (``hw.crc``: CRC-16/CCITT-FALSE) covers
CMD, LEN and PAYLOAD. A reply echoes the command with bit 7 set; an error reply has command
``RSP_ERROR`` and the payload ``[error code, command]``.

The client is sans-I/O: every operation of ``Device`` is a generator that yields ``Write`` and
``Read`` requests, so one implementation runs over a serial port (``run`` with
``SerialTransport``) and inside a cocotb bench (``sim/host``: an async driver, the same
generators).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from dataclasses import dataclass

import numpy as np

from .crc import append_crc, crc16

# -- protocol ---------------------------------------------------------------------------------
VERSION = 1
SYNC_REQ = 0xA5
SYNC_RSP = 0x5A

CMD_INFO = 0x01  # -> Info (INFO_FORMAT)
CMD_LOAD = 0x02  # addr u16, then pixels of C bytes (channel c at byte c) -> next addr u16
CMD_START = 0x03  # -> class u8, cycles u32 (replies when the accelerator is done)
CMD_RESULT = 0x04  # -> class u8, cycles u32, logits (classes x logit_bytes, signed LE)
CMD_COUNTERS = 0x05  # first u16, count u16 -> count x counter_bytes (unsigned LE)
COMMANDS = {CMD_INFO: "info", CMD_LOAD: "load", CMD_START: "start", CMD_RESULT: "result",
            CMD_COUNTERS: "counters"}
RSP_FLAG = 0x80
RSP_ERROR = 0xFF

ERR_CRC = 1  # the frame's CRC does not check
ERR_CMD = 2  # unknown command
ERR_LEN = 3  # length not valid for the command (or above the largest payload)
ERR_TIMEOUT = 4  # a partial frame: no byte for the timeout interval
ERR_RANGE = 5  # pixel address or counter slots beyond the memory
ERRORS = {ERR_CRC: "bad CRC", ERR_CMD: "unknown command", ERR_LEN: "bad length",
          ERR_TIMEOUT: "timeout in a partial frame", ERR_RANGE: "address out of range"}

# version, in_channels, height, width, classes, logit_bytes, counter slots, counter_bytes,
# max payload, clock Hz, baud, first 4 bytes of the model's sha256
INFO_FORMAT = "<BBHHBBHBHII4s"
INFO_SIZE = struct.calcsize(INFO_FORMAT)


def encode(cmd: int, payload: bytes = b"", sync: int = SYNC_REQ) -> bytes:
    """One frame: sync, command, length, payload, CRC."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"Payload of {len(payload)} bytes; a frame holds at most 65535")
    return bytes([sync]) + append_crc(bytes([cmd]) + struct.pack("<H", len(payload)) + payload)


@dataclass
class Frame:
    cmd: int
    payload: bytes


class LinkError(RuntimeError):
    """The link failed: no reply in time, or a reply that does not decode."""


class LinkTimeout(LinkError):
    pass


class DeviceError(RuntimeError):
    """The device answered with an error frame."""

    def __init__(self, code: int, cmd: int):
        self.code, self.cmd = code, cmd
        super().__init__(f"device error {code} ({ERRORS.get(code, 'unknown')}) on command "
                         f"0x{cmd:02x} ({COMMANDS.get(cmd, 'unknown')})")


@dataclass
class Info:
    version: int
    channels: int
    height: int
    width: int
    classes: int
    logit_bytes: int
    counter_slots: int
    counter_bytes: int
    max_payload: int
    clk_hz: int
    baud: int
    model_id: bytes  # first 4 bytes of the model's sha256

    @classmethod
    def parse(cls, payload: bytes) -> Info:
        if len(payload) != INFO_SIZE:
            raise LinkError(f"INFO reply of {len(payload)} bytes, expected {INFO_SIZE}")
        return cls(*struct.unpack(INFO_FORMAT, payload))

    def pack(self) -> bytes:
        return struct.pack(INFO_FORMAT, self.version, self.channels, self.height, self.width,
                           self.classes, self.logit_bytes, self.counter_slots,
                           self.counter_bytes, self.max_payload, self.clk_hz, self.baud,
                           self.model_id)


# -- sans-I/O requests ---------------------------------------------------------------------------
@dataclass
class Write:
    data: bytes


@dataclass
class Read:
    n: int
    timeout: float  # seconds (transports that count cycles convert)


def read_frame(timeout: float = 2.0):
    """Generator: read one reply frame (skips bytes before the sync byte)."""
    skipped = 0
    while True:
        b = yield Read(1, timeout)
        if b[0] == SYNC_RSP:
            break
        skipped += 1
        if skipped > 1 << 16:
            raise LinkError("no sync byte in 65536 bytes")
    head = yield Read(3, timeout)
    n = head[1] | head[2] << 8
    rest = yield Read(n + 2, timeout)
    if crc16(head + rest) != 0:
        raise LinkError(f"reply with a bad CRC (command 0x{head[0]:02x}, {n} bytes)")
    return Frame(head[0], bytes(rest[:n]))


def call(cmd: int, payload: bytes = b"", timeout: float = 2.0, raw: bytes | None = None):
    """Generator: send a request (or the ``raw`` bytes) and return the reply's payload;
    ``DeviceError`` for an error reply."""
    yield Write(encode(cmd, payload) if raw is None else raw)
    f = yield from read_frame(timeout)
    if f.cmd == RSP_ERROR:
        if len(f.payload) != 2:
            raise LinkError(f"error reply of {len(f.payload)} bytes")
        raise DeviceError(f.payload[0], f.payload[1])
    if f.cmd != cmd | RSP_FLAG:
        raise LinkError(f"reply 0x{f.cmd:02x} to command 0x{cmd:02x}")
    return f.payload


@dataclass
class Result:
    cls: int
    cycles: int
    logits: list[int]
    counters: list[int] | None = None


class Device:
    """The accelerator's operations as generators (run them with ``run`` or an async driver)."""

    def __init__(self, timeout: float = 2.0, run_timeout: float = 30.0, chunk: int = 256):
        self.timeout, self.run_timeout, self.chunk = timeout, run_timeout, chunk
        self.info: Info | None = None

    def get_info(self):
        self.info = Info.parse((yield from call(CMD_INFO, timeout=self.timeout)))
        if self.info.version != VERSION:
            raise LinkError(f"device speaks protocol {self.info.version}, host {VERSION}")
        return self.info

    def pixels(self, image: np.ndarray) -> bytes:
        """Image bytes in the device's order: pixel (y, x) at y*W + x, channel c at byte c."""
        inf = self.info
        a = np.asarray(image)
        if a.shape == (inf.height, inf.width, inf.channels) and \
                a.shape != (inf.channels, inf.height, inf.width):
            a = a.transpose(2, 0, 1)
        if a.shape != (inf.channels, inf.height, inf.width):
            raise ValueError(f"The device takes {inf.channels}x{inf.height}x{inf.width} images, "
                             f"not {list(np.asarray(image).shape)}")
        return np.ascontiguousarray(a.transpose(1, 2, 0), dtype=np.uint8).tobytes()

    def load(self, image: np.ndarray):
        if self.info is None:
            yield from self.get_info()
        data = self.pixels(image)
        C = self.info.channels
        per = max(1, min(self.chunk, (self.info.max_payload - 2) // C))
        npix = len(data) // C
        for a in range(0, npix, per):
            k = min(per, npix - a)
            rsp = yield from call(CMD_LOAD, struct.pack("<H", a) + data[a * C:(a + k) * C],
                                  self.timeout)
            if struct.unpack("<H", rsp)[0] != a + k:
                raise LinkError(f"load at {a}: device reports next address "
                                f"{struct.unpack('<H', rsp)[0]}, expected {a + k}")

    def start(self):
        rsp = yield from call(CMD_START, timeout=self.run_timeout)
        cls, cycles = struct.unpack("<BI", rsp)
        return cls, cycles

    def result(self):
        inf = self.info
        rsp = yield from call(CMD_RESULT, timeout=self.timeout)
        cls, cycles = struct.unpack("<BI", rsp[:5])
        lb = inf.logit_bytes
        logits = [int.from_bytes(rsp[5 + k * lb:5 + (k + 1) * lb], "little", signed=True)
                  for k in range(inf.classes)]
        return Result(cls, cycles, logits)

    def counters(self, first: int = 0, count: int | None = None):
        inf = self.info
        count = inf.counter_slots - first if count is None else count
        out = []
        per = max(1, inf.max_payload // inf.counter_bytes)
        for a in range(first, first + count, per):
            k = min(per, first + count - a)
            rsp = yield from call(CMD_COUNTERS, struct.pack("<HH", a, k), self.timeout)
            cb = inf.counter_bytes
            out += [int.from_bytes(rsp[i * cb:(i + 1) * cb], "little") for i in range(k)]
        return out

    def classify(self, image: np.ndarray, counters: bool = False):
        """Load, start, read back: a ``Result``."""
        yield from self.load(image)
        cls, cycles = yield from self.start()
        r = yield from self.result()
        if (r.cls, r.cycles) != (cls, cycles):
            raise LinkError(f"START said class {cls}, {cycles} cycles; RESULT {r.cls}, "
                            f"{r.cycles}")
        if counters:
            r.counters = yield from self.counters()
        return r


# -- drivers ------------------------------------------------------------------------------------
def _check_read(req: Read, got: bytes) -> bytes:
    if len(got) < req.n:
        raise LinkTimeout(f"no reply: {len(got)} of {req.n} bytes in {req.timeout} s")
    return got


def run(gen, transport):
    """Run an operation generator over a blocking transport (``write(bytes)``,
    ``read(n, timeout) -> bytes``, fewer bytes on timeout)."""
    try:
        req = next(gen)
        while True:
            if isinstance(req, Write):
                req = gen.send(transport.write(req.data))
            else:
                req = gen.send(_check_read(req, transport.read(req.n, req.timeout)))
    except StopIteration as stop:
        return stop.value


async def run_async(gen, transport):
    """``run`` for an asynchronous transport (``await write(bytes)``, ``await read(n,
    timeout)``): simulator testbenches."""
    try:
        req = next(gen)
        while True:
            if isinstance(req, Write):
                req = gen.send(await transport.write(req.data))
            else:
                req = gen.send(_check_read(req, await transport.read(req.n, req.timeout)))
    except StopIteration as stop:
        return stop.value


class SerialTransport:
    """A pyserial port (or any ``serial_for_url`` URL, e.g. ``socket://host:port``)."""

    def __init__(self, port: str, baud: int = 115200):
        try:
            import serial
        except ImportError:
            raise SystemExit("pyserial is missing: pip install pyserial") from None
        self.port = serial.serial_for_url(port, baudrate=baud, timeout=0.1)
        self.port.reset_input_buffer()

    def write(self, data: bytes):
        self.port.write(data)
        self.port.flush()

    def read(self, n: int, timeout: float) -> bytes:
        buf = bytearray()
        end = time.monotonic() + timeout
        while len(buf) < n and time.monotonic() < end:
            buf += self.port.read(n - len(buf))
        return bytes(buf)

    def close(self):
        self.port.close()


# -- command line -----------------------------------------------------------------------------
def load_images(paths: list[str], first: int = 0, count: int | None = None):
    """(images [N, C, H, W] uint8, labels or None) from one .npz (``images``, ``labels``) or
    image files (PNG)."""
    if len(paths) == 1 and paths[0].endswith(".npz"):
        try:
            with open(paths[0], "rb") as fh:
                if fh.read(4) != b"PK\x03\x04":  # numpy.savez writes a zip archive
                    raise SystemExit(f"{paths[0]}: not an .npz archive (numpy.savez)")
        except FileNotFoundError:
            raise SystemExit(f"{paths[0]}: no such file") from None
        with np.load(paths[0], allow_pickle=False) as d:
            if "images" not in d.files:
                raise SystemExit(f"{paths[0]}: no array 'images' (found {d.files})")
            imgs = d["images"]
            labels = d["labels"] if "labels" in d.files else None
        if imgs.ndim == 4 and imgs.shape[-1] in (1, 3, 4) and imgs.shape[1] not in (1, 3):
            imgs = imgs.transpose(0, 3, 1, 2)
    else:
        from matplotlib.image import imread

        out = []
        for p in paths:
            try:
                a = imread(p)
            except FileNotFoundError:
                raise SystemExit(f"{p}: no such image file") from None
            except (OSError, SyntaxError) as e:  # Pillow's "not an image" errors
                raise SystemExit(f"{p}: not an image file this can read ({e})") from None
            if a.dtype != np.uint8:
                a = np.round(a * 255).astype(np.uint8)
            if a.ndim == 2:
                a = a[:, :, None]
            out.append(a[:, :, :3].transpose(2, 0, 1))
        imgs, labels = np.stack(out), None
    end = len(imgs) if count is None else first + count
    imgs = np.ascontiguousarray(imgs[first:end]).astype(np.uint8)
    return imgs, (None if labels is None else labels[first:end])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hw.host", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", required=True, help="serial port or pyserial URL")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--images", nargs="+", default=["data/cifar10_test_256.npz"],
                   help="one .npz (images, labels) or image files")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--golden", metavar="MODEL", help="compare with the golden model of MODEL")
    p.add_argument("--counters", action="store_true", help="also read the counter slots")
    p.add_argument("--info", action="store_true", help="print the device's INFO and stop")
    p.add_argument("--timeout", type=float, default=2.0)
    args = p.parse_args(argv)

    tr = SerialTransport(args.port, args.baud)
    dev = Device(timeout=args.timeout)
    info = run(dev.get_info(), tr)
    print(f"device: {info.channels}x{info.height}x{info.width} images, {info.classes} classes, "
          f"{info.counter_slots} counter slots, {info.clk_hz / 1e6:g} MHz, {info.baud} baud, "
          f"model {info.model_id.hex()}")
    if args.info:
        return 0
    imgs, labels = load_images(args.images, args.first, args.count)
    gold = None
    if args.golden:
        from model import golden
        from model.modelfile import CompiledModel

        cm = CompiledModel.load(args.golden)
        if bytes.fromhex(cm.checksum)[:4] != info.model_id:
            print(f"warning: {args.golden} is model {cm.checksum[:8]}, the device runs "
                  f"{info.model_id.hex()}")
        gold = golden.run(cm, imgs)
    bad = 0
    for i, img in enumerate(imgs):
        t0 = time.monotonic()
        r = run(dev.classify(img, counters=args.counters), tr)
        dt = time.monotonic() - t0
        line = (f"image {args.first + i}: class {r.cls}, cycles {r.cycles}, "
                f"logits {r.logits}")
        if labels is not None:
            line += f", label {int(labels[i])}"
        if gold is not None:
            same = r.cls == int(gold.classes[i]) and r.logits == [int(v) for v in gold.logits[i]]
            bad += not same
            line += ", golden " + ("equal" if same else
                                   f"DIFFERS (class {int(gold.classes[i])}, "
                                   f"logits {gold.logits[i].tolist()})")
        print(line + f" ({dt:.2f} s)")
        if r.counters is not None:
            print(f"  counters: {r.counters}")
    tr.close()
    if gold is not None:
        print(f"{len(imgs) - bad} of {len(imgs)} images equal to the golden model")
    return 1 if bad else 0


if __name__ == "__main__":
    from model.cli import run

    run(lambda: sys.exit(main()))  # bad input: one error line
