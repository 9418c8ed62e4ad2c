"""An expense approval: a workflow that waits for people, durably.

Run it with ``dasync run examples/approval/service.py``, then approve from another
terminal with the command it prints (``dasync signal ... approval true``). The
routine notifies the manager, waits up to ``wait_seconds`` for an ``approval``
signal, escalates to finance when the time is up, pays, and reports each stage as a
progress update (``dasync show ROUTINE --follow``, or ``GET /routines/{id}/progress``
with ``--http``). Kill the process while it waits and run it again: the routine is
still waiting, with its deadline where it was.
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal

# expenses.py sits next to this file; `dasync run` puts this folder on sys.path.
from expenses import Expense, Expenses, Notifier, Payouts

import dasync


class ExpenseService(Expenses):
    def __init__(self, notifier: Notifier, payouts: Payouts) -> None:
        self._notifier = notifier
        self._payouts = payouts

    async def submit(self, expense: Expense, wait_seconds: float = 3600.0) -> str:
        me = dasync.call_id()  # this routine's id: what a signal is addressed to
        dasync.progress({"stage": "submitted", "amount": str(expense.amount)})
        await self._notifier.notify(
            expense.manager,
            f"approve {expense.employee}'s {expense.amount} ({expense.id})? "
            f"dasync signal 'Expenses/{me}' approval true",
        )
        dasync.progress({"stage": "waiting", "approver": expense.manager})
        approver = expense.manager
        try:
            async with asyncio.timeout(wait_seconds):  # a durable deadline
                approved = await dasync.signal("approval", bool)
        except TimeoutError:
            approver = "finance"
            dasync.progress({"stage": "escalated", "approver": approver})
            await self._notifier.notify(
                approver, f"{expense.manager} did not answer for {expense.id}; decide: "
                f"dasync signal 'Expenses/{me}' approval true|false"
            )  # fmt: skip
            approved = await dasync.signal("approval", bool)  # finance has no deadline
        if not approved:
            dasync.progress({"stage": "rejected", "by": approver})
            return "rejected"
        receipt = await self._payouts.pay(expense.id, expense.employee, expense.amount)
        dasync.progress({"stage": "paid", "by": approver, "receipt": receipt})
        return "paid"


class ConsoleNotifier(Notifier):
    async def notify(self, to: str, text: str) -> None:
        print(f"notify {to}: {text}")


class LedgerPayouts(Payouts):
    def __init__(self) -> None:
        self.paid: dict[str, Decimal] = {}

    async def pay(self, expense_id: str, employee: str, amount: Decimal) -> str:
        if expense_id not in self.paid:  # idempotent by expense id
            self.paid[expense_id] = amount
            print(f"payouts: paid {amount} to {employee} for {expense_id}")
        return f"receipt-{expense_id}"


async def main(expenses: Expenses) -> str:
    """Submit one expense and wait for its outcome (approve it with `dasync signal`)."""
    wait = float(os.environ.get("APPROVAL_WAIT", "120"))
    print(f"main: submitting exp-1; the manager has {wait:g} s before finance is asked")
    outcome = await expenses.submit(Expense("exp-1", "ada", Decimal("42.50"), "meg"), wait)
    print(f"main: exp-1 {outcome}")
    return outcome
