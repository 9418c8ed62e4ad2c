"""The client: start routines from outside any routine and wait for their results."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

from .._clock import Clock
from .._codec import bind_args, decode_result, encode_args
from .._contract import MethodSpec, contract_of, is_contract, method_of_function, spec_of
from .._engine import Complete, Start, check_user_id, completion_of, decode_step
from .._errors import (
    ContractError,
    InvalidArguments,
    MalformedMessage,
    TransportError,
    TransportRefused,
    UnknownService,
)
from .._event import EventSpec
from .._failures import decode_failure
from .._proxy import make_proxy
from ..transports import (
    Continuity,
    DeadLetters,
    Delivery,
    FailureNotes,
    JournalStore,
    Message,
    Origin,
    RoutineEntry,
    RoutineIndex,
    Subscription,
    Transport,
    inbox_queue,
)
from . import _wire
from ._events import not_external
from ._index import RoutineFilter, find_entry, list_entries
from ._news import read_progress, send_signal
from ._timeline import Timeline, load_timeline
from ._versions import journal_export

__all__ = ["Client", "RoutineHandle", "RoutineRecord"]

_log = logging.getLogger("dasync.client")

_CONFIRM = 4
"""A reply not in after this many ``poll_interval``s: read the journal once (whose is it?)."""
_SAFETY = 60
"""A routine of ours whose inbox had no break: its journal is read this rarely (polls)."""

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")
A1 = TypeVar("A1")
A2 = TypeVar("A2")
A3 = TypeVar("A3")
A4 = TypeVar("A4")
A5 = TypeVar("A5")


class RoutineHandle(Generic[R]):
    """A started routine; ``await handle.result()`` waits for its outcome."""

    def __init__(self, client: Client, method: MethodSpec, routine_id: str) -> None:
        self._client = client
        self.method = method
        self.routine_id = routine_id

    @property
    def service(self) -> str:
        return self.method.service

    async def result(self, timeout: float | None = None) -> R:  # noqa: ASYNC109
        """The routine's return value, or its exception raised here."""
        ok, payload = await self.outcome(timeout)
        if ok:
            return cast(R, decode_result(self.method, payload))
        raise decode_failure(payload)

    async def outcome(self, timeout: float | None = None) -> tuple[bool, bytes]:  # noqa: ASYNC109
        """``(ok, payload)`` of the routine's reply, undecoded: the JSON of its result, or its
        failure payload. For relaying an outcome as it is (the HTTP gateway) without
        rebuilding Python objects only to encode them again."""
        return await asyncio.wait_for(self._client._outcome(self), timeout)

    def detach(self) -> None:
        """Stop listening for this routine's reply on the client's inbox.

        A client that started a routine keeps a place for its reply until a
        ``result()`` or ``outcome()`` takes it; one that will not wait (it
        answered "still running") detaches, so the place does not outlive the
        need. A reply that comes later is dropped; ``result()`` then reads the
        journal.
        """
        self._client._waiters.pop(_waiter_key(self.service, self.routine_id), None)

    async def cancel(self) -> None:
        """Ask the routine to cancel (its main task gets ``CancelledError``)."""
        cancel = _wire.cancel_message(self.routine_id, f"c{uuid.uuid4().hex}")
        await self._client._send(self.service, cancel, declare=False)

    async def signal(self, name: str, value: Any, *, signal_id: str | None = None) -> str:
        """Send the routine signal ``name`` (``Client.signal``); the signal's id."""
        return await self._client.signal(
            self.service, self.routine_id, name, value, signal_id=signal_id
        )

    def progress(self, *, after: int = 0, kind: Any = Any) -> AsyncIterator[tuple[int, Any]]:
        """``(n, update)`` for each update the routine publishes (``dasync.progress``), the
        ``n``-th from 1, until it finishes (``Client.progress``)."""
        return self._client.progress(self.service, self.routine_id, after=after, kind=kind)

    def __repr__(self) -> str:
        return f"<RoutineHandle {self.method.qualname} {self.routine_id}>"


@dataclass(frozen=True)
class RoutineRecord:
    """A routine as its journal tells it (``Client.routine``)."""

    service: str
    routine_id: str
    method: str | None
    """The method it runs; ``None`` when only a failure note is left (set aside before its
    first step was committed)."""
    args: bytes | None
    """Its arguments as journaled: the payload its start carried."""
    caller: str | None
    """Who started it, ``kind:name`` (``client:<identity>``, ``service:<name>``...)."""
    outcome: tuple[bool, bytes] | None
    """``(ok, payload)`` once it finished (as ``RoutineHandle.outcome``), else ``None``."""


class Client:
    """Starts routines and receives their replies on a private inbox."""

    def __init__(
        self,
        transport: Transport,
        store: JournalStore,
        clock: Clock,
        *,
        poll_interval: float = 0.5,
        max_payload: int = 1024 * 1024,
    ) -> None:
        self._transport = transport
        self._store = store
        self._clock = clock
        self._poll = poll_interval
        self.identity: str = getattr(transport, "identity", "local")
        """Who this client is to services (``Transport.identity``)."""
        self.origin = Origin.client(self.identity)
        self._inbox = inbox_queue(self.identity, uuid.uuid4().hex)
        self._waiters: dict[str, asyncio.Future[tuple[bool, bytes]]] = {}
        self._subscription: Subscription | None = None
        self._checked: tuple[object, Continuity | None] = (None, None)
        """The subscription last checked for ``Continuity`` (a Protocol isinstance costs
        microseconds, and every wait asks)."""
        self._events = _ClientEvents(self)
        self.max_payload = max_payload

    async def open(self) -> None:
        await self._transport.declare(self._inbox)
        self._subscription = await self._transport.consume(self._inbox, self._on_reply)

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None
        for fut in self._waiters.values():
            fut.cancel()

    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def proxy(self, contract: Callable[..., T]) -> T:
        """A proxy whose calls start routines and return their results.

        Typed as ``Callable[..., T]`` rather than ``type[T]`` because mypy
        refuses Protocol classes for ``type[T]`` ("Only concrete class can be
        given"); a Protocol class still matches ``Callable[..., T]``.
        """
        if not isinstance(contract, type):
            raise ContractError(f"proxy() takes a contract class, not {contract!r}")
        target: type = contract if is_contract(contract) else contract_of(contract)
        proxy: T = make_proxy(target, self._call, events=self._events)
        return proxy

    # Typed by overloads, as Temporal's start_workflow is: PEP 612 allows no keyword
    # parameter (``routine_id``) beside ``*args: P.args, **kwargs: P.kwargs``, so the
    # method's arguments are checked positionally (up to 5) with or without an id, and
    # by ParamSpec (keywords too) without one. The result type is checked in every form.
    @overload
    async def start(
        self, method: Callable[[Any], Awaitable[R]], /, *, routine_id: str | None = None
    ) -> RoutineHandle[R]: ...
    @overload
    async def start(
        self,
        method: Callable[[Any, A1], Awaitable[R]],
        a1: A1,
        /,
        *,
        routine_id: str | None = None,
    ) -> RoutineHandle[R]: ...
    @overload
    async def start(
        self,
        method: Callable[[Any, A1, A2], Awaitable[R]],
        a1: A1,
        a2: A2,
        /,
        *,
        routine_id: str | None = None,
    ) -> RoutineHandle[R]: ...
    @overload
    async def start(
        self,
        method: Callable[[Any, A1, A2, A3], Awaitable[R]],
        a1: A1,
        a2: A2,
        a3: A3,
        /,
        *,
        routine_id: str | None = None,
    ) -> RoutineHandle[R]: ...
    @overload
    async def start(
        self,
        method: Callable[[Any, A1, A2, A3, A4], Awaitable[R]],
        a1: A1,
        a2: A2,
        a3: A3,
        a4: A4,
        /,
        *,
        routine_id: str | None = None,
    ) -> RoutineHandle[R]: ...
    @overload
    async def start(
        self,
        method: Callable[[Any, A1, A2, A3, A4, A5], Awaitable[R]],
        a1: A1,
        a2: A2,
        a3: A3,
        a4: A4,
        a5: A5,
        /,
        *,
        routine_id: str | None = None,
    ) -> RoutineHandle[R]: ...
    @overload
    async def start(
        self,
        method: Callable[Concatenate[Any, P], Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RoutineHandle[R]: ...
    async def start(
        self,
        method: Callable[..., Any],
        /,
        *args: Any,
        routine_id: Any = None,  # str | None; Any as the ParamSpec overload's kwargs may hold it
        **kwargs: Any,
    ) -> RoutineHandle[Any]:
        """Start ``Contract.method(*args, **kwargs)`` and return at once.

        ``routine_id`` makes the start idempotent: starting the same id twice runs
        the routine once (use a business key, e.g. an order id). Type checkers check
        the arguments and the result type (``RoutineHandle[R]``); with ``routine_id``
        they check positional arguments only (a limit of ``ParamSpec``).
        """
        spec = _method_spec_of(method)
        payload = encode_args(spec, bind_args(spec, args, kwargs))
        return await self._start(spec, payload, routine_id)

    def handle(self, method: Callable[..., Awaitable[R]], routine_id: str) -> RoutineHandle[R]:
        """A handle on a routine started earlier (possibly by another client)."""
        return RoutineHandle(self, _method_spec_of(method), routine_id)

    async def start_encoded(
        self,
        method: MethodSpec | Callable[..., Any],
        payload: bytes,
        *,
        routine_id: str | None = None,
    ) -> RoutineHandle[Any]:
        """Start ``method`` with arguments already encoded (``_codec.encode_args``'s JSON
        object), e.g. checked and encoded by the HTTP gateway; otherwise as ``start``.

        The service decodes and checks the payload again, so a wrong one fails the
        routine rather than the worker.
        """
        spec = method if isinstance(method, MethodSpec) else _method_spec_of(method)
        return await self._start(spec, payload, routine_id)

    async def routine(self, service: str, routine_id: str) -> RoutineRecord | None:
        """What this client can read of a routine of ``service``: its method, journaled
        arguments, caller and outcome; ``None`` if it has no journal (never started, not
        taken by a worker yet, or removed after the retention) and no failure note."""
        entries = await self._store.load(service, routine_id)
        done = await self._completion_in(service, routine_id, entries)
        start = decode_step(entries[0]).input if entries else None
        if not isinstance(start, Start):
            if done is None:
                return None
            return RoutineRecord(service, routine_id, None, None, None, (done.ok, done.payload))
        return RoutineRecord(
            service,
            routine_id,
            start.meta.get("method", ""),
            start.args,
            start.meta.get("caller"),
            None if done is None else (done.ok, done.payload),
        )

    async def call_raw(
        self,
        service: str,
        method: str,
        args: bytes,
        *,
        routine_id: str | None = None,
        wait: bool = False,
    ) -> tuple[bool, bytes]:
        """Start a routine from an already-encoded payload (used by ``dasync call``).

        Returns ``(ok, payload)`` of its reply. ``routine_id`` (default: a new
        one) lets the caller name the routine before it starts, e.g. to report it.
        A service named here may be one no contract defines: unless ``wait``, a
        service whose workers never started raises ``UnknownService``; with
        ``wait`` the start waits in its queue for them.
        """
        routine_id = routine_id or uuid.uuid4().hex
        key = _waiter_key(service, routine_id)
        fut = self._waiter(key)
        msg = self._start_message(routine_id, method, args, key)
        try:
            await self._send(service, msg, declare=wait)
            return await fut
        finally:
            self._waiters.pop(key, None)

    async def fire_encoded(
        self, event: EventSpec, payload: bytes, *, fire_id: str | None = None
    ) -> str:
        """Ask ``event``'s service to publish it with ``payload`` (``_codec.encode_event``'s
        bytes); returns once the request is stored, with the fire's id.

        Only an ``ExternalEvent`` can be fired from outside its service. ``fire_id``
        (default: a new one) makes the fire idempotent: firing one id twice publishes one
        event. The service checks the payload again and sets a wrong one aside.
        """
        if not event.external:
            raise not_external(event)
        if len(payload) > self.max_payload:
            raise InvalidArguments(
                f"{event.topic}: the payload is {len(payload)} bytes encoded, over the limit "
                f"of {self.max_payload} bytes"
            )
        fire_id = check_user_id(fire_id) if fire_id else uuid.uuid4().hex
        message = _wire.fire_message(fire_id, event.name, payload, _wire.client_fire_id(fire_id))
        await self._send(event.service, message, declare=True)
        return fire_id

    async def export_journal(self, service: str, routine_id: str) -> dict[str, Any]:
        """The routine's journal as JSON-ready data (``dasync show --export``), for
        ``dasync.testing.replay`` to check new code against. ``LookupError`` if none."""
        entries = await self._store.load(service, routine_id)
        if not entries:
            raise LookupError(f"routine {routine_id!r} of {service} has no journal")
        return journal_export(service, routine_id, entries)

    async def signal(
        self,
        service: str | type,
        routine_id: str,
        name: str,
        value: Any,
        *,
        signal_id: str | None = None,
    ) -> str:
        """Send signal ``name`` with ``value`` to a routine of ``service`` (a name or a
        contract class), which takes it at ``await dasync.signal(name, ...)``; the signal's
        id. A signal sent before the routine waits is kept until it does.

        ``LookupError`` if the routine has no journal, ``RoutineFinished`` if it finished.
        ``signal_id`` (default: a new one) makes sending idempotent: one id is one signal.
        """
        name_of = service if isinstance(service, str) else spec_of(service).name
        return await send_signal(self, name_of, routine_id, name, value, signal_id=signal_id)

    def progress(
        self, service: str | type, routine_id: str, *, after: int = 0, kind: Any = Any
    ) -> AsyncIterator[tuple[int, Any]]:
        """``(n, update)`` for each progress update of a routine of ``service``, in order,
        those after the ``after``-th only, until the routine finishes: a reader that
        reconnects passes the last ``n`` it saw and misses nothing, sees nothing twice."""
        name_of = service if isinstance(service, str) else spec_of(service).name
        return read_progress(self, name_of, routine_id, after=after, kind=kind)

    # --- internals ------------------------------------------------------------------------

    async def _call(self, method: MethodSpec, payload: bytes) -> Any:
        handle: RoutineHandle[Any] = await self._start(method, payload, None)
        return await handle.result()

    async def _start(
        self, method: MethodSpec, payload: bytes, routine_id: str | None
    ) -> RoutineHandle[Any]:
        if len(payload) > self.max_payload:
            raise InvalidArguments(
                f"{method.qualname}(): arguments are {len(payload)} bytes encoded, over the "
                f"limit of {self.max_payload} bytes; pass a reference (an id, a URL) instead"
            )
        routine_id = check_user_id(routine_id) if routine_id else uuid.uuid4().hex
        key = _waiter_key(method.service, routine_id)
        self._waiter(key)
        msg = self._start_message(routine_id, method.name, payload, key)
        try:
            # a service of a contract that is not deployed yet: the start waits for its workers
            await self._send(method.service, msg, declare=True)
        except BaseException:
            self._waiters.pop(key, None)
            raise
        return RoutineHandle(self, method, routine_id)

    async def _send(self, service: str, message: Message, *, declare: bool) -> None:
        """Send, riding out infrastructure failures (a server restarting, a leader election):
        the message keeps its id, so a send that did land is not stored twice. Only the
        caller's own timeout (or a refusal: a closed transport, a permission) ends it.
        ``declare``: a service whose workers never started gets its queue, to wait in."""

        async def attempt() -> bool:
            try:
                await self._transport.send(service, message, self.origin)
                return True
            except UnknownService:
                if not declare:
                    raise
                await self._transport.declare(service)
                return False  # declared: send again

        while not await self._retrying(attempt, f"sending to {service}"):
            pass

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """``attempt()`` until it succeeds or is refused, with backoff."""
        delay = 0.05
        while True:
            try:
                return await attempt()
            except TransportRefused:
                raise
            except (TransportError, TimeoutError, OSError) as exc:
                _log.warning("%s: %r; retrying in %.2fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _start_message(self, routine_id: str, method: str, args: bytes, key: str) -> Message:
        msg_id = _wire.client_start_id(routine_id)
        return _wire.call_message(
            routine_id, method, args, key, 0, msg_id=msg_id, reply_to=self._inbox
        )

    def _waiter(self, key: str) -> asyncio.Future[tuple[bool, bytes]]:
        fut = self._waiters.get(key)
        if fut is None:
            fut = self._waiters[key] = asyncio.get_running_loop().create_future()
        return fut

    async def _on_reply(self, delivery: Delivery) -> None:
        try:
            env = _wire.parse(delivery.message, delivery.origin)
        except MalformedMessage as exc:
            await delivery.term(f"malformed reply: {exc}")
            return
        # a result counts only from the service that runs the routine (the transport
        # vouches for the sender); anything else in this inbox is refused
        service, _, routine_id = env.routine_id.partition("/")
        origin = delivery.origin
        if env.kind != "reply" or origin != Origin.service(service) or env.callee != routine_id:
            reason = f"{origin} may not answer for {env.routine_id!r} (as {env.callee!r})"
            _log.warning("client %s refused a reply: %s", self.identity, reason)
            await delivery.term(reason)
            return
        fut = self._waiters.get(env.routine_id)
        if fut is not None and not fut.done():
            fut.set_result((env.ok, delivery.message.body))
        await delivery.ack()

    async def _outcome(self, handle: RoutineHandle[Any]) -> tuple[bool, bytes]:
        """Wait for the reply in our inbox; read the journal only where it may not come.

        The reply of a routine we started reaches our inbox (a durable consumer) unless
        the inbox lost its place (``Continuity.breaks``) or the routine is not ours (its
        id was started by another client first, whose inbox gets the reply): so the
        journal is read once when the wait grows long, to see whose the routine is, then
        for a routine of ours only after a break (and every ``_SAFETY`` polls besides),
        for another's with backoff. Started elsewhere (no waiter): with backoff.
        """
        key = _waiter_key(handle.service, handle.routine_id)
        fut = self._waiters.get(key)
        loop = asyncio.get_running_loop()
        backoff = self._poll
        breaks = self._breaks()
        mine = False  # the journal's start names our inbox
        read_at = loop.time() + self._poll * _CONFIRM  # when to look at the journal first
        try:
            while True:
                if fut is not None:
                    try:
                        ok, payload = await asyncio.wait_for(asyncio.shield(fut), self._poll)
                        break
                    except TimeoutError:
                        now = self._breaks()
                        if now == breaks and loop.time() < read_at:
                            continue  # the inbox works: the reply comes there
                        breaks = now
                # the reply may not come to the inbox: read the journal (through an outage
                # too: only the caller's own timeout ends the wait)
                try:
                    entries = await self._store.load(handle.service, handle.routine_id)
                    done = await self._completion_in(handle.service, handle.routine_id, entries)
                    mine = mine or self._started_here(entries)
                except TransportRefused:
                    raise
                except (TransportError, TimeoutError, OSError) as exc:
                    _log.info("reading the result of %s failed (%r); waiting", handle, exc)
                    done = None
                if done is not None:
                    ok, payload = done.ok, done.payload
                    break
                backoff = min(backoff * 2, self._poll * 16)
                read_at = loop.time() + (self._poll * _SAFETY if mine else backoff)
                if fut is None:
                    await asyncio.sleep(self._poll)
        finally:
            if fut is not None and fut.done():
                self._waiters.pop(key, None)
        return ok, payload

    def _breaks(self) -> int:
        sub = self._subscription
        checked, continuity = self._checked
        if checked is not sub:
            continuity = sub if isinstance(sub, Continuity) else None
            self._checked = (sub, continuity)
        return continuity.breaks if continuity is not None else 0

    def _started_here(self, entries: list[bytes]) -> bool:
        """Whether the journal's start names our inbox for the reply."""
        if not entries:
            return False
        start = decode_step(entries[0]).input
        return isinstance(start, Start) and start.meta.get("reply_to") == self._inbox

    async def raw_outcome(self, service: str, routine_id: str) -> tuple[bool, bytes]:
        """``(ok, payload)`` of a routine started anywhere, read from its journal when it
        completes (through outages too); for re-attaching to a routine by name."""
        delay = self._poll
        while True:
            try:
                done = await self._completion_of(service, routine_id)
            except TransportRefused:
                raise
            except (TransportError, TimeoutError, OSError) as exc:
                _log.info("reading the result of %s failed (%r); waiting", routine_id, exc)
                done = None
            if done is not None:
                return done.ok, done.payload
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._poll * 4)

    async def _completion_of(self, service: str, routine_id: str) -> Complete | None:
        entries = await self._store.load(service, routine_id)
        return await self._completion_in(service, routine_id, entries)

    async def _completion_in(
        self, service: str, routine_id: str, entries: list[bytes]
    ) -> Complete | None:
        if entries:
            done = completion_of([decode_step(entries[-1])])
            if done is not None:
                return done
        if isinstance(self._store, FailureNotes):
            # set aside: what its caller was told, unless a step was committed since
            noted = await self._store.noted_failure(service, routine_id)
            if noted is not None and noted[0] == len(entries):
                return Complete(0, False, noted[1])
        return None

    async def retry_dead_letter(self, service: str, letter_id: str) -> None:
        """Put a dead letter of ``service`` back in its queue, once its cause is fixed.

        Handles on its routine then wait for the new outcome instead of returning the
        failure its caller was told. ``LookupError`` if there is no such letter.
        """
        if not isinstance(self._transport, DeadLetters):
            raise LookupError(f"the transport keeps no dead letters (no letter {letter_id!r})")
        letters = await self._transport.dead_letters(service)
        letter = next((d for d in letters if d.id == letter_id), None)
        if letter is None:
            raise LookupError(f"no dead letter {letter_id!r} in {service!r}")
        routine_id = letter.message.headers.get(_wire.ROUTINE)
        if routine_id and isinstance(self._store, FailureNotes):
            await self._store.forget_failure(service, routine_id)
        await self._transport.retry_dead_letter(service, letter_id)

    # --- management: the routine index, timelines, cancel and retry by id ------------------

    def _index(self) -> RoutineIndex:
        if not isinstance(self._store, RoutineIndex):
            raise LookupError(f"the journal store {type(self._store).__name__} keeps no index")
        return self._store

    async def list_routines(
        self,
        service: str | None = None,
        *,
        method: str | None = None,
        status: str | None = None,
        parent: str | None = None,
        older_than: float | None = None,
        newer_than: float | None = None,
        limit: int | None = 50,
    ) -> list[RoutineEntry]:
        """Routines from the index (``dasync ls``), the latest started first: of ``service``
        (None: every service with an index), running ``method``, in ``status`` (one of
        ``STATUSES``), called by ``parent`` (``Service/routine_id``), started at least
        ``older_than`` / at most ``newer_than`` seconds ago; at most ``limit`` (None: all).
        ``LookupError`` if the store keeps no index."""
        selected = RoutineFilter(method, status, parent, older_than, newer_than)
        services = None if service is None else [service]
        return await list_entries(self._index(), services, selected, limit, self._clock.now())

    async def find_routine(self, ref: str, service: str | None = None) -> RoutineEntry:
        """The index entry of the routine ``ref`` names: its id (with ``service``, or
        ``SERVICE/ID``, or an id only one service has). ``LookupError`` if none or several."""
        found = await find_entry(self._index(), ref, service)
        if found is None:
            where = f" of {service}" if service else ""
            raise LookupError(f"no routine {ref!r}{where} in the index")
        return found

    async def timeline(self, service: str, routine_id: str, *, depth: int = 3) -> Timeline:
        """The routine's journal as a timeline (``dasync show``), with the timelines of the
        routines it called, ``depth`` levels down. ``LookupError`` if it has no journal."""
        found = await load_timeline(self._store, service, routine_id, depth=depth)
        if found is None:
            raise LookupError(f"routine {routine_id!r} of {service} has no journal")
        return found

    async def cancel_routine(self, service: str, routine_id: str) -> None:
        """Cancel any routine, as an operator (``dasync cancel``): its main task gets
        ``CancelledError`` at its current await and the calls it waits on are cancelled.
        Needs the operator's permissions on a secured server (``docs/security.md``)."""
        cancel = _wire.cancel_message(routine_id, f"o{uuid.uuid4().hex}")
        operator = Origin(Origin.OPERATOR)

        async def attempt() -> None:
            await self._transport.send(service, cancel, operator)

        await self._retrying(attempt, f"cancelling {routine_id} of {service}")

    async def retry_routine(self, service: str, routine_id: str) -> list[str]:
        """Put every dead letter of a parked or dead-lettered routine back in its queue
        (``dasync retry``), oldest first; the ids of the letters. ``LookupError`` if the
        routine has none."""
        if not isinstance(self._transport, DeadLetters):
            raise LookupError("the transport keeps no dead letters")
        letters = [
            letter
            for letter in await self._transport.dead_letters(service)
            if letter.message.headers.get(_wire.ROUTINE) == routine_id
        ]
        if not letters:
            raise LookupError(f"routine {routine_id!r} of {service} has no dead letter")
        for letter in letters:
            await self.retry_dead_letter(service, letter.id)
        return [letter.id for letter in letters]


def _waiter_key(service: str, routine_id: str) -> str:
    """What a reply to this client names (its ``reply routine``): routine ids are unique
    per service only, so two services' routines may share one."""
    return f"{service}/{routine_id}"


def _method_spec_of(method: Callable[..., Any]) -> MethodSpec:
    """The contract method ``method`` names, on the service of the class that defines it.

    The defining class comes first: a method a subclass inherits is the same function
    object, so a lookup by function alone could name the subclass's service.
    """
    qualname = getattr(method, "__qualname__", "")
    owner_name, _, name = qualname.rpartition(".")
    module = getattr(method, "__module__", None)
    owner = _find_owner(method, owner_name, module)
    if owner is None:
        known = method_of_function(method)
        if known is not None:
            return known
        raise ContractError(
            f"pass an unbound contract method such as PaymentTerminal.pay, not {method!r}"
        )
    contract = owner if is_contract(owner) else contract_of(owner)
    spec = spec_of(contract)
    found = spec.method(name)
    if found is None:
        raise ContractError(f"{name!r} is not a method of the contract {spec.name}")
    return found


def _find_owner(method: Callable[..., Any], owner_name: str, module: str | None) -> type | None:
    import sys

    mod = sys.modules.get(module or "")
    obj: Any = mod
    for part in owner_name.split("."):
        if not part or part == "<locals>":
            return None
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) else None


class _ClientEvents:
    """Events on client proxies: firing asks the service (``Client.fire_encoded``);
    subscribing is for services."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def subscribe(self, event: EventSpec, handler: Callable[..., Any]) -> None:
        raise ContractError(
            f"{event.topic}: clients cannot subscribe; subscribe in the constructor of a "
            f"service (customers.{event.name} += self.on_{event.name}) so that the handler "
            f"runs durably, once per event"
        )

    unsubscribe = subscribe

    def publish(self, event: EventSpec, payload: bytes) -> asyncio.Future[None]:
        if not event.external:  # raised at the fire, not at the await
            raise not_external(event)
        return asyncio.ensure_future(self._fired(event, payload))

    async def _fired(self, event: EventSpec, payload: bytes) -> None:
        await self._client.fire_encoded(event, payload)
