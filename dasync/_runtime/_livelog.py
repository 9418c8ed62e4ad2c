"""The live log of ``dasync run``: one line per routine started, resumed, retried, parked,
completed or failed, readable by a person (or one JSON object per line for machines).

An observer (``_observe``): it hears of committed steps, so a line means the fact is
in the journal. Repeats after a redelivery (``resent``) print nothing: the worker
that committed the step printed it. A live log never raises (a failing write must
not make deliveries fail), and it keeps only a bounded memory of the routines it saw.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from .._engine import Start, StepRecord
from .._failures import decode_failure

__all__ = ["LiveLog"]

_log = logging.getLogger("dasync.livelog")

KINDS = ("started", "resumed", "retried", "parked", "completed", "failed")


def _stdout(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


class LiveLog:
    """Writes the lines; ``json``: one JSON object a line instead of text."""

    def __init__(
        self,
        write: Callable[[str], None] = _stdout,
        *,
        json: bool = False,
        remember: int = 10_000,
    ) -> None:
        self._write = write
        self.json = json
        self._seen: OrderedDict[tuple[str, str], tuple[str, float | None]] = OrderedDict()
        """(service, routine) -> (method, start time) of routines this process ran."""
        self._remember = remember

    # --- observer hooks -------------------------------------------------------------------

    async def committed(
        self, service: str, routine_id: str, index: int, record: StepRecord, *, resent: bool
    ) -> None:
        if resent:
            return
        inp = record.input
        if isinstance(inp, Start):
            method = inp.meta.get("method", "")
            self._keep(service, routine_id, method, inp.at)
            self._line("started", service, routine_id, method=method)
        postponed = record.postponed
        if postponed is not None:
            self._line(
                "retried",
                service,
                routine_id,
                method=self._seen.get((service, routine_id), ("", None))[0],
                attempt=postponed.attempt,
                delay=round(max(0.0, postponed.due - inp.at), 3),
                error=postponed.error,
            )
            return
        done = record.completion
        if done is None:
            return
        method, began = self._seen.pop((service, routine_id), ("", None))
        facts: dict[str, Any] = {"steps": index + 1}
        if began is not None:
            facts["seconds"] = round(max(0.0, inp.at - began), 3)
        if done.ok:
            self._line("completed", service, routine_id, method=method, **facts)
        else:
            self._line(
                "failed", service, routine_id, method=method, error=_failure(done.payload), **facts
            )

    async def resumed(
        self, service: str, routine_id: str, method: str, entries: int, *, attempt: int
    ) -> None:
        self._keep(service, routine_id, method, None)
        self._line("resumed", service, routine_id, method=method, replayed=entries, attempt=attempt)

    async def set_aside(
        self, service: str, routine_id: str, entries: int, reason: str, *, told: bool
    ) -> None:
        method, _ = self._seen.get((service, routine_id), ("", None))
        if told:  # its caller got CallFailed: for the caller the routine failed
            self._seen.pop((service, routine_id), None)
            self._line("failed", service, routine_id, method=method, error=reason,
                       dead_letter=True)  # fmt: skip
        else:
            self._line("parked", service, routine_id, method=method, reason=reason)

    # --- lines ----------------------------------------------------------------------------

    def _keep(self, service: str, routine_id: str, method: str, began: float | None) -> None:
        key = (service, routine_id)
        known = self._seen.get(key)
        if began is None and known is not None:
            began = known[1]
        self._seen[key] = (method or (known[0] if known else ""), began)
        self._seen.move_to_end(key)
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)

    def _line(self, kind: str, service: str, routine_id: str, *, method: str = "",
              **facts: Any) -> None:  # fmt: skip
        try:
            now = time.time()
            if self.json:
                record = {
                    "time": _iso(now),
                    "event": kind,
                    "service": service,
                    "method": method,
                    "routine": routine_id,
                    **facts,
                }
                self._write(orjson.dumps(record).decode())
            else:
                self._write(_text(now, kind, service, method, routine_id, facts))
        except Exception as exc:  # a log line is never worth a failed delivery
            _log.debug("live log line lost: %r", exc)


def _text(now: float, kind: str, service: str, method: str, routine_id: str,
          facts: dict[str, Any]) -> str:  # fmt: skip
    """``12:00:01.234 completed Shop.place_order 7f3a…  3 steps in 1.20s``."""
    clock = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    where = f"{service}.{method}" if method else service
    detail = []
    if kind == "resumed":
        detail.append(f"replayed {facts['replayed']} steps")
        if facts.get("attempt", 1) > 1:
            detail.append(f"redelivered (attempt {facts['attempt']})")
    elif kind == "retried":
        detail.append(f"attempt {facts['attempt']} failed: {facts['error']}; "
                      f"retrying in {facts['delay']}s")  # fmt: skip
    elif kind == "parked":
        detail.append(f"until its dead letter is retried: {facts['reason']}")
    elif kind in ("completed", "failed"):
        if "steps" in facts:
            steps = f"{facts['steps']} step" + ("s" if facts["steps"] != 1 else "")
            if "seconds" in facts:
                steps += f" in {_duration(facts['seconds'])}"
            detail.append(steps)
        if kind == "failed":
            prefix = "dead-lettered: " if facts.get("dead_letter") else ""
            detail.append(prefix + str(facts["error"]))
    line = f"{clock} {kind:<9} {where} {routine_id}"
    return line + ("  " + "; ".join(detail) if detail else "")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}min"


def _failure(payload: bytes) -> str:
    try:
        exc = decode_failure(payload)
    except Exception:
        return "(undecodable error)"
    return f"{type(exc).__name__}: {exc}"[:300]


def _iso(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
