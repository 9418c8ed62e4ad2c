"""Scale-out: three worker processes of one service, one of the calling service, one killed.

500 flows each gather three calls to ``Ledger.book``, served by three
``Ledger`` processes (competing consumers on one durable consumer). When a
third of the calls are done and the victim has calls in flight, it is killed
with SIGKILL; its unacknowledged deliveries come back to the survivors after
``ack_wait`` (2 s). Everything is counted durably, in SQLite, by the callee
(see ``_services.py``): every call's effect exactly once, and an execution
repeated only if an earlier execution of that call ran in the killed process.
The client takes results only from replies on its inbox, so a lost reply
would hang the test instead of being read from a journal.
"""

from __future__ import annotations

import asyncio
import time

from dasync.testing._nats_server import NatsServer

from ._cluster import Processes, RecordingClient, check_exactly_once, options, wait_for
from ._services import CALLS_PER_FLOW, Flow, Tally, call_ids, expected, flow_id

FLOWS = 500
WORKERS = 3


async def test_three_workers_one_killed_every_call_once(tmp_path):
    started = time.monotonic()
    with NatsServer(store_dir=tmp_path / "nats") as server:
        procs = Processes(server.url, "scale", tmp_path)
        try:
            workers = [procs.spawn("ledger", f"ledger-{i}") for i in range(1, WORKERS + 1)]
            procs.spawn("flow", "flow-1")
            await procs.ready()
            tally = Tally(tmp_path / "tally.sqlite")
            client = await RecordingClient.open(options(server.url, "scale"))
            try:
                handles = [
                    await client.client.start(Flow.run, n, 0.0, routine_id=flow_id(n))
                    for n in range(FLOWS)
                ]
                victim = workers[0]
                await wait_for(
                    lambda: (
                        tally.effect_count() >= FLOWS * CALLS_PER_FLOW // 3
                        and bool(tally.unfinished_by(victim.pid))
                    ),
                    within=60,
                    what="a third of the calls done and calls in flight in the victim",
                )
                in_flight_at_kill = tally.unfinished_by(victim.pid)
                victim.kill()  # SIGKILL
                victim.wait()
                killed_at = time.monotonic() - started

                results = await asyncio.wait_for(
                    asyncio.gather(*(h.result() for h in handles)), timeout=60
                )
                assert results == [expected(n) for n in range(FLOWS)]
                # every result came as a reply on the inbox (none read from a journal)
                assert set(client.replies) == {flow_id(n) for n in range(FLOWS)}
            finally:
                await client.close()

            survivors = [w.pid for w in workers[1:]]
            report = check_exactly_once(
                tally, call_ids(FLOWS), cut_short=lambda e: e.pid == victim.pid
            )
            assert report.calls == FLOWS * CALLS_PER_FLOW
            report.assert_explained()  # only executions that ran in the victim ran again
            # the kill landed in the middle of executions, and exactly those ran again
            assert in_flight_at_kill
            assert report.reexecuted
            assert report.reexecuted <= {
                e.call_id for e in tally.executions() if e.pid == victim.pid
            }
            # all three workers did part of the work; the survivors are still serving
            pids = {e.pid for e in tally.executions()}
            assert pids == {w.pid for w in workers}
            assert procs.alive() == ["ledger-2", "ledger-3", "flow-1"], [
                procs.log(n) for n in ("ledger-2", "ledger-3", "flow-1")
            ]
            assert all(p in pids for p in survivors)
            elapsed = time.monotonic() - started
            print(
                f"\nscale-out: {FLOWS} flows, {report.calls} calls, {WORKERS} workers, "
                f"1 kill at {killed_at:.1f}s with {len(in_flight_at_kill)} calls in flight, "
                f"{report.executions} executions ({len(report.reexecuted)} re-run after the "
                f"kill), {report.effect_writes} effect writes, {len(client.replies)} replies "
                f"({sum(client.replies.values())} deliveries), {elapsed:.1f}s"
            )
            assert elapsed < 90
            tally.close()
        finally:
            procs.stop()
