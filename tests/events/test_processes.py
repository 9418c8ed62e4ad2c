"""Show 1 over NATS with real processes: a publisher and two subscribing services, each in
its own process; one subscriber is killed with ``kill -9`` mid-run and restarted.

Each subscriber counts in SQLite (see ``_procs.py``): effects keyed by the
handler routine's id must be exactly the 1,000 events; executions may exceed
them only for events the killed process was handling when it died.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).with_name("_procs.py")
EVENTS = 1000
ROOT = Path(__file__).resolve().parents[2]


def _wait(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        time.sleep(0.02)


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []


def _effects(db: Path) -> int:
    rows = _query(db, "SELECT COUNT(*) FROM effects")
    return int(rows[0][0]) if rows else 0


class Processes:
    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.workdir = workdir
        self.namespace = f"proc{uuid.uuid4().hex[:10]}"
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, role: str, *extra: str) -> subprocess.Popen[bytes]:
        ready = self.workdir / f"{role}.ready"
        ready.unlink(missing_ok=True)
        with (self.workdir / f"{role}.log").open("ab") as log:  # the child keeps its own fd
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(SCRIPT),
                    role,
                    self.url,
                    self.namespace,
                    str(self.workdir),
                    *extra,
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running.append(proc)
        _wait(lambda: ready.exists() or proc.poll() is not None, 30, f"{role} ready")
        assert proc.poll() is None or role == "publisher", self.log(role)
        return proc

    def log(self, role: str) -> str:
        path = self.workdir / f"{role}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.running:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes(events_nats_server: Any, tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(events_nats_server.url, tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.mark.slow
def test_subscriber_processes_each_handle_every_event_once_across_kill_9(
    processes: Processes,
) -> None:
    began = time.monotonic()
    rewards_db = processes.workdir / "rewards.sqlite"
    emails_db = processes.workdir / "emails.sqlite"
    rewards = processes.start("rewards")
    processes.start("emails")
    publisher = processes.start("publisher", str(EVENTS))

    # kill -9 the rewards process once it has durably handled a part of the events
    _wait(lambda: _effects(rewards_db) >= 150, 60, "rewards handled 150 events")
    os.kill(rewards.pid, signal.SIGKILL)
    rewards.wait(10)
    killed_pid = rewards.pid
    effects_at_kill = _effects(rewards_db)
    processes.start("rewards")

    assert publisher.wait(60) == 0, processes.log("publisher")
    assert f"published {EVENTS}" in processes.log("publisher")
    _wait(
        lambda: _effects(rewards_db) == EVENTS and _effects(emails_db) == EVENTS,
        60,
        "both subscribers handled every event",
    )
    time.sleep(2.5)  # longer than ack_wait: a stray redelivery would run a handler again
    processes.stop_all()

    all_numbers = list(range(EVENTS))
    for db in (rewards_db, emails_db):
        numbers = sorted(n for (n,) in _query(db, "SELECT number FROM effects"))
        assert numbers == all_numbers, db.name  # every event, once per subscribing service

    # the emails process was never killed: one execution per event
    assert _query(emails_db, "SELECT COUNT(*) FROM runs") == [(EVENTS,)]
    # the rewards process: executions beyond the events only for events the killed
    # process was handling when it died (and at most once more, by its replacement)
    assert effects_at_kill < EVENTS  # the kill happened mid-run
    extra = _query(
        rewards_db,
        f"SELECT key, COUNT(*), SUM(pid = {killed_pid}), SUM(pid != {killed_pid}) "
        "FROM runs GROUP BY key HAVING COUNT(*) > 1",
    )
    for key, runs, by_killed, by_others in extra:
        assert (runs, by_killed, by_others) == (2, 1, 1), key
    assert len(extra) <= 64  # at most the handlers in flight (the worker's concurrency)
    replacement_runs = _query(rewards_db, f"SELECT COUNT(*) FROM runs WHERE pid != {killed_pid}")
    assert replacement_runs[0][0] > 0  # the restarted process did its share
    assert time.monotonic() - began < 90
