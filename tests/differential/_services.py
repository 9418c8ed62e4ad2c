"""The generic services generated programs run on.

``Node`` and ``Peer`` interpret a program (``run``); a ``Sub`` node calls
``self.run`` (a durable sub-routine) or ``self.peer.run`` (another service).
``Leaf`` is where effects happen: ``act`` records ``<key>:start``, sleeps its
delay (a durable timer), then records ``<key>:done`` and returns its value or
records ``<key>:fail`` and raises. In the ``hold`` modes it catches
``CancelledError`` and records ``<key>:cancel`` through a durable call to
itself (so the record survives crashes and never comes from a dropped
instance), then re-raises (``hold:raise``) or returns ``-value``
(``hold:return``); in ``hold:finally`` it records ``<key>:finally`` the same way from a
``finally`` block, cancelled or not. ``Listener`` hears the events programs fire.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import dasync

from ._effects import Effects
from ._exceptions import make_error
from ._interp import run_program

__all__ = ["SERVICES", "Leaf", "LeafImpl", "Listener", "Node", "NodeImpl", "Peer", "PeerImpl"]


class Leaf(Protocol):
    async def act(self, key: str, delay: float, mode: str, value: int) -> int: ...
    async def note(self, key: str) -> int: ...


class Peer(Protocol):
    fired: dasync.Event[str]

    async def run(self, prog: str, delay: float) -> Any: ...


class Node(Protocol):
    fired: dasync.Event[str]

    async def run(self, prog: str, delay: float) -> Any: ...


class Listener(Protocol):
    async def heard_node(self, key: str) -> None: ...
    async def heard_peer(self, key: str) -> None: ...


class LeafImpl(Leaf):
    def __init__(self, log: Effects) -> None:
        self.log = log

    async def act(self, key: str, delay: float, mode: str, value: int) -> int:
        self.log.record(f"{key}:start")
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if mode in ("hold:return", "hold:raise"):
                await self.note(f"{key}:cancel")
                if mode == "hold:return":
                    return -value
            raise
        finally:
            if mode == "hold:finally":
                await self.note(f"{key}:finally")
        if mode.startswith("fail:"):
            self.log.record(f"{key}:fail")
            raise make_error(mode[5:], value)
        self.log.record(f"{key}:done")
        return value

    async def note(self, key: str) -> int:
        self.log.record(key)
        return 0


class PeerImpl(Peer):
    def __init__(self, leaf: Leaf) -> None:
        self.leaf = leaf

    async def run(self, prog: str, delay: float) -> Any:
        return await run_program(self, prog, delay)


class NodeImpl(Node):
    def __init__(self, leaf: Leaf, peer: Peer) -> None:
        self.leaf = leaf
        self.peer = peer

    async def run(self, prog: str, delay: float) -> Any:
        return await run_program(self, prog, delay)


class ListenerImpl(Listener):
    def __init__(self, node: Node, peer: Peer, leaf: Leaf) -> None:
        self.leaf = leaf
        node.fired += self.heard_node
        peer.fired += self.heard_peer

    async def heard_node(self, key: str) -> None:
        await self.leaf.note(f"{key}:heard")

    async def heard_peer(self, key: str) -> None:
        await self.leaf.note(f"{key}:heard")


SERVICES: list[type] = [LeafImpl, PeerImpl, NodeImpl, ListenerImpl]
