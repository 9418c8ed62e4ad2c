"""The outbox: an event fired in a routine leaves only when its step commits, exactly once.

Crashes are injected where they hurt: in the journal append of the step that
fired (the commit never happened), and between that commit and the publish.
The runtime is then killed (``kill -9``: nothing settled, nothing flushed) and
another one takes over the same durable state, on memory and on NATS.
"""

from __future__ import annotations

import asyncio

import pytest

from ._helpers import CrashingStore, CrashingTransport, Recorder, World, quiet, wait_until
from ._services import TOPIC, CustomerInfo, Customers, CustomerService, Ledger, Rewards


@pytest.mark.parametrize("after_publish", [False, True], ids=["before-publish", "after-publish"])
async def test_a_publisher_crash_after_the_commit_publishes_the_event_once(
    world: World, after_publish: bool
) -> None:
    log = Recorder()
    async with world.runtime([Rewards], container={"log": log}):
        crashing: list[CrashingTransport] = []

        def wrap(t: object) -> CrashingTransport:
            crashing.append(CrashingTransport(t, after_publish=after_publish))  # type: ignore[arg-type]
            return crashing[0]

        first = await world.start([CustomerService], wrap_transport=wrap)
        handle = await first.client.start(Customers.register, "ada", routine_id="reg-ada")
        await asyncio.wait_for(crashing[0].hit.wait(), 10)
        steps = await first.store.load("Customers", "reg-ada")
        assert len(steps) == 1  # the step that fired the event is committed
        await quiet()
        assert await world.stored(TOPIC) == (1 if after_publish else 0)
        if not after_publish:
            assert not log.effects  # nothing left before the crash
        first.kill()

        async with world.runtime([CustomerService]) as second:
            # the unacknowledged start comes back; the journal has it, so the outbox
            # of its step is sent again instead of running the routine again
            again = second.client.handle(Customers.register, handle.routine_id)
            assert await again.result(timeout=20) == "registered ada"
            await wait_until(lambda: second.worker.stats.redeliveries_resent >= 1)
            await wait_until(lambda: len(log.effects) == 1)
            await quiet(0.5)
    assert await world.stored(TOPIC) == 1
    assert log.values("Rewards.welcome") == ["ada"]
    assert len(log.runs) == 1


async def test_a_routine_that_dies_before_its_commit_publishes_nothing(world: World) -> None:
    """The event was fired, the process died in the journal append: no phantom event;
    the routine runs again after the restart and its event leaves once."""
    log = Recorder()
    runs: list[str] = []

    class CountingCustomers(CustomerService):
        async def register(self, name: str) -> str:
            runs.append(name)
            return await super().register(name)

    async with world.runtime([Rewards], container={"log": log}):
        stores: list[CrashingStore] = []

        def wrap(s: object) -> CrashingStore:
            stores.append(CrashingStore(s, mode="hang"))  # type: ignore[arg-type]
            return stores[0]

        first = await world.start([CountingCustomers], wrap_store=wrap)
        handle = await first.client.start(Customers.register, "bea", routine_id="reg-bea")
        await asyncio.wait_for(stores[0].hit.wait(), 10)
        await quiet(0.5)
        assert await world.stored(TOPIC) == 0
        assert not log.effects
        first.kill()
        assert await world.stored(TOPIC) == 0

        async with world.runtime([CountingCustomers]) as second:
            again = second.client.handle(Customers.register, handle.routine_id)
            assert await again.result(timeout=20) == "registered bea"
            await wait_until(lambda: len(log.effects) == 1)
            await quiet(0.5)
    assert runs == ["bea", "bea"]  # the code ran twice (a crash), the event left once
    assert await world.stored(TOPIC) == 1
    assert log.values("Rewards.welcome") == ["bea"]
    assert len(log.runs) == 1


async def test_a_failed_commit_is_retried_and_publishes_once(world: World) -> None:
    """The journal store refuses the step (an infrastructure error): nothing is published
    until the retried step commits."""
    log = Recorder()
    async with world.runtime([Rewards], container={"log": log}):
        stores: list[CrashingStore] = []

        def wrap(s: object) -> CrashingStore:
            stores.append(CrashingStore(s, mode="raise"))  # type: ignore[arg-type]
            return stores[0]

        async with world.runtime([CustomerService], wrap_store=wrap) as pub:
            assert await pub.client.proxy(Customers).register("cyd") == "registered cyd"
            assert stores[0].hit.is_set()
            await wait_until(lambda: len(log.effects) == 1)
            await quiet()
    assert await world.stored(TOPIC) == 1
    assert log.values("Rewards.welcome") == ["cyd"]
    assert len(log.runs) == 1


async def test_an_event_fired_before_the_routine_raises_is_published(world: World) -> None:
    """Raising is not a rollback: the step that fired commits with the failure as its
    result, so its event is published (fire events once the work they announce is done)."""
    log = Recorder()
    async with world.runtime([CustomerService, Rewards], container={"log": log}) as rt:
        with pytest.raises(ValueError, match="cannot register raise-dan"):
            await rt.client.proxy(Customers).register("raise-dan")
        await wait_until(lambda: len(log.effects) == 1)
        await quiet()
    assert log.values("Rewards.welcome") == ["raise-dan"]
    assert await world.stored(TOPIC) == 1


async def test_replaying_a_routine_does_not_publish_its_events_again(world: World) -> None:
    """With forced replay, every step re-runs the code that fired the earlier events."""

    class StepwiseCustomers(CustomerService):
        def __init__(self, ledger: Ledger) -> None:
            self.ledger = ledger

        async def register_many(self, names: list[str]) -> int:
            for name in names:
                self.registered(CustomerInfo(name, f"{name}@example.com"))
                await self.ledger.credit(name, 10)  # a step boundary after each event
            return len(names)

    log = Recorder()
    names = [f"r{i}" for i in range(6)]
    async with world.runtime(
        [StepwiseCustomers, Ledger, Rewards], container={"log": log}, force_replay=True
    ) as rt:
        assert await rt.client.proxy(Customers).register_many(names) == 6
        await wait_until(lambda: len(log.values("Rewards.welcome")) == 6)
        await quiet()
        assert rt.worker.stats.replayed_steps >= 6 * 5 / 2  # the early steps ran again and again
    assert log.values("Rewards.welcome") == names or sorted(log.values("Rewards.welcome")) == names
    assert log.run_count("Rewards.welcome") == 6
    assert await world.stored(TOPIC) == 6
