"""``dasync.testing.runtime()`` skips time: whole workflows that wait for days finish in
milliseconds, timers in deadline order, across services."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import dasync
import dasync.testing
from dasync.testing.pytest_plugin import RuntimeFactory


class Approvals(Protocol):
    async def wait_for_manager(self, request: str, days: int) -> str: ...


class Expenses(Protocol):
    async def submit(self, request: str) -> list[str]: ...


class ApprovalService(Approvals):
    async def wait_for_manager(self, request: str, days: int) -> str:
        await asyncio.sleep(days * 86_400)
        return f"{request}: no answer in {days} day(s)"


class ExpenseService(Expenses):
    def __init__(self, approvals: Approvals) -> None:
        self.approvals = approvals

    async def submit(self, request: str) -> list[str]:
        started = time.time()  # the routine's clock: virtual here
        try:
            async with asyncio.timeout(2 * 86_400):
                answers = await asyncio.gather(
                    self.approvals.wait_for_manager(request, 3),  # past the deadline
                    self.approvals.wait_for_manager(request, 1),
                )
        except TimeoutError:
            answers = ["escalated"]
        return [*answers, f"after {round((time.time() - started) / 86_400)} day(s)"]


async def test_a_workflow_of_days_takes_milliseconds() -> None:
    async with dasync.testing.runtime([ExpenseService, ApprovalService]) as rt:
        real = time.perf_counter()
        virtual = rt.clock.now()
        assert await rt.client.proxy(Expenses).submit("taxi") == ["escalated", "after 2 day(s)"]
        assert time.perf_counter() - real < 2
        assert rt.clock.now() - virtual >= 2 * 86_400


async def test_a_day_long_sleep(dasync_runtime: RuntimeFactory) -> None:
    rt = await dasync_runtime([ApprovalService])
    real = time.perf_counter()
    result = await rt.client.proxy(Approvals).wait_for_manager("hotel", 1)
    assert result == "hotel: no answer in 1 day(s)"
    assert time.perf_counter() - real < 1
