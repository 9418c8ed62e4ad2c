"""Worker lanes: a consumer per worker for the routines it holds, and taking over the
lanes of workers that are gone (the ``Affinity`` capability; docs/nats.md).

JetStream cannot route by key within one consumer, and the consumers of a work-queue
stream may not overlap, so each worker gets its own subjects (``<svc>.at.<lane>.>``)
and its own consumer on them. A worker is present while its connection subscribes to
``<svc>.alive.<lane>``: the server says so itself (a request there gets "no responders"
once the subscription is gone, with the connection that held it). Every
``lane_rescue`` seconds each worker lists the lanes that hold messages and pulls those
whose worker is absent, until they are empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from dasync._errors import TransportError

from . import _naming as naming
from ._connection import Connection, PermissionDenied
from ._consume import PullConsumer
from ._provision import Provisioner

__all__ = ["LanedSubscription", "MAX_TAKEN"]

_log = logging.getLogger("dasync.nats")

MAX_TAKEN = 32
"""Lanes of absent workers pulled at once by one worker (the rest: at the next pass)."""


class LanedSubscription:
    """What a worker pulls for one service: the shared consumer, its own lane, and the
    lanes it took over; one ``Subscription`` (and ``Backlog``) for the runtime."""

    def __init__(
        self,
        conn: Connection,
        provisioner: Provisioner,
        shared: PullConsumer,
        lane: str,
        make: Callable[[str], PullConsumer],
    ) -> None:
        self.conn = conn
        self.provisioner = provisioner
        self.shared = shared
        self.queue = shared.queue
        self.stream = shared.stream
        self.lane = lane
        self._make = make
        self.own = make(lane)
        self.taken: dict[str, PullConsumer] = {}
        """Lanes of absent workers this one pulls now, by lane."""
        self.released: list[PullConsumer] = []
        """Taken lanes found empty: no longer pulled, their last deliveries settling."""
        self.takeovers = 0
        self._unlisten: Callable[[], Awaitable[None]] | None = None
        self._rescuer: asyncio.Task[None] | None = None
        self._stopped = False
        self._denied_logged = False
        self._passing = asyncio.Lock()
        """One pass at a time: two would both take a lane, and one consumer would be lost."""

    @property
    def consumer(self) -> str:
        return self.shared.consumer

    @property
    def breaks(self) -> int:
        return self.shared.breaks + self.own.breaks

    async def backlog(self) -> int:
        """Messages stored and not yet delivered: the shared queue's and this lane's."""
        return await self.shared.backlog() + await self.own.backlog()

    async def start(self) -> None:
        ns = self.conn.options.namespace
        await self.provisioner.lane(self.queue, self.lane)
        self._unlisten = await self.conn.listen(naming.alive_subject(self.queue, self.lane, ns))
        self.own.start()
        self.shared.start()
        self._rescuer = asyncio.get_running_loop().create_task(self._rescue_forever())

    def _consumers(self) -> list[PullConsumer]:
        return [self.shared, self.own, *self.taken.values(), *self.released]

    async def stop(self) -> None:
        """Stop pulling; then leave the lane, so that its messages go to other workers."""
        if self._stopped:
            return
        self._stopped = True
        if self._rescuer is not None:
            self._rescuer.cancel()
            await asyncio.gather(self._rescuer, return_exceptions=True)
        for consumer in self._consumers():
            await consumer.stop()
        if self._unlisten is not None:
            unlisten, self._unlisten = self._unlisten, None
            await unlisten()

    async def drain(self, grace: float) -> None:
        await self.stop()
        for consumer in self._consumers():
            await consumer.drain(grace)

    def kill(self) -> None:
        self._stopped = True
        if self._rescuer is not None:
            self._rescuer.cancel()
        for consumer in self._consumers():
            consumer.kill()

    # --- taking over ----------------------------------------------------------------------

    async def _rescue_forever(self) -> None:
        interval = self.conn.options.lane_rescue
        while not self._stopped and not self.conn.closed:
            await asyncio.sleep(interval)
            try:
                await self.rescue()
            except TransportError as exc:
                _log.debug("%s: looking for lanes to take over: %s", self.queue, exc)
            except asyncio.CancelledError:
                raise
            except Exception:  # never stop looking: a lane left alone waits forever
                _log.exception("%s: looking for lanes to take over", self.queue)

    async def rescue(self) -> None:
        """One pass: release taken lanes that are empty, take those whose worker is gone."""
        async with self._passing:
            await self._pass()

    async def _pass(self) -> None:
        waiting = await self._lanes_with_messages()
        self.released = [c for c in self.released if c.inflight]
        for lane in [lane for lane in self.taken if lane not in waiting]:
            consumer = self.taken.pop(lane)
            await consumer.stop()
            self.released.append(consumer)
        candidates = [lane for lane in waiting if lane != self.lane and lane not in self.taken][
            : max(0, MAX_TAKEN - len(self.taken))
        ]
        if not candidates or self.conn.available_for() < self.conn.options.ack_wait:
            # right after an outage (a server restart, this connection's reconnection) the
            # workers of these lanes may not have reconnected yet: absent now, alive soon.
            # Each gets a full ack_wait of a reachable server to show itself, as its leases
            # do (``Connection.lease_lapsed``)
            return
        ns = self.conn.options.namespace
        present = await asyncio.gather(
            *(self._present(naming.alive_subject(self.queue, lane, ns)) for lane in candidates)
        )
        for lane, here in zip(candidates, present, strict=True):
            if here or self._stopped:
                continue
            await self.provisioner.lane(self.queue, lane)
            consumer = self._make(lane)
            consumer.start()
            self.taken[lane] = consumer
            self.takeovers += 1
            _log.info("%s: pulling lane %s, whose worker is gone", self.queue, lane)

    async def _present(self, subject: str) -> bool:
        try:
            return await self.conn.present(subject)
        except PermissionDenied as exc:
            if not self._denied_logged:
                self._denied_logged = True
                _log.warning(
                    "%s: cannot tell whether other workers live (%s); their lanes are not "
                    "taken over: regenerate the NATS permissions (dasync nats-permissions)",
                    self.queue, exc,
                )  # fmt: skip
            return True

    async def _lanes_with_messages(self) -> set[str]:
        """The lanes of the stream that hold a message (delivered or not, unacknowledged)."""
        ns = self.conn.options.namespace
        info = await self.conn.api(
            f"STREAM.INFO.{self.stream}",
            {"subjects_filter": naming.lanes_filter(self.queue, ns)},
        )
        subjects = (info.get("state") or {}).get("subjects") or {}
        found = {naming.lane_of_subject(s) for s, count in subjects.items() if count}
        found.discard("")
        return found
