"""The chaos controller: a shop under ``kill -9``, server restarts and duplicate deliveries.

``run_chaos(ChaosConfig(...))`` starts a ``nats-server`` (file storage, free
port on 127.0.0.1, store in a temporary directory), ``workers`` processes per
service (``_worker.py``: Orders, Payments, Inventory, each injecting duplicate
deliveries), and a client in this process (injecting duplicate starts). It
starts ``routines`` orders at ``rate`` per second with known routine ids
(``order-<i>``) and known outcomes (``_shop.plan``). While they run, a chaos
task performs ``kills`` ``kill -9``s of a random worker (cycling through the
services; a replacement is started at once) and ``restarts`` stops and starts
of the nats-server (same port, same store; the server stays down for
``outage`` seconds), evenly spread over the time the orders are being
started, so that each lands in the middle of the work. It then waits for every
result (overall ``deadline``), for the event handlers, and a little longer
(more than ``ack_wait``) so that a stray redelivery would show; stops
everything and checks the invariants (``Report.problems``):

1. **results**: every routine finished, with the right result, each reply
   arrived on the client's inbox (the client never reads journals: a lost
   reply would leave the routine unfinished, reported with its journal);
2. **effects exactly once**: for each kind of side effect, the business facts
   (subjects) that have an effect are exactly the expected ones, each under
   one idempotency key (``dasync.call_id()``) — a subject under two keys would
   be a duplicated effect no idempotency key could catch — with the expected
   outcome; every execution that began has its effect;
3. **events exactly once per subscriber**: the two subscription groups
   (``settle`` in Payments, ``ship`` in Inventory) are kinds of effects like
   the others, expected once per placed order (per item for ``ship``);
4. **re-executions only after a kill or a server outage** (DESIGN section 4): a
   key may have more executions than one, but every execution but the one that
   committed must have been cut short, which the journal append that followed
   it in its process tells (``_check_effects``): none (its process was killed
   first: *kill*), an infrastructure error (*restart*, or *infra* outside an
   outage), or a ``JournalConflict`` (*duplicate*: another worker ran the same
   input at the same time and committed first — a message delivered twice ran
   twice, which DESIGN section 4 excludes; ``problems()`` reports it unless
   ``allow_duplicate_executions``). Anything else is *unexplained*, a failure.
   The re-executions after one kill are also bounded by what the killed
   process could have had in flight: its consumers × their concurrency;
5. **journals**: every order's journal holds each input once;
6. **dead letters**: none, in any service (read straight from the namespaced
   work streams; ``NatsTransport.dead_letters`` is asked too, but it ignores
   the namespace: see docs/reliability.md), and no worker logged a rejected
   or poison message;
7. **no crash**: no worker exited unless it was killed.

``Report.summary()`` is one line of the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dasync._engine import decode_step
from dasync._errors import TransportError
from dasync.testing._nats_server import NatsServer
from dasync.transports.nats import NatsOptions, connect_nats, naming

from ..integration._cluster import RecordingClient
from ._duplicates import Duplicating
from ._shop import KINDS, SERVICE_OF_KIND, SERVICES, Expected, Order, Orders

ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = 64
"""``Runtime``'s default concurrency per consumer: the bound on work in flight per consumer."""
CONSUMERS = {"Orders": 1, "Payments": 2, "Inventory": 2}
"""Consumers per worker process: its service queue, plus one group per event subscription."""
OUTAGE_WINDOW = (2.0, 5.0)
"""An append that failed this long before / after a server outage failed because of it."""


@dataclass
class ChaosConfig:
    routines: int = 300
    kills: int = 3
    restarts: int = 1
    workers: int = 2
    """Worker processes per service."""
    rate: float = 40.0
    """Routines started per second."""
    copy_rate: float = 0.05
    """Fraction of messages published twice under two message ids."""
    twice_rate: float = 0.02
    """Fraction of deliveries handed to the worker's handler twice, concurrently."""
    ack_wait: float = 2.0
    outage: float = 1.0
    """Seconds the server stays down at each restart."""
    server_stop: str = "stop"
    """How a restart stops the server: ``stop`` (SIGTERM), ``kill`` (SIGKILL) or ``alternate``."""
    seed: int = 1
    deadline: float = 300.0
    """Seconds, from the first start, within which every routine must have finished."""
    workdir: Path | None = None
    keep: bool = False
    """Keep the work directory (logs, SQLite tallies, server store) afterwards."""
    progress: Callable[[str], None] | None = None


@dataclass
class Kill:
    name: str
    service: str
    pid: int
    at: float


@dataclass
class Outage:
    how: str
    down: float
    up: float


@dataclass
class KindReport:
    kind: str
    expected: int
    effects: int
    executions: int
    lost: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    bad_keys: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    rewrites: int = 0
    """Effect writes beyond one per key (idempotent: a re-execution reached the effect)."""
    by_kill: int = 0
    by_outage: int = 0
    by_infra: int = 0
    by_duplicate: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    double_commits: list[str] = field(default_factory=list)


@dataclass
class Report:
    config: ChaosConfig
    elapsed: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)
    wrong_results: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    stuck_journals: dict[str, list[str]] = field(default_factory=dict)
    replies: Counter[str] = field(default_factory=Counter)
    kills: list[Kill] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    duplicates: Counter[str] = field(default_factory=Counter)
    kinds: dict[str, KindReport] = field(default_factory=dict)
    kill_bound: dict[str, tuple[int, int]] = field(default_factory=dict)
    journal_problems: list[str] = field(default_factory=list)
    dead_letters: dict[str, list[str]] = field(default_factory=dict)
    log_problems: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    infrastructure_retries: int = 0
    conflicts: Counter[str] = field(default_factory=Counter)
    recovery: dict[str, list[float]] = field(default_factory=dict)
    """Kill name -> for each call it cut short, seconds from the kill until the run that
    committed that call began on another worker (its delivery came back)."""

    def recovery_times(self) -> tuple[list[float], list[float]]:
        """Per kill that cut calls short: (first resumed, last resumed), seconds."""
        cut = [times for times in self.recovery.values() if times]
        return [min(t) for t in cut], [max(t) for t in cut]

    def recovery_line(self) -> str:
        first, last = self.recovery_times()
        if not first:
            return "recovery: no kill cut a logged call short"
        return (
            f"recovery after {len(first)} kills that cut calls short (kill -> the call's "
            f"run elsewhere began): first call p50 {_median(first):.2f} s, max "
            f"{max(first):.2f} s; last call p50 {_median(last):.2f} s, max {max(last):.2f} s"
        )

    @property
    def n(self) -> int:
        return self.config.routines

    @property
    def lost(self) -> int:
        return len(self.unfinished)

    @property
    def duplicated_effects(self) -> int:
        return sum(len(k.duplicated) for k in self.kinds.values())

    @property
    def effects(self) -> int:
        return sum(k.effects for k in self.kinds.values())

    @property
    def executions(self) -> int:
        return sum(k.executions for k in self.kinds.values())

    @property
    def by_kill(self) -> int:
        return sum(k.by_kill for k in self.kinds.values())

    @property
    def by_outage(self) -> int:
        return sum(k.by_outage for k in self.kinds.values())

    @property
    def by_infra(self) -> int:
        return sum(k.by_infra for k in self.kinds.values())

    @property
    def by_duplicate(self) -> int:
        return sum(len(k.by_duplicate) for k in self.kinds.values())

    @property
    def unexplained(self) -> int:
        return sum(len(k.unexplained) for k in self.kinds.values())

    def problems(self, *, allow_duplicate_executions: bool = False) -> list[str]:
        """Every invariant that does not hold (empty: the run passed).

        ``allow_duplicate_executions`` accepts executions that ran twice because a
        duplicate delivery reached two workers at once (see ``_check_effects``), as long as
        the effect still happened once."""
        out: list[str] = []
        if self.unfinished:
            out.append(f"{len(self.unfinished)} routines unfinished: {self.unfinished[:10]}")
            for rid, steps in list(self.stuck_journals.items())[:5]:
                out.append(f"  journal of {rid}: {steps}")
        if self.wrong_results:
            out.append(f"wrong results: {self.wrong_results[:10]}")
        finished = set(self.results)
        if missing := sorted(finished - set(self.replies)):
            out.append(f"results without a reply on the inbox: {missing[:10]}")
        for k in self.kinds.values():
            for what in ("lost", "unexpected", "duplicated", "wrong", "bad_keys", "unfinished"):
                if items := getattr(k, what):
                    out.append(f"{k.kind}: {len(items)} {what}: {items[:10]}")
            if k.unexplained:
                out.append(
                    f"{k.kind}: {len(k.unexplained)} unexplained re-executions: {k.unexplained[:5]}"
                )
            if k.double_commits:
                out.append(f"{k.kind}: committed twice: {k.double_commits[:5]}")
            if k.by_duplicate and not allow_duplicate_executions:
                out.append(
                    f"{k.kind}: {len(k.by_duplicate)} executions ran again because "
                    f"a duplicate delivery reached two workers at once (DESIGN section "
                    f"4: never because a message was delivered twice): "
                    f"{k.by_duplicate[:3]}"
                )
        for name, (count, bound) in self.kill_bound.items():
            if count > bound:
                out.append(f"kill of {name}: {count} re-executions > in-flight bound {bound}")
        out.extend(self.journal_problems[:10])
        for service, letters in self.dead_letters.items():
            if letters:
                out.append(f"{len(letters)} dead letters in {service}: {letters[:5]}")
        out.extend(self.log_problems[:10])
        if self.crashed:
            out.append(f"workers exited without being killed: {self.crashed}")
        if len(self.kills) != self.config.kills:
            out.append(f"{len(self.kills)} kills made, {self.config.kills} planned")
        if len(self.outages) != self.config.restarts:
            out.append(f"{len(self.outages)} restarts made, {self.config.restarts} planned")
        return out

    def summary(self) -> str:
        ok = sum(1 for r in self.results.values() if isinstance(r, str) and r.startswith("ok"))
        dead = sum(len(v) for v in self.dead_letters.values())
        return (
            f"chaos: {self.n} routines ({ok} ok, {len(self.results) - ok} refunded), "
            f"{len(self.kills)} kills, {len(self.outages)} server restarts, "
            f"{sum(self.duplicates.values())} duplicates injected "
            f"({self.duplicates['copy']} copies, {self.duplicates['twice']} double deliveries): "
            f"{self.lost} lost, {len(self.wrong_results)} wrong, "
            f"{self.duplicated_effects} duplicated effects, {dead} dead letters; "
            f"{self.effects} effects, {self.executions} executions: "
            f"{self.by_kill} re-executions after kills, {self.by_outage + self.by_infra} after "
            f"server restarts, {self.by_duplicate} after concurrent duplicate deliveries, "
            f"{self.unexplained} unexplained; {self.elapsed:.0f} s\n{self.recovery_line()}"
        )

    def details(self) -> str:
        lines = [
            f"  {'kind':8} {'expected':>8} {'effects':>8} {'execs':>8} {'kill':>5} "
            f"{'outage':>6} {'infra':>5} {'dup':>5} {'rewrites':>8}"
        ]
        for k in self.kinds.values():
            lines.append(
                f"  {k.kind:8} {k.expected:8} {k.effects:8} {k.executions:8} {k.by_kill:5} "
                f"{k.by_outage:6} {k.by_infra:5} {len(k.by_duplicate):5} {k.rewrites:8}"
            )
        for kill in self.kills:
            count, bound = self.kill_bound.get(kill.name, (0, 0))
            times = self.recovery.get(kill.name, [])
            resumed = f", resumed {min(times):.2f}-{max(times):.2f}s after" if times else ""
            lines.append(
                f"  kill -9 {kill.name} (pid {kill.pid}) at "
                f"{kill.at - self._t0:6.1f}s: {count} re-executions (bound {bound}){resumed}"
            )
        for o in self.outages:
            lines.append(
                f"  server {o.how} at {o.down - self._t0:6.1f}s, down {o.up - o.down:.1f}s"
            )
        lines.append(
            f"  replies: {len(self.replies)} routines, "
            f"{sum(self.replies.values())} deliveries; infrastructure retries logged: "
            f"{self.infrastructure_retries}; journal conflicts: {dict(self.conflicts)}"
        )
        return "\n".join(lines)

    _t0: float = 0.0


# --- processes ------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    service: str
    popen: subprocess.Popen[bytes]
    killed: bool = False


class Workers:
    def __init__(self, workdir: Path, settings: dict[str, Any]) -> None:
        self.workdir = workdir
        self.settings = settings
        self.procs: list[Proc] = []
        self._count: Counter[str] = Counter()

    def spawn(self, service: str) -> Proc:
        self._count[service] += 1
        name = f"{service.lower()}-{self._count[service]}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with open(self.workdir / f"{name}.log", "wb") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos._worker", service, name,
                 json.dumps(self.settings)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        proc = Proc(name, service, popen)
        self.procs.append(proc)
        return proc

    async def ready(self, procs: list[Proc], within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        for proc in procs:
            while not (self.workdir / f"{proc.name}.ready").exists():
                if proc.popen.poll() is not None:
                    raise AssertionError(f"{proc.name} exited:\n{self.log(proc.name)}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{proc.name} not ready:\n{self.log(proc.name)}")
                await asyncio.sleep(0.05)

    def alive(self, service: str | None = None) -> list[Proc]:
        return [
            p for p in self.procs
            if p.popen.poll() is None and (service is None or p.service == service)
        ]  # fmt: skip

    def crashed(self) -> list[str]:
        return [
            f"{p.name} (status {p.popen.returncode})"
            for p in self.procs
            if not p.killed and p.popen.poll() is not None and p.popen.returncode not in (0,)
        ]

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()


# --- the run --------------------------------------------------------------------------------------


def _schedule(kills: int, restarts: int) -> list[str]:
    """Kills and restarts interleaved, the restarts spread evenly among the actions."""
    total = kills + restarts
    at = {int((j + 0.5) * total / restarts) for j in range(restarts)} if restarts else set()
    actions, k = [], 0
    for i in range(total):
        if i in at or k >= kills:
            actions.append("restart")
        else:
            actions.append("kill")
            k += 1
    return actions


class Chaos:
    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.expected = Expected.of(config.routines)
        self.report = Report(config)
        self.namespace = f"chaos{uuid.uuid4().hex[:8]}"
        self.started = 0

    def say(self, text: str) -> None:
        if self.config.progress:
            self.config.progress(f"[{time.time() - self.report._t0:6.1f}s] {text}")

    async def run(self) -> Report:
        cfg = self.config
        own = cfg.workdir is None
        workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix="dasync-chaos-"))
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        self.workdir = workdir
        try:
            return await self._run(workdir)
        finally:
            if own and not cfg.keep:
                shutil.rmtree(workdir, ignore_errors=True)

    async def _run(self, workdir: Path) -> Report:
        cfg = self.config
        self.report._t0 = time.time()
        began = time.monotonic()
        server = NatsServer(store_dir=workdir / "nats")
        await asyncio.to_thread(server.start)
        self.server = server
        settings = {
            "url": server.url,
            "namespace": self.namespace,
            "workdir": str(workdir),
            "ack_wait": cfg.ack_wait,
            "copy_rate": cfg.copy_rate,
            "twice_rate": cfg.twice_rate,
            "seed": str(cfg.seed),
        }
        self.workers = Workers(workdir, settings)
        client: RecordingClient | None = None
        try:
            procs = [self.workers.spawn(s) for s in SERVICES for _ in range(cfg.workers)]
            await self.workers.ready(procs)
            self.say(f"server {server.url}, {len(procs)} workers ready, workdir {workdir}")
            options = NatsOptions(
                servers=(server.url,), namespace=self.namespace, name="dasync-chaos-client",
                ack_wait=cfg.ack_wait, reconnect_wait=0.2, request_timeout=2.0, close_timeout=2.0,
            )  # fmt: skip
            transport, store = await connect_nats(options)
            self.nats_transport, self.store = transport, store
            self.client_dups = Duplicating(
                transport, copy_rate=cfg.copy_rate, twice_rate=0.0, seed=str(cfg.seed)
            )
            client = RecordingClient(self.client_dups, store)
            await client.client.open()
            self.client = client
            t0 = time.monotonic()
            handles: dict[str, asyncio.Task[Any]] = {}
            chaos = asyncio.create_task(self._chaos(t0))
            progress = asyncio.create_task(self._progress(handles))
            try:
                await self._feed(t0, handles)
                await chaos
                await self._collect(handles, t0 + cfg.deadline)
            finally:
                progress.cancel()
                chaos.cancel()
            if not self.report.unfinished:
                await self._wait_for_handlers(t0 + cfg.deadline)
            await asyncio.sleep(cfg.ack_wait + 1.0)  # a stray redelivery would run code again
            await self._check_journals()
            await self._check_dead_letters()
        finally:
            try:
                if client is not None:
                    await asyncio.wait_for(client.close(), 30)
            finally:  # whatever happened, no process of this run survives it
                await asyncio.to_thread(self.workers.stop)
                await asyncio.to_thread(server.stop)
        self.report.crashed = self.workers.crashed()
        self._scan_logs()
        self._count_duplicates()
        self._check_effects()
        self.report.elapsed = time.monotonic() - began
        return self.report

    # --- feeding and collecting -----------------------------------------------------------------

    async def _feed(self, t0: float, handles: dict[str, asyncio.Task[Any]]) -> None:
        for order in self.expected.orders:
            delay = t0 + order.index / self.config.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._start(order)
            handles[order.id] = asyncio.create_task(self._result(order))
            self.started += 1

    async def _start(self, order: Order) -> None:
        while True:
            try:
                await self.client.client.start(
                    Orders.place, order.id, order.items, order.amount, routine_id=order.id
                )
                return
            except TransportError:  # the server is restarting: start again, same id
                await asyncio.sleep(0.2)

    async def _result(self, order: Order) -> Any:
        handle = self.client.client.handle(Orders.place, order.id)
        while True:
            try:
                return await handle.result()
            except TransportError:
                await asyncio.sleep(0.5)
            except Exception as exc:  # the routine raised: a wrong result
                return exc

    async def _collect(self, handles: dict[str, asyncio.Task[Any]], deadline: float) -> None:
        tasks = list(handles.values())
        await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        by_id = {o.id: o for o in self.expected.orders}
        for rid, task in handles.items():
            if not task.done():
                task.cancel()
                self.report.unfinished.append(rid)
                continue
            result = task.result()
            self.report.results[rid] = result
            if result != by_id[rid].result:
                self.report.wrong_results.append(f"{rid}: {result!r} != {by_id[rid].result!r}")
        self.report.replies = Counter(self.client.replies)
        for rid in self.report.unfinished[:20]:
            try:
                steps = [decode_step(e) for e in await self.store.load("Orders", rid)]
                self.report.stuck_journals[rid] = [
                    f"{s.input.key} -> {[type(c).__name__ + ':' + str(getattr(c, 'seq', '')) for c in s.commands]}"  # noqa: E501
                    for s in steps
                ]
            except Exception as exc:
                self.report.stuck_journals[rid] = [f"cannot load: {exc!r}"]
        self.say(f"{len(self.report.results)} results, {len(self.report.unfinished)} unfinished")

    async def _wait_for_handlers(self, deadline: float) -> None:
        want = {k: len(self.expected.effects[k]) for k in ("settle", "ship")}
        while time.monotonic() < deadline:
            have = {k: self._distinct_subjects(k) for k in want}
            if all(have[k] >= want[k] for k in want):
                return
            await asyncio.sleep(0.2)

    def _distinct_subjects(self, kind: str) -> int:
        path = self.workdir / f"{SERVICE_OF_KIND[kind]}.sqlite"
        if not path.exists():
            return 0
        with closing(sqlite3.connect(path, timeout=60)) as db:
            try:
                return int(db.execute(
                    "SELECT COUNT(DISTINCT subject) FROM effects WHERE kind = ?", (kind,)
                ).fetchone()[0])  # fmt: skip
            except sqlite3.OperationalError:
                return 0

    async def _progress(self, handles: dict[str, asyncio.Task[Any]]) -> None:
        while True:
            await asyncio.sleep(10)
            done = sum(1 for t in handles.values() if t.done())
            self.say(
                f"started {self.started}, finished {done}, "
                f"workers alive {len(self.workers.alive())}"
            )

    # --- chaos ------------------------------------------------------------------------------------

    async def _chaos(self, t0: float) -> None:
        cfg = self.config
        actions = _schedule(cfg.kills, cfg.restarts)
        span = cfg.routines / cfg.rate
        services = list(SERVICES)
        self.rng.shuffle(services)
        kills = 0
        for j, action in enumerate(actions):
            at = t0 + span * (j + 0.5) / len(actions)
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._replace_crashed()
            if action == "kill":
                await self._kill(services[kills % len(services)])
                kills += 1
            else:
                await self._restart(len(self.report.outages))

    def _in_flight(self, service: str, pid: int) -> int:
        """Side effects ``pid`` has begun and not yet applied (it is in the middle of them)."""
        path = self.workdir / f"{service}.sqlite"
        try:
            with closing(sqlite3.connect(path, timeout=60)) as db:
                return int(db.execute(
                    "SELECT COUNT(*) FROM executions e WHERE pid = ? AND NOT EXISTS "
                    "(SELECT 1 FROM effects f WHERE f.kind = e.kind AND f.key = e.key)", (pid,)
                ).fetchone()[0])  # fmt: skip
        except sqlite3.OperationalError:
            return 0

    async def _kill(self, service: str) -> None:
        """``kill -9`` a worker of ``service``, preferably one in the middle of side effects
        (waiting up to 3 s for one), and start a replacement."""
        candidates = self.workers.alive(service)
        self.rng.shuffle(candidates)
        victim = candidates[0]
        if service != "Orders":
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                busy = [p for p in candidates if self._in_flight(service, p.popen.pid)]
                if busy:
                    victim = busy[0]
                    break
                await asyncio.sleep(0.005)
        victim.killed = True
        os.kill(victim.popen.pid, signal.SIGKILL)
        await asyncio.to_thread(victim.popen.wait)
        self.report.kills.append(Kill(victim.name, service, victim.popen.pid, time.time()))
        replacement = self.workers.spawn(service)
        self.say(f"kill -9 {victim.name} (pid {victim.popen.pid}); starting {replacement.name}")
        await self.workers.ready([replacement])

    async def _restart(self, index: int) -> None:
        how = self.config.server_stop
        if how == "alternate":
            how = "kill" if index % 2 else "stop"
        down = time.time()
        if how == "kill":
            proc, self.server.process = self.server.process, None
            assert proc is not None
            proc.kill()
            await asyncio.to_thread(proc.wait)
        else:
            await asyncio.to_thread(self.server.stop)
        await asyncio.sleep(self.config.outage)
        await asyncio.to_thread(self.server.start)
        up = time.time()
        self.report.outages.append(Outage(how, down, up))
        self.say(f"server {how} + start: down {up - down:.1f}s")

    async def _replace_crashed(self) -> None:
        for proc in list(self.workers.procs):
            if not proc.killed and proc.popen.poll() is not None and not getattr(proc, "_seen", 0):
                proc._seen = 1  # type: ignore[attr-defined]
                self.say(f"worker {proc.name} exited by itself; replacing it")
                await self.workers.ready([self.workers.spawn(proc.service)])

    # --- checks -----------------------------------------------------------------------------------

    async def _check_journals(self) -> None:
        async def one(order: Order) -> None:
            for _ in range(20):
                try:
                    steps = [decode_step(e) for e in await self.store.load("Orders", order.id)]
                    break
                except TransportError:
                    await asyncio.sleep(0.5)
            else:
                self.report.journal_problems.append(f"{order.id}: journal unreadable")
                return
            keys = [s.input.key for s in steps]
            if len(keys) != len(set(keys)):
                self.report.journal_problems.append(f"{order.id}: an input twice: {keys}")
            seqs = [c.seq for s in steps for c in s.commands if hasattr(c, "seq")]
            if seqs != sorted(set(seqs)):
                self.report.journal_problems.append(f"{order.id}: commands out of order: {seqs}")

        orders = self.expected.orders
        for i in range(0, len(orders), 200):
            await asyncio.gather(*(one(o) for o in orders[i : i + 200]))

    async def _check_dead_letters(self) -> None:
        """Read ``dasync-<ns>.<S>.dead`` of each namespaced work stream directly, and through
        ``NatsTransport.dead_letters`` (which must agree)."""
        import nats

        nc = await nats.connect(self.server.url, connect_timeout=5)
        try:
            js = nc.jetstream()
            for service in SERVICES:
                stream = naming.work_stream(service, self.namespace)
                subject = naming.dead_subject(service, self.namespace)
                info = await js.stream_info(stream, subjects_filter=subject)
                count = (info.state.subjects or {}).get(subject, 0)
                letters = []
                if count:
                    seq = 0
                    for _ in range(min(count, 20)):
                        msg = await js.get_msg(stream, seq=seq + 1, next=True, subject=subject)
                        seq = msg.seq or seq + 1
                        headers = msg.headers or {}
                        letters.append(
                            f"{headers.get('Dasync-Msg-Id', seq)}: "
                            f"{headers.get('Dasync-Dead-Reason', '?')}"
                        )
                    letters += [f"... {count - len(letters)} more"] * (count > len(letters))
                self.report.dead_letters[service] = letters
                api = await self.nats_transport.dead_letters(service)
                self.report.dead_letters[f"{service} (transport API)"] = [
                    f"{d.message.msg_id}: {d.reason}" for d in api
                ]
        finally:
            await nc.close()

    def _scan_logs(self) -> None:
        retries = 0
        for proc in self.workers.procs:
            path = self.workdir / f"{proc.name}.log"
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                if "rejected message" in line or "poison" in line:
                    self.report.log_problems.append(f"{proc.name}: {line[:300]}")
                elif "NonDeterminismError" in line or "internal error" in line:
                    self.report.log_problems.append(f"{proc.name}: {line[:300]}")
                elif "infrastructure error" in line:
                    retries += 1
        self.report.infrastructure_retries = retries

    def _count_duplicates(self) -> None:
        dups: Counter[str] = Counter()
        for path in self.workdir.glob("dups-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                dups[line.partition(" ")[0]] += 1
        if hasattr(self, "client_dups"):  # the client's duplicate starts
            dups["copy"] += self.client_dups.injected
        self.report.duplicates = dups

    def _appends(self) -> dict[tuple[str, str], list[tuple[int, str, float]]]:
        """``(service, routine) -> [(pid, outcome, time)]`` of first-step appends, in order."""
        out: dict[tuple[str, str], list[tuple[int, str, float]]] = defaultdict(list)
        conflicts: Counter[str] = Counter()
        for path in sorted(self.workdir.glob("appends-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split(" ")
                if len(parts) != 6:
                    continue  # the last line of a killed process may be cut
                outcome, pid, service, routine, expected, at = parts
                if outcome == "conflict":
                    conflicts[service] += 1
                if expected == "0":
                    out[(service, routine)].append((int(pid), outcome, float(at)))
        for attempts in out.values():
            attempts.sort(key=lambda a: a[2])
        self.report.conflicts = conflicts
        return out

    def _copied(self) -> set[str]:
        """Message ids of which the run injected a copy."""
        ids = set()
        for path in self.workdir.glob("dups-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                kind, _, msg_id = line.partition(" ")
                if kind == "copy":
                    ids.add(msg_id)
        ids.update(getattr(getattr(self, "client_dups", None), "copied", ()))
        return ids

    def _check_effects(self) -> None:
        """Effects against expectations, and the cause of every execution beyond one per key.

        Each execution (a row of ``executions``) is matched with the journal append that
        followed it in the same process (``appends-*.log``; runs of one routine in one
        process are serialised by the worker's per-routine lock, so the n-th run of a key
        in a process made the n-th first-step append of that routine there). Exactly one
        execution per key committed (``ok``); every other one is cut short, because

        * ``kill``: it made no append and its process was killed (it died first);
        * ``outage``: its append failed with an infrastructure error during a server
          outage (``[down - 2 s, up + 5 s]``); ``infra``: the same at another time;
        * ``duplicate``: its append lost to another execution of the same routine that
          committed first (``JournalConflict``): the routine's input was delivered twice
          and ran on two workers at once — what DESIGN section 4 says must not happen;
        * anything else is ``unexplained``.
        """
        rows: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
        for service in ("Payments", "Inventory"):
            path = self.workdir / f"{service}.sqlite"
            if not path.exists():
                continue
            with closing(sqlite3.connect(path, timeout=60)) as db:
                rows[service] = {
                    "executions": db.execute(
                        "SELECT kind, key, subject, pid, began FROM executions ORDER BY rowid"
                    ).fetchall(),
                    "effects": db.execute(
                        "SELECT kind, key, subject, outcome, pid, writes FROM effects"
                    ).fetchall(),
                }
        appends = self._appends()
        copied = self._copied()
        killed = {k.pid: k for k in self.report.kills}
        per_kill: Counter[int] = Counter()
        t0 = self.report._t0

        def in_outage(at: float) -> bool:
            before, after = OUTAGE_WINDOW
            return any(o.down - before <= at <= o.up + after for o in self.report.outages)

        for kind in KINDS:
            service = SERVICE_OF_KIND[kind]
            data = rows.get(service, {"executions": [], "effects": []})
            expected = self.expected.effects[kind]
            effects = [r for r in data["effects"] if r[0] == kind]
            runs: dict[str, list[tuple[int, float]]] = defaultdict(list)
            for _, key, _subject, pid, began in (r for r in data["executions"] if r[0] == kind):
                runs[key].append((pid, began))
            rep = KindReport(kind, len(expected), len(effects), sum(len(r) for r in runs.values()))
            keys_of: dict[str, list[str]] = defaultdict(list)
            for _, key, subject, outcome, _pid, writes in effects:
                keys_of[subject].append(key)
                rep.rewrites += writes - 1
                if subject in expected and outcome != expected[subject]:
                    rep.wrong.append(f"{subject}: {outcome} != {expected[subject]}")
                if not key.startswith(subject.partition("/")[0] + "/"):
                    rep.bad_keys.append(f"{subject}: {key}")
            rep.lost = sorted(set(expected) - set(keys_of))
            rep.unexpected = sorted(set(keys_of) - set(expected))
            rep.duplicated = sorted(f"{s}: {k}" for s, k in keys_of.items() if len(k) > 1)
            rep.unfinished = sorted(set(runs) - {r[1] for r in effects})
            for key, key_runs in runs.items():
                by_pid: dict[int, list[tuple[int, str, float]]] = defaultdict(list)
                for attempt in appends.get((service, key), []):
                    by_pid[attempt[0]].append(attempt)
                outcomes: list[tuple[int, float, str | None, float]] = []
                seen: Counter[int] = Counter()
                for pid, began in key_runs:
                    mine = by_pid.get(pid, [])
                    j = seen[pid]
                    seen[pid] += 1
                    outcome, at = (mine[j][1], mine[j][2]) if j < len(mine) else (None, began)
                    outcomes.append((pid, began, outcome, at))
                commits = [o for o in outcomes if o[2] == "ok"]
                if len(commits) > 1:
                    rep.double_commits.append(f"{key}: {outcomes}")
                if not commits:  # a publish that timed out may still have been stored
                    errors = [o for o in outcomes if o[2] == "error"]
                    if errors:
                        commits = [errors[-1]]
                cut = [o for o in outcomes if o not in commits[:1]]
                for pid, began, outcome, at in cut:
                    what = f"{key}: run of pid {pid} at {began - t0:.2f}s -> {outcome}"
                    if outcome is None and pid in killed and began <= killed[pid].at:
                        rep.by_kill += 1
                        per_kill[pid] += 1
                        kill = killed[pid]
                        if commits and commits[0][0] != pid and commits[0][1] >= kill.at:
                            resumed = commits[0][1] - kill.at
                            self.report.recovery.setdefault(kill.name, []).append(resumed)
                    elif outcome == "error":
                        if in_outage(at):
                            rep.by_outage += 1
                        else:
                            rep.by_infra += 1
                    elif outcome == "conflict":
                        message_ids = (f"call:{key}", f"event:{key.rpartition('-')[0]}")
                        source = "injected copy" if copied & set(message_ids) else "redelivery"
                        if in_outage(at):
                            source += " during an outage"
                        rep.by_duplicate.append(f"{what} ({source})")
                    else:
                        rep.unexplained.append(f"{what}; runs (pid, began, append, at) {outcomes}")
            self.report.kinds[kind] = rep
        for kill in self.report.kills:
            bound = CONCURRENCY * CONSUMERS[kill.service]
            self.report.kill_bound[kill.name] = (per_kill[kill.pid], bound)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def run_chaos(config: ChaosConfig) -> Report:
    return asyncio.run(Chaos(config).run())
