"""The examples run end to end with ``dasync run`` and print the story they tell.

They are documentation, so a broken example is a broken doc: each is run as a
user would run it, in a subprocess, and must exit 0 by itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def dasync_run(example: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dasync", "run", f"examples/{example}/service.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


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


def test_coffee() -> None:
    result = dasync_run("coffee")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
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


def test_shop() -> None:
    result = dasync_run("shop")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
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
    assert lines[-1] == 'dasync: main() returned {"Alice":"ok","Bob":"refunded"}'


def test_examples_readme_lists_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for folder in sorted(p for p in EXAMPLES.iterdir() if (p / "service.py").exists()):
        assert f"dasync run examples/{folder.name}/service.py" in readme
