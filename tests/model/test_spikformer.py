"""model/spikformer.py: shapes, the reference function in float mode, exact integers in int mode."""

import pytest
import torch

from model import build_model, get_config, layers, quant
from model.layers import Run
from model.lif import lif
from model.spikformer import Spikformer

CFG = "spikformer-1-16"


def lively(model, seed=0):
    """Random eval-mode BN statistics and affine parameters that keep every layer firing."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 2 + 1)
                m.bias.copy_(torch.rand(n, generator=g) * 0.8 + 0.2)
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.3)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def images(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g).float()


def reference_forward(model, img):
    """The authors' Spikformer forward, step by step in their [T, B, N, C] token layout,
    with the model's own layers: input repeated T times, every conv run for every step."""
    cfg = model.cfg
    T, heads = cfg.T, cfg.heads
    pe = model.patch_embed
    x = (img - pe.zero_point.reshape(1, -1, 1, 1)) * pe.pixel_scale.reshape(1, -1, 1, 1)
    x = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)

    def conv_bn(conv, bn, x):
        y = bn(conv(x.flatten(0, 1)))
        return y.reshape(T, -1, *y.shape[1:])

    def pool(mp, x):
        y = mp(x.flatten(0, 1))
        return y.reshape(T, -1, *y.shape[1:])

    x = lif(conv_bn(pe.proj_conv, pe.proj_bn, x))
    x = lif(conv_bn(pe.proj_conv1, pe.proj_bn1, x))
    x = pool(pe.maxpool2, lif(conv_bn(pe.proj_conv2, pe.proj_bn2, x)))
    x = pool(pe.maxpool3, lif(conv_bn(pe.proj_conv3, pe.proj_bn3, x)))
    x = lif(conv_bn(pe.rpe_conv, pe.rpe_bn, x)) + x
    x = x.flatten(-2).transpose(-1, -2)  # [T, B, N, C]
    B, N, C = x.shape[1:]

    def linear_bn(linear, bn, x):
        y = linear(x.flatten(0, 1))
        return bn(y.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, -1)

    def split(s):
        return s.reshape(T, B, N, heads, C // heads).permute(0, 1, 3, 2, 4)

    for blk in model.block:
        a = blk.attn
        q = split(lif(linear_bn(a.q_linear, a.q_bn, x)))
        k = split(lif(linear_bn(a.k_linear, a.k_bn, x)))
        v = split(lif(linear_bn(a.v_linear, a.v_bn, x)))
        y = ((q @ k.transpose(-2, -1)) * 0.125) @ v
        y = lif(y.transpose(2, 3).reshape(T, B, N, C), 0.5)
        x = x + lif(linear_bn(a.proj_linear, a.proj_bn, y))
        m = blk.mlp
        h = lif(linear_bn(m.fc1_linear, m.fc1_bn, x))
        x = x + lif(linear_bn(m.fc2_linear, m.fc2_bn, h))
    return model.head(x.mean(2).mean(0))


def test_float_shapes_and_records():
    model = lively(build_model(CFG))
    out, rec = model(images(2), record=True)
    assert out.shape == (2, 10)
    assert model(images(2)).shape == (2, 10)
    names = ["patch_embed.proj_lif", "patch_embed.proj_lif1", "patch_embed.proj_lif2",
             "patch_embed.maxpool2", "patch_embed.proj_lif3", "patch_embed.maxpool3",
             "patch_embed.rpe_lif"]
    names += [f"block.0.attn.{n}_lif" for n in ("q", "k", "v", "attn", "proj")]
    names += ["block.0.mlp.fc1_lif", "block.0.mlp.fc2_lif"]
    assert list(rec) == names
    D, T = 16, 4
    assert rec["patch_embed.proj_lif"].shape == (2, T, D // 8, 32, 32)
    assert rec["patch_embed.maxpool2"].shape == (2, T, D // 2, 16, 16)
    assert rec["patch_embed.maxpool3"].shape == (2, T, D, 8, 8)
    assert rec["block.0.mlp.fc1_lif"].shape == (2, T, 4 * D, 8, 8)
    for name, s in rec.items():
        assert s.dtype == torch.int8 and set(s.unique().tolist()) <= {0, 1}, name
        assert s.any(), f"{name} never fires: the test would prove little"


def test_float_mode_is_the_reference_function():
    model = lively(build_model(get_config("spikformer-2-16", heads=2)))
    img = images(3)
    with torch.no_grad():
        assert torch.allclose(model(img), reference_forward(model, img), atol=1e-5)


def test_bad_input_and_arch():
    model = build_model(CFG)
    with pytest.raises(ValueError, match=r"Images must be \[B, 3, 32, 32\], not \[2, 3, 16, 16\]"):
        model(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="Mode must be 'float' or 'int', not 'half'"):
        model(torch.zeros(1, 3, 32, 32), mode="half")
    with pytest.raises(ValueError, match="Spikformer needs arch 'spikformer'"):
        Spikformer(get_config("spikingformer-1-16"))


def test_residual_stream_after_tokenizer_is_0_1_2():
    model = lively(build_model(CFG))
    for mode, dtype in (("float", torch.float32), ("int", torch.float64)):
        tokens = model.patch_embed(images(2).to(dtype), Run(mode, model.cfg), model.cfg.T)
        assert tokens.shape == (4, 2, 16, 64)
        assert set(tokens.unique().tolist()) == {0.0, 1.0, 2.0}, mode


def test_int_mode_is_exact_integers(monkeypatch):
    """float64 int mode: every conv/linear current, spike and the logits are exact integers."""
    model = lively(build_model(CFG))
    currents, spikes = [], {}
    conv = quant.conv

    def spy_conv(x, w, b):
        y = conv(x, w, b)
        currents.append(y.detach())
        return y

    keep = Run.keep

    def spy_keep(self, name, s):
        spikes[name] = s.detach()
        keep(self, name, s)

    monkeypatch.setattr(quant, "conv", spy_conv)
    monkeypatch.setattr(layers.Run, "keep", spy_keep)
    img = images(2).double()
    with torch.no_grad():
        out, rec = model(img, mode="int", record=True)
    assert len(currents) == 5 + 6  # tokenizer convs and RPE, 6 linears in the block
    for y in currents:
        assert y.dtype == torch.float64 and torch.equal(y, y.round())
    for name, s in spikes.items():
        assert set(s.unique().tolist()) <= {0.0, 1.0}, name
    assert rec["logits"].dtype == torch.int64 and rec["logits"].any()
    # logits = s_head * integer logits; Run.head takes s_head from quant.head_int
    cfg = model.cfg
    _, _, s = quant.head_int(model.head.weight, model.head.bias, torch.ones(cfg.dim),
                             cfg.T * cfg.tokens, cfg.weight_bits, cfg.bias_bits)
    assert torch.allclose(out / s, rec["logits"].double(), rtol=0, atol=1e-6)
    # the same integers twice (no hidden state between forwards)
    out2, rec2 = model(img, mode="int", record=True)
    assert torch.equal(out, out2) and torch.equal(rec["logits"], rec2["logits"])


def test_int_mode_gradients_flow():
    """QAT: the integer forward is differentiable (STE weights, surrogate spikes)."""
    model = lively(build_model(CFG))
    out = model(images(2), mode="int")
    out.sum().backward()
    assert model.block[0].attn.q_linear.weight.grad is not None
    assert model.patch_embed.proj_conv.weight.grad.abs().sum() > 0
