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

__all__ = ["lowest_set", "one_set", "SpikeScanner"]


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


def one_set(bits) -> Value:
    """Whether ``bits`` has exactly one set bit: a tree of (any, more than one) pairs, log2(n)
    levels of two gates, no carry chain."""
    def tree(b):
        if len(b) == 1:
            return b[0], Const(0)
        half = 1 << (ceil_log2(len(b)) - 1)
        lo_any, lo_many = tree(b[:half])
        hi_any, hi_many = tree(b[half:])
        return lo_any | hi_any, lo_many | hi_many | (lo_any & hi_any)

    bits = Value.cast(bits)
    if len(bits) == 0:
        raise ValueError("A one-bit detector needs at least one input bit")
    any_, many = tree(bits)
    return any_ & ~many


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

    ``preloaded=True`` takes ``load`` out of the memory read and ``valid`` / ``last`` out of
    the carry chain, for a user that chains vectors on ``last`` (the AC engine): the user reads
    the new vector's first word ahead (``first``, the data of its lowest flagged word,
    ``first_word``, its index, ``first_one``, whether it has exactly one set bit, and
    ``flags`` without it), so that ``load`` selects registers and starts no memory read
    (``word_addr`` serves only the current vector's own words); the memory also returns
    ``word_one`` with ``word_data``. ``valid`` and ``last`` are then registers, kept with
    ``cur``: ``one`` (cur has exactly one bit: from ``first_one``, ``word_one``, or
    ``one_set(cur & (cur - 1))`` on a take) and whether a word is left. The index of the next
    word to copy is a register too (encoded when the previous one is copied), so that
    ``word_addr`` comes straight from a register. A vector without a flagged word loads
    ``first`` = 0.
    """

    def __init__(self, *, words: int, word_width: int, preloaded: bool = False):
        if not isinstance(words, int) or isinstance(words, bool) or words < 1:
            raise ValueError(f"Word count must be a positive integer, not {words!r}")
        if (not isinstance(word_width, int) or isinstance(word_width, bool) or word_width < 1
                or word_width & (word_width - 1)):
            raise ValueError(f"Word width must be a power of two, not {word_width!r}")
        self.words = words
        self.word_width = word_width
        self.width = words * word_width
        self.preloaded = bool(preloaded)
        wbits, bbits = max(1, ceil_log2(words)), ceil_log2(word_width)
        first = {"first": In(word_width), "first_word": In(wbits), "first_one": In(1),
                 "word_one": In(1)} if preloaded else {}
        super().__init__({
            "load": In(1),
            "flags": In(words),
            **first,
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
        rest = Signal(B)  # cur with its lowest bit cleared
        m.d.comb += rest.eq(cur & (cur - 1))
        # Level one: the next flagged word of the current vector.
        old_any, old_idx = lowest_set(flags)
        if self.preloaded:
            self._elaborate_preloaded(m, flags, cur, cur_word, rest, old_any, old_idx)
            return m

        # Level two: the current word.
        bit_any, bit_idx = lowest_set(cur)
        self._outputs(m, bit_any, bit_idx, cur_word)
        m.d.comb += self.last.eq(bit_any & ~rest.any() & ~flags.any())

        # Level one of a new vector (on load) too: both are encoded in parallel and ``load``
        # selects the results, so ``load`` (late in the cycle in a chained scan) passes one
        # multiplexer only.
        new_any, new_idx = lowest_set(self.flags)
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

    def _outputs(self, m, valid, bit_idx, cur_word):
        m.d.comb += [
            self.valid.eq(valid),
            self.empty.eq(~valid),
            self.word.eq(cur_word),
            self.bit.eq(bit_idx),
            self.index.eq(Cat(bit_idx, cur_word) if self.word_width > 1 else cur_word),
        ]

    def _elaborate_preloaded(self, m, flags, cur, cur_word, rest, old_any, old_idx):
        # Here ``flags`` holds the words after the next one, whose index (nxt_idx) is a
        # register, so that a refill reads the memory straight from a register.
        valid = Signal()  # cur != 0
        one = Signal()  # cur has exactly one bit
        nxt_any = Signal()  # a word is left after cur
        nxt_idx = Signal.like(self.word_addr)
        _, bit_idx = lowest_set(cur)
        self._outputs(m, valid, bit_idx, cur_word)
        m.d.comb += [self.last.eq(valid & one & ~nxt_any), self.word_addr.eq(nxt_idx)]

        new_any, new_idx = lowest_set(self.flags)
        take = self.next & valid
        with m.If(self.load):
            m.d.sync += [cur.eq(self.first), cur_word.eq(self.first_word),
                         valid.eq(self.first.any()), one.eq(self.first_one),
                         nxt_any.eq(new_any), nxt_idx.eq(new_idx),
                         flags.eq(self.flags & (self.flags - 1))]
        with m.Elif(~valid | (take & one)):
            # copy the next word in; the word after it becomes the next
            m.d.sync += [cur.eq(Mux(nxt_any, self.word_data, 0)), cur_word.eq(nxt_idx),
                         valid.eq(nxt_any), one.eq(nxt_any & self.word_one),
                         nxt_any.eq(old_any), nxt_idx.eq(old_idx), flags.eq(flags & (flags - 1))]
        with m.Elif(take):
            m.d.sync += [cur.eq(rest), one.eq(one_set(rest))]
