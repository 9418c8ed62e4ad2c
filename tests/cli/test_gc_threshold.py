"""``dasync run --gc-threshold`` / ``$DASYNC_GC_THRESHOLD`` and ``dasync.tune_collector``:
a worker process collects its youngest generation after 7,000 allocations, not 700."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import dasync
from dasync.cli import build_parser
from dasync.cli._common import CliError
from dasync.cli._run import gc_threshold


@pytest.fixture
def thresholds() -> Iterator[None]:
    """The test changes the process's collector: put it back."""
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*before)


def test_tune_collector_raises_only_the_first_threshold(thresholds: None) -> None:
    gc.set_threshold(700, 11, 12)
    assert dasync.tune_collector() == (700, 11, 12)
    assert gc.get_threshold() == (7_000, 11, 12)


def test_tune_collector_never_lowers_and_zero_changes_nothing(thresholds: None) -> None:
    gc.set_threshold(50_000, 10, 10)
    dasync.tune_collector(7_000)
    assert gc.get_threshold() == (50_000, 10, 10)
    gc.set_threshold(700, 10, 10)
    dasync.tune_collector(0)
    assert gc.get_threshold() == (700, 10, 10)
    with pytest.raises(ValueError, match="count of allocations"):
        dasync.tune_collector(-1)


def _args(*argv: str) -> object:
    return build_parser().parse_args(["run", "service.py", *argv])


def test_the_flag_wins_then_the_variable_then_the_worker_default() -> None:
    assert gc_threshold(_args("--gc-threshold", "0"), {"DASYNC_GC_THRESHOLD": "9000"}) == 0
    assert gc_threshold(_args(), {"DASYNC_GC_THRESHOLD": "9000"}) == 9_000
    assert gc_threshold(_args(), {}) == 7_000


def test_a_bad_variable_is_a_usage_error_naming_it() -> None:
    with pytest.raises(CliError) as info:
        gc_threshold(_args(), {"DASYNC_GC_THRESHOLD": "lots"})
    assert info.value.code == 2
    assert str(info.value).startswith("$DASYNC_GC_THRESHOLD: expected a whole number")


def test_a_bad_flag_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _args("--gc-threshold", "-5")
    assert "expected a whole number of 0 or more" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [((), 7_000), (("--gc-threshold", "0"), 700)])
def test_dasync_run_sets_it_in_its_process(
    tmp_path: Path, argv: tuple[str, ...], expected: int
) -> None:
    source = """
        import gc
        import dasync

        @dasync.service
        class Echo:
            async def echo(self, text: str) -> str:
                return text

        async def main(echo: Echo) -> int:
            return gc.get_threshold()[0]
    """
    (tmp_path / "echo.py").write_text(textwrap.dedent(source))
    result = subprocess.run(
        [sys.executable, "-m", "dasync", "run", "echo.py", "--memory", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"dasync: main() returned {expected}"
