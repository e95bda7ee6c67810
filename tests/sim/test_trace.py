"""sim.trace: spike maps rebuilt from a write trace and the first difference from the golden."""

import numpy as np
import pytest

from sim.trace import (
    encode_writes,
    first_difference,
    format_difference,
    parse_trace,
    rebuild_maps,
    write_trace,
)

SEED = 5301


def make_plan():
    """Three maps: one word, three words (70 channels in the map's own 32-bit words) and a
    region reused by a later map."""
    def ins(i, layer, base, C, H, W, T, nw, ww=None):
        m = {"layer": layer, "base": base, "channels": C, "height": H, "width": W, "steps": T,
             "nwords": nw}
        if ww:
            m["word_width"] = ww
        return {"index": i, "kind": "k", "name": f"i{i}", "layers": [layer], "writes": m}

    return {"word_width": 64, "instructions": [
        ins(0, "a_lif", 0, 8, 4, 4, 2, 1),
        {"index": 1, "kind": "ac_store", "name": "i1", "layers": ["conv"], "writes": None},
        ins(2, "b_lif", 64, 70, 3, 2, 2, 3, ww=32),
        ins(3, "c_lif", 0, 16, 2, 2, 2, 1),  # overwrites a_lif's words after it was read
    ]}


def golden_maps(rng):
    return {"a_lif": rng.integers(0, 2, (2, 8, 4, 4), dtype=np.uint8),
            "b_lif": rng.integers(0, 2, (2, 70, 3, 2), dtype=np.uint8),
            "c_lif": rng.integers(0, 2, (2, 16, 2, 2), dtype=np.uint8)}


def roundtrip(tmp_path, plan, writes, image=7):
    path = tmp_path / "trace.txt"
    write_trace(path, {image: writes})
    return rebuild_maps(plan, parse_trace(path)[image])


def test_exact_trace_rebuilds_every_map(tmp_path):
    plan, g = make_plan(), golden_maps(np.random.default_rng(SEED))
    maps = roundtrip(tmp_path, plan, encode_writes(plan, g))
    for layer in g:
        np.testing.assert_array_equal(maps[layer].spikes, g[layer])
        assert maps[layer].written.all()
    d = first_difference(plan, maps, g)
    assert d["layer"] is None and d["equal"] == ["a_lif", "b_lif", "c_lif"]
    assert "all 3 traced spike maps equal" in format_difference(d)


def _flip(writes, plan, layer, t, c, y, x):
    """Flip bit (t, c, y, x) of ``layer`` in a copy of the trace."""
    ins = next(i for i in plan["instructions"] if i["writes"] and i["writes"]["layer"] == layer)
    m = ins["writes"]
    ww = m.get("word_width", plan["word_width"])
    w, b = divmod(c, ww)
    addr = m["base"] + ((t * m["height"] + y) * m["width"] + x) * m["nwords"] + w
    out = list(writes)
    k = next(k for k, (i, a, _) in enumerate(out) if i == ins["index"] and a == addr)
    out[k] = (out[k][0], addr, out[k][2] ^ (1 << b))
    return out


@pytest.mark.parametrize("layer,t,c,y,x", [("a_lif", 1, 5, 2, 3), ("b_lif", 0, 66, 2, 1),
                                            ("b_lif", 1, 3, 0, 0), ("c_lif", 0, 15, 1, 1)])
def test_first_difference_names_layer_channel_position_step(tmp_path, layer, t, c, y, x):
    plan, g = make_plan(), golden_maps(np.random.default_rng(SEED))
    writes = _flip(encode_writes(plan, g), plan, layer, t, c, y, x)
    d = first_difference(plan, roundtrip(tmp_path, plan, writes), g)
    assert (d["layer"], d["t"], d["channel"], d["y"], d["x"]) == (layer, t, c, y, x)
    assert d["rtl"] == 1 - g[layer][t, c, y, x] and d["golden"] == g[layer][t, c, y, x]
    assert d["bits"] == 1 and d["written"]
    text = format_difference(d)
    assert f"layer {layer}" in text and f"time step t={t}" in text
    assert f"channel {c}" in text and f"(y, x) = ({y}, {x})" in text


def test_program_order_and_earliest_position_win(tmp_path):
    """Two corrupted layers: the earlier in program order is named, at its earliest step."""
    plan, g = make_plan(), golden_maps(np.random.default_rng(SEED))
    writes = encode_writes(plan, g)
    writes = _flip(writes, plan, "c_lif", 0, 0, 0, 0)
    writes = _flip(writes, plan, "b_lif", 1, 0, 0, 0)
    writes = _flip(writes, plan, "b_lif", 0, 69, 2, 1)
    d = first_difference(plan, roundtrip(tmp_path, plan, writes), g)
    assert (d["layer"], d["t"], d["channel"], d["y"], d["x"]) == ("b_lif", 0, 69, 2, 1)
    assert d["bits"] == 2 and d["equal"] == ["a_lif"]


def test_missing_write_and_stray_write(tmp_path):
    plan, g = make_plan(), golden_maps(np.random.default_rng(SEED))
    g["a_lif"][0, :, 0, 0] = 1  # the word the RTL will not write is all ones
    writes = [w for w in encode_writes(plan, g) if not (w[0] == 0 and w[1] == 0)]
    d = first_difference(plan, roundtrip(tmp_path, plan, writes), g)
    assert (d["layer"], d["t"], d["y"], d["x"], d["channel"]) == ("a_lif", 0, 0, 0, 0)
    assert not d["written"] and "never wrote" in format_difference(d)
    writes = encode_writes(plan, g) + [(0, 999, 1)]  # past a_lif's 32 words
    d = first_difference(plan, roundtrip(tmp_path, plan, writes), g)
    assert d["layer"] == "a_lif" and d["stray"] == [(0, 999)]
    assert "outside the map" in format_difference(d)


def test_later_image_and_reused_words(tmp_path):
    """Markers split images; c_lif overwriting a_lif's region does not disturb a_lif."""
    plan = make_plan()
    g1, g2 = golden_maps(np.random.default_rng(1)), golden_maps(np.random.default_rng(2))
    path = tmp_path / "t.txt"
    write_trace(path, {3: encode_writes(plan, g1), 4: encode_writes(plan, g2)})
    tr = parse_trace(path)
    assert sorted(tr) == [3, 4]
    for i, g in ((3, g1), (4, g2)):
        assert first_difference(plan, rebuild_maps(plan, tr[i]), g)["layer"] is None


def test_bad_trace_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# image 0\n0 1\n")
    with pytest.raises(ValueError, match="t.txt:2"):
        parse_trace(path)
