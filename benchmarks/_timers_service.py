"""The service of ``benchmarks/timers.py``: routines that sleep until a due time.

Hosted by ``dasync run benchmarks/_timers_service.py --nats URL`` in each worker
process. ``nap`` sleeps until ``due`` (epoch seconds) and returns how late it woke:
inside a routine ``time.time()`` is the journaled arrival time of the input that
resumed it, i.e. when a worker processed the timer. Each wake-up also appends
``<routine> <pid>`` to ``$DASYNC_TIMERS_EFFECTS/effects-<pid>.log``: an effect
outside dasync, so the benchmark can count a routine whose code after the sleep ran
twice.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Protocol

import dasync


class Sleeper(Protocol):
    async def nap(self, due: float) -> float: ...


def _effect(routine_id: str) -> None:
    """One line per execution of the code after the sleep, written at once (O_APPEND)."""
    folder = os.environ.get("DASYNC_TIMERS_EFFECTS")
    if not folder:
        return
    line = f"{routine_id} {os.getpid()}\n".encode()
    fd = os.open(
        os.path.join(folder, f"effects-{os.getpid()}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT
    )
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class SleeperService(Sleeper):
    async def nap(self, due: float) -> float:
        await asyncio.sleep(due - time.time())
        late = time.time() - due
        _effect(dasync.call_id())
        return late
