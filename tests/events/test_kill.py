"""Show 1, in one process: two subscribing services each handle every one of 1,000 events
once, while one of them is killed (``kill -9``: nothing settled) mid-run and replaced.

Each subscriber runs in its own runtime (its own worker and connection on NATS)
on the world's durable state; the publisher in a third. The multi-process
version of this test, with real ``kill -9``, is ``test_processes.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

import dasync

from ._helpers import Recorder, World, quiet, wait_until
from ._services import CustomerInfo, Customers, CustomerService, Emails

EVENTS = 1000
BATCH = 50


@dasync.service(name="Rewards")
class SlowRewards:
    """Records its effect, then does some real I/O: a kill often lands in between."""

    def __init__(self, customers: Customers, log: Recorder, generation: int) -> None:
        self.log = log
        self.generation = generation
        customers.registered += self.welcome

    async def welcome(self, info: CustomerInfo) -> None:
        self.log.runs.append(("Rewards.welcome", dasync.call_id(), self.generation))
        self.log.effects.setdefault(dasync.call_id(), ("Rewards.welcome", info.name))
        await dasync.io(asyncio.sleep(0.005))  # the step commits only after this


@pytest.mark.slow
async def test_two_subscribers_each_handle_every_event_once_across_a_kill(world: World) -> None:
    log = Recorder()
    rewards = await world.start([SlowRewards], container={"log": log, "generation": 1})
    await world.start([Emails], container={"log": log})
    publisher = await world.start([CustomerService])

    names = [f"n{i:04}" for i in range(EVENTS)]

    async def publish() -> None:
        customers = publisher.client.proxy(Customers)
        for start in range(0, EVENTS, BATCH):
            assert await customers.register_many(names[start : start + BATCH]) == BATCH
            await asyncio.sleep(0.02)  # spread the run so that the kill lands in its middle

    publishing = asyncio.create_task(publish())
    await wait_until(lambda: len(log.values("Rewards.welcome")) >= 200, within=30)
    rewards.kill()
    effects_at_kill = len(log.values("Rewards.welcome"))
    await world.start([SlowRewards], container={"log": log, "generation": 2})
    await asyncio.wait_for(publishing, 60)

    def all_handled() -> bool:
        rewarded = len(log.values("Rewards.welcome"))
        return rewarded == EVENTS and len(log.values("Emails.send_welcome")) == EVENTS

    await wait_until(all_handled, within=60)
    await quiet(1.5 if world.nats else 0.5)  # longer than ack_wait: stray redeliveries show

    # effects, keyed by the handler routine's id: exactly the events, for both services
    assert sorted(log.values("Rewards.welcome")) == names
    assert sorted(log.values("Emails.send_welcome")) == names
    assert effects_at_kill < EVENTS  # the kill happened mid-run

    # executions: the subscriber that was not killed ran each handler once
    assert log.run_count("Emails.send_welcome") == EVENTS
    # the killed one re-ran only what was in flight when it died: at most once per
    # generation per event, and never more than its concurrency (64) events
    runs = [(key, gen) for who, key, gen in log.runs if who == "Rewards.welcome"]
    per_run = Counter(runs)
    assert max(per_run.values()) == 1
    twice = [key for key, n in Counter(key for key, _ in runs).items() if n > 1]
    assert len(twice) <= 64
    assert all((key, 1) in per_run and (key, 2) in per_run for key in twice)
    assert any(gen == 2 for _, gen in runs)  # the replacement did part of the work
