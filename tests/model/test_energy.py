"""The energy report CLI: files, totals, the papers' formula and the errors it gives."""

import json

import numpy as np
import pytest

from model import build_model
from model.compiler import compile_model, randomize
from model.energy import default_out_dir, main, sram_pj_per_word
from model.golden import run
from model.modelfile import ModelFileError

N_IMAGES = 4


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A random spikingformer-1-32, six random images, and the CLI run on the first four."""
    tmp = tmp_path_factory.mktemp("energy")
    cm = compile_model(randomize(build_model("spikingformer-1-32"), 5))
    model = tmp / "random.sfm"
    cm.save(model)
    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    data = tmp / "images.npz"
    np.savez(data, images=images, labels=rng.integers(0, 10, 6))
    out = tmp / "report"
    main(["--model", str(model), "--data", str(data), "-n", str(N_IMAGES), "--out", str(out)])
    rep = json.loads((out / "energy.json").read_text())
    return {"cm": cm, "model": model, "data": data, "out": out, "rep": rep,
            "golden": run(cm, images[:N_IMAGES]), "tmp": tmp}


def test_writes_the_report_the_json_and_the_plot(case, capsys):
    out, rep = case["out"], case["rep"]
    assert (out / "energy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "energy.md").read_text()
    assert "N = 64 tokens" in md and "| patch_embed.block2 |" in md and "energy.png" in md
    assert rep["images"] == N_IMAGES and rep["tokens"] == 64
    assert [r["name"] for r in rep["layers"]] == [op["name"] for op in case["cm"].program]


def test_totals_are_the_sums_of_the_layers(case):
    rep = case["rep"]
    for key in ("sops", "macs", "adds", "paper_sops", "paper_macs", "paper_pj", "ours_pj",
                "sram_pj", "compute_pj"):
        assert rep["totals"][key] == pytest.approx(sum(r[key] for r in rep["layers"]),
                                                   rel=1e-12), key
    t = rep["totals"]
    assert t["ratio"] == pytest.approx(t["ours_pj"] / t["paper_pj"])
    for r in rep["layers"]:
        assert r["ours_pj"] == pytest.approx(r["compute_pj"] + r["sram_pj"])
        assert r["paper_pj"] == pytest.approx(0.9 * r["paper_sops"] + 4.6 * r["paper_macs"])


def test_papers_formula_from_independent_counts(case):
    cm, st, rep = case["cm"], case["golden"].stats, case["rep"]
    layers = {r["name"]: r for r in rep["layers"]}
    T = cm.config["T"]
    # A 3x3 spike conv: SOP = rate x T x Co Ci k^2 H W.
    Co, Ci, k, _ = cm.tensors["patch_embed.block2.weight"].shape
    rate = st["patch_embed.block2"]["spikes_in"].mean() / (T * Ci * 32 * 32)
    flops = Co * Ci * k * k * 32 * 32
    assert layers["patch_embed.block2"]["paper_sops"] == pytest.approx(rate * T * flops)
    assert layers["patch_embed.block2"]["formula"] == f"0.9 pJ x {rate:.3f} x {T} x {flops:,}"
    # Attention: 2 N^2 D with N = 64 tokens (8 x 8), D = 32; rate over Q, K and V.
    D = cm.config["dim"]
    q, kk, v = (st[f"block.0.attn.{n}_lif"]["spikes_out"].mean() for n in "qkv")
    rate = (q + kk + v) / (3 * T * D * 64)
    assert layers["block.0.attn.attn"]["flops"] == 2 * 64 * 64 * D
    assert layers["block.0.attn.attn"]["paper_sops"] == pytest.approx(rate * T * 2 * 64 * 64 * D)
    # First layer and head: MACs = FLOPs, once (not times T).
    assert layers["patch_embed.block0"]["paper_macs"] == 4 * 3 * 9 * 32 * 32
    assert layers["head"]["paper_macs"] == D * 10
    # LIF firing rates.
    s = st["patch_embed.block3_lif"]
    assert layers["patch_embed.block3_lif"]["firing_rate"] == pytest.approx(
        s["spikes_out"].mean() / s["neuron_updates"].mean())


def test_activity_counts_are_the_golden_models(case):
    t, res = case["rep"]["totals"], case["golden"]
    assert t["sops"] == pytest.approx(res.total("sops").mean(), rel=1e-12)
    assert t["macs"] == pytest.approx(res.total("macs").mean(), rel=1e-12)
    assert t["sops"] > 0 and t["macs"] > 0


def test_sram_cost_is_log_linear_in_size_and_clamped():
    KB = 1024
    assert sram_pj_per_word(8 * KB) == pytest.approx(10)
    assert sram_pj_per_word(16 * KB) == pytest.approx(15)
    assert sram_pj_per_word(32 * KB) == pytest.approx(20)
    assert sram_pj_per_word(1024 * KB) == pytest.approx(100)
    assert sram_pj_per_word(1 * KB) == 10 and sram_pj_per_word(64 << 20) == 100


def test_default_output_folder_is_named_after_the_model():
    assert default_out_dir("models/x/abc.sfm").parts[-3:] == ("docs", "energy", "abc")


def test_clear_errors(case):
    tmp, model, data = case["tmp"], str(case["model"]), str(case["data"])
    out = str(tmp / "unused")
    with pytest.raises(ValueError, match="-n must be a positive integer, not 0"):
        main(["--model", model, "--data", data, "-n", "0", "--out", out])
    with pytest.raises(FileNotFoundError, match="No compiled model at"):
        main(["--model", str(tmp / "missing.sfm"), "--data", data, "--out", out])
    bad = bytearray(case["model"].read_bytes())
    bad[100] ^= 0xFF
    (tmp / "corrupt.sfm").write_bytes(bytes(bad))
    with pytest.raises(ModelFileError, match="checksum mismatch: the file is corrupt"):
        main(["--model", str(tmp / "corrupt.sfm"), "--data", data, "--out", out])
    (tmp / "text.sfm").write_text("not a model")
    with pytest.raises(ModelFileError, match="not a compiled model file"):
        main(["--model", str(tmp / "text.sfm"), "--data", data, "--out", out])
    np.savez(tmp / "mnist.npz", images=np.zeros((3, 28, 28), np.uint8), labels=np.zeros(3))
    with pytest.raises(ValueError, match=r"not CIFAR-10 images .*\[N, 32, 32, 3\]"):
        main(["--model", model, "--data", str(tmp / "mnist.npz"), "--out", out])
    (tmp / "junk.npz").write_bytes(b"junk" * 10)
    with pytest.raises(ValueError, match="junk.npz: not CIFAR-10 images"):
        main(["--model", model, "--data", str(tmp / "junk.npz"), "--out", out])
    assert not (tmp / "unused").exists()
