"""``dasync codegen``: what it prints and its exit status (FILE is loaded in a process of
its own, as users run it; service files share module names)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dasync.cli import main
from dasync.cli._codegen import _DOCUMENTS
from dasync.codegen import KINDS, compare, pool_of

from .conftest import ROOT, SAMPLE, Generated, hermetic_env


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dasync", "codegen", *map(str, args)],
        cwd=ROOT,
        env=hermetic_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_writes_every_kind() -> None:
    assert _DOCUMENTS == KINDS


def test_check_against_the_same_contracts_finds_no_change(generated: Generated) -> None:
    result = _run("check", SAMPLE, "--against", generated.root / "sample")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no change against ")


def test_check_fails_on_a_breaking_change(generated: Generated, tmp_path: Path) -> None:
    changed = tmp_path / "service.py"
    source = SAMPLE.read_text(encoding="utf-8")
    source = source.replace("async def take(self, sku: str, qty: int) -> int: ...",
                            "async def take(self, sku: str, qty: int, why: str) -> int: ...")
    source += "\n\nclass Audit(Protocol):\n    async def log(self, line: str) -> None: ...\n"
    changed.write_text(source, encoding="utf-8")
    result = _run("check", changed, "--against", generated.root / "sample")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "breaking   Stock.take.arguments.why: required-field-added: callers that predate it " \
        "do not send it" in lines
    assert "compatible Audit: service-added: nobody depends on it yet" in lines
    assert lines[-1].startswith("1 breaking, 1 compatible against ")


def test_check_reads_any_of_the_committed_documents(generated: Generated) -> None:
    today = pool_of(generated.load("sample", "jsonschema"))
    for kind in ("openapi", "asyncapi"):  # the same pool, in components (draft-07 in AsyncAPI)
        assert compare(pool_of(generated.load("sample", kind)), today) == [], kind


def test_check_without_committed_specs_says_how_to_write_them(tmp_path: Path) -> None:
    result = _run("check", SAMPLE, "--against", tmp_path)
    assert result.returncode == 2
    assert f"dasync codegen all {SAMPLE} -o {tmp_path}" in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["codegen", "all", "x.py"], "give the directory with -o DIR"),
        (["codegen", "check", "x.py"], "needs --against DIR"),
        (["codegen", "asyncapi", "x.py", "--namespace", "a.b"], "invalid dasync namespace"),
        (["codegen", "openapi", "missing.py"], "missing.py: no such file"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) in (1, 2)
    assert message in capsys.readouterr().err


OPAQUE = """
from typing import Any, Protocol
from pydantic_core import core_schema


class Opaque:
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(lambda value: value)


class Vault(Protocol):
    async def keep(self, thing: Opaque) -> None: ...
"""


def test_a_type_json_schema_cannot_describe_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "codegen_opaque_vault.py"  # a module name no other test uses
    source.write_text(OPAQUE, encoding="utf-8")
    assert main(["codegen", "jsonschema", str(source)]) == 1
    assert "Vault.keep.arguments cannot be described in JSON Schema" in capsys.readouterr().err
