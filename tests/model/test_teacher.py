"""model/teacher.py and distillation in model/train.py, on tiny random data."""

import json

import pytest
import torch

import model.teacher as teacher_mod
import model.train as train
from model.teacher import Teacher, load_teacher


def make_teacher(data, out, *extra):
    return teacher_mod.main(["--data", str(data), "--out", str(out), "--width", "8",
                             "--batch-size", "8", "--threads", "1", "--no-progress", *extra])


def student(data, out, *extra):
    argv = ["--data", str(data), "--out", str(out), "--batch-size", "8", "--threads", "1",
            "--no-progress", *extra]
    if "--resume" not in extra:
        argv += ["--config", "spikingformer-1-16"]
    return train.main(argv)


def test_teacher_reads_raw_pixels_and_refuses_integer_mode():
    t = Teacher(8).eval()
    img = torch.randint(0, 256, (2, 3, 32, 32)).float()
    assert t(img).shape == (2, 10)
    # normalization is inside: the same network on pixels shifted by the mean sees zeros
    zeros = t.mean.expand(2, 3, 32, 32)
    assert torch.allclose(t(zeros), t.head(t.net(torch.zeros(2, 3, 32, 32))) * 0.125)
    with pytest.raises(ValueError, match="float only"):
        t(img, mode="int")
    with pytest.raises(ValueError, match="at least 8"):
        Teacher(4)


def test_distillation_loss_is_kl_of_softened_outputs():
    torch.manual_seed(0)
    s = torch.randn(5, 10, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 10, dtype=torch.float64)
    T = 3.0
    loss = train.distillation_loss(s, t, T)
    p_t, p_s = torch.softmax(t / T, 1), torch.softmax(s / T, 1)
    want = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * T * T
    assert torch.allclose(loss, want)
    loss.backward()
    # d/ds of T^2 KL(p_t || softmax(s / T)) is T (p_s - p_t), over the batch of 5
    assert torch.allclose(s.grad, T * (p_s - p_t).detach() / 5)
    assert float(train.distillation_loss(t, t, T)) == pytest.approx(0.0, abs=1e-12)


def test_teacher_trains_resumes_and_loads(data, tmp_path):
    out = tmp_path / "t"
    make_teacher(data, out, "--epochs", "1")
    make_teacher(data, out, "--resume", "--epochs", "2")
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["teacher"] == {"width": 8} and ck["epoch"] == 2
    with pytest.raises(ValueError, match="width-8 teacher, not width 16"):
        teacher_mod.main(["--data", str(data), "--out", str(out), "--resume", "--width", "16"])
    t = load_teacher(out / "last.pt")
    assert not t.training and not any(p.requires_grad for p in t.parameters())
    assert all(torch.equal(a, ck["model"][k]) for k, a in t.state_dict().items())


def test_load_teacher_refuses_a_student_checkpoint(data, tmp_path):
    student(data, tmp_path / "s", "--epochs", "1")
    with pytest.raises(ValueError, match="not a teacher checkpoint"):
        load_teacher(tmp_path / "s" / "last.pt")
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        load_teacher(tmp_path / "missing.pt")


def test_distillation_changes_training_and_is_recorded(data, tmp_path, monkeypatch):
    tdir = tmp_path / "t"
    make_teacher(data, tdir, "--epochs", "1")
    tck = tdir / "last.pt"
    student(data, tmp_path / "plain", "--epochs", "1")
    seen = []
    real = train.distillation_loss

    def spy(s, t, temp):
        seen.append((s.shape, temp))
        return real(s, t, temp)

    monkeypatch.setattr(train, "distillation_loss", spy)
    student(data, tmp_path / "kd", "--epochs", "1", "--teacher", str(tck),
            "--kd-temperature", "2")
    assert seen and all(shape == (8, 10) and temp == 2.0 for shape, temp in seen)
    plain = train.load_checkpoint(tmp_path / "plain" / "last.pt")
    kd = train.load_checkpoint(tmp_path / "kd" / "last.pt")
    assert kd["teacher_from"]["path"] == str(tck) and "teacher_from" not in plain
    assert any(not torch.equal(plain["model"][k], kd["model"][k]) for k in plain["model"])


def test_resume_keeps_the_teacher_and_refuses_another(data, tmp_path):
    tdir = tmp_path / "t"
    make_teacher(data, tdir, "--epochs", "1")
    out = tmp_path / "kd"
    student(data, out, "--epochs", "1", "--teacher", str(tdir / "last.pt"), "--kd-alpha", "0.7")
    student(data, out, "--resume", "--epochs", "2")
    ck = train.load_checkpoint(out / "last.pt")
    assert ck["epoch"] == 2 and ck["args"]["kd_alpha"] == 0.7
    assert ck["args"]["teacher"] == str(tdir / "last.pt")
    make_teacher(data, tdir, "--resume", "--epochs", "2")  # the file now holds other weights
    with pytest.raises(ValueError, match="not the one this run started with"):
        student(data, out, "--resume", "--epochs", "3")


@pytest.mark.parametrize("opt,value,msg", [("--kd-alpha", "0", "kd-alpha"),
                                           ("--kd-temperature", "-1", "kd-temperature")])
def test_bad_distillation_settings(data, tmp_path, opt, value, msg):
    make_teacher(data, tmp_path / "t", "--epochs", "1")
    with pytest.raises(ValueError, match=msg):
        student(data, tmp_path / "s", "--epochs", "1", "--teacher",
                str(tmp_path / "t" / "last.pt"), opt, value)

