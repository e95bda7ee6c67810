"""sim.claim: the values entering each block's convs, and the comparison's arithmetic."""

import numpy as np
import pytest

from sim.claim import block_inputs, markdown, verdict


def _compiled(name, **overrides):
    torch = pytest.importorskip("torch")
    from model import build_model, get_config
    from model.compiler import compile_model, randomize
    torch.manual_seed(0)
    return compile_model(randomize(build_model(get_config(name, img_size=8, T=2, **overrides)),
                                   0))


@pytest.mark.parametrize("name,top", [("spikingformer-2-16", 1), ("spikformer-2-16", 6)])
def test_block_inputs_are_spikes_or_the_spike_sum_stream(name, top):
    from model.golden import run

    cm = _compiled(name)
    img = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    vals = block_inputs(cm, run(cm, img, record=True).spikes)
    assert list(vals) == ["block 0 attn", "block 0 mlp", "block 1 attn", "block 1 mlp"]
    hi = max(int(v.max()) for v in vals.values())
    # Spikingformer: binary; Spikformer: 0 .. 2 + 2 x blocks, and above 1 somewhere
    assert 1 <= hi <= top and (hi > 1) == (top > 1)
    assert all(v.min() >= 0 and v.size == 2 * 2 * 16 * 4 for v in vals.values())
    if top > 1:  # the stream grows by at most one per add
        assert [int(v.max()) <= b
                for v, b in zip(vals.values(), (2, 3, 4, 5), strict=True)] == [True] * 4


def _row(arch, pj, cycles, bit_acs=0.0, macs=0.0):
    return {"arch": arch, "name": f"{arch}-2-64", "model": f"{arch}.sfm", "images": 32,
            "sim": "verilator", "mismatched_images": 0, "accuracy_images": 0.5,
            "accuracy_10k": None, "sops": 1e6, "bit_acs": bit_acs, "int_mac_equivalents": macs,
            "macs_run": 1e5, "adds": 1e4, "cycles": cycles, "utilization": 0.9,
            "paper_pj": pj, "paper_mac_pj": 2 * pj if macs else pj, "measured_pj": 3 * pj,
            "measured_compute_pj": pj, "measured_sram_pj": 2 * pj,
            "inputs": {"block 0 attn": [3, 1], "block 0 mlp": [3, 1]}}


def test_verdict_states_the_savings_from_the_numbers():
    sf = _row("spikformer", 100e3, 2e6, bit_acs=3e5, macs=2e5)
    sg = _row("spikingformer", 40e3, 1e6)
    lines = verdict(sf, sg)
    assert "60.0 % less energy per image than Spikformer (40 against 100 nJ)" in lines[0]
    assert "80.0 % less" in lines[1]  # 40 against 200: integer inputs as MACs
    assert "50.0 % less" in lines[4]  # cycles
    assert "1.50 ACs per MAC-equivalent" in lines[5]
    assert "% more" in verdict(sg, sf)[0]
    # where the papers' saving comes from, and what the RTL measures instead
    assert lines[-1].startswith("- So: the papers' saving needs the integer inputs charged as "
                                "MACs (80.0 % less here)")
    assert "1.50 ACs per MAC-equivalent, not a MAC" in lines[-1]
    assert "needs 60.0 % less energy, and 50.0 % less cycles" in lines[-1]
    assert not any("Accuracy on the 10,000" in x for x in lines)  # not known for these rows
    sf["accuracy_10k"], sg["accuracy_10k"] = 0.7, 0.725
    assert "(+2.50 points for Spikingformer)" in verdict(sf, sg)[-2]
    md = markdown([sg, sf])
    assert md.count("| Spikingformer | Spikformer |") == 1 and "25.0 %" in md


def test_a_run_refuses_a_model_file_replaced_since(tmp_path):
    """sim.claim and sim.report read the model a run names; if that file changed after the
    run, its golden model would meet another network's RTL counters."""
    import hashlib
    import json

    from sim.run import run_model

    model = tmp_path / "m.sfm"
    model.write_bytes(_compiled("spikingformer-1-16").to_bytes())
    run_dir = tmp_path / "gen" / "run_verilator"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({"model": str(model), "images": 1}))
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    (tmp_path / "gen" / "manifest.json").write_text(json.dumps({"model_sha256": sha}))
    cm, summary = run_model(run_dir)
    assert summary["images"] == 1 and cm.config["depth"] == 1

    model.write_bytes(_compiled("spikingformer-1-16", heads=2).to_bytes())
    with pytest.raises(ValueError, match="is not the model .* was simulated with"):
        run_model(run_dir)
