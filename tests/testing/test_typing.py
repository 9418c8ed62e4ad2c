"""Type checkers accept dasync's typed surface and catch misuse: ``typing_cases.py`` holds
``assert_type`` checks and lines that must be errors (``# type: ignore[code]`` with unused
ignores reported, so a line that stops being an error fails the test)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mypy import api

CASES = Path(__file__).with_name("typing_cases.py")
ROOT = Path(__file__).parents[2]


def test_mypy() -> None:
    # the project's own configuration (strict), so the cache is the one `mypy` keeps warm
    stdout, stderr, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--warn-unused-ignores", str(CASES)]
    )
    assert status == 0, stdout + stderr


@pytest.mark.skipif(shutil.which("pyright") is None, reason="pyright is not installed")
def test_pyright() -> None:
    """Runs where pyright is installed (it is not a test dependency: it needs Node.js)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        ["pyright", "--pythonpath", sys.executable, str(CASES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
