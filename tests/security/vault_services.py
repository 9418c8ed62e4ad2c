"""Three services for the forgery tests (loaded by path, as ``dasync run`` loads a file).

Vault calls Guard and handles Guard's ``checked`` event; Mallory is allowed to
call Guard too, and is the one that tries to pass for Vault. Guard's check waits
``delay`` seconds (a durable timer), which keeps Vault's call pending while the
tests forge messages around it.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import dasync


class Guard(Protocol):
    checked: dasync.Event[str]

    async def check(self, item: str, delay: float) -> str: ...


class Vault(Protocol):
    async def open(self, item: str, delay: float) -> str: ...


class Mallory(Protocol):
    async def probe(self, item: str) -> str: ...


class GuardService(Guard):
    async def check(self, item: str, delay: float) -> str:
        if delay:
            await asyncio.sleep(delay)
        self.checked(item)
        return f"checked {item}"


class VaultService(Vault):
    def __init__(self, guard: Guard) -> None:
        self._guard = guard
        self.seen: list[str] = []
        guard.checked += self.on_checked

    async def open(self, item: str, delay: float) -> str:
        return "vault:" + await self._guard.check(item, delay)

    async def on_checked(self, item: str) -> None:
        self.seen.append(item)


class MalloryService(Mallory):
    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    async def probe(self, item: str) -> str:
        return await self._guard.check(item, 0)
