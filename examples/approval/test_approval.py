"""The approval workflow's own tests: the 1-hour deadline takes no time (the in-memory
runtime's virtual clock jumps to it), so they run in well under a second."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from expenses import Expense, Expenses
from service import ConsoleNotifier, ExpenseService, LedgerPayouts

import dasync
from dasync.testing import runtime

HOUR = 3600.0
EXPENSE = Expense("exp-7", "ada", Decimal("42.50"), "meg")
SERVICES = [ExpenseService, ConsoleNotifier, LedgerPayouts]


async def stages(handle: dasync.RoutineHandle[Any], until: str) -> list[str]:
    """The routine's progress stages, read as a client would, up to ``until``."""
    seen = []
    async for _, update in handle.progress():
        seen.append(update["stage"])
        if update["stage"] == until:
            break
    return seen


@pytest.mark.dasync
async def test_the_manager_approves_in_time() -> None:
    began = time.monotonic()
    async with runtime(SERVICES) as rt:
        start = rt.clock.now()
        with rt.clock.held():  # act before the deadline: no jump to it meanwhile
            handle = await rt.client.start(Expenses.submit, EXPENSE, HOUR)
            assert await stages(handle, "waiting") == ["submitted", "waiting"]
            await handle.signal("approval", True)
        assert await handle.result(timeout=5) == "paid"
        assert rt.clock.now() - start < HOUR
        assert await stages(handle, "paid") == ["submitted", "waiting", "paid"]
        assert rt.instance_of(LedgerPayouts).paid == {"exp-7": Decimal("42.50")}
    assert time.monotonic() - began < 1.0


@pytest.mark.dasync
async def test_an_unanswered_hour_escalates_to_finance() -> None:
    began = time.monotonic()
    async with runtime(SERVICES) as rt:
        start = rt.clock.now()
        handle = await rt.client.start(Expenses.submit, EXPENSE, HOUR)
        assert await stages(handle, "escalated") == ["submitted", "waiting", "escalated"]
        assert rt.clock.now() - start >= HOUR  # the hour passed, virtually
        await handle.signal("approval", True)  # finance approves
        assert await handle.result(timeout=5) == "paid"
        updates = [u async for _, u in handle.progress()]
        assert updates[-1] == {"stage": "paid", "by": "finance", "receipt": "receipt-exp-7"}
    assert time.monotonic() - began < 1.0


@pytest.mark.dasync
async def test_a_rejection_pays_nothing() -> None:
    async with runtime(SERVICES) as rt:
        with rt.clock.held():
            handle = await rt.client.start(Expenses.submit, EXPENSE, HOUR)
            await stages(handle, "waiting")
            await handle.signal("approval", False)
        assert await handle.result(timeout=5) == "rejected"
        assert rt.instance_of(LedgerPayouts).paid == {}


@pytest.mark.dasync
async def test_the_service_alone_with_fakes() -> None:
    """``instantiate``: the service's own code, its collaborators faked, under a virtual
    clock; the hour passes at once, signals come from the test."""
    import asyncio

    from dasync.testing import clock_of, instantiate, send_signal

    notes: list[tuple[str, str]] = []
    paid: list[str] = []

    class Notes:
        async def notify(self, to: str, text: str) -> None:
            notes.append((to, text))

    class Pay:
        async def pay(self, expense_id: str, employee: str, amount: Decimal) -> str:
            paid.append(expense_id)
            return f"r-{expense_id}"

    svc = instantiate(ExpenseService, notifier=Notes(), payouts=Pay())
    began = clock_of(svc).now()
    running = asyncio.ensure_future(svc.submit(EXPENSE, HOUR))
    while len(notes) < 2:  # noqa: ASYNC110 - the manager is asked, an hour passes, finance
        await asyncio.sleep(0)
    assert clock_of(svc).now() - began >= HOUR
    send_signal(svc, "approval", True)
    assert await running == "paid"
    assert [to for to, _ in notes] == ["meg", "finance"] and paid == ["exp-7"]
