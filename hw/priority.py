"""Priority encoders for spike vectors: the lowest set bit, and a scanner that yields every set
bit of a wide vector, lowest index first, one per cycle.

``lowest_set(bits)`` is the combinational encoder: a binary tree of 2:1 multiplexers, log2(n)
levels, which ABC packs into LUT6s (about n/2 LUTs and ceil(log2(n) / 2) + 1 LUT levels for
n <= 64; measured numbers in docs/hw_ac_conv.md).

``SpikeScanner`` is the sequential, two-level encoder of the AC engine. A vector of
``width`` = G x B bits is held as G words of B bits in a memory the user owns (the AC engine's
window buffer, a LUT RAM with asynchronous read), together with G flags: which words are
non-zero. Level one picks the lowest flagged word; level two picks the lowest set bit of the
current word, which the scanner copies into a B-bit register and clears bit by bit. So the
scanner itself holds only G + B bits and its cost grows with G + B, not with the width G x B:
a 1536-bit vector (24 words of 64 bits) costs about as much as a 64-bit encoder plus a 24-bit
one. Empty words cost no cycle: they are never flagged.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["lowest_set", "SpikeScanner"]


def lowest_set(bits) -> tuple[Value, Value]:
    """``(any, index)``: whether ``bits`` has a set bit, and the index of the lowest one.

    ``index`` is ceil(log2(len(bits))) bits wide and meaningless when ``any`` is 0. Built as a
    tree: a node over [lo | hi] answers lo's index if lo has a set bit, else hi's, with the
    top index bit = "lo is empty".
    """
    bits = Value.cast(bits)
    n = len(bits)
    if n == 0:
        raise ValueError("A priority encoder needs at least one input bit")
    if n == 1:
        return bits[0], Const(0, 0)
    half = 1 << (ceil_log2(n) - 1)
    lo_any, lo_idx = lowest_set(bits[:half])
    hi_any, hi_idx = lowest_set(bits[half:])
    if len(lo_idx) == 0:
        return lo_any | hi_any, ~lo_any
    return lo_any | hi_any, Cat(Mux(lo_any, lo_idx, hi_idx), ~lo_any)


class SpikeScanner(wiring.Component):
    """One set bit per cycle, lowest index first, of a vector of ``words`` x ``word_width`` bits.

    Bit ``index`` = ``word`` x ``word_width`` + ``bit`` of the vector is bit ``bit`` of word
    ``word``. The words live outside (a memory with a combinational read):
    ``word_addr`` -> ``word_data`` in the same cycle. ``flags`` says which words are non-zero.

    - ``load`` (with ``flags``) starts a new vector; it discards what is left of the current
      one. The new vector's first bit is ``valid`` in the next cycle, so a ``load`` on the cycle
      the last bit of the previous vector is taken chains vectors without a bubble.
    - ``valid``, ``index`` (``word``, ``bit``): the current set bit; ``last``: it is the
      vector's last one; ``empty``: no bit left (``empty`` = not ``valid``).
    - ``next``: take the current bit (clear it); the following one is valid next cycle.

    Throughput one bit per cycle, also across words; latency one cycle from ``load``.

    Level one: ``lowest_set(flags)`` picks the next word; its data is copied into ``cur``
    (B bits) and the word's flag is cleared, flags & (flags - 1). Level two:
    ``lowest_set(cur)``; a taken bit is cleared with cur & (cur - 1), and when it was the word's
    last bit the next flagged word is copied in the same cycle. Critical paths: flags ->
    G-input encoder -> ``word_addr`` -> memory read -> ``cur``, and cur -> cur - 1 (a B-bit
    carry chain) -> "last bit of the word" -> refill select -> ``cur``; ``load`` selects
    between encoders already computed (one multiplexer level before ``word_addr``).
    """

    def __init__(self, *, words: int, word_width: int):
        if not isinstance(words, int) or isinstance(words, bool) or words < 1:
            raise ValueError(f"Word count must be a positive integer, not {words!r}")
        if (not isinstance(word_width, int) or isinstance(word_width, bool) or word_width < 1
                or word_width & (word_width - 1)):
            raise ValueError(f"Word width must be a power of two, not {word_width!r}")
        self.words = words
        self.word_width = word_width
        self.width = words * word_width
        wbits, bbits = max(1, ceil_log2(words)), ceil_log2(word_width)
        super().__init__({
            "load": In(1),
            "flags": In(words),
            "next": In(1),
            "word_addr": Out(wbits),
            "word_data": In(word_width),
            "valid": Out(1),
            "last": Out(1),
            "empty": Out(1),
            "word": Out(wbits),
            "bit": Out(max(1, bbits)),
            "index": Out(wbits + bbits),
        })

    def elaborate(self, platform):
        m = Module()
        G, B = self.words, self.word_width

        flags = Signal(G)  # words not yet copied into cur
        cur = Signal(B)  # the bits left of the current word
        cur_word = Signal.like(self.word)

        # Level two: the current word.
        bit_any, bit_idx = lowest_set(cur)
        rest = Signal(B)  # cur with its lowest bit cleared
        m.d.comb += rest.eq(cur & (cur - 1))
        m.d.comb += [
            self.valid.eq(bit_any),
            self.empty.eq(~bit_any),
            self.word.eq(cur_word),
            self.bit.eq(bit_idx),
            self.index.eq(Cat(bit_idx, cur_word) if B > 1 else cur_word),
            self.last.eq(bit_any & ~rest.any() & ~flags.any()),
        ]

        # Level one: the next flagged word, of the current vector or (on load) of the new one.
        # Both are encoded in parallel and ``load`` selects the results, so ``load`` (late in
        # the cycle in a chained scan) passes one multiplexer only.
        new_any, new_idx = lowest_set(self.flags)
        old_any, old_idx = lowest_set(flags)
        word_any = Mux(self.load, new_any, old_any)
        word_idx = Signal.like(self.word_addr)
        m.d.comb += [word_idx.eq(Mux(self.load, new_idx, old_idx)),
                     self.word_addr.eq(word_idx)]

        take = self.next & bit_any
        refill = self.load | ~bit_any | (take & ~rest.any())
        with m.If(refill):
            # copy the next word in and clear its flag: f & (f - 1)
            m.d.sync += [
                cur.eq(Mux(word_any, self.word_data, 0)),
                cur_word.eq(word_idx),
                flags.eq(Mux(self.load, self.flags & (self.flags - 1), flags & (flags - 1))),
            ]
        with m.Elif(take):
            m.d.sync += cur.eq(rest)
        return m
