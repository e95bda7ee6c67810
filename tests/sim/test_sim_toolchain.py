"""The cocotb benches on real simulators: the stand-in's plumbing and the accelerator itself.

The stand-in (sim.standin, a test double with the accelerator's ports) checks the wrapper, the
bench, sharding and the trace on Verilator and Icarus in seconds; the default model runs a
small ``make sim`` (2 images on Verilator), bit for bit against the golden model.
"""

import json
import shutil

import numpy as np
import pytest

from hw.generate import write_build
from sim.run import build, keep_results, simulate
from sim.standin import LAYER, StandIn
from sim.trace import first_difference, parse_trace, rebuild_maps

pytestmark = pytest.mark.toolchain


def _standin_run(tmp_path, sim):
    if sim == "icarus" and shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog not installed (apt-get install -y iverilog)")
    top = StandIn()
    plan = top.plan()
    write_build(top, plan, tmp_path / "gen", store_images=2)
    bdir = build(tmp_path / "gen", sim)
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)  # 3 store loads in shard 0
    run = simulate(tmp_path / "gen", bdir, sim, images, tmp_path / "run", first=20, shards=2,
                   trace=True)
    return top, plan, images, run


def test_a_stopped_run_resumes_with_the_images_it_lacks(tmp_path):
    """Results of the same build and data are kept; the others are simulated with their own
    indices; another build's, another data set's, a timed-out and a cut-off line are not."""
    top = StandIn()
    write_build(top, top.plan(), tmp_path / "gen", store_images=2)
    bdir = build(tmp_path / "gen", "verilator")
    digest = (bdir / "build.sha256").read_text().strip()
    images = np.random.default_rng(3).integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    run_dir = tmp_path / "run"
    first = simulate(tmp_path / "gen", bdir, "verilator", images[:3], run_dir, first=10,
                     shards=2, data="set A")
    assert [r["build"] for r in first.results] == [digest] * 3
    res = run_dir / "shard1" / "results.jsonl"
    lines = res.read_text().splitlines()
    other = [json.loads(line) for line in lines]
    other[0].update(index=13, build="another build")
    other[-1].update(index=14, data="set B")
    timed_out = dict(other[0], index=15, build=digest, timeout=True)
    res.write_text("\n".join(lines + [json.dumps(r) for r in other + [timed_out]])
                   + '\n{"index": 15, "wa')
    kept = keep_results(run_dir, digest, "set A", range(10, 16))
    assert sorted(kept) == [10, 11, 12]
    todo = [i for i in range(10, 16) if i not in kept]
    second = simulate(tmp_path / "gen", bdir, "verilator", images[[i - 10 for i in todo]],
                      run_dir, first=10, shards=2, index=todo, data="set A")
    assert [r["index"] for r in second.results] == [13, 14, 15]
    ref = top.reference(images)
    both = sorted(second.results + list(kept.values()), key=lambda r: r["index"])
    np.testing.assert_array_equal([r["logits"] for r in both], ref["logits"])
    # the kept results survived the second run's fresh shard folders
    assert sorted(keep_results(run_dir, digest, "set A", range(10, 16))) == list(range(10, 16))
    assert keep_results(run_dir, "another build", "set A", range(10, 16)) == {}
    # ... and a look for another build loses nothing
    assert sorted(keep_results(run_dir, digest, "set A", range(10, 16))) == list(range(10, 16))


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_standin_results_and_trace(tmp_path, sim):
    top, plan, images, run = _standin_run(tmp_path, sim)
    ref = top.reference(images)
    assert [r["index"] for r in run.results] == list(range(20, 25))
    np.testing.assert_array_equal([r["logits"] for r in run.results], ref["logits"])
    np.testing.assert_array_equal([r["class_index"] for r in run.results], ref["classes"])
    np.testing.assert_array_equal([r["counters"] for r in run.results], ref["counters"])
    assert all(r["cycles"] == top.run_cycles() for r in run.results)
    traces = {}
    for k in range(run.shards):
        traces.update(parse_trace(tmp_path / "run" / f"trace_{k}.txt"))
    assert sorted(traces) == list(range(20, 25))
    spikes = top.spikes(images)
    for i, writes in traces.items():
        maps = rebuild_maps(plan, writes)
        d = first_difference(plan, maps, {LAYER: spikes[i - 20]})
        assert d["layer"] is None and d["equal"] == [LAYER]
    # a corrupted golden map is found at the right place
    g = spikes[2].copy()
    g[1, 2, 5, 6] ^= 1
    d = first_difference(plan, rebuild_maps(plan, traces[22]), {LAYER: g})
    assert (d["layer"], d["t"], d["channel"], d["y"], d["x"]) == (LAYER, 1, 2, 5, 6)


def test_default_model_small_make_sim(tmp_path, capsys):
    """`make sim` in small: 2 images, Verilator, bit for bit, with the report."""
    from sim.run import main

    rc = main(["-n", "2", "--first", "5", "--report", str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert "mismatches          0 images" in out, out
    assert rc == 0
    rep = json.loads((tmp_path / "report" / "sim.json").read_text())
    assert rep["images"] == 2 and 0 < rep["utilization"] <= 1
    assert (tmp_path / "report" / "sim.png").stat().st_size > 10_000
    md = (tmp_path / "report" / "sim.md").read_text()
    assert "SOPs/(P x cycles)" in md and "papers' formula" in md


def test_bundled_spikformer_runs_bit_exact(tmp_path, capsys):
    """The trained Spikformer (bit-plane stream, bit-serial convs) on Verilator, 1 image."""
    from sim.run import REPO, main

    model = REPO / "models" / "spikformer.sfm"
    if not model.exists():
        pytest.skip("models/spikformer.sfm is not bundled")
    rc = main(["--model", str(model), "-n", "1", "--first", "3", "--shards", "1",
               "--out", str(tmp_path / "sf")])
    out = capsys.readouterr().out
    assert "mismatches          0 images" in out, out
    assert rc == 0
    res = np.load(tmp_path / "sf" / "run_verilator" / "results.npz")
    assert res["cycles"][0] > 0


def test_default_model_trace_rebuilds_every_golden_map(tmp_path):
    """The real accelerator's write trace, decoded with the plan, equals every golden map."""
    from hw.generate import default_out, generate
    from model.modelfile import CompiledModel
    from sim.run import REPO, debug_image, load_images

    model = REPO / "models" / "default.sfm"
    gen = default_out(model)
    generate(model, gen)
    plan = json.loads((gen / "plan.json").read_text())
    images, _, _ = load_images(None, 1, 9)
    text, d = debug_image(CompiledModel.load(model), plan, gen, build(gen, "verilator"),
                          "verilator", images[0], 9, tmp_path)
    assert d["layer"] is None, text
    assert not d["unchecked"], d["unchecked"]
    written = {i["writes"]["layer"] for i in plan["instructions"] if i["writes"]}
    assert set(d["equal"]) == written and len(written) >= 10
