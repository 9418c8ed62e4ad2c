"""The NATS server (file storage) is stopped and restarted in the middle of a run.

Two ``Ledger`` worker processes and one ``Flow`` process run 300 flows (a
durable timer, then three gathered calls each). When a third of the calls are
done the server is stopped — gracefully (SIGTERM) or with ``kill -9`` — so that
everything in flight fails, and started again a second later on the same port
and store. Workers reconnect by themselves; every flow completes
with its result delivered as a reply, every call's effect happens exactly once
(counted durably by the callee, in SQLite), and an execution is repeated only
if an earlier execution of that call was running while the server went away
(its commit could not be made, so it ran again: DESIGN section 4).
"""

from __future__ import annotations

import asyncio
import time

import pytest

import dasync
from dasync.testing._nats_server import NatsServer

from ._cluster import (
    Processes,
    RecordingClient,
    check_exactly_once,
    options,
    wait_for,
)
from ._services import (
    CALLS_PER_FLOW,
    IO_SECONDS,
    Execution,
    Flow,
    Tally,
    call_ids,
    expected,
    flow_id,
)

FLOWS = 300
PAUSE = 0.3
def crash(server: NatsServer) -> None:
    """``kill -9`` the server: no flush, no goodbye to clients."""
    proc, server.process = server.process, None
    assert proc is not None
    proc.kill()
    proc.wait()


async def journals_writable(client: RecordingClient, within: float = 30.0) -> None:
    """Wait until an append to each service's journal stream succeeds (a probe routine)."""
    deadline = time.monotonic() + within
    for service in ("Ledger", "Flow"):
        while True:
            try:
                await client.store.append(service, f"probe-{time.time_ns()}", b"probe", 0)
                break
            except dasync.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_server_restart_mid_run_loses_nothing_and_runs_each_call_once(tmp_path, how):
    started = time.monotonic()
    with NatsServer(store_dir=tmp_path / "nats") as server:
        procs = Processes(server.url, "restart", tmp_path)
        try:
            procs.spawn("ledger", "ledger-1")
            procs.spawn("ledger", "ledger-2")
            procs.spawn("flow", "flow-1")
            await procs.ready()
            tally = Tally(tmp_path / "tally.sqlite")
            client = await RecordingClient.open(options(server.url, "restart"))
            try:
                handles = [
                    await client.client.start(Flow.run, n, PAUSE, routine_id=flow_id(n))
                    for n in range(FLOWS)
                ]
                await wait_for(
                    lambda: tally.effect_count() >= FLOWS * CALLS_PER_FLOW // 3,
                    within=60,
                    what="a third of the calls done",
                )
                done_before = tally.effect_count()
                down_at = time.time()
                if how == "stop":
                    await asyncio.to_thread(server.stop)
                else:
                    crash(server)
                await asyncio.sleep(1.0)  # workers see failures: publishes, appends, acks
                await asyncio.to_thread(server.start)
                up_at = time.time()
                assert tally.effect_count() < FLOWS * CALLS_PER_FLOW  # it was mid-run
                # the server is up before JetStream has recovered every stream: until then
                # journal appends still fail ("no responders"); measure when they work again
                await journals_writable(client)
                recovered_at = time.time()

                results = await asyncio.wait_for(
                    asyncio.gather(*(h.result() for h in handles)), timeout=60
                )
                assert results == [expected(n) for n in range(FLOWS)]
                assert set(client.replies) == {flow_id(n) for n in range(FLOWS)}
            finally:
                await client.close()

            def cut_short(e: Execution) -> bool:
                """Began while the server was going away, gone or recovering its streams."""
                return down_at - IO_SECONDS - 1.0 <= e.began < recovered_at

            report = check_exactly_once(
                tally, call_ids(FLOWS, pause=True), cut_short=cut_short, first_seq=2
            )
            if report.unexplained:
                details = (
                    f"down {down_at:.3f}, up {up_at:.3f}, recovered {recovered_at:.3f}; "
                    + "; ".join(
                        f"{call_id}: {runs}\n{procs.grep(call_id + ' ')}"
                        for call_id, runs in sorted(report.unexplained.items())[:3]
                    )
                )
                raise AssertionError(f"calls ran again without a reason: {details}")
            assert report.calls == FLOWS * CALLS_PER_FLOW
            assert procs.alive() == ["ledger-1", "ledger-2", "flow-1"]
            elapsed = time.monotonic() - started
            print(
                f"\nserver restart ({how}): {FLOWS} flows, {report.calls} calls, 2 workers, "
                f"server down for {up_at - down_at:.1f}s (journals writable again "
                f"{recovered_at - up_at:.2f}s after it was up) after {done_before} calls, "
                f"{report.executions} executions ({len(report.reexecuted)} re-run), "
                f"{report.effect_writes} effect writes, {len(client.replies)} replies, "
                f"{elapsed:.1f}s"
            )
            assert elapsed < 90
            tally.close()
        finally:
            procs.stop()
