"""``dasync run billing.py``: the Billing service of the cluster test's shop."""

from __future__ import annotations

import asyncio

from shop_contracts import Billing, receipt
from shop_tally import open_tally

import dasync

IO_SECONDS = 0.05
"""The payment API call (a kill of a node is likely to land in some)."""


class BillingService(Billing):
    def __init__(self) -> None:
        self.tally = open_tally()

    async def charge(self, order: str, amount: int) -> str:
        key = dasync.call_id()
        self.tally.began("charge", key, order)
        await dasync.io(asyncio.sleep(IO_SECONDS))
        self.tally.effect("charge", key, order)  # idempotent under the call id
        return receipt(order, amount)
