"""``dasync run --retention`` / ``$DASYNC_RETENTION`` and ``dasync purge --older-than``:
durations as people write them, ``forever``, and a usage error (exit 2) naming the source."""

from __future__ import annotations

import pytest

from dasync.cli import build_parser, main
from dasync.cli._common import CliError, parse_duration
from dasync.cli._run import retention


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 604_800.0), ("12h", 43_200.0), ("30m", 1_800.0), ("45s", 45.0), ("1.5", 1.5),
     (" 2 H ", 7_200.0), (".5d", 43_200.0)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1", "7w", "d", "1e3", "forever", "7 days"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected a positive duration such as 7d"):
        parse_duration(text)


def _args(*argv: str) -> object:
    return build_parser().parse_args(["run", "service.py", *argv])


def test_the_flag_wins_then_the_variable_then_seven_days() -> None:
    assert retention(_args("--retention", "2h"), {"DASYNC_RETENTION": "1d"}) == 7_200.0
    assert retention(_args(), {"DASYNC_RETENTION": "1d"}) == 86_400.0
    assert retention(_args(), {}) == 604_800.0
    assert retention(_args("--retention", "forever"), {}) is None
    assert retention(_args(), {"DASYNC_RETENTION": "Forever"}) is None


@pytest.mark.parametrize(
    ("argv", "env", "source"),
    [
        (("--retention", "soon"), {}, "--retention"),
        ((), {"DASYNC_RETENTION": "0"}, "$DASYNC_RETENTION"),
    ],
)  # fmt: skip
def test_a_bad_value_is_a_usage_error_naming_its_source(
    argv: tuple[str, ...], env: dict[str, str], source: str
) -> None:
    with pytest.raises(CliError) as info:
        retention(_args(*argv), env)
    assert info.value.code == 2
    assert str(info.value).startswith(f"{source}: expected a positive duration")


def test_purge_refuses_a_bad_older_than_before_connecting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # exits 2 at once: no NATS server is looked for
    assert main(["purge", "Orders", "--older-than", "soon", "--nats", "nats://127.0.0.1:1"]) == 2
    assert "error: --older-than: expected a positive duration" in capsys.readouterr().err
