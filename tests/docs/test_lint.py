"""The tree passes the linter configured in pyproject.toml ([tool.ruff])."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ruff_check_passes():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                        "."], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
