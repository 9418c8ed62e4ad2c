"""Golden journals: committed journals of a saga replay under today's code, step for step.

``journals_v2.json`` was recorded with the current journal format and
``journals_v1.json`` with dasync as of commit ac775eb (format 1), both by
``python -m tests.golden.record``. A change to the journal format, to replay
matching or to the ids dasync derives makes these tests fail: routines in flight
across an upgrade would no longer resume. If a change is intended, record anew
and say in the commit which journals stop replaying and why.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from dasync._codec import encode_failure
from dasync._engine import RoutineInstance, Start, decode_step, encode_step
from dasync._runtime._worker import _body
from dasync.testing import runtime

from . import _services

HERE = Path(__file__).parent
FILES = {"v1": HERE / "journals_v1.json", "v2": HERE / "journals_v2.json"}


def _load(version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FILES[version].read_text())
    return data


def _entries(journal: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(e) for e in journal["entries"]]


@pytest.mark.parametrize("version", sorted(FILES))
async def test_every_golden_journal_replays_to_its_recorded_outcome(version: str) -> None:
    data = _load(version)
    async with runtime(_services.SERVICES) as rt:
        for journal in data["journals"]:
            hosted = rt.worker.services[journal["service"]]
            records = [decode_step(e) for e in _entries(journal)]
            start = records[0].input
            assert isinstance(start, Start)
            method = start.meta["method"]
            inst = RoutineInstance(
                journal["routine_id"], hosted.spec.name, method, _body(hosted, method),
                encode_failure, context=dict(start.meta),
            )  # fmt: skip
            await inst.replay(records)  # raises NonDeterminismError on any difference
            assert inst.done, journal["routine_id"]
            assert inst.completion == records[-1].completion
            assert inst.legacy is (version == "v1")
            inst.evict()
    assert data["results"] == {"golden-order": "20:3:36", "golden-abandon": "cancelled"}


def test_format_2_entries_decode_and_encode_to_the_same_bytes() -> None:
    for journal in _load("v2")["journals"]:
        for entry in _entries(journal):
            assert encode_step(decode_step(entry)) == entry


def test_format_1_entries_still_decode_with_their_legacy_ids() -> None:
    shop = next(j for j in _load("v1")["journals"] if j["routine_id"] == "golden-order")
    calls = [c for e in _entries(shop) for c in decode_step(e).commands if hasattr(c, "callee")]
    assert calls and all(c.callee == "" for c in calls)  # ids then derived as <caller>-<seq>


async def test_recording_today_gives_the_committed_journals() -> None:
    """The recorder itself is deterministic but for random ids and seeds: the shapes match."""
    from .record import record

    fresh = await record()
    committed = _load("v2")
    assert fresh["results"] == committed["results"]
    shape = [(j["service"], j["routine_id"], len(j["entries"])) for j in fresh["journals"]]
    assert shape == [
        (j["service"], j["routine_id"], len(j["entries"])) for j in committed["journals"]
    ]
