"""``dasync run orders.py``: the Orders workflow of the cluster test's shop."""

from __future__ import annotations

import asyncio

from shop_contracts import ITEMS, PAUSE, Billing, Orders, Stock, amount, item, order_id


class OrdersService(Orders):
    def __init__(self, billing: Billing, stock: Stock) -> None:
        self.billing = billing
        self.stock = stock

    async def place(self, n: int) -> str:
        order = order_id(n)
        if n % 4 == 0:
            await asyncio.sleep(PAUSE)  # a durable timer
        paid = await self.billing.charge(order, amount(n))
        reserved = await asyncio.gather(
            *(self.stock.reserve(order, item(n, i)) for i in range(ITEMS))
        )
        return f"ok:{paid}:{sum(reserved)}"
