"""CRC-16/CCITT-FALSE of the host link (docs/board.md): polynomial 0x1021, initial value
0xFFFF, no reflection, no final XOR. ``crc16(b"123456789") == 0x29B1``.

The sender appends the CRC most significant byte first; running the CRC over the data and the
appended CRC gives 0, which is how the receiver (software or gateware) checks a frame.

    crc16(data, crc=0xFFFF) -> int                  # software, any bytes-like
    crc16_byte(crc, byte) -> Amaranth value         # gateware: the CRC after one more byte
"""

from __future__ import annotations

POLY = 0x1021
INIT = 0xFFFF


def _table() -> list[int]:
    out = []
    for b in range(256):
        c = b << 8
        for _ in range(8):
            c = ((c << 1) ^ POLY) if c & 0x8000 else (c << 1)
        out.append(c & 0xFFFF)
    return out


_TABLE = _table()


def crc16(data, crc: int = INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (bytes, bytearray or an iterable of ints 0..255),
    continuing from ``crc``."""
    for b in bytes(data):
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def append_crc(data: bytes) -> bytes:
    """``data`` followed by its CRC, most significant byte first."""
    c = crc16(data)
    return bytes(data) + bytes([c >> 8, c & 0xFF])


def _taps() -> list[tuple[list[int], list[int]]]:
    """Per output bit of one byte step, the CRC bits and data bits it is the XOR of (the
    step is linear over GF(2), so unit vectors give every tap)."""
    out = []
    for i in range(16):
        c_taps = [j for j in range(16) if crc16(bytes([0]), 1 << j) >> i & 1]
        d_taps = [k for k in range(8) if crc16(bytes([1 << k]), 0) >> i & 1]
        out.append((c_taps, d_taps))
    return out


_TAPS = _taps()


def crc16_byte(crc, byte):
    """Amaranth expression: the 16-bit CRC after shifting in the 8-bit ``byte`` (MSB first).

    Combinational: each output bit is the XOR of a fixed set of CRC and data bits (at most
    11 in all), computed here from the software CRC."""
    from amaranth.hdl import Cat

    bits = []
    for c_taps, d_taps in _TAPS:
        x = None
        for t in [crc[j] for j in c_taps] + [byte[k] for k in d_taps]:
            x = t if x is None else x ^ t
        bits.append(x)
    return Cat(*bits)
