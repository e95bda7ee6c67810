"""Activity counters: the hardware side of the golden model's event counts.

``EventCounter`` is a component: ``count`` holds the sum of ``inc`` over the cycles since the
last ``clear``. ``add_counter`` instantiates one inside a unit's ``elaborate`` and returns its
``count`` signal; ``popcount`` is the adder tree units use to count set bits (spikes, valid
lanes) in one cycle.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def _check_width(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


class EventCounter(wiring.Component):
    """A ``width``-bit event counter that adds a variable amount each cycle.

    count <= (clear ? 0 : count) + inc, every cycle, modulo 2 ** width.

    ``clear`` restarts the count and still adds the events of its own cycle, so no event is
    lost when a unit clears its counters on the cycle it starts. ``inc`` is ``step_width`` bits
    wide (1 for a plain event strobe). Latency: ``count`` shows an increment one cycle later.
    The default 32 bits wrap silently; pick a width that holds the largest count of an image.
    """

    def __init__(self, *, width: int = 32, step_width: int = 1):
        self._MustUse__silence = True  # a constructor that raises is not "unused"
        self._width = _check_width("Counter width", width)
        self._step_width = _check_width("Step width", step_width)
        if step_width > width:
            raise ValueError(f"Step width {step_width} exceeds the counter width {width}")
        del self._MustUse__silence
        super().__init__({
            "clear": In(1),
            "inc": In(step_width),
            "count": Out(width),
        })

    @property
    def width(self) -> int:
        return self._width

    def elaborate(self, platform):
        m = Module()
        base = self.count & ~self.clear.replicate(self._width)
        m.d.sync += self.count.eq(base + self.inc)
        return m


def add_counter(m: Module, name: str, clear: Value, inc: Value, width: int = 32) -> Value:
    """An ``EventCounter`` named ``name`` in ``m`` adding ``inc`` each cycle; its ``count``."""
    inc = Value.cast(inc)
    if inc.shape().signed:
        raise TypeError(f"Counter {name!r}: increment must be unsigned, not {inc.shape()}")
    ctr = EventCounter(width=width, step_width=max(1, min(len(inc), width)))
    m.submodules[name] = ctr
    m.d.comb += [ctr.clear.eq(clear), ctr.inc.eq(inc)]
    return ctr.count


def popcount(value: Value) -> Value:
    """The number of set bits of ``value``: a balanced adder tree, exact width."""
    value = Value.cast(value)
    terms = [value[i] for i in range(len(value))]
    if not terms:
        return Const(0, unsigned(1))
    width = max(1, len(value).bit_length())
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            pairs.append(terms[-1])
        terms = pairs
    return terms[0].as_unsigned()[:width] if len(terms[0]) > width else terms[0].as_unsigned()
