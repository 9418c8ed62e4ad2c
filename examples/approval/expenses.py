"""The expense approval's contracts: expenses, notifications and payouts.

(This file is ``expenses.py``, not ``contracts.py`` as in the other examples, so that
its tests can run in one process with theirs.)
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True)
class Expense:
    id: str
    employee: str
    amount: Decimal
    manager: str
    """Who approves it first; finance decides once the manager's time is up."""


class Notifier(Protocol):
    # Tell someone something (an e-mail, a chat message): here, a line on stdout.
    async def notify(self, to: str, text: str) -> None: ...


class Payouts(Protocol):
    # Pay an expense back; keyed by its id, so paying one twice pays once.
    async def pay(self, expense_id: str, employee: str, amount: Decimal) -> str: ...


class Expenses(Protocol):
    # Returns "paid" or "rejected". Waits `wait_seconds` for the manager's `approval`
    # signal, then asks finance, and streams its progress all along.
    async def submit(self, expense: Expense, wait_seconds: float = 3600.0) -> str: ...
