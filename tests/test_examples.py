"""The examples run end to end with ``dasync run`` and print the story they tell.

They are documentation, so a broken example is a broken doc: each is run as a
user would run it, in a subprocess, and must exit 0 by itself; on the default
backend (the embedded NATS server, started in the test's own directory and
stopped again by ``dasync run``) and on ``--memory``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dasync.cli._nats import find_embedded
from dasync.transports.nats import stop_embedded

from .test_cli import nats_servers_under

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(params=["nats", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The backend flag's name; the embedded server of ``tmp_path`` is stopped after."""
    yield str(request.param)
    stop_embedded(tmp_path / ".dasync")
    assert nats_servers_under(tmp_path) == []


def dasync_run(example: str, backend: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    flags = ["--memory"] if backend == "memory" else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASYNC_NATS_")}
    result = subprocess.run(
        [sys.executable, "-m", "dasync", "run", EXAMPLES / example / "service.py", *flags],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    if backend == "nats":
        assert re.fullmatch(
            r"dasync: started the NATS server of this directory at nats://127\.0\.0\.1:\d+ "
            r"\(pid \d+, store and log in \./\.dasync/nats\)",
            lines[0],
        ), lines[0]
        assert lines[-1] == (
            "dasync: stopped the NATS server of this directory (no dasync process uses it)"
        )
        assert find_embedded(cwd / ".dasync") is None
    else:
        assert not (cwd / ".dasync").exists()
    return result


def assert_in_order(lines: list[str], expected: list[str]) -> None:
    """Each expected line occurs, in this order (other lines may come in between)."""
    position = 0
    for wanted in expected:
        try:
            position = lines.index(wanted, position) + 1
        except ValueError:
            raise AssertionError(
                f"line {wanted!r} missing (or out of order) in:\n" + "\n".join(lines)
            ) from None


def test_coffee(backend: str, tmp_path: Path) -> None:
    result = dasync_run("coffee", backend, tmp_path)
    lines = result.stdout.splitlines()
    assert_in_order(
        lines,
        [
            "dasync: ready, running main()",
            "barista: took order #1 for Alice (latte)",
            "terminal: charged Alice 3.80 for order #1",
            "coffee machine: pouring 60 ml of coffee for #1",
            "coffee machine: steaming 180 ml of milk for #1",
            "coffee machine: milk for #1 done",
            "coffee machine: coffee for #1 done",
            "barista: here is your latte, Alice (order #1)",
            "main: served Alice: latte (60 ml coffee, 180 ml milk), paid 3.80",
            "barista: took order #2 for Bob (espresso)",
            "main: served Bob: espresso (40 ml coffee, 0 ml milk), paid 2.20",
            "terminal: card of Carol declined for order #3",
            "barista: sorry Carol, no cappuccino without payment",
            "main: Carol got nothing: card ending 0000 was declined",
            "main: served 2 of 3 customers",
            "dasync: main() returned 2",
        ],
    )
    # Milk and coffee are poured in parallel: both start before either is done.
    assert lines.index("coffee machine: steaming 180 ml of milk for #1") < lines.index(
        "coffee machine: milk for #1 done"
    )


def test_shop(backend: str, tmp_path: Path) -> None:
    result = dasync_run("shop", backend, tmp_path)
    lines = result.stdout.splitlines()
    assert_in_order(
        lines,
        [
            "dasync: ready, running main()",
            "warehouse: cannot reserve 1 x unicorn, 0 in stock",
            "shop: out of stock (1 x unicorn requested, 0 in stock), refunding Bob",
            "main: order of Alice: ok",
            "main: order of Bob: refunded",
            "main: payment ledger:",
        ],
    )
    ledger = [line.split() for line in lines if line.startswith("  ") and "tx" in line]
    assert [row[:3] for row in ledger] == [
        ["credit", "Alice", "25.00"],
        ["credit", "Bob", "999.00"],
        ["refund", "Bob", "-999.00"],
    ]
    bob_credit, bob_refund = ledger[1][-1], ledger[2][-1]
    assert bob_credit == bob_refund  # the refund undoes the same transaction
    assert "  balance                  25.00" in lines
    assert 'dasync: main() returned {"Alice":"ok","Bob":"refunded"}' in lines


def test_rewards(backend: str, tmp_path: Path) -> None:
    result = dasync_run("rewards", backend, tmp_path)
    lines = result.stdout.splitlines()
    assert_in_order(
        lines,
        [
            "dasync: ready, running main()",
            "main: Dave was not registered ('dave-at-example.com' is not an email address), "
            "so nothing was announced",
            "main: 3 customers registered; rewards and emails follow on their own",
        ],
    )
    assert "main: Alice has 150 points (referred Bob, welcome bonus) and 2 emails" in lines
    assert lines[-2 if backend == "nats" else -1] == (
        'dasync: main() returned {"Alice":150,"Bob":100,"Carol":100}'
    )
    # the subscribers ran once per event: one welcome email and one follow-up each
    assert sum(line.startswith("mailer:") for line in lines) == 6, lines


def test_examples_readme_lists_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for folder in sorted(p for p in EXAMPLES.iterdir() if (p / "service.py").exists()):
        assert f"dasync run examples/{folder.name}/service.py" in readme


def test_readme_starts_with_the_coffee_example_on_the_embedded_server() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert first_block.strip() == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install . "
        "&& dasync run examples/coffee/service.py"
    )


def test_both_examples_at_once_share_the_embedded_server(tmp_path: Path) -> None:
    """Run side by side from one directory, each keeps its own services and main()."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASYNC_NATS_")}
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        for example in ("coffee", "shop"):
            processes[example] = subprocess.Popen(
                [sys.executable, "-m", "dasync", "run", EXAMPLES / example / "service.py"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        outputs = {name: process.communicate(timeout=30) for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        stop_embedded(tmp_path / ".dasync")
    for name, (_, stderr) in outputs.items():
        assert processes[name].returncode == 0, stderr
        assert "Traceback" not in stderr
    assert "dasync: main() returned 2" in outputs["coffee"][0].splitlines()
    shop_result = 'dasync: main() returned {"Alice":"ok","Bob":"refunded"}'
    assert shop_result in outputs["shop"][0].splitlines()
    assert find_embedded(tmp_path / ".dasync") is None
    assert nats_servers_under(tmp_path) == []
