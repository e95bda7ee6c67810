"""model.curve: training logs read strictly, plotted and tabulated."""

import json
import re

import numpy as np
import pytest

from model.curve import against, main, project, read_log, schedule


def _log(tmp_path, lines, name="run"):
    run = tmp_path / name
    run.mkdir()
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    return run


def _epoch(e, acc):
    return json.dumps({"epoch": e, "test_acc": acc, "test_images": 10000,
                       "eval_mode": "float", "lr": 1e-3 / e})


def test_curve_plots_and_tabulates_every_epoch(tmp_path, capsys):
    run = _log(tmp_path, [_epoch(2, 0.5), _epoch(1, 0.25)])
    out = tmp_path / "c.png"
    runs = main(["--runs", str(run), "--out", str(out), "--no-bundled"])
    assert [r["epoch"] for r in next(iter(runs.values()))] == [1, 2]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "| 1 | 25.00 | 10,000 | float |" in table and "| 2 | 50.00 |" in table


def test_bad_logs_are_refused_with_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="No training log"):
        read_log(tmp_path)
    run = _log(tmp_path, [_epoch(1, 0.3), '{"epoch": 2}'])
    with pytest.raises(ValueError, match="line 2: not an epoch record"):
        read_log(run)
    (run / "log.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no epochs yet"):
        read_log(run)


SCHED = {"epochs": 40, "lr": 1e-3, "min_lr": 1e-5, "warmup": 2.0}


def _synthetic(upto, a=85.0, b=60.0, c=1.5, d=9.0, noise=0.3, seed=1):
    """A run that follows the fitted form exactly, plus noise, through epoch ``upto``."""
    s, r = schedule(SCHED)
    rng = np.random.default_rng(seed)
    acc = a - b * s ** -c - d * r + rng.normal(0, noise, len(s))
    rows = [{"epoch": e, "test_acc": acc[e - 1] / 100} for e in range(1, upto + 1)]
    return rows, a - b * s[-1] ** -c - d * r[-1]


def _scheduled_run(tmp_path, rows, sched=SCHED, name="run"):
    """A run folder with these epochs logged and a last.pt that gives its schedule."""
    run = _log(tmp_path, [json.dumps({**r, "test_images": 10000, "eval_mode": "float"})
                          for r in rows], name)
    torch = pytest.importorskip("torch")
    torch.save({"model": {}, "config": {}, "args": sched}, run / "last.pt")
    return run


def test_schedule_follows_the_training_rate():
    s, r = schedule(SCHED)
    assert len(s) == len(r) == 40
    assert r[0] == pytest.approx(0.5, abs=0.01) and r[1] == pytest.approx(1.0, abs=0.01)
    assert r[-1] == pytest.approx(0.01, abs=1e-3)
    # the cosine from epoch 2 on sums to half its length at the full rate, plus the warm-up
    assert s[-1] == pytest.approx(1 + 38 * (0.5 + 0.5 * 0.01), abs=0.05)


def test_projection_recovers_a_known_curve():
    rows, truth = _synthetic(22)
    p = project(rows, SCHED, fit_from=4)
    assert p["epoch"] == 40 and p["fitted"] == (4, 22)
    assert abs(p["acc"] - truth) < 1.0
    assert p["low"] <= truth <= p["high"]
    assert p["low"] < p["acc"] < p["high"]
    # without noise the fit is exact up to the grid of exponents
    rows, truth = _synthetic(22, noise=0.0)
    assert project(rows, SCHED, fit_from=4)["acc"] == pytest.approx(truth, abs=0.2)


def test_projection_refuses_what_it_cannot_fit():
    rows, _ = _synthetic(10)
    with pytest.raises(ValueError, match="3 epochs from epoch 8 on; the projection needs 6"):
        project(rows, SCHED, fit_from=8)
    rows, _ = _synthetic(40)
    with pytest.raises(ValueError, match="finished its 40 epochs"):
        project(rows, SCHED)


def test_curve_draws_the_projection(tmp_path, capsys):
    rows, _ = _synthetic(20)
    run = _scheduled_run(tmp_path, rows)
    out = tmp_path / "c.png"
    main(["--runs", str(run), "--out", str(out), "--no-bundled", "--project"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "projected at epoch 40" in capsys.readouterr().out
    main(["--runs", str(run), "--out", str(out), "--no-bundled", "--project", "--upto", "15"])
    printed = capsys.readouterr().out
    assert "fitted to epochs 8-15" in printed and "epochs 16-20 came out" in printed


def test_upto_keeps_the_earlier_epochs(tmp_path, capsys):
    run = _log(tmp_path, [_epoch(1, 0.25), _epoch(2, 0.5)])
    runs = main(["--runs", str(run), "--out", str(tmp_path / "c.png"), "--no-bundled",
                 "--upto", "1"])
    assert [r["epoch"] for r in next(iter(runs.values()))] == [1]
    with pytest.raises(ValueError, match="--upto 0 leaves a run without epochs"):
        main(["--runs", str(run), "--out", str(tmp_path / "c.png"), "--upto", "0"])


def test_plot_takes_a_projection_outside_its_refit_range(tmp_path):
    """Few epochs leave the fit loose: its own value may fall outside the refits' 10-90 %."""
    from model.curve import plot

    rows = [json.loads(_epoch(e, 0.5 + 0.01 * e)) for e in range(1, 6)]
    x = np.arange(1, 11, dtype=float)
    proj = {"epoch": 10, "acc": 60.0, "low": 61.0, "high": 70.0, "fitted": (1, 5),
            "curve": (x, 50 + x), "lr": 1e-3 / x}
    out = tmp_path / "c.png"
    plot({"run": rows}, {}, 0.86, out, planned=10, projections={"run": proj})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_projection_along_a_longer_schedule():
    """A finished run's fit, carried along its schedule stretched to 80 epochs, ends where the
    same form ends on the 80-epoch schedule; the epochs after --upto are judged against the
    fit along the run's own schedule, not the stretched one."""
    a, b, c, d = 85.0, 60.0, 1.5, 9.0
    rows, _ = _synthetic(40, a, b, c, d, noise=0.0)
    p = project(rows, SCHED, fit_from=4, epochs=80)
    s80, r80 = schedule({**SCHED, "epochs": 80})
    truth = a - b * s80[-1] ** -c - d * r80[-1]
    assert p["epoch"] == 80 and p["stretched"] and len(p["curve"][1]) == 80
    assert p["acc"] == pytest.approx(truth, abs=0.2)
    assert p["acc"] > rows[-1]["test_acc"] * 100 + 0.3  # the longer cosine learns more
    s40, r40 = schedule(SCHED)
    assert np.allclose(p["own"][3:], (a - b * s40 ** -c - d * r40)[3:], atol=0.2)  # fitted
    with pytest.raises(ValueError, match="no longer than the run's own 40 epochs"):
        project(rows, SCHED, epochs=40)


def test_curve_projects_a_finished_run_to_more_epochs(tmp_path, capsys):
    rows, _ = _synthetic(40, noise=0.0)
    run = _scheduled_run(tmp_path, rows)
    out = tmp_path / "c.png"
    main(["--runs", str(run), "--out", str(out), "--no-bundled", "--project"])
    assert "finished its 40 epochs" in capsys.readouterr().out
    main(["--runs", str(run), "--out", str(out), "--no-bundled", "--project", "--to-epochs",
          "80", "--upto", "30"])
    printed = capsys.readouterr().out
    assert "projected at epoch 80 of the same schedule stretched to 80 epochs" in printed
    (came,) = [ln for ln in printed.splitlines() if "epochs 31-40 came out" in ln]
    off = float(came.split("came out ")[1].split(" points")[0])
    assert abs(off) < 0.1, came  # against the stretched curve it would be points off
    # a run already on the 80-epoch schedule, beside it, is projected along its own
    longer = _scheduled_run(tmp_path, _synthetic(20)[0], {**SCHED, "epochs": 80}, "long")
    main(["--runs", str(run), str(longer), "--out", str(out), "--no-bundled", "--project",
          "--to-epochs", "80"])
    printed = capsys.readouterr().out
    (mine,) = [ln for ln in printed.splitlines() if "long: " in ln and "projected" in ln]
    assert "projected at epoch 80 (" in mine and "stretched" not in mine
    with pytest.raises(SystemExit):
        main(["--runs", str(run), "--out", str(out), "--to-epochs", "80"])


def test_a_run_on_the_stretched_schedule_is_held_against_the_projection(tmp_path, capsys):
    """A run that follows the form along the 80-epoch schedule, one point above it, comes out
    +1.00 against the 40-epoch run's projection to 80 epochs, block by block; a run on another
    schedule is not compared."""
    a, b, c, d = 85.0, 60.0, 1.5, 9.0
    rows, _ = _synthetic(40, a, b, c, d, noise=0.0)
    s80, r80 = schedule({**SCHED, "epochs": 80})
    truth = a - b * s80 ** -c - d * r80
    above = [{"epoch": e, "test_acc": (truth[e - 1] + 1.0) / 100} for e in range(1, 26)]
    p = project(rows, SCHED, fit_from=4, epochs=80)
    blocks = against(p, above, start=8)
    assert [(lo, hi) for lo, hi, *_ in blocks] == [(8, 17), (18, 25)]
    for _, _, mean, low, high in blocks:
        assert mean == pytest.approx(1.0, abs=0.05) and low <= mean <= high
    short = _scheduled_run(tmp_path, rows, name="short")
    long = _scheduled_run(tmp_path, above, {**SCHED, "epochs": 80}, "long")
    other = _scheduled_run(tmp_path, above, {**SCHED, "epochs": 80, "lr": 2e-3}, "other")
    main(["--runs", str(short), str(long), str(other), "--out", str(tmp_path / "c.png"),
          "--no-bundled", "--project", "--to-epochs", "80", "--fit-from", "4"])
    notes = [ln for ln in capsys.readouterr().out.splitlines() if "projection to 80" in ln]
    assert len(notes) == 1 and f"{long} against {short}'s projection" in notes[0]
    got = re.findall(r"epochs (\d+)-(\d+) ([+-][\d.]+)", notes[0])
    assert [(int(lo), int(hi)) for lo, hi, _ in got] == [(4, 13), (14, 23), (24, 25)]
    assert all(abs(float(m) - 1.0) < 0.05 for *_, m in got), notes[0]


def test_a_longer_schedule_is_held_against_a_shorter_at_equal_rate(tmp_path, capsys):
    """Two runs that follow the form on the 40- and 80-epoch schedules of the same rates: at
    equal rate the rate term drops out and the lead is the learned term's difference, which
    fit_lead recovers and carries to where the 80-epoch run ends."""
    from model.curve import equal_rate, fit_lead

    a, b, c, d = 85.0, 60.0, 1.5, 9.0
    short, _ = _synthetic(40, a, b, c, d, noise=0.0)
    sched80 = {**SCHED, "epochs": 80}
    s80, r80 = schedule(sched80)
    truth = a - b * s80 ** -c - d * r80
    long = [{"epoch": e, "test_acc": truth[e - 1] / 100} for e in range(1, 36)]
    lead = equal_rate(short, SCHED, long, sched80)
    # the shorter run's warm-up and its rates below the longer run's last are left out
    s40, r40 = schedule(SCHED)
    assert sorted(lead) == [e for e in range(3, 41) if r40[e - 1] >= r80[34]]
    assert sorted(lead)[-1] == 18
    # read off linearly between the longer run's epochs, where its cosine is as far along
    for e, (rate, got, s1, s2, at) in lead.items():
        assert rate == r40[e - 1] and s1 == s40[e - 1]
        assert at == pytest.approx(2 + (e - 2) * 78 / 38, abs=0.05)
        assert s2 == pytest.approx(np.interp(at, range(1, 81), s80), abs=0.01)
        assert got == pytest.approx(b * (s1 ** -c - s2 ** -c), abs=0.02 if e >= 8 else 0.2)
    f = fit_lead({e: v for e, v in lead.items() if e >= 8}, s40[-1], s80[-1])
    assert f["b"] == pytest.approx(b, rel=0.05) and f["c"] == pytest.approx(c, rel=0.02)
    assert f["rms"] < 0.02 and f["low"] <= f["end"] <= f["high"]
    assert f["end"] + 100 * short[-1]["test_acc"] == pytest.approx(truth[-1], abs=0.05)
    # a longer run behind the shorter at every rate has no such lead
    behind = {e: (r, -abs(d) - 1, s1, s2, at) for e, (r, d, s1, s2, at) in lead.items()}
    assert fit_lead(behind, s40[-1], s80[-1]) is None

    runs = [_scheduled_run(tmp_path, short, name="short"),
            _scheduled_run(tmp_path, long, sched80, "long"),
            _scheduled_run(tmp_path, long, {**sched80, "lr": 2e-3}, "other")]
    main(["--runs", *map(str, runs), "--out", str(tmp_path / "c.png"), "--no-bundled"])
    (note,) = [ln for ln in capsys.readouterr().out.splitlines() if "at the same rate" in ln]
    assert note.startswith(f"{runs[1]} (80 epochs) against {runs[0]} (40)")
    # blocks of five epochs of the shorter run, about ten of the longer: 2 + (e - 2) 78 / 38
    blocks = re.findall(r"epochs (\d+)-(\d+) of \S+, about (\d+)-(\d+) of \S+, rate", note)
    assert [tuple(map(int, x)) for x in blocks] == [(8, 12, 14, 23), (13, 17, 25, 33),
                                                    (18, 18, 35, 35)]
    near = float(re.search(r"the lead comes to .*?: near ([\d.]+) %", note).group(1))
    assert near == pytest.approx(truth[-1], abs=0.1)
    # a shorter run that has not finished gives the leads and no end
    main(["--runs", str(_scheduled_run(tmp_path, short[:30], name="young")), str(runs[1]),
          "--out", str(tmp_path / "c.png"), "--no-bundled"])
    (note,) = [ln for ln in capsys.readouterr().out.splitlines() if "at the same rate" in ln]
    assert "ended at" not in note and "near" not in note


def test_runs_on_the_same_schedule_are_compared_epoch_by_epoch(tmp_path, capsys):
    """A run whose test accuracy sits 0.5 points and train accuracy 1 point under another's on
    the same schedule comes out so in every block; runs on other schedules, or without the
    train figure, are compared only as far as they can be."""
    from model.curve import paired

    rows, _ = _synthetic(25)
    base = [{**r, "train_acc": r["test_acc"] + 0.02} for r in rows]
    under = [{**r, "test_acc": r["test_acc"] - 0.005, "train_acc": r["train_acc"] - 0.01}
             for r in base[:23]]
    blocks = paired(base, under, start=8)
    assert [(lo, hi) for lo, hi, *_ in blocks] == [(1, 7), (8, 17), (18, 23)]
    for _, _, test, train in blocks:
        assert test == pytest.approx(-0.5) and train == pytest.approx(-1.0)
    # the second run ahead by the first's lag: the signs turn
    assert all(t == pytest.approx(0.5) for _, _, t, _ in paired(under, base, start=8))
    no_train = [{k: v for k, v in r.items() if k != "train_acc"} for r in under]
    assert all(tr is None for *_, tr in paired(base, no_train, start=8))

    runs = [_scheduled_run(tmp_path, base, name="two"),
            _scheduled_run(tmp_path, under, {**SCHED, "epochs": 80}, "longer"),
            _scheduled_run(tmp_path, under, name="four"),
            _scheduled_run(tmp_path, base[:9], name="taught")]
    main(["--runs", *map(str, runs), "--out", str(tmp_path / "c.png"), "--no-bundled"])
    notes = [ln for ln in capsys.readouterr().out.splitlines() if "epoch by epoch" in ln]
    # each against the first run on its schedule, not against each other
    assert len(notes) == 2 and notes[1] == (
        f"{runs[3]} against {runs[0]}, the same 40-epoch schedule, epoch by epoch (its "
        f"accuracy less {runs[0]}'s, points): epochs 1-7: test +0.00, train +0.00; "
        "epochs 8-9: test +0.00, train +0.00")
    assert notes[0].startswith(f"{runs[2]} against {runs[0]}, the same 40-epoch schedule")
    got = re.findall(r"epochs (\d+)-(\d+): test ([+-][\d.]+), train ([+-][\d.]+)", notes[0])
    assert [tuple(map(float, g)) for g in got] == [(1, 7, -0.5, -1.0), (8, 17, -0.5, -1.0),
                                                    (18, 23, -0.5, -1.0)]


def test_wide_table_puts_the_runs_side_by_side(tmp_path, capsys):
    """One column per epoch, ten to a table; an epoch a run has not reached, or a train figure
    its log lacks, is a dash; a range backwards is refused."""
    a = _log(tmp_path, [json.dumps({"epoch": e, "test_acc": 0.5 + e / 100,
                                    "train_acc": 0.4 + e / 100}) for e in range(1, 13)], "a")
    b = _log(tmp_path, [_epoch(e, 0.6) for e in range(1, 4)], "b")
    main(["--runs", str(a), str(b), "--out", str(tmp_path / "c.png"), "--no-bundled",
          "--wide"])
    first, second = capsys.readouterr().out.strip().split("\n\n")[:2]
    rows = first.splitlines()
    assert rows[0] == "| epoch | " + " | ".join(map(str, range(1, 11))) + " |"
    assert rows[2].startswith(f"| test, {a} | 51.00 | 52.00 |")
    assert rows[3] == f"| test, {b} | 60.00 | 60.00 | 60.00 |" + " - |" * 7
    assert rows[4].startswith(f"| train, {a} | 41.0 | 42.0 |")
    assert len(rows) == 5  # b has no train figure
    assert second.splitlines()[0] == "| epoch | 11 | 12 |" and len(second.splitlines()) == 4
    main(["--runs", str(a), "--out", str(tmp_path / "c.png"), "--no-bundled", "--wide", "2",
          "3"])
    assert capsys.readouterr().out.splitlines()[0] == "| epoch | 2 | 3 |"
    main(["--runs", str(a), "--out", str(tmp_path / "c.png"), "--no-bundled", "--wide", "11",
          "40"])  # no columns past the runs' last epoch
    assert capsys.readouterr().out.splitlines()[0] == "| epoch | 11 | 12 |"
    with pytest.raises(SystemExit):
        main(["--runs", str(a), "--out", str(tmp_path / "c.png"), "--wide", "3", "2"])
    with pytest.raises(ValueError, match="from epoch 13: the runs end at epoch 12"):
        main(["--runs", str(a), "--out", str(tmp_path / "c.png"), "--wide", "13"])
