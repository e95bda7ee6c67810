import pytest

from model.cli import run
from model.modelfile import ModelFileError


def _raising(exc):
    def main():
        raise exc
    return main


@pytest.mark.parametrize("exc", [ValueError("bad --lanes"),
                                 FileNotFoundError("no such file: x.sfm"),
                                 ModelFileError("truncated header")])
def test_a_users_error_ends_on_one_line(exc):
    with pytest.raises(SystemExit) as e:
        run(_raising(exc))
    assert e.value.code == f"error: {exc}"


def test_the_prefix_names_the_command():
    with pytest.raises(SystemExit) as e:
        run(_raising(ValueError("x")), prefix="python -m model.checkpoint")
    assert e.value.code == "python -m model.checkpoint: x"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(KeyError):
        run(_raising(KeyError("k")))


def test_keep_traceback_lets_a_users_error_through():
    with pytest.raises(ValueError, match="late"):
        run(_raising(ValueError("late")), keep_traceback=lambda: True)


def test_a_clean_run_returns_without_exiting():
    calls = []
    assert run(lambda: calls.append(1) or {"acc": 0.9}) is None
    assert calls == [1]
