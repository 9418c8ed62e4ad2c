"""The engine imports no transport, no injection and no proxy library (STYLE rule 5)."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("nats", "dependency_injector", "wrapt")


def _modules_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout))


def test_importing_the_engine_keeps_nats_di_and_wrapt_out():
    loaded = _modules_after("import dasync._engine")
    assert "dasync._engine" in loaded
    leaked = {m for m in loaded if m.split(".")[0] in FORBIDDEN}
    assert not leaked, sorted(leaked)


def test_the_public_api_of_errors_and_deterministic_values_stays_light():
    loaded = _modules_after("from dasync import NonDeterminismError, uuid4, spec_of")
    assert not {m for m in loaded if m.split(".")[0] in FORBIDDEN}


def test_nats_is_only_imported_with_the_nats_transport():
    loaded = _modules_after("import dasync.testing; from dasync import Runtime")
    assert "nats" not in loaded
