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

from dasync.testing._nats_server import NatsServer

from ._cluster import Processes, RecordingClient, check_exactly_once, options, wait_for
from ._services import CALLS_PER_FLOW, IO_SECONDS, Flow, Tally, call_ids, expected, flow_id

FLOWS = 300
PAUSE = 0.3


def crash(server: NatsServer) -> None:
    """``kill -9`` the server: no flush, no goodbye to clients."""
    proc, server.process = server.process, None
    assert proc is not None
    proc.kill()
    proc.wait()


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

                results = await asyncio.wait_for(
                    asyncio.gather(*(h.result() for h in handles)), timeout=60
                )
                assert results == [expected(n) for n in range(FLOWS)]
                assert set(client.replies) == {flow_id(n) for n in range(FLOWS)}
            finally:
                await client.close()

            def cut_short(e) -> bool:  # began while the server was going away or gone
                return down_at - IO_SECONDS - 1.0 <= e.began < up_at

            report = check_exactly_once(tally, call_ids(FLOWS, pause=True), cut_short=cut_short,
                                        first_seq=2)
            assert report.calls == FLOWS * CALLS_PER_FLOW
            assert procs.alive() == ["ledger-1", "ledger-2", "flow-1"]
            elapsed = time.monotonic() - started
            print(
                f"\nserver restart ({how}): {FLOWS} flows, {report.calls} calls, 2 workers, server down "
                f"for {up_at - down_at:.1f}s after {done_before} calls, {report.executions} "
                f"executions ({len(report.reexecuted)} re-run), {report.effect_writes} effect "
                f"writes, {len(client.replies)} replies, {elapsed:.1f}s"
            )
            assert elapsed < 90
            tally.close()
        finally:
            procs.stop()
