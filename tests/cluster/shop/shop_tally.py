"""The durable record of the shop's side effects, outside dasync: one SQLite file (WAL).

Shared by every process (the path is ``$SHOP_TALLY``), committed row by row before
the method goes on; SQLite survives ``kill -9`` of a writer.

* ``executions``: one row per execution of a side effect (kind, ``dasync.call_id()``,
  subject, pid, time), written when it *begins*, before the external I/O;
* ``effects``: the effect itself, keyed by ``(kind, call_id)`` — the idempotency key
  an external API would take — with ``writes`` counting the executions that reached it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Execution:
    kind: str
    call_id: str
    subject: str
    pid: int
    began: float


class Tally:
    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS executions "
            "(kind TEXT, call_id TEXT, subject TEXT, pid INTEGER, began REAL)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS effects (kind TEXT, call_id TEXT, subject TEXT, "
            "pid INTEGER, writes INTEGER, PRIMARY KEY (kind, call_id))"
        )

    def began(self, kind: str, call_id: str, subject: str) -> None:
        self.db.execute(
            "INSERT INTO executions VALUES (?, ?, ?, ?, ?)",
            (kind, call_id, subject, os.getpid(), time.time()),
        )

    def effect(self, kind: str, call_id: str, subject: str) -> None:
        self.db.execute(
            "INSERT INTO effects VALUES (?, ?, ?, ?, 1) "
            "ON CONFLICT(kind, call_id) DO UPDATE SET writes = writes + 1",
            (kind, call_id, subject, os.getpid()),
        )

    # --- reading (the test) -------------------------------------------------------------------

    def effect_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM effects").fetchone()[0])

    def effects(self) -> dict[tuple[str, str], tuple[str, int]]:
        """``{(kind, call_id): (subject, writes)}``."""
        rows = self.db.execute("SELECT kind, call_id, subject, writes FROM effects")
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def executions(self) -> list[Execution]:
        rows = self.db.execute(
            "SELECT kind, call_id, subject, pid, began FROM executions ORDER BY rowid"
        )
        return [Execution(*r) for r in rows]

    def close(self) -> None:
        self.db.close()


def open_tally() -> Tally:
    return Tally(os.environ["SHOP_TALLY"])
