"""model/checkpoint.py: authors' state_dicts (reference names and shapes) into our models."""

import itertools

import pytest
import torch

from model import build_model, get_config
from model.checkpoint import (
    CheckpointError,
    infer_config,
    load_reference_state_dict,
    main,
    map_key,
    read_state_dict,
)
from model.config import Config
from model.train import load_checkpoint, model_from_checkpoint


def _bn(shapes, name, n):
    for p in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{name}.{p}"] = (n,)
    shapes[f"{name}.num_batches_tracked"] = ()


def spikingformer_shapes(D, depth, ratio=4, classes=10, cin=3):
    """Key -> shape of the authors' Spikingformer (cifar10/model.py), written out by hand."""
    s = {}
    chans = [cin, D // 8, D // 4, D // 2, D, D]
    for i in range(5):
        s[f"patch_embed.block{i}_conv.weight"] = (chans[i + 1], chans[i], 3, 3)
        _bn(s, f"patch_embed.block{i}_bn", chans[i + 1])
    for j in range(depth):
        b = f"block.{j}"
        for n in ("norm1", "norm2"):
            s[f"{b}.{n}.weight"] = s[f"{b}.{n}.bias"] = (D,)
        for n in ("q", "k", "v"):
            s[f"{b}.attn.{n}_conv.weight"] = (D, D, 1)
            _bn(s, f"{b}.attn.{n}_bn", D)
        s[f"{b}.attn.proj_conv.weight"], s[f"{b}.attn.proj_conv.bias"] = (D, D, 1), (D,)
        _bn(s, f"{b}.attn.proj_bn", D)
        s[f"{b}.mlp.mlp1_conv.weight"], s[f"{b}.mlp.mlp1_conv.bias"] = (ratio * D, D, 1, 1), \
            (ratio * D,)
        _bn(s, f"{b}.mlp.mlp1_bn", ratio * D)
        s[f"{b}.mlp.mlp2_conv.weight"], s[f"{b}.mlp.mlp2_conv.bias"] = (D, ratio * D, 1, 1), \
            (D,)
        _bn(s, f"{b}.mlp.mlp2_bn", D)
    s["head.weight"], s["head.bias"] = (classes, D), (classes,)
    return s


def spikformer_shapes(D, depth, ratio=4, classes=10, cin=3):
    """Key -> shape of the authors' Spikformer (cifar10/model.py)."""
    s = {}
    chans = [cin, D // 8, D // 4, D // 2, D]
    for i in range(4):
        x = str(i) if i else ""
        s[f"patch_embed.proj_conv{x}.weight"] = (chans[i + 1], chans[i], 3, 3)
        _bn(s, f"patch_embed.proj_bn{x}", chans[i + 1])
    s["patch_embed.rpe_conv.weight"] = (D, D, 3, 3)
    _bn(s, "patch_embed.rpe_bn", D)
    for j in range(depth):
        b = f"block.{j}"
        for n in ("norm1", "norm2"):
            s[f"{b}.{n}.weight"] = s[f"{b}.{n}.bias"] = (D,)
        for n in ("q", "k", "v", "proj"):
            s[f"{b}.attn.{n}_linear.weight"], s[f"{b}.attn.{n}_linear.bias"] = (D, D), (D,)
            _bn(s, f"{b}.attn.{n}_bn", D)
        for n, (o, i) in (("fc1", (ratio * D, D)), ("fc2", (D, ratio * D))):
            s[f"{b}.mlp.{n}_linear.weight"], s[f"{b}.mlp.{n}_linear.bias"] = (o, i), (o,)
            _bn(s, f"{b}.mlp.{n}_bn", o)
    s["head.weight"], s["head.bias"] = (classes, D), (classes,)
    return s


def random_state(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(1000 + len(out), dtype=torch.long)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith("_bn.weight"):
            out[k] = torch.rand(shape, generator=g) * 2 + 1
        elif k.endswith("_bn.bias"):
            out[k] = torch.rand(shape, generator=g) * 0.8 + 0.2
        else:
            out[k] = torch.randn(shape, generator=g) * 0.3
    return out


def reference(arch="spikingformer", D=16, depth=2, **kw):
    shapes = (spikingformer_shapes if arch == "spikingformer" else spikformer_shapes)(
        D, depth, **kw)
    return random_state(shapes)


def ddp_wrapped(state):
    """As timm's training script saves a DDP model: under 'state_dict', keys 'module.*'."""
    return {"epoch": 299, "arch": "Spikingformer",
            "state_dict": {f"module.{k}": v for k, v in state.items()}}


def built_directly(cfg, state):
    """A model whose parameters and buffers are set one by one from the reference tensors."""
    model = build_model(cfg)
    with torch.no_grad():
        for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
            if name in state:  # the non-persistent input buffers are not in a state_dict
                t.copy_(state[name])
    return model


def images(n=2):
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g).float()


@pytest.mark.parametrize("arch", ["spikingformer", "spikformer"])
def test_load_wrapped_prefixed_reference(arch, tmp_path):
    ref = reference(arch)
    path = tmp_path / "ref.pth"
    torch.save(ddp_wrapped(ref), path)
    cfg = get_config(f"{arch}-2-16")
    model = load_reference_state_dict(build_model(cfg), path).eval()
    got = model.state_dict()
    kept = {k: v for k, v in ref.items() if ".norm1." not in k and ".norm2." not in k}
    assert set(got) == set(kept)
    for k, v in kept.items():
        assert torch.equal(got[k], v), k
    direct = built_directly(cfg, ref).eval()
    img = images()
    with torch.no_grad():
        out = model(img)
        assert torch.equal(out, direct(img))
        assert torch.equal(model(img.double(), mode="int"), direct(img.double(), mode="int"))
    assert out.std() > 0


def test_sources_plain_dict_and_model_key(tmp_path):
    ref = reference()
    cfg = get_config("spikingformer-2-16")
    for source in (ref, {"model": ref}, {f"module.{k}": v for k, v in ref.items()}):
        model = load_reference_state_dict(build_model(cfg), source)
        assert torch.equal(model.head.weight, ref["head.weight"])


def test_map_key():
    assert map_key("module.block.0.attn.q_conv.weight") == "block.0.attn.q_conv.weight"
    assert map_key("module.module.head.bias") == "head.bias"
    assert map_key("block.3.norm1.weight") is None
    assert map_key("module.block.3.norm2.bias") is None
    assert map_key("patch_embed.block0_bn.running_var") == "patch_embed.block0_bn.running_var"


def test_missing_keys_listed():
    ref = reference()
    del ref["block.1.attn.k_conv.weight"], ref["head.bias"]
    with pytest.raises(CheckpointError, match=r"Missing keys \(2, in the model, not in the "
                       r"checkpoint\): block\.1\.attn\.k_conv\.weight, head\.bias$"):
        load_reference_state_dict(build_model("spikingformer-2-16"), ref)


def test_unexpected_keys_listed():
    ref = reference()
    ref["module.block.0.attn.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"Unexpected keys \(1, in the checkpoint, not in "
                       r"the model\): block\.0\.attn\.extra\.weight$") as err:
        load_reference_state_dict(build_model("spikingformer-2-16"), ref)
    assert "imply" not in str(err.value)  # the shapes imply the model's own config


def test_depth_mismatch_suggests_config():
    ref = reference(depth=3)
    with pytest.raises(CheckpointError, match=r"(?s)shapes imply spikingformer-3-16 \(.*depth=3"
                       r".*\nUnexpected keys \(39, .*: block\.2\.attn\.q_conv\.weight, "):
        load_reference_state_dict(build_model("spikingformer-2-16"), ref)


def test_shape_mismatch_names_key_shapes_and_config():
    ref = reference(D=32)
    with pytest.raises(CheckpointError) as err:
        load_reference_state_dict(build_model("spikingformer-2-16"), ref)
    msg = str(err.value)
    assert ("\n  patch_embed.block0_conv.weight: the model expects [2, 3, 3, 3], "
            "the checkpoint has [4, 3, 3, 3]\n") in msg
    assert msg.endswith("\n  head.weight: the model expects [10, 16], the checkpoint has [10, 32]")
    assert "shapes imply spikingformer-2-32 (arch=spikingformer, depth=2, dim=32" in msg
    ref = reference(ratio=2, classes=100)
    with pytest.raises(CheckpointError, match=r"(?s)mlp_ratio=2, num_classes=100.*"
                       r"block\.0\.mlp\.mlp1_conv\.weight: the model "
                       r"expects \[64, 16, 1, 1\], the checkpoint has \[32, 16, 1, 1\]"):
        load_reference_state_dict(build_model("spikingformer-2-16"), ref)


def test_wrong_architecture():
    with pytest.raises(CheckpointError, match=r"(?s)shapes imply spikingformer-2-16 "
                       r"\(arch=spikingformer.*\nMissing keys.*patch_embed\.rpe_conv\.weight"):
        load_reference_state_dict(build_model("spikformer-2-16"), reference())


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match=r"notes\.txt is not a torch checkpoint"):
        load_reference_state_dict(build_model("spikingformer-2-16"), text)
    obj = tmp_path / "list.pt"
    torch.save([1, 2, 3], obj)
    with pytest.raises(CheckpointError, match=r"list\.pt is not a checkpoint: it holds a list"):
        read_state_dict(obj)
    with pytest.raises(CheckpointError, match=r"not a checkpoint: a state_dict maps names to "
                       r"tensors, but it holds 'lr' \(float\)"):
        read_state_dict({"lr": 0.1, "epochs": 3})
    with pytest.raises(CheckpointError, match="state_dict is empty"):
        read_state_dict({"state_dict": {}})
    with pytest.raises(FileNotFoundError, match="No checkpoint file at"):
        read_state_dict(tmp_path / "absent.pth")


def test_two_keys_onto_one_name():
    ref = reference()
    ref["module.head.bias"] = ref["head.bias"]
    with pytest.raises(CheckpointError, match="'head.bias' and 'module.head.bias' both map"):
        load_reference_state_dict(build_model("spikingformer-2-16"), ref)


def test_infer_config():
    cfg = infer_config(ddp_wrapped(reference(D=32, depth=3, ratio=2, classes=100)))
    assert cfg == Config(arch="spikingformer", depth=3, dim=32, heads=2, mlp_ratio=2,
                         num_classes=100)
    cfg = infer_config(reference("spikformer", D=16, depth=1), heads=4, T=2)
    assert (cfg.arch, cfg.depth, cfg.dim, cfg.heads, cfg.T) == ("spikformer", 1, 16, 4, 2)
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        infer_config(reference(), heads=3)
    with pytest.raises(CheckpointError, match="Cannot tell the architecture"):
        infer_config({"head.weight": torch.zeros(10, 16)})


def test_cli_converts_to_training_checkpoint(tmp_path, capsys):
    ref = reference(D=32, depth=1)
    src = tmp_path / "ref.pth"
    torch.save(ddp_wrapped(ref), src)
    out = tmp_path / "runs" / "imported.pt"
    main(["--reference", str(src), "--heads", "4", "--out", str(out)])
    ck = load_checkpoint(out)
    assert set(ck) >= {"model", "config", "epoch", "args"}
    cfg = Config.from_dict(ck["config"])
    assert cfg == get_config("spikingformer-1-32-h4")
    model, _ = model_from_checkpoint(out)
    direct = built_directly(cfg, ref)
    img = images()
    with torch.no_grad():
        assert torch.equal(model.eval()(img), direct.eval()(img))
    assert "spikingformer-1-32-h4" in capsys.readouterr().err
