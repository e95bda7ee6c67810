"""model/average.py: weight averaging of checkpoints, batch-norm statistics measured again."""

import numpy as np
import pytest
import torch

from model import build_model, get_config
from model.average import average_states, main, recalibrate_bn
from model.train import load_checkpoint

CFG = "spikingformer-1-16"


def checkpoint(path, seed, epoch, config=CFG):
    torch.manual_seed(seed)
    cfg = get_config(config)
    torch.save({"model": build_model(cfg).state_dict(), "config": cfg.to_dict(),
                "epoch": epoch, "test_acc": 0.1 * epoch, "args": {"epochs": 9}}, path)
    return path


def test_learned_tensors_are_averaged_and_statistics_left_to_measure():
    a = {"w": torch.tensor([1.0, 2.0]), "bn.running_mean": torch.tensor([5.0]),
         "bn.num_batches_tracked": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "bn.running_mean": torch.tensor([7.0]),
         "bn.num_batches_tracked": torch.tensor(4)}
    c = {"w": torch.tensor([2.0, 1.0]), "bn.running_mean": torch.tensor([9.0]),
         "bn.num_batches_tracked": torch.tensor(5)}
    avg = average_states([a, b, c], ["a", "b", "c"])
    assert torch.equal(avg["w"], torch.tensor([2.0, 3.0]))
    assert avg["bn.running_mean"].item() == 5.0 and avg["bn.num_batches_tracked"].item() == 3
    kept = average_states([a, b, c], ["a", "b", "c"], stats=True)
    assert torch.equal(kept["w"], avg["w"])
    assert kept["bn.running_mean"].item() == 7.0 and kept["bn.num_batches_tracked"].item() == 3
    with pytest.raises(ValueError, match="b: w has shape"):
        average_states([a, {**b, "w": torch.zeros(3)}], ["a", "b"])
    with pytest.raises(ValueError, match="b holds other tensors"):
        average_states([a, {"w": b["w"]}], ["a", "b"])


def test_batch_norm_statistics_are_those_of_the_images():
    torch.manual_seed(0)
    model = build_model(CFG)
    images = np.random.default_rng(1).integers(0, 256, (12, 3, 32, 32), dtype=np.uint8)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    first.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    assert recalibrate_bn(model, images, batch=4, progress=False) > 1
    x = torch.cat(seen)  # every input the first batch norm saw, in equal batches
    mean = x.transpose(0, 1).flatten(1).mean(1)
    assert torch.allclose(first.running_mean, mean, rtol=1e-4, atol=1e-5)
    assert first.momentum == 0.1 and not model.training


def test_average_writes_a_checkpoint_that_says_what_it_averaged(data, tmp_path, capsys):
    a = checkpoint(tmp_path / "a.pt", 0, 3)
    b = checkpoint(tmp_path / "b.pt", 1, 4)
    out = tmp_path / "avg.pt"
    report = main(["--checkpoints", str(a), str(b), "--out", str(out), "--data", str(data),
                   "--bn-images", "16", "--threads", "1", "--no-progress"])
    ck = load_checkpoint(out)
    assert ck["epoch"] == 4 and ck["bn_images"] == 16 and ck["test_images"] == 16
    assert [s["epoch"] for s in ck["averaged"]] == [3, 4]
    assert ck["test_acc"] == report["test_acc"]
    sa, sb = torch.load(a)["model"], torch.load(b)["model"]
    name = next(k for k in sa if k.endswith("weight") and sa[k].ndim == 4)
    assert torch.allclose(ck["model"][name], (sa[name] + sb[name]) / 2)
    model = build_model(get_config(CFG))
    model.load_state_dict(ck["model"])  # loads like any checkpoint of the network


def test_average_refuses_mixed_networks_and_a_single_checkpoint(data, tmp_path):
    a = checkpoint(tmp_path / "a.pt", 0, 3)
    b = checkpoint(tmp_path / "b.pt", 1, 4, config="spikformer-1-16")
    with pytest.raises(ValueError, match="only checkpoints of one network can be averaged"):
        main(["--checkpoints", str(a), str(b), "--out", str(tmp_path / "o.pt"),
              "--data", str(data)])
    with pytest.raises(ValueError, match="at least two checkpoints"):
        main(["--checkpoints", str(a), "--out", str(tmp_path / "o.pt"), "--data", str(data)])


def test_average_can_keep_the_trained_statistics(data, tmp_path):
    a = checkpoint(tmp_path / "a.pt", 0, 3)
    b = checkpoint(tmp_path / "b.pt", 1, 4)
    ckb = torch.load(b)
    sa, sb = torch.load(a)["model"], ckb["model"]
    name = next(k for k in sa if k.endswith("running_var"))
    sb[name] = sb[name] * 3  # the two checkpoints' statistics differ
    torch.save(ckb, b)
    out = tmp_path / "avg.pt"
    report = main(["--checkpoints", str(a), str(b), "--out", str(out), "--data", str(data),
                   "--bn", "average", "--threads", "1", "--no-progress"])
    ck = load_checkpoint(out)
    assert ck["bn"] == "average" and ck["bn_images"] is None and report["bn"] == "average"
    assert torch.allclose(ck["model"][name], (sa[name] + sb[name]) / 2)
