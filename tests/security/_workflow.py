"""A two-service workflow to run over secured connections: Greeter calls Shouter."""

from __future__ import annotations

import asyncio
from typing import Protocol

import dasync
from dasync.transports import JournalStore, Transport


class Shouter(Protocol):
    async def shout(self, text: str) -> str: ...


class Greeter(Protocol):
    async def greet(self, name: str) -> str: ...


class LoudShouter(Shouter):
    async def shout(self, text: str) -> str:
        return text.upper() + "!"


class PoliteGreeter(Greeter):
    def __init__(self, shouter: Shouter) -> None:
        self._shouter = shouter

    async def greet(self, name: str) -> str:
        await asyncio.sleep(0.05)  # a durable timer: a scheduled message on the server
        return await self._shouter.shout(f"hello {name}")


async def run_workflow(transport: Transport, store: JournalStore, name: str = "ada") -> str:
    """Host both services on ``transport``/``store`` and run one greeting end to end."""
    async with dasync.Runtime([LoudShouter, PoliteGreeter], transport=transport, store=store) as rt:
        return await asyncio.wait_for(rt.client.proxy(Greeter).greet(name), 20)
