"""The worker: delivery -> engine -> commit journal step -> send outbox -> ack.

Rules that make calls exactly-once per call id:

* A message is acknowledged only after the step it caused is committed and the
  step's outgoing messages were handed to the transport.
* A step is committed with optimistic concurrency (``expected`` length), so two
  workers can never both commit the same input; the loser reloads.
* An input that is already in the journal (a redelivery) re-sends the outbox of
  the step that consumed it instead of running anything; message ids are
  stable, so re-sends are deduplicated downstream.

Infrastructure failures (store or transport errors) are retried by
redelivery with backoff; user code never sees them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from .._clock import Clock
from .._codec import decode_args, encode_result
from .._contract import ServiceSpec
from .._engine import (
    Call,
    Cancel,
    CancelCall,
    Command,
    Complete,
    Emit,
    FireTimer,
    Input,
    Postpone,
    Resolve,
    RoutineInstance,
    Signal,
    Start,
    StartTimer,
    Step,
    StepRecord,
    completion_of,
    decode_step,
    encode_step,
    input_key,
    owner_of,
)
from .._errors import (
    CallFailed,
    JournalConflict,
    MalformedMessage,
    TransportError,
    UnknownMethod,
    UnknownService,
)
from .._event import Subscription as EventSubscription
from .._event import split_topic
from .._failures import decode_failure, encode_failure
from .._retry import RetryPolicy, policy_of
from ..transports import (
    Affinity,
    Backlog,
    Claims,
    CrashCounter,
    DeadLetters,
    Delivery,
    FailureNotes,
    JournalStore,
    Message,
    Origin,
    Redelivery,
    Secrets,
    StartClaims,
    Subscription,
    Transport,
)
from ..transports._contract import COPY, REDELIVERED, SOLE
from . import _authority, _tracing, _wire
from ._disposition import (
    Action,
    ClaimedElsewhere,
    Crashed,
    Limits,
    Outcome,
    Postponed,
    RoutineMissing,
    TooLarge,
    classify,
    describe,
    dispose,
)
from ._fire import publish_fired
from ._metrics import LAG_INTERVAL, WorkerMetrics
from ._observe import Observers, RoutineObserver
from ._versions import parked_by, parked_reason

__all__ = ["HostedService", "Worker", "WorkerStats"]

_log = logging.getLogger("dasync.worker")

DEFAULT_MAX_PAYLOAD = 1024 * 1024
"""Largest message body a worker accepts (NATS's default max_payload is 1 MiB too)."""

_KILLED: list[RoutineInstance] = []
"""Routines of killed workers (``Worker.kill``), never to be finalized."""


@dataclass
class HostedService:
    spec: ServiceSpec
    instance: object
    code: str = ""
    """The version of the code hosted (``_versions.code_version``), journaled per step."""


@dataclass
class WorkerStats:
    activations: int = 0
    replays: int = 0
    replayed_steps: int = 0
    conflicts: int = 0
    redeliveries_resent: int = 0
    retries: int = 0
    append_retries: int = 0
    """Journal writes tried again after an infrastructure failure (the step kept)."""
    claimed_elsewhere: int = 0
    """Deliveries of a new call put back because another worker was already running it."""
    diverged: list[str] = field(default_factory=list)
    """Routines whose replay did not match their journal: id and the error (parked or failed)."""
    rejected: list[str] = field(default_factory=list)
    """Messages that could not be processed at all (malformed), with the reason."""
    failed: list[str] = field(default_factory=list)
    """Routines with no caller (event handlers, fire-and-forget) that raised: id and error."""


LANE_TIMERS = 60.0
"""Seconds: a timer due sooner goes to this worker's lane (``Affinity``); a later one to the
shared queue, since its worker may be gone by then (a deploy) and a lane taken over costs
a pass of the take-over."""


class Worker:
    """Runs the routines of some services on one transport and store."""

    def __init__(
        self,
        services: Sequence[HostedService],
        transport: Transport,
        store: JournalStore,
        clock: Clock,
        *,
        cache_size: int = 10_000,
        force_replay: bool = False,
        concurrency: int = 64,
        heartbeat: float = 10.0,
        subscriptions: Sequence[EventSubscription] = (),
        poison_after: int = 10,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        on_divergence: str = "park",
        max_crashes: int = 3,
        append_patience: float = 30.0,
        observers: Sequence[RoutineObserver] = (),
    ) -> None:
        if on_divergence not in ("park", "fail"):
            raise ValueError(f"on_divergence must be 'park' or 'fail', not {on_divergence!r}")
        self.on_divergence = on_divergence
        """``park``: a routine whose replay diverges stops where it is, its message set aside
        as a dead letter until fixed code is deployed; ``fail`` (tests): its caller gets the
        ``NonDeterminismError``."""
        self.services = {s.spec.name: s for s in services}
        self.event_subscriptions = subscriptions
        self.poison_after = poison_after
        self._limits = Limits(poison_after, on_divergence=on_divergence)
        self.max_crashes = max_crashes
        self.append_patience = append_patience
        self.observers = Observers(observers)
        """Told of every committed step and every routine set aside (``_observe``)."""
        """How long a computed step's journal write is retried through infrastructure
        failures before the delivery is handed back (and the step computed again)."""
        """A message whose processing was cut short this many times (the worker died in it:
        ``sys.exit`` in C code, a segfault, the OOM killer) is set aside before it runs again."""
        self.metrics = WorkerMetrics()
        """OpenTelemetry instruments (no-ops until a meter provider is set)."""
        self._keys: dict[str, bytes] = {}
        self._crash_counter: CrashCounter | None = (
            store if isinstance(store, CrashCounter) else None
        )
        self.worker_id = uuid.uuid4().hex
        self.max_payload = max_payload
        self._first_errors: OrderedDict[str, str] = OrderedDict()
        self.heartbeat = heartbeat
        self.transport = transport
        self.store = store
        # checked once: isinstance() against a runtime-checkable Protocol is slow
        self._claims: Claims | None = store if isinstance(store, Claims) else None
        self._start_claims: StartClaims | None = store if isinstance(store, StartClaims) else None
        self._affinity: Affinity | None = transport if isinstance(transport, Affinity) else None
        self._lanes: dict[str, str] = {}
        """This worker's lane per hosted service (``Affinity``): where the replies and timers
        of the routines it holds go, so they find them in its cache."""
        self.clock = clock
        self.cache_size = cache_size
        self.force_replay = force_replay
        self.concurrency = concurrency
        self.stats = WorkerStats()
        self._cache: OrderedDict[tuple[str, str], RoutineInstance] = OrderedDict()
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        self._subscriptions: list[Subscription] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._active: dict[int, tuple[Delivery, float, tuple[str, str] | None]] = {}
        """Deliveries being processed: when each began, and the lease it may hold."""
        self._unacked: set[asyncio.Future[Any]] = set()
        """What processed deliveries wait for before their acknowledgement (held writes)."""
        self._acking: set[asyncio.Task[None]] = set()
        self._killed = False
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._lagging: list[tuple[str, Subscription]] = []
        """(service, subscription) of every consumer pulled from, for the lag gauge."""
        self._lag_task: asyncio.Task[None] | None = None
        self._parked_task: asyncio.Task[None] | None = None
        self.lag_interval = LAG_INTERVAL

    async def start(self) -> None:
        for name, hosted in self.services.items():
            if isinstance(self.store, Secrets):
                self._keys[name] = await self.store.secret(name)
            await self.transport.declare(name)
            for event in hosted.spec.events.values():
                await self.transport.declare_topic(event.topic)
        for name, hosted in self.services.items():
            sub = await self.transport.consume(
                name, functools.partial(self._on_delivery, hosted), concurrency=self.concurrency
            )
            self._subscriptions.append(sub)
            self._lagging.append((name, sub))
            if self._affinity is not None and (lane := self._affinity.lane_of(name)):
                self._lanes[name] = lane
        for subscription in self.event_subscriptions:
            hosted = self._hosting(subscription.subscriber)
            topic = subscription.event.topic
            sub = await self.transport.subscribe(
                topic,
                f"{hosted.spec.name}.{subscription.handler}",
                functools.partial(self._on_event, hosted, subscription.handler),
                concurrency=self.concurrency,
            )
            self._subscriptions.append(sub)
            self._lagging.append((hosted.spec.name, sub))
        loop = asyncio.get_running_loop()
        self._parked_task = loop.create_task(self._retry_all_parked())
        self._heartbeat_task = loop.create_task(self._keep_alive())
        self._lag_task = loop.create_task(self._sample_lag())

    async def _retry_all_parked(self) -> None:
        for hosted in self.services.values():
            await self._retry_parked(hosted)

    async def _retry_parked(self, hosted: HostedService) -> None:
        """Routines parked by a divergence under other code get one try under this code
        (a deploy of the fix resumes them; code that diverges too parks them again)."""
        transport = self.transport
        if not isinstance(transport, DeadLetters) or not isinstance(transport, Redelivery):
            return
        name = hosted.spec.name
        handler = functools.partial(self._on_delivery, hosted)
        try:
            for letter in await transport.dead_letters(name):
                by = parked_by(letter.reason)
                if by is not None and by != hosted.code:
                    _log.info("%s: retrying %s, parked by code %s, under code %s",
                              name, letter.id, by, hosted.code)  # fmt: skip
                    # in place, from its first sender: parked again if this code diverges
                    await transport.redeliver_dead_letter(name, letter, handler)
        except Exception as exc:  # the letters stay: 'dasync retry' still resumes them
            _log.warning("%s: could not retry routines parked by other code: %r", name, exc)

    def kill(self) -> None:
        """Forget everything at once, as a crashed process would (tests)."""
        self._killed = True  # what waited for a held write is never acknowledged
        self._unacked.clear()
        self._stop_background()
        self._subscriptions.clear()
        # a crashed process runs nothing more: keep the dropped routines referenced, or the
        # garbage collector would run their finally blocks later, inside whatever routine
        # is running then (tests only; bounded by the routines a test kills)
        _KILLED.extend(self._cache.values())
        self._cache.clear()

    @property
    def in_flight(self) -> int:
        """Deliveries being processed now (what a stop waits for)."""
        return len(self._inflight)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop fetching, let in-flight activations finish (up to ``grace`` s), drop the cache.

        Work still running after the grace period is abandoned unacknowledged:
        the transport redelivers it to another worker, and nothing committed is lost.
        """
        for sub in self._subscriptions:
            await sub.stop()
        self._subscriptions.clear()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)
        await self._settle_held(grace)
        self._stop_background()
        for key in list(self._cache):
            self._evict(key)

    # --- delivery handling ----------------------------------------------------------------

    def _hosting(self, cls: type) -> HostedService:
        for hosted in self.services.values():
            if type(hosted.instance) is cls:
                return hosted
        raise LookupError(f"{cls.__qualname__} is not hosted by this worker")

    async def _on_delivery(self, hosted: HostedService, delivery: Delivery) -> None:
        try:
            env = _wire.parse(delivery.message, delivery.origin)
        except MalformedMessage as exc:
            self._reject(hosted, delivery.message, str(exc))
            await delivery.term(str(exc))
            return
        size = len(delivery.message.body)
        if size > self.max_payload:
            # refused before anything is stored: the caller learns why, nothing else waits
            error = TooLarge(f"{hosted.spec.name}.{env.method or env.kind}", size, self.max_payload)
            await self._settle_failure(hosted, env, delivery, error)
            return
        if env.kind == "fire":
            await self._fire(hosted, delivery, env)
            return
        await self._process(hosted, delivery, env, delivery.message)

    async def _fire(self, hosted: HostedService, delivery: Delivery, env: _wire.Envelope) -> None:
        """Publish an ``ExternalEvent`` someone asked for (``_fire``), or set the request
        aside with the reason; no routine is involved, so none waits on the outcome."""
        try:
            event_id = await publish_fired(self.transport, hosted.spec, env, delivery.message.body)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            disposition = dispose(exc, delivery.attempt, self._limits)
            _account(self.stats, classify(exc), f"{hosted.spec.name}/fire {env.routine_id}: {exc}")
            if disposition.action is Action.NAK:
                await delivery.nak(disposition.delay)
            else:
                self._reject(hosted, delivery.message, disposition.reason)
                await delivery.term(disposition.reason)
            return
        _log.debug("%s published %s for %s (fire %s)", hosted.spec.name, event_id, env.origin,
                   env.routine_id)  # fmt: skip
        await delivery.ack()

    async def _on_event(self, hosted: HostedService, handler: str, delivery: Delivery) -> None:
        """An event becomes the start of one handler routine, whose id derives from the event."""
        message = delivery.message
        event_id = message.headers.get(_wire.EVENT_ID, "")
        method = hosted.spec.methods.get(handler)
        reason = ""
        if not event_id or method is None or not method.params:
            reason = f"event message without {_wire.EVENT_ID} header or handler {handler!r}"
        elif (version := message.headers.get(_wire.VERSION)) != _wire.WIRE_VERSION:
            reason = f"event of wire format {version or '(none)'}, not {_wire.WIRE_VERSION}"
        elif owner_of(event_id) not in (None, delivery.origin.name):
            # the handler's routine id derives from the event's id: one publisher must not
            # take the id of another's event and so have the real one skipped
            reason = f"{delivery.origin} published an event under {event_id!r}, not its own id"
        if reason or method is None:
            self._reject(hosted, message, reason)
            await delivery.term(reason)
            return
        param = method.params[0].name
        args = b'{"' + param.encode() + b'":' + (message.body or b"null") + b"}"
        routine_id = _wire.handler_routine_id(event_id, hosted.spec.name, handler)
        # the subscriber starts this routine itself, from an event checked above
        env = _wire.Envelope("start", routine_id, handler, origin=Origin.service(hosted.spec.name))
        await self._process(hosted, delivery, env, Message(message.msg_id, message.headers, args))

    async def _process(
        self, hosted: HostedService, delivery: Delivery, env: _wire.Envelope, message: Message
    ) -> None:
        key = (hosted.spec.name, env.routine_id)
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        current = asyncio.current_task()
        if current is not None:
            self._inflight.add(current)
        lease = key if env.kind == "start" else None
        self._active[id(delivery)] = (delivery, asyncio.get_running_loop().time(), lease)
        run = _Run(delivery.attempt, asyncio.get_running_loop().time())
        if env.kind == "start" and (copy_of := getattr(delivery, "copy_of", None)) is not None:
            run.copy = copy_of(env.routine_id)  # ``UniqueDelivery``
        later = False  # acknowledged once what it waits for is done (``_ack_after``)
        try:
            try:
                if env.kind == "start":  # by the message alone: no need to queue for the lock
                    _authority.check_start(env, hosted.spec.name)
                async with lock:
                    await self._handle(hosted, env, message, run)
            except asyncio.CancelledError:
                run.crashed = True  # cut short, as by a kill: the count stands
                raise
            finally:
                if run.crash_key is not None and not run.crashed:
                    await self._forget_crash(hosted, run.crash_key)
        except asyncio.CancelledError:
            raise  # the worker itself is stopping: the message is redelivered
        except BaseException as exc:  # nothing may leave a message unsettled
            await self._settle_failure(hosted, env, delivery, exc, run)
            if isinstance(exc, Crashed) and run.crash_key is not None:
                # set aside: a retry of the dead letter starts counting afresh
                await self._forget_crash(hosted, run.crash_key)
        else:
            if run.holds:
                self._ack_after(delivery, run.holds)
                later = True
            else:
                await delivery.ack()
        finally:
            if run.trace is not None:
                run.trace.end()
            if not later:
                self._active.pop(id(delivery), None)
            elif id(delivery) in self._active:  # kept alive until acknowledged, no lease
                self._active[id(delivery)] = (delivery, self._active[id(delivery)][1], None)
            if current is not None:
                self._inflight.discard(current)
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _settle_held(self, grace: float) -> None:
        """Write what the observers hold back and acknowledge the deliveries waiting for it."""
        if not (self._unacked or self._acking):
            return
        try:
            await asyncio.wait_for(self.observers.flush(), grace)
        except Exception as exc:  # (incl. the timeout) unacknowledged: redelivered, reported
            _log.warning("held index writes not flushed on stop: %r", exc)
        if self._unacked:  # their acknowledgements start as they resolve...
            await asyncio.wait(set(self._unacked), timeout=grace)
        if self._acking:  # ...and are sent here
            await asyncio.wait(set(self._acking), timeout=grace)

    def _ack_after(self, delivery: Delivery, holds: list[asyncio.Future[Any]]) -> None:
        """Acknowledge ``delivery`` once ``holds`` are done; if one fails, hand it back (its
        redelivery finds the step committed and reports it again)."""
        loop = asyncio.get_running_loop()
        waited: asyncio.Future[Any] = holds[0] if len(holds) == 1 else asyncio.gather(*holds)

        async def settle(done: asyncio.Future[Any]) -> None:
            try:
                if self._killed:
                    return
                if done.cancelled() or done.exception() is not None:
                    await delivery.nak()
                else:
                    await delivery.ack()
            finally:
                self._active.pop(id(delivery), None)

        def settled(done: asyncio.Future[Any]) -> None:
            task = loop.create_task(settle(done))
            self._acking.add(task)
            task.add_done_callback(self._acking.discard)

        waited.add_done_callback(settled)
        self._unacked.add(waited)
        waited.add_done_callback(self._unacked.discard)

    async def _handle(
        self, hosted: HostedService, env: _wire.Envelope, message: Message, run: _Run
    ) -> None:
        name = hosted.spec.name
        key = _input_key(env)
        attempt = run.attempt
        if env.kind == "retry":
            self._evict((name, env.routine_id))  # a retry always starts from the journal
        inst = self._cached(hosted, env.routine_id)
        marker: StepRecord | None = None
        if inst is not None and env.kind != "start":
            try:
                _authority.check(env, _authority.Routine(name, inst.context, inst.issued_call))
            except _authority.Refused:
                # another worker may have taken the routine further: judge by its journal
                self._evict((name, env.routine_id))
                inst = None
        claimed = False  # (or needs no claim)
        if inst is None and env.kind == "start" and run.copy == SOLE:
            # the first delivery of the one copy the transport keeps of this start: no other
            # worker has it and no journal exists (the heartbeat claims it if it runs long)
            claimed = True
            records = []
        elif (
            inst is None
            and env.kind == "start"
            and run.copy != COPY  # (it runs nothing: nothing to claim)
            and self._start_claims is not None
        ):
            # the claim first: made anew, it proves the routine has no journal to read, unless
            # this start's first delivery ran without one
            found = await self._start_claims.claim_start(name, env.routine_id, self.worker_id)
            if found == "busy":
                raise ClaimedElsewhere(env.routine_id)
            claimed = True
            fresh = found == "new" and run.copy != REDELIVERED
            records = [] if fresh else await self._load(hosted, env.routine_id)
        elif inst is None:
            records = await self._load(hosted, env.routine_id)
        if inst is None and run.copy == COPY and not records:
            return  # the copy the transport keeps has not committed yet: it runs the routine
        if inst is None:
            if records and env.kind != "start":
                first = records[0].input
                meta = first.meta if isinstance(first, Start) else {}
                calls = functools.partial(_journaled_call, env.routine_id, records)
                _authority.check(env, _authority.Routine(name, meta, calls))
            if env.kind != "retry" and any(r.input.key == key for r in records):
                # a redelivery: resend from the journal, never re-run the routine's code
                await self._resend(hosted, env.routine_id, records, key)
                return
            if completion_of(records) is not None:
                return  # news for a finished routine (a late timer or reply) changes nothing
            if records and records[-1].postponed is not None:
                marker = records[-1]
            if records:
                await self._before_user_code(hosted, env, key, run)
                inst = await self._replay(hosted, env.routine_id, records)
                # a retry is run from the journal by design, not resumed
                run.replayed = len(records) if env.kind != "retry" else 0
                if self.observers and run.replayed and not self.force_replay:
                    await self.observers.resumed(
                        name, env.routine_id, inst.method, len(records), attempt=run.attempt
                    )
        now = self.clock.now()
        inp: Input
        if env.kind == "retry":
            postponed = marker.postponed if marker is not None else None
            if marker is None or postponed is None or postponed.attempt != env.seq:
                return  # a stale retry: its attempt ran already
            inp = dataclasses.replace(marker.input, at=now)
            attempt = postponed.attempt + 1
        elif marker is not None and env.kind == "cancel" and inst is not None:
            # cancelled while waiting out a retry backoff: the attempt never runs
            step = inst.cancel_postponed(Cancel(now, env.cancel_id))
            await self._commit(hosted, inst, step, run)
            return
        elif marker is not None:
            postponed = marker.postponed
            assert postponed is not None
            raise Postponed(max(0.05, postponed.due - now + 0.05))
        elif env.kind == "start":
            if inst is not None:  # duplicate call: its effects exist already
                await self._resend(hosted, env.routine_id, None, "start")
                return
            meta = _start_meta(env)
            if "reply_to" in meta:  # this run's replies are not taken for an earlier run's
                meta["run"] = secrets.token_hex(4)
            if _tracing.enabled():  # journaled: every later activation continues the caller's trace
                meta.update(_tracing.journal_fields(message.headers))
            if (
                not claimed
                and self._claims is not None
                and not await self._claims.claim(name, env.routine_id, self.worker_id)
            ):
                raise ClaimedElsewhere(env.routine_id)
            inp = Start(message.body, now, meta, seed=secrets.randbits(63) | 1, context=env.context)
            inst = self._new_instance(hosted, env.routine_id, inp)
        elif inst is None:
            raise RoutineMissing(
                f"{env.kind} for routine {env.routine_id!r} of {name}, which does not exist"
            )
        elif env.kind == "reply":
            inp = Resolve(env.seq, env.ok, message.body, now)
        elif env.kind == "timer":
            inp = FireTimer(env.seq, now)
        elif env.kind == "signal":
            inp = Signal(env.signal, _signal_id(env), message.body, now)
        else:
            inp = Cancel(now, env.cancel_id)

        if inst is None:
            inst = self._new_instance(hosted, env.routine_id, inp)  # type: ignore[arg-type]
        if inp.key in inst.consumed:
            await self._resend(hosted, inst.routine_id, None, inp.key)
            return
        await self._before_user_code(hosted, env, key, run)
        if _tracing.enabled():
            run.trace = self._trace_activation(hosted, inst, env, message, inp, run)
        step = await inst.activate(inp)
        self.stats.activations += 1
        if run.trace is not None:
            run.trace.step(step.index)
        done = step.completion
        if done is not None and not done.ok and inst.failure is not None:
            policy = self._policy(hosted, inst.method)
            if policy is not None and policy.retries(inst.failure, attempt):
                # transient: keep the input and the count of failures in a retry marker; the
                # attempt is run again, from the journal, when the marker's retry comes due
                self._evict((name, inst.routine_id))
                delay = policy.delay(attempt)
                error = f"{type(inst.failure).__name__}: {inst.failure}"[:500]
                record = StepRecord(inp, (Postpone(attempt, now + delay, error),))
                entry = encode_step(record, hosted.code)
                await self._append(name, inst.routine_id, entry, step.index)
                if self.observers:
                    await self.observers.committed(
                        name, inst.routine_id, step.index, record, resent=False
                    )
                self._measure(hosted, inst, step.index, record, run)
                if run.trace is not None:
                    run.trace.event(
                        "dasync.retry",
                        {"dasync.retry.attempt": attempt, "dasync.retry.delay": delay,
                         "dasync.retry.error": error},
                    )  # fmt: skip
                await self._send(hosted, inst.routine_id, inst.context, record.commands)
                self.stats.retries += 1
                _log.info(
                    "%s: attempt %d of %s failed with %s; retrying in %.2fs",
                    name, attempt, inst.routine_id, error, delay,
                )  # fmt: skip
                return
        if step.noop:
            # nothing to commit, so no append can reveal a stale cached instance (another
            # worker may have advanced the routine): check before the message is acked
            if len(await self.store.load(name, inst.routine_id)) != inst.steps:
                raise JournalConflict(f"cached state of {inst.routine_id!r} is behind its journal")
            self._release(hosted, inst)
            return
        await self._commit(hosted, inst, step, run)

    async def _commit(
        self, hosted: HostedService, inst: RoutineInstance, step: Step, run: _Run | None = None
    ) -> None:
        """Append the step to the journal, send its outbox while the routine index hears of
        it, keep or drop the live instance.

        The index write and the step's messages go out together (one round trip, not two):
        both only after the append, so neither reports a step that did not commit, and the
        delivery is acknowledged only after both. A listing may thus trail a reply by one
        write (docs/architecture.md, "The routine index").
        """
        name = hosted.spec.name
        record = StepRecord(step.input, step.commands)
        observers = self.observers
        try:
            await self._append(name, inst.routine_id, encode_step(step, hosted.code), step.index)
            if observers.before:
                await observers.committed_before(name, inst.routine_id, step.index, record)
        except BaseException:
            self._evict((name, inst.routine_id))
            raise
        # the index write starts here and leaves with the outbox, in one flush
        holds = (
            observers.committed_alongside(name, inst.routine_id, step.index, record)
            if observers.alongside
            else []
        )
        trace = None
        try:
            if run is not None:
                self._measure(hosted, inst, step.index, record, run)
                trace = run.trace
                if trace is not None:
                    _describe_step(trace, step, inst)
            await self._send(hosted, inst.routine_id, inst.context, step.commands, trace)
        except BaseException:
            for hold in holds:  # the delivery is retried, and its redelivery reports again
                hold.add_done_callback(_retrieved)
            raise
        if holds and run is not None:
            run.holds += holds  # the delivery is acknowledged once they are done
        elif holds:
            await asyncio.gather(*holds)
        self._release(hosted, inst)

    def _measure(
        self,
        hosted: HostedService,
        inst: RoutineInstance,
        index: int,
        record: StepRecord,
        run: _Run,
    ) -> None:
        seconds = asyncio.get_running_loop().time() - run.began
        self.metrics.step(hosted.spec.name, inst.method, index, record, seconds)

    def _trace_activation(
        self,
        hosted: HostedService,
        inst: RoutineInstance,
        env: _wire.Envelope,
        message: Message,
        inp: Input,
        run: _Run,
    ) -> _tracing.Activation:
        """The CONSUMER span of the activation about to run; a routine started with no trace
        context journals this span's, so that its later activations join its trace."""
        kind = "event" if _wire.EVENT_ID in message.headers else env.kind
        trace = _tracing.start_activation(
            hosted.spec.name,
            inst.method,
            inst.routine_id,
            kind=kind,
            msg_id=message.msg_id,
            attempt=run.attempt,
            journaled=inst.context,
            headers=message.headers,
        )
        if run.replayed:
            trace.event("dasync.resumed", {"dasync.replayed_steps": run.replayed})
        if isinstance(inp, Start) and not _tracing.trace_carrier(inst.context):
            if isinstance(inp.meta, dict):  # the Start about to be journaled
                trace.journal(inp.meta)
                inst.context.update(_tracing.trace_carrier(inp.meta))
        return trace

    async def _append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
        """Commit a computed step, riding out infrastructure failures (a leader election, a
        restarting server) for up to ``append_patience`` s, so that user code does not run
        again on a live worker for want of one write.

        A write that timed out may have landed: a conflict after one is checked against the
        journal, and our own entry at ``expected`` counts as committed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.append_patience
        delay = 0.05
        uncertain = False
        while True:
            try:
                await self.store.append(service, routine_id, entry, expected)
                return
            except JournalConflict:
                if uncertain:
                    entries = await self.store.load(service, routine_id)
                    if len(entries) > expected and entries[expected] == entry:
                        return  # the write that timed out had landed
                raise
            except (TimeoutError, TransportError, OSError) as exc:
                uncertain = True
                if loop.time() + delay > deadline:
                    raise
                self.stats.append_retries += 1
                _log.info("journal append of %s failed (%r); retrying", routine_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _before_user_code(
        self, hosted: HostedService, env: _wire.Envelope, key: str, run: _Run
    ) -> None:
        """On a redelivery, count the runs that never finished; too many: set it aside.

        A first delivery costs nothing here: only a message that comes back (its worker
        died, or a step could not commit) is counted, once per delivery.
        """
        if run.attempt <= 1 or run.crash_key is not None or self._crash_counter is None:
            return
        run.crash_key = f"{env.routine_id}#{key}"
        before = await self._crash_counter.record_crash(hosted.spec.name, run.crash_key)
        crashes = before + 1  # the first delivery's run never finished either
        if crashes >= self.max_crashes:
            run.crashed = True
            raise Crashed(crashes)

    async def _forget_crash(self, hosted: HostedService, crash_key: str) -> None:
        """A counted run finished (whatever its outcome): it did not crash the worker."""
        if self._crash_counter is None:
            return
        try:
            await self._crash_counter.forget_crash(hosted.spec.name, crash_key)
        except Exception as exc:  # a stale count only risks an early dead letter
            _log.warning("could not reset the crash count of %s: %r", crash_key, exc)

    async def _settle_failure(
        self,
        hosted: HostedService,
        env: _wire.Envelope,
        delivery: Delivery,
        exc: BaseException,
        run: _Run | None = None,
    ) -> None:
        """Settle a delivery whose processing raised, as ``_disposition`` decides.

        Divergence is never retried into a chance match; a message that keeps failing
        or keeps killing its workers becomes a dead letter and its routine's caller
        gets ``CallFailed`` instead of waiting.
        """
        outcome = classify(exc)
        msg_id = delivery.message.msg_id
        error = describe(exc)
        first = error
        if outcome is Outcome.FAILED:
            first = self._first_errors.setdefault(msg_id, error)
            while len(self._first_errors) > 10_000:
                self._first_errors.pop(next(iter(self._first_errors)))
        disposition = dispose(exc, delivery.attempt, self._limits, first_error=first)
        if disposition.evict:
            self._evict((hosted.spec.name, env.routine_id))
        _account(self.stats, outcome, f"{hosted.spec.name}/{env.routine_id}: {exc}")
        trace = run.trace if run is not None else None
        if disposition.action is Action.NAK:
            if trace is not None:
                trace.event("dasync.nak", {"dasync.retry.delay": disposition.delay,
                                           "dasync.reason": error[:500]})  # fmt: skip
                trace.fail(exc)
            if outcome is Outcome.FAILED:
                _log.error("internal error on %s; will retry", msg_id, exc_info=exc)
            elif outcome is Outcome.INFRASTRUCTURE:
                _log.warning("retrying %s after infrastructure error: %r", msg_id, exc)
            await delivery.nak(disposition.delay)
            return
        if disposition.action is Action.ACK:
            await delivery.ack()
            return
        self._first_errors.pop(msg_id, None)
        reason = disposition.reason
        if outcome is Outcome.DIVERGED and not disposition.tell_caller:
            reason = parked_reason(reason, hosted.code)  # a deploy of other code retries it
        self._reject(hosted, delivery.message, reason)
        told = disposition.tell_caller and (outcome is not Outcome.TOO_LARGE or env.kind == "start")
        self.metrics.set_aside(hosted.spec.name, told=told, outcome=outcome.value)
        if trace is None and _tracing.enabled() and run is not None:
            # set aside before any activation began (a crash count, a divergence on replay):
            # a span of its own, so the trace shows where the routine stopped
            trace = run.trace = await self._trace_settling(hosted, env, delivery)
        if trace is not None:
            trace.fail(exc, dead_letter=disposition.reason)
        if self.observers and (told or outcome is Outcome.DIVERGED):
            try:  # the routine is stuck until the letter is retried: say so
                entries = len(await self.store.load(hosted.spec.name, env.routine_id))
                await self.observers.set_aside(
                    hosted.spec.name, env.routine_id, entries, disposition.reason, told=told
                )
            except Exception as obs_exc:  # the dead letter keeps the facts
                _log.warning("observers missed that %s was set aside: %r", env.routine_id, obs_exc)
        if told:
            # the caller gets the error itself where it is one it can act on
            failure = exc if outcome in (Outcome.DIVERGED, Outcome.TOO_LARGE) else None
            try:
                await self._fail_caller(
                    hosted, env, disposition.reason, failure, cause=msg_id, trace=trace
                )
            except Exception as fail_exc:  # best effort: the dead letter keeps the facts
                _log.warning("could not tell the caller of %s: %r", env.routine_id, fail_exc)
        await delivery.term(reason)

    async def _fail_caller(
        self,
        hosted: HostedService,
        env: _wire.Envelope,
        reason: str,
        failure: BaseException | None = None,
        *,
        cause: str = "",
        trace: _tracing.Activation | None = None,
    ) -> None:
        """Tell a routine's caller that a message of it was set aside (``cause``: its id).

        The reply has an id of its own per message set aside, so that a second one (the
        dead letter retried and set aside again) is not dropped as a duplicate of the first.
        """
        name = hosted.spec.name
        records = await self.store.load(name, env.routine_id)
        meta: Mapping[str, str] = {}
        if env.kind == "start":
            meta = _start_meta(env)
        else:
            first = decode_step(records[0]).input if records else None
            if isinstance(first, Start):
                meta = first.meta
        failure = failure or CallFailed(name, env.routine_id, reason)
        done = Complete(0, False, encode_failure(failure))
        if isinstance(self.store, FailureNotes):
            # so that every handle on the routine learns what its caller is told
            await self.store.note_failure(name, env.routine_id, len(records), done.payload)
        if meta.get("reply_to"):
            await self._reply(
                name, env.routine_id, meta, done, variant=f"failed:{cause}", trace=trace
            )

    async def _trace_settling(
        self, hosted: HostedService, env: _wire.Envelope, delivery: Delivery
    ) -> _tracing.Activation:
        """A span for a delivery set aside without running the routine, under its trace."""
        message = delivery.message
        journaled: Mapping[str, str] = {}
        method = env.method
        try:  # a start too may be journaled (its redelivery found it so)
            records = await self.store.load(hosted.spec.name, env.routine_id)
            first = decode_step(records[0]).input if records else None
        except Exception:  # the span is a courtesy: settle regardless
            first = None
        if isinstance(first, Start):
            journaled, method = first.meta, first.meta.get("method", "")
        return _tracing.start_activation(
            hosted.spec.name,
            method,
            env.routine_id,
            kind=env.kind,
            msg_id=message.msg_id,
            attempt=delivery.attempt,
            journaled=journaled,
            headers=message.headers,
        )

    def _stop_background(self) -> None:
        for task in (self._heartbeat_task, self._lag_task, self._parked_task):
            if task is not None:
                task.cancel()
        self._heartbeat_task = self._lag_task = self._parked_task = None
        self._lagging.clear()

    async def _sample_lag(self) -> None:
        """Every ``lag_interval`` s, ask each consumer how far behind it is (the gauge
        ``dasync.consumer.lag``); off the message path, and a failed sample only skips."""
        while True:
            for service, sub in list(self._lagging):
                if not isinstance(sub, Backlog):
                    continue
                try:
                    self.metrics.lag[(service, sub.consumer)] = await sub.backlog()
                except Exception as exc:  # the server is away: the next sample will tell
                    _log.debug("lag of %s/%s: %r", service, sub.consumer, exc)
            await asyncio.sleep(self.lag_interval)

    async def _keep_alive(self) -> None:
        """Tell the transport that long activations are still working, so they are not
        redelivered to another worker while this one is busy with them."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.heartbeat)
            due = loop.time() - self.heartbeat
            for delivery, started, lease in list(self._active.values()):
                if started <= due:
                    try:
                        await delivery.in_progress()
                        if lease is not None and self._claims is not None:
                            # a first step longer than the lease keeps it too
                            await self._claims.claim(*lease, self.worker_id)
                    except Exception as exc:  # a missed heartbeat only risks a redelivery
                        _log.debug("in_progress failed: %r", exc)

    def _policy(self, hosted: HostedService, method: str) -> RetryPolicy | None:
        impl = getattr(type(hosted.instance), method, None)
        declared = getattr(hosted.spec.contract, method, None)
        return policy_of(impl, declared)

    def _record_failure(self, hosted: HostedService, routine_id: str, done: Complete) -> None:
        """A routine nobody awaits (an event handler) failed: keep it visible."""
        exc = decode_failure(done.payload)
        summary = f"{hosted.spec.name}/{routine_id}: {type(exc).__name__}: {exc}"
        if summary not in self.stats.failed:
            _log.warning("routine failed with no caller to receive the error: %s", summary)
            self.stats.failed.append(summary)
            del self.stats.failed[:-1000]

    def _reject(self, hosted: HostedService, message: Message, reason: str) -> None:
        """Record a message that cannot be processed, so that operators can see why."""
        _log.error("%s: rejected message %s: %s", hosted.spec.name, message.msg_id, reason)
        self.stats.rejected.append(f"{message.msg_id}: {reason}")
        del self.stats.rejected[:-1000]

    # --- instances ------------------------------------------------------------------------

    def _cached(self, hosted: HostedService, routine_id: str) -> RoutineInstance | None:
        key = (hosted.spec.name, routine_id)
        inst = self._cache.get(key)
        if inst is not None:
            self._cache.move_to_end(key)
        return inst

    async def _load(self, hosted: HostedService, routine_id: str) -> list[StepRecord]:
        records = [decode_step(e) for e in await self.store.load(hosted.spec.name, routine_id)]
        if records and not isinstance(records[0].input, Start):
            raise MalformedMessage(f"journal of {routine_id!r} does not begin with a start")
        return records

    async def _replay(
        self, hosted: HostedService, routine_id: str, records: list[StepRecord]
    ) -> RoutineInstance:
        first = records[0].input
        assert isinstance(first, Start)
        inst = self._new_instance(hosted, routine_id, first)
        self.stats.replays += 1
        self.stats.replayed_steps += len(records)
        await inst.replay(records)
        return inst

    async def check_replay(self, service: str, routine_id: str, entries: Sequence[bytes]) -> int:
        """Replay a journal against the code hosted here, committing and sending nothing;
        the number of steps replayed. Raises ``NonDeterminismError`` where it diverges
        (``dasync.testing.replay``: is a change safe for the routines in flight?)."""
        hosted = self.services[service]
        records = [decode_step(entry) for entry in entries]
        first = records[0].input if records else None
        if not isinstance(first, Start):
            raise MalformedMessage(f"journal of {routine_id!r} does not begin with a start")
        method = first.meta.get("method", "")
        inst = RoutineInstance(
            routine_id, service, method, _body(hosted, method), encode_failure,
            context=dict(first.meta),
        )  # fmt: skip
        try:
            await inst.replay(records)
        finally:
            inst.evict()
        return len(records)

    def _new_instance(
        self, hosted: HostedService, routine_id: str, start: Start
    ) -> RoutineInstance:
        method = start.meta.get("method", "")
        inst = RoutineInstance(
            routine_id,
            hosted.spec.name,
            method,
            _body(hosted, method),
            encode_failure,
            context=dict(start.meta),
        )
        key = (hosted.spec.name, routine_id)
        self._cache[key] = inst
        while len(self._cache) > max(self.cache_size, 1):
            self._evict(next(iter(self._cache)))
        return inst

    def _release(self, hosted: HostedService, inst: RoutineInstance) -> None:
        """After a commit: keep the live routine cached unless replay is forced or it is done."""
        if self.force_replay or inst.done:
            self._evict((hosted.spec.name, inst.routine_id))

    def _evict(self, key: tuple[str, str]) -> None:
        inst = self._cache.pop(key, None)
        if inst is not None:
            inst.evict()

    # --- outbox ---------------------------------------------------------------------------

    async def _send(
        self,
        hosted: HostedService,
        routine_id: str,
        meta: Mapping[str, str],
        commands: Sequence[Command],
        trace: _tracing.Activation | None = None,
        carrier: Mapping[str, str] | None = None,
    ) -> None:
        """Send a committed step's outbox; ``trace``: the activation that computed it (a
        PRODUCER span per message), ``carrier``: the trace fields for a re-send."""
        own = hosted.spec.name
        me = Origin.service(own)
        key = self._keys.get(own, b"")
        depth = int(meta.get("depth", "0") or 0)
        lane = self._lanes.get(own, "")

        async def call(command: Call) -> None:
            queue, msg = _wire.outgoing(routine_id, own, command, key, depth, lane)
            msg, span = _traced(trace, carrier, queue, msg, "call", command.method)
            with span:
                try:
                    await self.transport.send(queue, msg, me)
                except UnknownService:
                    # a callee whose workers never started: its calls wait for it (services
                    # start in any order), in its queue, declared as its workers would
                    await self.transport.declare(queue)
                    await self.transport.send(queue, msg, me)

        calls: list[Call] = []
        for command in (*commands, None):
            if isinstance(command, Call):
                calls.append(command)  # a run of calls (a gather's) is sent at once
                continue
            if len(calls) == 1:
                await call(calls[0])
            elif calls:
                # concurrently: one round trip for the run instead of one per call; all are
                # sent before the input is acknowledged, and a failure has it redelivered
                try:
                    async with asyncio.TaskGroup() as sending:
                        for each in calls:
                            sending.create_task(call(each))
                except BaseExceptionGroup as group:
                    raise group.exceptions[0] from None
            calls = []
            if command is None:
                break
            if isinstance(command, StartTimer | Postpone):
                queue, msg = _wire.outgoing(routine_id, own, command, key, depth)
                due = msg.deliver_at or 0.0
                near = due - self.clock.now() <= LANE_TIMERS
                await self._deliver(queue, lane if near else "", msg, me)
            elif isinstance(command, CancelCall):
                callee = _wire.callee_of(routine_id, command)
                message = _wire.cancel_message(callee, f"s{command.seq}", key)
                message, span = _traced(trace, carrier, command.service, message, "cancel")
                with span:
                    try:
                        await self.transport.send(command.service, message, me)
                    except UnknownService:
                        pass
            elif isinstance(command, Emit) and split_topic(command.event)[0] != own:
                # another service's ExternalEvent: asked of that service, which publishes it
                service, name = split_topic(command.event)
                fire_id = _wire.event_id_of(routine_id, command)
                msg_id = _wire.message_id(f"fire:{fire_id}", key)
                message = _wire.fire_message(fire_id, name, command.payload, msg_id)
                message, span = _traced(trace, carrier, service, message, "fire")
                with span:
                    try:
                        await self.transport.send(service, message, me)
                    except UnknownService:  # its workers never started: the request waits
                        await self.transport.declare(service)
                        await self.transport.send(service, message, me)
            elif isinstance(command, Emit):
                event_id = _wire.event_id_of(routine_id, command)
                message = _wire.event_message(command.event, event_id, command.payload)
                message, span = _traced(trace, carrier, command.event, message, "event")
                with span:
                    try:
                        await self.transport.publish(command.event, message)
                    except UnknownService:
                        # the step is committed, so its event must leave: a topic nobody
                        # declared (fired through another service's proxy) or deleted
                        # under us is declared
                        await self.transport.declare_topic(command.event)
                        await self.transport.publish(command.event, message)
            elif isinstance(command, Complete):
                if not command.ok and not meta.get("reply_to"):
                    self._record_failure(hosted, routine_id, command)
                await self._reply(own, routine_id, meta, command, trace=trace, carrier=carrier)

    async def _reply(
        self,
        own: str,
        routine_id: str,
        meta: Mapping[str, str],
        done: Complete,
        *,
        variant: str = "",
        trace: _tracing.Activation | None = None,
        carrier: Mapping[str, str] | None = None,
    ) -> None:
        reply_to = meta.get("reply_to")
        if not reply_to:
            return
        message = _wire.reply_message(
            meta.get("reply_routine", ""),
            int(meta.get("reply_seq", "0")),
            routine_id,
            done,
            self._keys.get(own, b""),
            variant=variant,
            run=meta.get("run", ""),
        )
        message, span = _traced(trace, carrier, reply_to, message, "reply")
        with span:
            try:
                lane = meta.get("reply_at", "")
                await self._deliver(reply_to, lane, message, Origin.service(own))
            except UnknownService:
                if not reply_to.startswith(_wire.INBOX_PREFIX):
                    raise
                # the client went away; its result stays readable in the journal

    async def _deliver(self, queue: str, lane: str, message: Message, origin: Origin) -> None:
        """Send to worker ``lane`` of ``queue`` when there is one (``Affinity``)."""
        if lane and self._affinity is not None:
            await self._affinity.send_at(queue, lane, message, origin)
        else:
            await self.transport.send(queue, message, origin)

    async def _resend(
        self,
        hosted: HostedService,
        routine_id: str,
        records: list[StepRecord] | None,
        key: str,
    ) -> None:
        """Re-send what the step that consumed ``key`` sent (it may have been lost in a crash).

        Works from the journal alone: a redelivery never runs the routine's code.
        """
        self.stats.redeliveries_resent += 1
        if records is None:
            records = await self._load(hosted, routine_id)
        if not records:
            return
        first = records[0].input
        meta = first.meta if isinstance(first, Start) else {}
        # no spans: the step was traced when it ran; the messages keep the routine's trace
        carrier = _tracing.trace_carrier(meta) if _tracing.enabled() else None
        for index in range(len(records) - 1, -1, -1):  # the latest: a retried input has a
            record = records[index]  # marker before it
            if record.input.key == key:
                if self.observers:  # the worker that committed it may have died first
                    await self.observers.committed(
                        hosted.spec.name, routine_id, index, record, resent=True
                    )
                await self._send(hosted, routine_id, meta, record.commands, carrier=carrier)
                break
        done = completion_of(records)
        if key == "start" and done is not None:
            await self._reply(hosted.spec.name, routine_id, meta, done, carrier=carrier)


@dataclass
class _Run:
    """One delivery's processing: its attempt number, and whether a crash was counted."""

    attempt: int
    began: float = 0.0
    """Event-loop time the delivery's processing began (step latency)."""
    copy: str = ""
    """A start's ``UniqueDelivery.copy_of`` (``""``: unknown, claim it as any start)."""
    crash_key: str | None = None
    crashed: bool = False
    replayed: int = 0
    """Journal entries replayed to run it (0: the routine was live in the cache)."""
    trace: _tracing.Activation | None = None
    """The activation's span, ended once the delivery is settled (tracing on)."""
    holds: list[asyncio.Future[Any]] = dataclasses.field(default_factory=list)
    """Writes held back (the index's) that the acknowledgement waits for."""


_UNTRACED: AbstractContextManager[None] = nullcontext()


def _retrieved(done: asyncio.Future[Any]) -> None:
    """Take a future's outcome that nobody waits for any more (no "never retrieved")."""
    if not done.cancelled():
        done.exception()


def _traced(
    trace: _tracing.Activation | None,
    carrier: Mapping[str, str] | None,
    destination: str,
    message: Message,
    kind: str,
    method: str = "",
) -> tuple[Message, AbstractContextManager[None]]:
    """``message`` as it is sent and the PRODUCER span to send it in (none untraced);
    the span's context is put in the message's headers as the span starts."""
    if trace is None:
        if not carrier:
            return message, _UNTRACED
        return dataclasses.replace(message, headers={**message.headers, **carrier}), _UNTRACED
    headers = dict(message.headers)
    traced = dataclasses.replace(message, headers=headers)
    attributes = {"dasync.message.kind": kind}
    if method:
        attributes["dasync.target.method"] = method
    operation = "publish" if kind == "event" else "send"
    inbox = destination.startswith(_wire.INBOX_PREFIX)
    span = trace.sending(destination, headers, message.msg_id, operation=operation,
                         attributes=attributes, temporary="_inbox" if inbox else "")  # fmt: skip
    return traced, span


def _describe_step(trace: _tracing.Activation, step: Step, inst: RoutineInstance) -> None:
    """What a committed step did, on its activation's span: timers, the routine's end."""
    for command in step.commands:
        if isinstance(command, StartTimer):
            at = {"dasync.timer.seq": command.seq, "dasync.timer.fire_at": command.fire_at}
            trace.event("dasync.timer.scheduled", at)
        elif isinstance(command, Complete):
            trace.event("dasync.completed", {"dasync.ok": command.ok})
            if not command.ok and inst.failure is not None:
                trace.routine_failed(f"{type(inst.failure).__name__}: {inst.failure}")


def _start_meta(env: _wire.Envelope) -> dict[str, str]:
    """What a routine's start records of its caller: who it is (as the transport vouched)
    and where its result goes — a service's own queue, or the client's inbox."""
    meta = {"method": env.method, _authority.CALLER: _authority.encode_caller(env.origin)}
    if env.depth:
        meta["depth"] = str(env.depth)
    reply_to = env.origin.name if env.origin.kind == Origin.SERVICE else env.reply_to
    if reply_to and (env.reply_routine or env.reply_to):
        meta.update(
            reply_to=reply_to, reply_routine=env.reply_routine, reply_seq=str(env.reply_seq)
        )
        if env.reply_at and env.origin.kind == Origin.SERVICE:
            meta["reply_at"] = env.reply_at  # the caller's worker: its reply goes there
    return meta


def _journaled_call(
    routine_id: str, records: Sequence[StepRecord], seq: int
) -> tuple[str, str] | None:
    """``(service, callee)`` of the call ``routine_id``'s journal made at ``seq``."""
    for record in records:
        for command in record.commands:
            if isinstance(command, Call) and command.seq == seq:
                return command.service, _wire.callee_of(routine_id, command)
    return None


def _body(hosted: HostedService, method_name: str) -> Any:
    spec = hosted.spec
    obj = hosted.instance

    async def run(args: bytes) -> bytes:
        method = spec.methods.get(method_name)
        if method is None:
            raise UnknownMethod(
                f"service {spec.name!r} has no method {method_name!r}; "
                f"it has: {', '.join(sorted(spec.methods)) or '(none)'}"
            )
        kwargs = decode_args(method, args)
        fn = getattr(type(obj), method_name)
        result = await fn(obj, **kwargs)
        return encode_result(method, result)

    return run


def _signal_id(env: _wire.Envelope) -> str:
    """A signal's id as the routine keeps it: its sender's id for it, scoped by the sender
    (as the transport vouches), so no sender can take another's signal id first."""
    return f"{_authority.encode_caller(env.origin)}/{env.signal_id}"


def _input_key(env: _wire.Envelope) -> str:
    """The key of the input a message carries (``Input.key``), without decoding its body."""
    if env.kind == "retry":
        return input_key("retry", env.seq)
    if env.kind == "signal":
        return input_key("signal", cancel_id=_signal_id(env))
    return input_key(env.kind, env.seq, env.cancel_id)


def _account(stats: WorkerStats, outcome: Outcome, what: str) -> None:
    """The counters an outcome moves (the rest is in the dead letters and the logs)."""
    if outcome is Outcome.CONFLICT:
        stats.conflicts += 1
    elif outcome is Outcome.CLAIMED_ELSEWHERE:
        stats.claimed_elsewhere += 1
    elif outcome is Outcome.DIVERGED:
        stats.diverged.append(what)
        del stats.diverged[:-1000]
