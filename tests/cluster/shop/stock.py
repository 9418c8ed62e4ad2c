"""``dasync run stock.py``: the Stock service of the cluster test's shop."""

from __future__ import annotations

import asyncio

from shop_contracts import Stock, quantity
from shop_tally import open_tally

import dasync

IO_SECONDS = 0.05


class StockService(Stock):
    def __init__(self) -> None:
        self.tally = open_tally()

    async def reserve(self, order: str, item: str) -> int:
        key = dasync.call_id()
        self.tally.began("reserve", key, f"{order}/{item}")
        await dasync.io(asyncio.sleep(IO_SECONDS))
        self.tally.effect("reserve", key, f"{order}/{item}")
        return quantity(item)
