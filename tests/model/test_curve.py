"""model.curve: training logs read strictly, plotted and tabulated."""

import json

import pytest

from model.curve import main, read_log


def _log(tmp_path, lines):
    run = tmp_path / "run"
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
