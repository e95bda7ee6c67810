"""The golden model: the integer network of a compiled model file, in numpy. The spec.

    result = run(CompiledModel.load(path), images, record=True)
    result.logits, result.classes, result.spikes[name], result.stats[name]["sops"]

Pure functions of integers, vectorised over a batch of images (uint8 [B, 3, H, W] or
[B, H, W, 3]). Values are int64; spike maps are uint8 [B, T, C, H, W].

Products of integers are summed with float64 matrix products: every partial sum is an integer
below 2^53 (the compiler bounds every accumulator to at most 48 bits and the model is checked
on load), so the sums are exact, and they are cast back to int64.

Per layer and per image, ``stats`` counts:
- ``sops``: accumulates triggered by a spike, one per synapse reached (3x3 convs at the border
  reach fewer outputs); attention: K^T V increments and the rows added per Q spike (or Q K^T
  coincidences and the columns added per V spike, in the order the compiler chose);
- ``macs``: multiply-accumulates on non-spike inputs (first layer, head, integer inputs);
  for an integer-input conv (Spikformer) these are MAC-equivalents: non-zero inputs times
  synapses reached, the work a multiplier would do;
- ``bit_acs``: the bit-serial accumulates that do an integer-input conv on the AC engine:
  the input is taken as bit planes (``planes`` = bits of the input's bound), each set bit of
  plane b adds the weight shifted left by b, one per synapse reached;
- ``adds``: other additions (residual stream adds, the head's sum over tokens and time);
- ``spikes_in`` / ``spikes_out``: spikes read / fired; ``neuron_updates``: LIF charge steps;
- ``weight_reads``, ``act_reads``, ``act_writes``: memory accesses in elements: a weight per
  synapse used, a bias per output neuron and a threshold per LIF neuron (each held in a
  register over the neuron's T steps); spike maps, pixels and stream values per element.
  An integer-input conv reads its input as bit planes (``planes`` elements per value) and a
  weight per bit-serial accumulate; ``spikes_in`` counts the set bits of the planes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .modelfile import CompiledModel, ModelFileError

COUNTERS = ("sops", "macs", "adds", "spikes_in", "spikes_out", "neuron_updates",
            "weight_reads", "act_reads", "act_writes", "bit_acs")


@dataclass
class Result:
    logits: np.ndarray  # int64 [B, classes]
    classes: np.ndarray  # int64 [B], argmax with ties to the lowest index
    stats: dict[str, dict[str, np.ndarray]]  # layer -> counter -> int64 [B]
    spikes: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> uint8 [B,T,C,H,W]

    def total(self, counter: str) -> np.ndarray:
        """A counter summed over layers, per image."""
        return sum(s[counter] for s in self.stats.values())


def check_images(images: np.ndarray, cfg: dict) -> np.ndarray:
    """uint8 [B, C, H, W] from [B, C, H, W] or [B, H, W, C] (or one image without B)."""
    a = np.asarray(images)
    C, S = cfg["in_channels"], cfg["img_size"]
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"Images must be [B, {C}, {S}, {S}] or [B, {S}, {S}, {C}], "
                         f"not {list(a.shape)}")
    if a.shape[1:] == (S, S, C) and a.shape[1:] != (C, S, S):
        a = a.transpose(0, 3, 1, 2)
    if a.shape[1:] != (C, S, S):
        raise ValueError(f"Images must be [B, {C}, {S}, {S}] or [B, {S}, {S}, {C}], "
                         f"not {list(np.asarray(images).shape)}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() > 255:
            raise ValueError(f"Images must hold integer pixels 0..255 (uint8), not {a.dtype} "
                             f"in [{a.min()}, {a.max()}]")
        a = a.astype(np.uint8)
    return np.ascontiguousarray(a)


# -- the integer operators ------------------------------------------------------------------
def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer a @ b for |partial sums| < 2^53 (see module docstring)."""
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def ref_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer conv, stride 1, zero padding k // 2. x [..., Ci, H, W] -> [..., Co, H, W]."""
    Co, Ci, k, _ = w.shape
    lead, (H, W) = x.shape[:-3], x.shape[-2:]
    xf = x.reshape(-1, Ci, H, W)
    p = k // 2
    xp = np.pad(xf, ((0, 0), (0, 0), (p, p), (p, p))).astype(np.float64)
    # im2col rows [n, H, W, (Ci, k, k)] in chunks of about 32 MB
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    wm = w.reshape(Co, -1).T.astype(np.float64)
    out = np.empty((xf.shape[0], Co, H, W), dtype=np.int64)
    step = max(1, (32 << 20) // (8 * H * W * Ci * k * k))
    for i in range(0, xf.shape[0], step):
        cols = win[i:i + step].transpose(0, 2, 3, 1, 4, 5).reshape(-1, Ci * k * k)
        y = (cols @ wm).astype(np.int64)  # exact: see module docstring
        out[i:i + step] = y.reshape(-1, H, W, Co).transpose(0, 3, 1, 2)
    out += b.astype(np.int64).reshape(-1, 1, 1)
    return out.reshape(*lead, Co, H, W)


def ref_lif(x: np.ndarray, theta: np.ndarray, f: int) -> np.ndarray:
    """Integer LIF over axis 1 (time) of x [B, T, C, ...]; theta [C].

    charge H = (V + (X << f)) >> 1; fire S = H >= theta; reset V = H (1 - S).
    """
    th = theta.astype(np.int64).reshape((-1,) + (1,) * (x.ndim - 3))
    v = np.zeros_like(x[:, 0], dtype=np.int64)
    out = np.empty(x.shape, dtype=np.uint8)
    for t in range(x.shape[1]):
        h = (v + (x[:, t].astype(np.int64) << f)) >> 1  # charge
        s = h >= th  # fire
        v = np.where(s, 0, h)  # reset
        out[:, t] = s
    return out


def ref_maxpool(x: np.ndarray, k: int = 3, stride: int = 2, pad: int = 1) -> np.ndarray:
    """Max pool on spikes = OR over the window; padding never fires. x [..., H, W]."""
    H, W = x.shape[-2:]
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    widths = [(0, 0)] * (x.ndim - 2) + [(pad, pad), (pad, pad)]
    xp = np.pad(x, widths)
    out = np.zeros(x.shape[:-2] + (Ho, Wo), dtype=x.dtype)
    for dy in range(k):
        for dx in range(k):
            out = np.maximum(out, xp[..., dy:dy + stride * Ho:stride, dx:dx + stride * Wo:stride])
    return out


def ref_attention(q, k, v, heads: int) -> np.ndarray:
    """Y = (Q K^T) V per head on spike maps [B, T, C, H, W] (channel = head * d + j)."""
    B, T, C, H, W = q.shape
    d = C // heads

    def split(s):  # [B, T, heads, N, d]
        return s.reshape(B, T, heads, d, H * W).swapaxes(-1, -2)

    Q, K, V = split(q), split(k), split(v)
    y = _matmul(Q, _matmul(K.swapaxes(-1, -2), V))  # K^T V first: equal integers either way
    return y.swapaxes(-1, -2).reshape(B, T, C, H, W)


def ref_head(stream: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer logits = W . (sum of the stream over time and tokens) + b."""
    total = stream.sum(axis=(1, 3, 4))  # [B, C]
    return _matmul(total, w.T) + b.astype(np.int64)


def argmax_low(logits: np.ndarray) -> np.ndarray:
    """argmax over classes with ties to the lowest class index."""
    return np.argmax(logits, axis=1)  # numpy returns the first maximum


# -- activity counts ------------------------------------------------------------------------
def _fanout(H: int, W: int, k: int) -> np.ndarray:
    """How many outputs of a stride-1, pad-k//2 conv each input position reaches."""
    p = k // 2
    rows = np.array([min(H - 1, y + p) - max(0, y - p) + 1 for y in range(H)])
    cols = np.array([min(W - 1, x + p) - max(0, x - p) + 1 for x in range(W)])
    return np.outer(rows, cols)


def _per_image(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1).sum(1, dtype=np.int64)


def _counts(B: int, **given) -> dict[str, np.ndarray]:
    st = {c: np.zeros(B, dtype=np.int64) for c in COUNTERS}
    for k, v in given.items():
        st[k] = st[k] + v
    return st


def input_planes(in_bound) -> int:
    """Bit planes of a non-negative integer input bounded by ``in_bound``."""
    return max(1, int(in_bound).bit_length())


def conv_counts(x: np.ndarray, w_shape: tuple, source: str,
                planes: int = 1) -> dict[str, np.ndarray]:
    """Counts of a conv on x ([B, T, Ci, H, W] spikes or integers, [B, Ci, H, W] pixels).

    Integer inputs (``source`` "int", values 0 .. 2^planes - 1) run bit-serially: see the
    module docstring.
    """
    Co, Ci, k, _ = w_shape
    B, (H, W) = x.shape[0], x.shape[-2:]
    fan = _fanout(H, W, k)
    if source == "pixels":  # computed once, reused for all T steps
        taps = Co * Ci * int(fan.sum())  # valid (input, output) pairs
        return _counts(B, macs=taps, weight_reads=taps + Co * H * W, act_reads=Ci * H * W)
    nz = (x != 0).sum(axis=2)  # [B, T, H, W] non-zero inputs per position
    reach = _per_image(nz * fan) * Co
    if source == "spikes":
        return _counts(B, sops=reach, spikes_in=_per_image(x),
                       weight_reads=reach + Co * H * W, act_reads=x[0].size)
    xi = x.astype(np.int64)
    if xi.min(initial=0) < 0 or xi.max(initial=0) >> planes:
        raise ModelFileError(f"Integer conv input outside 0..{2 ** planes - 1} "
                             f"({planes} bit planes): [{xi.min()}, {xi.max()}]")
    bits = sum((xi >> b) & 1 for b in range(planes))  # set bits per value
    bit_acs = _per_image(bits.sum(axis=2) * fan) * Co
    return _counts(B, macs=reach, bit_acs=bit_acs, spikes_in=_per_image(bits),
                   weight_reads=bit_acs + Co * H * W, act_reads=planes * x[0].size)


def lif_counts(s: np.ndarray) -> dict[str, np.ndarray]:
    """Counts of a LIF layer that fired s [B, T, C, ...]: one threshold read per neuron (held
    over its T steps), one charge step and one spike-bit write per neuron and step."""
    n = s[0].size
    return _counts(s.shape[0], spikes_out=_per_image(s), neuron_updates=n,
                   weight_reads=n // s.shape[1], act_writes=n)


def maxpool_counts(x: np.ndarray, out: np.ndarray) -> dict[str, np.ndarray]:
    return _counts(x.shape[0], act_reads=x[0].size, act_writes=out[0].size)


def attention_counts(q, k, v, heads: int, order: str) -> dict[str, np.ndarray]:
    """SOPs of spike attention in the compiler's order, per image.

    kv_first: K^T V takes one increment per (token, K spike, V spike) of a head, then each Q
    spike adds a row of d integers. qk_first: Q K^T takes one increment per coincident (q, k)
    spike pair, then each V spike adds a column of N integers.
    """
    B, T, C, H, W = q.shape
    d, N = C // heads, H * W

    def split(s):
        return s.reshape(B, T, heads, d, N).astype(np.int64)

    Q, K, V = split(q), split(k), split(v)
    if order == "kv_first":
        sops = (K.sum(3) * V.sum(3)).reshape(B, -1).sum(1) + _per_image(Q) * d
    elif order == "qk_first":
        sops = (Q.sum(4) * K.sum(4)).reshape(B, -1).sum(1) + _per_image(V) * N
    else:
        raise ModelFileError(f"Unknown attention order {order!r}")
    return _counts(B, sops=sops, spikes_in=_per_image(Q) + _per_image(K) + _per_image(V),
                   act_reads=3 * q[0].size)


def add_counts(out: np.ndarray) -> dict[str, np.ndarray]:
    n = out[0].size
    return _counts(out.shape[0], adds=n, act_reads=2 * n, act_writes=n)


def head_counts(x: np.ndarray, w_shape: tuple) -> dict[str, np.ndarray]:
    """The sum over time and tokens (adds), then K x C multiply-accumulates."""
    K, C = w_shape
    return _counts(x.shape[0], adds=x[0].size - C, macs=K * C, weight_reads=K * C + K,
                   act_reads=x[0].size)


# -- the interpreter ------------------------------------------------------------------------
def run(cm: CompiledModel, images: np.ndarray, record: bool = False) -> Result:
    """Run the layer program on a batch of images."""
    cfg = cm.config
    T, f = cfg["T"], cfg["frac_bits"] or cfg["T"]
    img = check_images(images, cfg)
    B = img.shape[0]
    vals: dict[str, np.ndarray] = {}
    stats: dict[str, dict[str, np.ndarray]] = {}
    spikes: dict[str, np.ndarray] = {}
    logits = None
    for op in cm.program:
        for key in ("bits", "mem_bits"):
            if op.get(key, 0) > 52:
                raise ModelFileError(f"{op['name']}: {op[key]}-bit values exceed the golden "
                                     f"model's exact range")
        name, kind = op["name"], op["op"]
        tens = {role: cm.tensor(key) for role, key in op.get("tensors", {}).items()}
        ins = [img if i == "image" else vals[i] for i in op.get("inputs", [])]
        if kind == "conv":
            x, w, b = ins[0], tens["weight"], tens["bias"]
            if op["input"] == "pixels":
                zp = tens["zero_point"].astype(np.int64).reshape(1, -1, 1, 1)
                out = ref_conv(x.astype(np.int64) - zp, w, b)
            else:
                out = ref_conv(x.astype(np.int64), w, b)
            if op.get("shift"):  # a residual writer: its sum in the stream's finer unit
                out = out << op["shift"]
            st = conv_counts(x, w.shape, op["input"],
                             input_planes(op["in_bound"]) if op["input"] == "int" else 1)
        elif kind == "lif":
            x = ins[0]
            if x.ndim == 4:  # a static current (first layer): the same at every step
                x = np.broadcast_to(x[:, None], (B, T) + x.shape[1:])
            out = ref_lif(x, tens["theta"], f)
            st = lif_counts(out)
        elif kind == "maxpool":
            out = ref_maxpool(ins[0], op["kernel"], op["stride"], op["pad"])
            st = maxpool_counts(ins[0], out)
        elif kind == "attention":
            out = ref_attention(*ins, op["heads"])
            st = attention_counts(*ins, op["heads"], op["order"])
        elif kind == "add":
            a, b = ins
            if a.ndim == 4:
                a = np.broadcast_to(a[:, None], b.shape)
            out = a.astype(np.int64) + b.astype(np.int64)
            st = add_counts(out)
        elif kind == "head":
            logits = out = ref_head(ins[0], tens["weight"], tens["bias"])
            st = head_counts(ins[0], tens["weight"].shape)
        else:
            raise ModelFileError(f"Layer {name!r}: unknown op {kind!r}")
        vals[name] = out
        if record and kind in ("lif", "maxpool"):
            spikes[name] = out
        stats[name] = st
        # Drop values no later layer reads (keeps memory flat for large batches).
        _release(cm.program, op, vals)
    if logits is None:
        raise ModelFileError("The program has no head layer")
    return Result(logits=logits, classes=argmax_low(logits), stats=stats, spikes=spikes)


def _release(program, op, vals):
    idx = program.index(op)
    later = {i for o in program[idx + 1:] for i in o.get("inputs", [])}
    for k in [k for k in vals if k not in later]:
        del vals[k]


def run_batched(cm: CompiledModel, images: np.ndarray, batch_size: int = 64,
                progress: bool = False) -> Result:
    """``run`` over a large set in batches (no spike maps), concatenating the results."""
    from tqdm import tqdm

    img = check_images(images, cm.config)
    parts = [run(cm, img[i:i + batch_size])
             for i in tqdm(range(0, len(img), batch_size), disable=not progress,
                           desc="golden", unit="batch")]
    stats = {n: {c: np.concatenate([p.stats[n][c] for p in parts]) for c in COUNTERS}
             for n in parts[0].stats}
    return Result(logits=np.concatenate([p.logits for p in parts]),
                  classes=np.concatenate([p.classes for p in parts]), stats=stats)
