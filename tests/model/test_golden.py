"""torch integer mode == numpy golden model, bit for bit, through the compiled file."""

import numpy as np
import pytest
import torch

from model import build_model, get_config
from model.compiler import compile_model, randomize
from model.golden import run
from model.modelfile import CompiledModel

CONFIGS = [
    ("spikingformer-1-32", {}),
    ("spikingformer-2-64", {}),
    ("spikingformer-1-64", {"heads": 1}),  # head_dim 64 = tokens: Q K^T first
    ("spikingformer-1-48", {"T": 2, "weight_bits": 6, "heads": 3}),
    ("spikingformer-1-384", {}),  # the paper's width (12 heads)
    ("spikingformer-1-32", {"residual_shift": 2}),  # writers shifted into the stream
    ("spikingformer-2-64", {"residual_shift": 3, "weight_bits": 4}),
    ("spikformer-1-32", {}),  # integer (spike-sum) inputs: MAC layers
    ("spikformer-2-64", {}),
]


def images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def compiled(name, seed=0, **overrides):
    model = randomize(build_model(get_config(name, **overrides)), seed)
    cm = compile_model(model)
    return model, CompiledModel.from_bytes(cm.to_bytes())  # through the file format


@pytest.mark.parametrize("name,overrides", CONFIGS, ids=[c[0] + str(c[1]) for c in CONFIGS])
def test_torch_integer_mode_equals_golden(name, overrides):
    model, cm = compiled(name, seed=7, **overrides)
    n = 2 if model.cfg.dim >= 256 else 4
    img = images(n, seed=11)
    res = run(cm, img, record=True)
    with torch.no_grad():
        _, rec = model(torch.from_numpy(img).double(), mode="int", record=True)
    assert np.array_equal(rec["logits"].numpy(), res.logits)
    assert set(rec) - {"logits"} == set(res.spikes)
    active = 0
    for layer, spikes in res.spikes.items():
        assert spikes.shape == tuple(rec[layer].shape), layer
        assert np.array_equal(rec[layer].numpy(), spikes), f"first mismatch in {layer}"
        active += 0.02 < spikes.mean() < 0.98
    # The random models are not silent: the comparison covers real activity.
    assert active >= len(res.spikes) * 0.8
    assert len(set(res.classes.tolist())) >= 1


def test_attention_order_follows_head_size():
    _, cm = compiled("spikingformer-1-64", heads=4)
    assert cm.op("block.0.attn.attn")["order"] == "kv_first"
    _, cm = compiled("spikingformer-1-64", heads=1)
    assert cm.op("block.0.attn.attn")["order"] == "qk_first"


def test_sops_equal_an_independent_count_from_torch_spike_maps():
    model, cm = compiled("spikingformer-2-64", seed=3)
    img = images(3, seed=5)
    res = run(cm, img)
    with torch.no_grad():
        _, rec = model(torch.from_numpy(img).double(), mode="int", record=True)
    cfg = model.cfg
    for op in cm.program:
        if op["op"] != "conv" or op["input"] != "spikes":
            continue
        spk = rec[op["inputs"][0]].double()  # [B, T, C, H, W]
        Co, k = op["shape"][0], op["kernel"]
        B, T, C, H, W = spk.shape
        # Every output neuron sums the spikes in its receptive field: one SOP each.
        ones = torch.ones(1, C, k, k, dtype=torch.float64)
        reach = torch.nn.functional.conv2d(spk.reshape(B * T, C, H, W), ones, padding=k // 2)
        expected = (reach.reshape(B, -1).sum(1) * Co).long().numpy()
        assert np.array_equal(res.stats[op["name"]]["sops"], expected), op["name"]
    for j in range(cfg.depth):
        a = f"block.{j}.attn"
        q, k, v = (rec[f"{a}.{n}_lif"].double().flatten(3) for n in ("q", "k", "v"))
        d = cfg.head_dim
        Kh = k.reshape(*k.shape[:2], cfg.heads, d, -1)
        Vh = v.reshape(*v.shape[:2], cfg.heads, d, -1)
        # K^T V increments: pairs of K and V spikes on the same token; then d adds per Q spike.
        pairs = torch.einsum("bthin,bthjn->bt", Kh, Vh).sum(1)
        expected = (pairs + q.sum((1, 2, 3)) * d).long().numpy()
        assert np.array_equal(res.stats[f"{a}.attn"]["sops"], expected)


def test_integer_inputs_count_mac_equivalents_and_bit_serial_acs():
    """Spikformer's 1x1 convs on the spike-sum stream: from torch's spike maps, the stream is
    the sum of the spike maps added into it; MAC-equivalents are its non-zero values times Co,
    bit-serial ACs its set bits (over the bound's planes) times Co."""
    model, cm = compiled("spikformer-2-64", seed=3)
    img = images(3, seed=5)
    res = run(cm, img)
    with torch.no_grad():
        _, rec = model(torch.from_numpy(img).double(), mode="int", record=True)
    stream = rec["patch_embed.rpe_lif"].long() + rec["patch_embed.maxpool3"].long()
    bound, seen = 2, 0
    for j in range(model.cfg.depth):
        a, m = f"block.{j}.attn", f"block.{j}.mlp"
        for name, add in ((f"{a}.q_linear", f"{a}.proj_lif"), (f"{m}.fc1_linear",
                                                                f"{m}.fc2_lif")):
            users = [name] + ([f"{a}.k_linear", f"{a}.v_linear"] if "attn" in name else [])
            planes = bound.bit_length()
            assert 0 <= int(stream.min()) and int(stream.max()) <= bound
            bits = sum((stream >> b) & 1 for b in range(planes))
            for u in users:
                op = cm.op(u)
                Co = op["shape"][0]
                st = res.stats[u]
                assert op["input"] == "int" and op["in_bound"] == bound
                assert np.array_equal(st["macs"], (stream != 0).flatten(1).sum(1).numpy() * Co)
                assert np.array_equal(st["bit_acs"], bits.flatten(1).sum(1).numpy() * Co)
                assert np.array_equal(st["spikes_in"], bits.flatten(1).sum(1).numpy())
                assert np.array_equal(st["act_reads"], [planes * stream[0].numel()] * 3)
                assert np.array_equal(st["weight_reads"],
                                      st["bit_acs"] + Co * stream[0, 0, 0].numel())
                assert st["sops"].sum() == 0
                seen += int(st["bit_acs"].sum() > st["macs"].sum() > 0)
            stream = stream + rec[add].long()
            bound += 1
    assert seen >= 4  # values >= 3 occur: more bit-serial ACs than MAC-equivalents


def test_first_layer_counts_macs_once_and_spike_totals_match():
    model, cm = compiled("spikingformer-1-32", seed=2)
    img = images(2, seed=1)
    res = run(cm, img, record=True)
    op = cm.op("patch_embed.block0")
    Co, Ci, _, _ = cm.tensors[op["tensors"]["weight"]].shape
    # 3x3 pad 1 over 32x32: interior taps 9, edges fewer: sum of valid taps = (3*32-2)^2
    assert res.stats["patch_embed.block0"]["macs"].tolist() == [Co * Ci * (3 * 32 - 2) ** 2] * 2
    assert res.stats["patch_embed.block0"]["sops"].sum() == 0
    for name, s in res.spikes.items():
        if name in res.stats and cm.op(name)["op"] == "lif":
            assert np.array_equal(res.stats[name]["spikes_out"], s.reshape(2, -1).sum(1))


def test_head_ties_go_to_the_lowest_class():
    from model.golden import argmax_low
    logits = np.array([[3, 7, 7, 1], [5, 5, 5, 5], [-2, -1, -1, -3]])
    assert argmax_low(logits).tolist() == [1, 0, 1]


def test_images_of_the_wrong_shape_are_refused():
    _, cm = compiled("spikingformer-1-16")
    with pytest.raises(ValueError, match=r"Images must be \[B, 3, 32, 32\]"):
        run(cm, np.zeros((2, 3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="integer pixels 0..255"):
        run(cm, np.full((1, 3, 32, 32), 300))
    hwc = images(2, 0).transpose(0, 2, 3, 1)
    assert np.array_equal(run(cm, hwc).logits, run(cm, images(2, 0)).logits)
