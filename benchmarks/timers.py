"""Durable timers at scale: many routines asleep at once, every worker killed meanwhile.

Run: ``python benchmarks/timers.py`` (about 100 s at the defaults: 10,000 routines,
2 worker processes). ``docs/benchmarks.md`` ("Durable timers at scale") has the
figures and what limits them.

What it does, on a fresh ``nats-server`` (JetStream, file storage in a temporary
directory, fsync before ack, a free port on 127.0.0.1):

1. starts ``--workers`` processes, each ``dasync run benchmarks/_timers_service.py
   --nats URL``;
2. starts ``--routines`` routines ``Sleeper.nap(due)`` (in random order), their due
   times spread evenly from ``--first`` to ``--first + --window`` seconds after the
   first start; each sleeps until its due time and returns how late it woke;
3. waits until every start is committed (no start pending or unacknowledged, one
   schedule per routine stored: the routines are suspended, their timers are schedules
   on the server), reads each worker's RSS, then measures the CPU the workers and
   nats-server use for ``--idle`` seconds while everything sleeps (``/proc/<pid>/stat``);
4. ``kill -9``s every worker and starts as many new ones (``--kill-at S``: at S seconds
   instead, e.g. while the routines wake; ``--no-kill``: never);
5. collects every result: lateness (seconds after the due time that a worker processed
   the timer, as journaled) p50/p99/max; routines lost (no result) and routines whose
   code after the sleep ran twice (the service logs one effect per execution); the CPU
   of the workers, nats-server and this client while the routines wake, and the
   messages nats-server received per wake-up (its ``/varz``).

``--timeline`` prints, every 0.5 s of the wake-up phase, how many routines were due,
how many timers the server had fired, delivered, and the workers had woken: which of
them falls behind. ``--profile PREFIX`` samples the workers with py-spy meanwhile.
Run it from a clean checkout (``git worktree add``, ``PYTHONPATH`` pointing at it):
the workers import whatever ``dasync`` is on the path.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _profile
import nats
import nats.js.errors
from _timers_service import Sleeper

import dasync
from dasync.testing._nats_server import NatsServer

SERVICE_FILE = Path(__file__).resolve().parent / "_timers_service.py"
SERVICE = "Sleeper"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- processes ------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (seconds), from /proc/<pid>/stat (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mb(pid: int) -> float:
    """Resident set size (MB) from /proc/<pid>/statm."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB / 1024
    except OSError:
        return 0.0


@dataclass
class Workers:
    """The ``dasync run`` worker processes, their logs in ``workdir``."""

    url: str
    workdir: Path
    ack_wait: float | None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    spawned: int = 0

    def spawn(self, n: int) -> list[subprocess.Popen[bytes]]:
        env = dict(os.environ, DASYNC_TIMERS_EFFECTS=str(self.workdir))
        if self.ack_wait is not None:
            env["DASYNC_NATS_ACK_WAIT"] = str(self.ack_wait)
        new = []
        for _ in range(n):
            self.spawned += 1
            with open(self.workdir / f"worker-{self.spawned}.log", "wb") as log:
                new.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "dasync",
                            "run",
                            str(SERVICE_FILE),
                            "--nats",
                            self.url,
                            "--quiet",
                        ],
                        cwd=self.workdir,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        self.procs = [p for p in self.procs if p.poll() is None] + new
        return new

    def kill(self) -> None:
        """``kill -9`` every worker, and wait until each is gone."""
        for p in self.procs:
            p.send_signal(signal.SIGKILL)
        for p in self.procs:
            p.wait()
        self.procs = []

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def check(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"worker {p.pid} exited with status {p.returncode}")


class Server:
    """JetStream's view of the service: stream and consumer state (nats-py's JSM API)."""

    def __init__(self, nc: nats.NATS) -> None:
        self.jsm = nc.jsm()

    async def waiting(self) -> int:
        """Pull requests waiting on the work consumer: one per live, idle worker."""
        try:
            info = await self.jsm.consumer_info(f"DASYNC_{SERVICE}_WORK", "workers")
        except Exception:  # not created yet
            return 0
        return int(info.num_waiting or 0)

    async def state(self) -> tuple[int, int, int]:
        """(work stream messages, consumer pending, unacknowledged). Once every start is
        handled the work stream holds one message per routine: its pending timer, then
        the message it fired until a worker acknowledges it (after committing the wake-up
        and replying): ``n - messages`` routines have woken."""
        try:
            work = await self.jsm.stream_info(f"DASYNC_{SERVICE}_WORK")
            consumer = await self.jsm.consumer_info(f"DASYNC_{SERVICE}_WORK", "workers")
        except nats.js.errors.NotFoundError:  # the workers have not created them yet
            return 0, 0, 0
        return work.state.messages, consumer.num_pending or 0, consumer.num_ack_pending or 0

    async def journal_entries(self) -> int:
        """Journal entries of every routine (the journal stream's other subjects, such as
        failure notes and claims, do not count)."""
        info = await self.jsm.stream_info(
            f"DASYNC_{SERVICE}_JOURNAL", subjects_filter=f"dasync.{SERVICE}.journal.*"
        )
        subjects = info.state.subjects or {}
        return sum(
            c for subject, c in subjects.items() if not subject.rpartition(".")[2].startswith("_")
        )


async def until(
    what: str, check: Callable[[], Awaitable[bool]], within: float, poll: float = 0.2
) -> float:
    """Wait until ``await check()`` is true; the seconds it took."""
    began = time.monotonic()
    while not await check():
        if time.monotonic() - began > within:
            raise TimeoutError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(poll)
    return time.monotonic() - began


# --- the run --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def run(args: argparse.Namespace) -> int:
    n = args.routines
    workdir = Path(tempfile.mkdtemp(prefix="dasync-timers-"))
    rows: list[tuple[str, str]] = []

    def row(label: str, value: str) -> None:
        rows.append((label, value))
        print(f"  {label}: {value}", flush=True)

    with NatsServer(store_dir=workdir / "nats", sync=args.sync, monitor=True) as server:
        nc = await nats.connect(server.url)
        js = Server(nc)
        workers = Workers(server.url, workdir, args.ack_wait)
        try:
            workers.spawn(args.workers)
            took = await until(
                "workers ready", lambda: _ready(js, workers, args.workers), 60, poll=0.1
            )
            print(f"{args.workers} workers ready in {took:.1f} s", flush=True)
            async with dasync.connect(server.url) as client:
                t0 = time.time()
                dues = [t0 + args.first + args.window * i / max(1, n - 1) for i in range(n)]
                order = list(range(n))
                random.Random(1).shuffle(order)
                sem = asyncio.Semaphore(args.concurrency)
                handles: dict[str, dasync.RoutineHandle[float]] = {}

                async def start(i: int) -> None:
                    async with sem:
                        rid = f"nap-{i}"
                        handles[rid] = await client.start(Sleeper.nap, dues[i], routine_id=rid)

                await asyncio.gather(*(start(i) for i in order))
                sent = time.time() - t0

                async def committed() -> bool:
                    workers.check()
                    stored, pending, unacked = await js.state()
                    return stored >= n and pending == 0 and unacked == 0

                await until("starts committed", committed, args.first)
                done = time.time() - t0
                stored, _, _ = await js.state()
                entries = await js.journal_entries()
                print(
                    f"{n} starts sent in {sent:.1f} s, all committed after {done:.1f} s "
                    f"({entries} journal entries, {stored} schedules stored)"
                )
                row("starts sent / committed", f"{sent:.1f} s / {done:.1f} s ({n / done:.0f}/s)")
                rss = [proc_rss_mb(p.pid) for p in workers.procs]
                row("worker RSS after the starts", " + ".join(f"{r:.0f}" for r in rss) + " MB")

                # everything sleeps: CPU of the workers and of nats-server
                pids = [p.pid for p in workers.procs]
                assert server.pid is not None
                c0 = [proc_cpu(p) for p in pids]
                s0, w0 = proc_cpu(server.pid), time.monotonic()
                await asyncio.sleep(args.idle)
                c1 = [proc_cpu(p) for p in pids]
                s1, wall = proc_cpu(server.pid), time.monotonic() - w0
                idle = [(b - a) / wall * 100 for a, b in zip(c0, c1, strict=True)]
                row(
                    f"CPU while sleeping, {wall:.0f} s (workers)",
                    " + ".join(f"{c:.2f}" for c in idle) + " % of a core",
                )
                row("CPU while sleeping (nats-server)", f"{(s1 - s0) / wall * 100:.2f} % of a core")

                # kill -9 every worker mid-sleep (or at --kill-at), start new ones
                spent = 0.0  # CPU of workers killed while waking
                base: dict[int, float] = {}

                async def kill_and_restart() -> None:
                    nonlocal spent
                    killed_at = time.time() - t0
                    spent += sum(proc_cpu(p.pid) - base.get(p.pid, 0.0) for p in workers.procs)
                    workers.kill()
                    began = time.monotonic()
                    workers.spawn(args.workers)
                    await until(
                        "new workers ready", lambda: _ready(js, workers, args.workers), 60, 0.1
                    )
                    back = time.monotonic() - began
                    base.update({p.pid: proc_cpu(p.pid) for p in workers.procs})
                    row(
                        "kill -9 of every worker",
                        f"at +{killed_at:.1f} s ({killed_at - args.first:+.1f} s from the "
                        f"first due time); new ones ready in {back:.1f} s",
                    )

                if time.time() - t0 > args.first:
                    print("WARNING: everything was not asleep before the first due time: "
                          "raise --first", flush=True)  # fmt: skip
                killer: asyncio.Task[None] | None = None
                if args.kill and args.kill_at is None:
                    await kill_and_restart()
                base.update({p.pid: proc_cpu(p.pid) for p in workers.procs})
                if args.kill and args.kill_at is not None:

                    async def kill_later() -> None:
                        await asyncio.sleep(max(0.0, t0 + args.kill_at - time.time()))
                        await kill_and_restart()

                    killer = asyncio.create_task(kill_later())
                s_new, me_new = proc_cpu(server.pid), time.process_time()
                varz_new = await asyncio.to_thread(server.varz)
                sampler = asyncio.create_task(_sample(js, n, t0 + args.first, args.window))
                spies = _spy_on(args.profile, [p.pid for p in workers.procs])

                # collect: the replies arrive at this client's inbox as the timers fire; take
                # them once every routine has committed its wake-up (a result() waiting
                # longer would poll the journal, adding load to what is measured)
                deadline = t0 + args.first + args.window + args.grace

                async def all_woke() -> bool:
                    return time.time() > deadline or (await js.state())[0] == 0

                await asyncio.sleep(max(0.0, t0 + args.first + args.window - time.time()))
                await until("every routine woke", all_woke, args.grace + 10, poll=0.25)
                results: dict[str, float] = {}

                async def collect(rid: str, handle: dasync.RoutineHandle[float]) -> None:
                    try:
                        results[rid] = await handle.result(timeout=max(1.0, deadline - time.time()))
                    except TimeoutError:
                        pass

                if killer is not None:
                    await killer
                await asyncio.gather(*(collect(r, h) for r, h in handles.items()))
                finished = time.time() - t0
                missing = {r: h for r, h in handles.items() if r not in results}
                if missing:  # later than --grace: lost only if they never finish
                    print(f"{len(missing)} results not in within --grace; waiting for the "
                          "work stream to empty", flush=True)  # fmt: skip
                    with contextlib.suppress(TimeoutError):
                        await until("work stream empty", _empty(js), 300, poll=1.0)
                    deadline = time.time() + 30
                    await asyncio.gather(*(collect(r, h) for r, h in missing.items()))
                wake_cpu = spent + sum(proc_cpu(p.pid) - base[p.pid] for p in workers.procs)
                server_cpu = proc_cpu(server.pid) - s_new
                varz = await asyncio.to_thread(server.varz)
                msgs_in = (varz["in_msgs"] - varz_new["in_msgs"]) / n
                msgs_out = (varz["out_msgs"] - varz_new["out_msgs"]) / n
                own_cpu = time.process_time() - me_new
                sampler.cancel()
                profile = _spied(spies, n)
                timeline = await asyncio.gather(sampler, return_exceptions=True)

                late = list(results.values())
                effects = _effects(workdir)
                twice = sum(1 for c in effects.values() if c > 1)

                with contextlib.suppress(TimeoutError):  # the last inputs: acked after replying
                    await until("work stream empty", _empty(js), 10)
                stored, _, _ = await js.state()
                entries = await js.journal_entries()
                lost = n - len(results)
                if late:
                    row(
                        "lateness p50 / p99 / max",
                        f"{percentile(late, 0.5):.3f} / {percentile(late, 0.99):.3f} / "
                        f"{max(late):.3f} s",
                    )
                    row("woke within 1 s", f"{sum(1 for x in late if x <= 1.0)} of {n}")
                    row("early (negative lateness)", str(sum(1 for x in late if x < 0)))
                per = wake_cpu / max(1, len(late)) * 1000
                row(
                    "CPU while waking: workers / nats-server / client",
                    f"{wake_cpu:.1f} / {server_cpu:.1f} / {own_cpu:.1f} s "
                    f"(workers {per:.2f} ms per routine)",
                )
                row(
                    "messages per wake-up (nats-server in / out, all clients)",
                    f"{msgs_in:.1f} / {msgs_out:.1f}",
                )
                row("results later than --grace (then in)", str(len(missing) - lost))
                row("lost (no result)", str(lost))
                row("ran twice (effects > 1)", str(twice))
                row("no effect logged", str(n - len(effects)))
                row(
                    "journal entries / work messages left",
                    f"{entries} (expected {2 * n}) / {stored}",
                )
                print(f"all results after +{finished:.1f} s", flush=True)
                if profile:
                    print(f"\nworkers while waking (py-spy, {args.profile}.worker-*.folded):")
                    print(profile)
                if args.timeline and timeline and isinstance(timeline[0], list):
                    print_timeline(timeline[0])
        finally:
            workers.stop()
            await nc.close()
    report(args, rows)
    ok = lost == 0 and twice == 0
    return 0 if ok else 1


def _empty(js: Server) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await js.state())[0] == 0

    return check


async def _ready(js: Server, workers: Workers, count: int) -> bool:
    workers.check()
    return await js.waiting() >= count


async def _sample(js: Server, n: int, first: float, window: float) -> list[tuple[float, ...]]:
    """Every 0.5 s from 1 s before the first due time: (seconds after it, due, fired,
    delivered, woken) routines; returned when cancelled (the results are all in)."""
    samples: list[tuple[float, ...]] = []
    await asyncio.sleep(max(0.0, first - 1.0 - time.time()))
    try:
        while True:
            t = time.time() - first
            stored, pending, unacked = await js.state()
            due = n * min(1.0, max(0.0, t / window)) if t >= 0 else 0
            left = stored - pending - unacked  # schedules not fired yet
            samples.append((t, due, n - left, n - left - pending, n - stored))
            await asyncio.sleep(0.5)
    except asyncio.CancelledError:
        return samples


def print_timeline(samples: list[tuple[float, ...]]) -> None:
    """How far behind the due times the server's firing and the workers' waking are."""
    print("\n| s after first due | due | fired | delivered | woken (committed, acked) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for t, due, fired, delivered, woken in samples:
        print(f"| {t:.1f} | {due:.0f} | {fired:.0f} | {delivered:.0f} | {woken:.0f} |")
        if woken >= samples[-1][4] and t > 0:
            break


def _spy_on(prefix: str | None, pids: list[int]) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """py-spy recording each worker from outside (``--profile``): folded stacks."""
    if not prefix:
        return []
    spy = _profile._spy()
    if spy is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    spies = []
    for k, pid in enumerate(pids):
        path = f"{prefix}.worker-{k + 1}.folded"
        command = [spy, "record", "--pid", str(pid), "--rate", str(_profile.SPY_RATE)]
        command += ["--nonblocking", "--format", "raw", "--output", path]
        spies.append((path, subprocess.Popen(command, stdout=subprocess.DEVNULL)))
    return spies


def _spied(spies: list[tuple[str, subprocess.Popen[bytes]]], routines: int) -> str:
    """Stop the recordings; CPU per routine by layer over all workers."""
    if not spies:
        return ""
    for _, proc in spies:
        proc.send_signal(signal.SIGINT)
    for _, proc in spies:
        proc.wait(timeout=30)
    merged = spies[0][0].rsplit(".worker-", 1)[0] + ".workers.folded"
    with open(merged, "w") as out:
        for path, _ in spies:
            with contextlib.suppress(OSError):
                out.write(Path(path).read_text())
    return _profile.summarize(merged, routines, top=25)


def _effects(workdir: Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for path in workdir.glob("effects-*.log"):
        for line in path.read_text().splitlines():
            if line:
                counts[line.split()[0]] += 1
    return counts


def report(args: argparse.Namespace, rows: list[tuple[str, str]]) -> None:
    print()
    print(
        f"{args.routines} routines due from +{args.first:g} to +{args.first + args.window:g} s, "
        f"{args.workers} worker processes, sync={args.sync}, ack_wait="
        f"{args.ack_wait if args.ack_wait is not None else 'default'}; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    width = max(len(label) for label, _ in rows)
    print(f"| {'measure':<{width}} | value |")
    print(f"| {'-' * width} | --- |")
    for label, value in rows:
        print(f"| {label:<{width}} | {value} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routines", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--first",
        type=float,
        default=60.0,
        help="seconds from the first start to the first due time",
    )
    parser.add_argument(
        "--window", type=float, default=10.0, help="seconds over which the due times are spread"
    )
    parser.add_argument(
        "--idle", type=float, default=8.0, help="seconds of CPU measurement while everything sleeps"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=60.0,
        help="seconds after the last due time to wait for results",
    )
    parser.add_argument(
        "--no-kill", dest="kill", action="store_false", help="keep the workers (comparison)"
    )
    parser.add_argument(
        "--kill-at",
        type=float,
        metavar="S",
        help="kill at S seconds after the first start (default: mid-sleep, once asleep)",
    )
    parser.add_argument(
        "--timeline", action="store_true", help="print due, fired and woken routines over time"
    )
    parser.add_argument(
        "--profile", metavar="PREFIX", help="py-spy each worker while waking (PREFIX.*.folded)"
    )
    parser.add_argument("--concurrency", type=int, default=256, help="starts in flight")
    parser.add_argument(
        "--ack-wait",
        type=float,
        default=None,
        help="the workers' DASYNC_NATS_ACK_WAIT (default: dasync's)",
    )
    parser.add_argument(
        "--sync", default="always", help="nats-server's sync_interval ('always': fsync first)"
    )
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
