"""model/train.py on tiny random data: checkpoints, exact resume, DDP, QAT, eval-only."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import model.train as train
from model import build_model, get_config, spikingformer
from model.layers import Run

REPO = Path(__file__).resolve().parents[2]
CFG = "spikingformer-1-16"


def run(data, out, *extra, config=CFG):
    argv = ["--data", str(data), "--out", str(out), "--batch-size", "8", "--threads", "1",
            "--no-progress", *extra]
    if "--resume" not in extra and "--init" not in extra:
        argv += ["--config", config]
    return train.main(argv)


def log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def assert_same_state(a: dict, b: dict, what: str):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs"


def assert_same_optimizer(a: dict, b: dict):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        assert_same_state(a["state"][i], b["state"][i], f"optimizer state {i}")


@pytest.mark.parametrize("config", [CFG, "spikformer-1-16"])
def test_two_epochs_write_checkpoints_and_log(data, tmp_path, config, capsys):
    out = tmp_path / "run"
    run(data, out, "--epochs", "2", "--snapshots", config=config)
    said = capsys.readouterr().err
    assert re.search(r"epoch 1/2: test \d+\.\d\d% \(best \d+\.\d\d%\); 1 epoch left, "
                     r"about \d+ min at this session's pace", said), said
    assert "epoch 2/2: test" in said and "; done" in said
    assert (out / "last.pt").exists() and (out / "best.pt").exists()
    lines = log(out)
    assert [r["epoch"] for r in lines] == [1, 2]
    assert all(r["images"] == 32 and r["test_images"] == 16 for r in lines)
    ck = train.load_checkpoint(out / "last.pt")
    assert ck["epoch"] == 2 and ck["config"] == get_config(config).to_dict()
    assert set(ck) >= {"model", "optimizer", "config", "epoch", "args", "best"}
    assert not list(out.glob("*.tmp"))
    snaps = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snaps == ["epoch_1.pt", "epoch_2.pt"]
    snap = train.load_checkpoint(out / "snapshots" / "epoch_2.pt")
    assert snap["epoch"] == 2 and "optimizer" not in snap
    assert_same_state(snap["model"], ck["model"], "snapshot of epoch 2")


class Interrupted(Exception):
    pass


def test_resume_is_exact(data, tmp_path, monkeypatch):
    """A 3-epoch run stopped after epoch 2 and resumed ends bit for bit where an uninterrupted
    3-epoch run ends (weights, BN statistics, optimizer state)."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run(data, whole, "--epochs", "3")

    save = train.save_atomic

    def save_then_stop(obj, path):
        save(obj, path)
        if path.name == "last.pt" and obj["epoch"] == 2:
            raise Interrupted  # as if the job were killed right after the checkpoint

    monkeypatch.setattr(train, "save_atomic", save_then_stop)
    with pytest.raises(Interrupted):
        run(data, cut, "--epochs", "3")
    monkeypatch.setattr(train, "save_atomic", save)
    assert train.load_checkpoint(cut / "last.pt")["epoch"] == 2
    run(data, cut, "--resume")

    a, b = (train.load_checkpoint(d / "last.pt") for d in (whole, cut))
    assert b["epoch"] == 3
    assert_same_state(a["model"], b["model"], "model")
    assert_same_optimizer(a["optimizer"], b["optimizer"])
    la, lb = log(whole), log(cut)
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in la] == \
           [{k: v for k, v in r.items() if k not in drop} for r in lb]


def test_resume_extends_a_finished_run(data, tmp_path):
    """--resume --epochs 3 after a finished 2-epoch run. Equal to a 3-epoch run here only
    because the schedule of the first two epochs is the same (both are the 2-epoch warm-up);
    in general a longer run has another cosine schedule from the start."""
    whole, ext = tmp_path / "whole", tmp_path / "ext"
    run(data, whole, "--epochs", "3", "--warmup", "2")
    run(data, ext, "--epochs", "2", "--warmup", "2")
    run(data, ext, "--resume", "--epochs", "3")
    a, b = (train.load_checkpoint(d / "last.pt") for d in (whole, ext))
    assert b["epoch"] == 3 and b["args"]["epochs"] == 3
    assert_same_state(a["model"], b["model"], "model")
    assert [r["epoch"] for r in log(ext)] == [1, 2, 3]


def test_ddp_two_processes(data, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "model.train", "--config", CFG, "--data", str(data), "--out", str(out),
           "--epochs", "1", "--batch-size", "4", "--threads", "1", "--no-progress"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ck = train.load_checkpoint(out / "last.pt")
    assert ck["epoch"] == 1
    (rec,) = log(out)
    assert rec["images"] == 32 and rec["test_images"] == 16  # both ranks' shares summed


def init_checkpoint(path, config=CFG):
    torch.manual_seed(3)
    m = build_model(config)
    torch.save({"model": m.state_dict(), "config": m.cfg.to_dict()}, path)
    return m


def test_qat_from_init_trains_in_integer_mode(data, tmp_path, monkeypatch):
    init = init_checkpoint(tmp_path / "init.pt")
    modes = []

    class SpyRun(Run):
        def __init__(self, mode, cfg, record=False):
            modes.append(mode)
            super().__init__(mode, cfg, record)

    monkeypatch.setattr(spikingformer, "Run", SpyRun)
    out = tmp_path / "qat"
    run(data, out, "--init", str(tmp_path / "init.pt"), "--qat", "--epochs", "1")
    assert modes == ["int"] * 5  # 4 training steps (32 images / 8) and 1 evaluation batch
    (rec,) = log(out)
    assert rec["eval_mode"] == "int" and np.isfinite(rec["train_loss"])
    ck = train.load_checkpoint(out / "last.pt")
    assert ck["args"]["qat"] and ck["config"] == init.cfg.to_dict()
    # the init's identity travels with the run: the path may later hold other weights
    import hashlib
    assert ck["init_from"] == {
        "path": str(tmp_path / "init.pt"), "epoch": None, "test_acc": None,
        "sha256": hashlib.sha256((tmp_path / "init.pt").read_bytes()).hexdigest()}
    before = init.state_dict()
    changed = [k for k in before if not torch.equal(before[k], ck["model"][k])]
    assert "block.0.attn.q_conv.weight" in changed
    assert not [k for k in changed if "running" in k or "num_batches" in k], \
        "BN statistics must stay frozen in QAT"


def test_eval_only_prints_json(data, tmp_path, capsys):
    init_checkpoint(tmp_path / "init.pt")
    acc = run(data, tmp_path / "ev", "--init", str(tmp_path / "init.pt"), "--eval-only",
              "--eval-mode", "int")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    rec = json.loads(lines[-1])
    assert rec["test_acc"] == acc and 0 <= acc <= 1
    assert rec["mode"] == "int" and rec["images"] == 16 and rec["config"] == CFG
    assert not (tmp_path / "ev").exists()  # evaluation writes nothing


def test_bf16_runs_the_training_convs_in_bfloat16_and_evaluates_in_float32(data, tmp_path,
                                                                          monkeypatch):
    outputs = []  # (training?, dtype) of every conv's and linear's output but the head's

    def spy(module, inputs, output):
        outputs.append((module.training, output.dtype))

    build = train.build_model

    def build_and_watch(cfg):
        net = build(cfg)
        for name, m in net.named_modules():
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
                if name != "head":  # the classifier on the stream's mean: float32 always
                    m.register_forward_hook(spy)
        return net

    monkeypatch.setattr(train, "build_model", build_and_watch)
    out = tmp_path / "bf16"
    run(data, out, "--epochs", "1", "--bf16")
    assert train.load_checkpoint(out / "last.pt")["args"]["bf16"]
    run(data, out, "--resume", "--epochs", "2")  # a resumed run keeps its precision
    trained = {d for t, d in outputs if t}
    evaluated = {d for t, d in outputs if not t}
    assert trained == {torch.bfloat16} and evaluated == {torch.float32}
    assert [r["epoch"] for r in log(out)] == [1, 2]
    outputs.clear()
    run(data, out, "--resume", "--epochs", "3", "--no-bf16")  # and --no-bf16 turns it off
    assert {d for _, d in outputs} == {torch.float32}
    assert not train.load_checkpoint(out / "last.pt")["args"]["bf16"]

    with pytest.raises(ValueError, match="--bf16 does nothing with --qat"):
        run(data, tmp_path / "q", "--epochs", "1", "--bf16", "--qat")
    # a bf16 run resumed as QAT: the setting it inherits is dropped, not refused
    run(data, tmp_path / "q", "--epochs", "1", "--bf16")
    run(data, tmp_path / "q", "--resume", "--qat", "--epochs", "2")
    ck = train.load_checkpoint(tmp_path / "q" / "last.pt")
    assert ck["args"]["qat"] and not ck["args"]["bf16"]


def test_bf16_without_bfloat16_instructions_warns(data, tmp_path, monkeypatch, capsys):
    flags = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {}\n"
    assert train.native_bf16(flags.format("avx512_bf16")) is True
    assert train.native_bf16(flags.format("amx_bf16 amx_tile")) is True
    assert train.native_bf16(flags.format("avx512_vnni")) is False
    assert train.native_bf16("no flags here\n") is None

    warning = "warning: --bf16 on a CPU without bfloat16 instructions"
    for native, warned in ((False, True), (True, False), (None, False)):
        monkeypatch.setattr(train, "native_bf16", lambda native=native: native)
        run(data, tmp_path / f"w{native}", "--epochs", "1", "--bf16")
        assert (warning in capsys.readouterr().err) == warned, native
    monkeypatch.setattr(train, "native_bf16", lambda: False)
    run(data, tmp_path / "fp32", "--epochs", "1")  # float32 convs: nothing to say
    assert warning not in capsys.readouterr().err


def test_conv_precision_leaves_the_integer_mode_exact():
    torch.manual_seed(0)
    net = build_model(CFG).eval()
    img = torch.randint(0, 256, (2, 3, 32, 32)).double()
    with torch.no_grad():
        exact, floats = net(img, mode="int"), net(img.float(), mode="float")
        with train.conv_precision(torch.bfloat16):
            low_int, low_float = net(img, mode="int"), net(img.float(), mode="float")
        after = net(img.float(), mode="float")
    assert torch.equal(exact, low_int)
    assert low_float.dtype == torch.float32 and not torch.equal(floats, low_float)
    assert torch.equal(floats, after)  # the block ends, and float32 with it


def test_a_checkpoint_that_is_not_one_is_refused_with_its_path(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("# not a checkpoint\n")
    with pytest.raises(ValueError,
                       match="notes.pt cannot be read as a training checkpoint of this project"):
        train.load_checkpoint(text)
    whole = tmp_path / "whole.pt"
    init_checkpoint(whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])
    with pytest.raises(ValueError, match="cut.pt cannot be read as a training checkpoint"):
        train.load_checkpoint(cut)


@pytest.mark.parametrize("argv, says", [
    (["model.compiler", "--checkpoint", "{bad}", "--out", "{tmp}/m.sfm"],
     "cannot be read as a training checkpoint"),
    (["model.infer", "--model", "{bad}"], "not a compiled model file"),
    (["model.budget", "--model", "{bad}"], "not a compiled model file"),
    (["model.infer", "--images", "{bad}"], "not an image file"),
    (["model.train", "--out", "{tmp}/nothing", "--resume"], "No checkpoint at"),
])
def test_command_lines_say_what_is_wrong_without_a_traceback(tmp_path, argv, says):
    bad = tmp_path / "bad.bin"
    bad.write_text("# neither a checkpoint nor a model file\n")
    argv = [a.format(bad=bad, tmp=tmp_path) for a in argv]
    r = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and says in r.stderr
    assert "Traceback" not in r.stderr
