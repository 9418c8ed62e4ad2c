"""``dasync.testing.replay``: would this code replay the routines in flight?

Export journals from production (``dasync show ROUTINE --export``, ``dasync export
SERVICE --status running``), then, in CI, replay them against the code about to be
deployed: a routine whose journal the new code does not reproduce would be parked
after the deploy (``NonDeterminismError``), so the report names each one with the
step and the line where it diverges. Wrap the change in ``dasync.patched`` and the
report comes back clean.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import NonDeterminismError
from .._injection import Container
from .._runtime._runtime import Runtime
from .._runtime._versions import journal_import

__all__ = ["ReplayResult", "load_journals", "replay"]


@dataclass(frozen=True)
class ReplayResult:
    """How one exported journal replayed against the code under test."""

    service: str
    routine_id: str
    steps: int
    """Entries in the journal."""
    error: BaseException | None = None
    """``NonDeterminismError`` where the code diverges; another exception if the journal
    could not be replayed at all (its service is not among those given, say)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def step(self) -> int | None:
        """The journal step at which the code diverged."""
        return self.error.step if isinstance(self.error, NonDeterminismError) else None

    @property
    def where(self) -> str:
        """The line of your code that issued the differing command (``file:line in fn``)."""
        return self.error.where if isinstance(self.error, NonDeterminismError) else ""

    def __str__(self) -> str:
        head = f"{self.service}/{self.routine_id} ({self.steps} steps)"
        return f"{head}: replays" if self.ok else f"{head}: {self.error}"


def load_journals(source: str | Path) -> list[dict[str, Any]]:
    """Exported journals from a file (or text) of one JSON object or JSON lines."""
    text = Path(source).read_text() if isinstance(source, Path) or (
        isinstance(source, str) and not source.lstrip().startswith("{") and Path(source).exists()
    ) else str(source)  # fmt: skip
    text = text.strip()
    if not text:
        return []
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


async def replay(
    journals: Iterable[Mapping[str, Any]],
    *services: type,
    container: Container | None = None,
) -> list[ReplayResult]:
    """Replay each exported journal against ``services`` (their current code; the
    constructors' other parameters from ``container``), committing and sending nothing.

    The same check a worker makes when it resumes a routine after a deploy.
    """
    runtime = Runtime(services, container=container, index=False, retention=None)
    results = []
    for data in journals:
        service, routine_id, entries = journal_import(data)
        try:
            if service not in runtime.worker.services:
                known = ", ".join(sorted(runtime.worker.services)) or "none"
                raise LookupError(f"service {service!r} is not among those given ({known})")
            await runtime.worker.check_replay(service, routine_id, entries)
        except Exception as exc:  # reported, for every journal: not raised at the first
            results.append(ReplayResult(service, routine_id, len(entries), exc))
        else:
            results.append(ReplayResult(service, routine_id, len(entries)))
    await runtime.close()
    return results
