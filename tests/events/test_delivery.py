"""Firing, subscribing and delivering events, on memory and on NATS.

Every test reads what the handlers did from a ``Recorder``: ``effects`` keyed
by the handler routine's stable id must equal the events, and ``runs`` (code
executions) may exceed them only when a test crashed something.
"""

from __future__ import annotations

import pytest

import dasync
from dasync._runtime import _wire

from ._helpers import Recorder, World, event_message, quiet, wait_until
from ._services import (
    TOPIC,
    CustomerInfo,
    Customers,
    CustomerService,
    Emails,
    Ledger,
    Onboarding,
    Rewards,
)


def _container(log: Recorder) -> dict[str, object]:
    return {"log": log}


async def test_an_event_fired_in_a_routine_reaches_every_subscriber_once(world: World) -> None:
    log = Recorder()
    async with world.runtime([CustomerService, Rewards, Emails], container=_container(log)) as rt:
        customers = rt.client.proxy(Customers)
        for name in ("ann", "bob", "cid"):
            assert await customers.register(name) == f"registered {name}"
        await wait_until(lambda: len(log.effects) == 6)
        await quiet()
    assert sorted(log.values("Rewards.welcome")) == ["ann", "bob", "cid"]
    assert sorted(log.values("Emails.send_welcome")) == ["ann", "bob", "cid"]
    assert len(log.runs) == 6  # no handler ran twice
    assert await world.stored(TOPIC) == 3


async def test_subscribers_in_other_runtimes_each_get_every_event(world: World) -> None:
    """Publisher and two subscribing services in three runtimes (processes, on NATS)."""
    log = Recorder()
    c = _container(log)
    async with (
        world.runtime([Rewards], container=c),
        world.runtime([Emails], container=c),
        world.runtime([CustomerService]) as publisher,
    ):
        customers = publisher.client.proxy(Customers)
        assert await customers.register_many([f"c{i}" for i in range(20)]) == 20
        await wait_until(lambda: len(log.effects) == 40)
        await quiet()
    assert sorted(log.values("Rewards.welcome")) == sorted(f"c{i}" for i in range(20))
    assert sorted(log.values("Emails.send_welcome")) == sorted(f"c{i}" for i in range(20))
    assert len(log.runs) == 40


async def test_a_service_fires_its_own_event_outside_a_routine(world: World) -> None:
    """Published directly; a client may not (test_external.py: only ExternalEvents)."""
    log = Recorder()
    async with world.runtime([CustomerService, Rewards], container=_container(log)) as rt:
        await rt.instance_of(CustomerService).registered(CustomerInfo("eve", "e@example.com"))
        assert await world.stored(TOPIC) == 1  # stored once the await returns
        with pytest.raises(dasync.ContractError, match="only Customers fires it"):
            rt.client.proxy(Customers).registered(CustomerInfo("fay", "f@example.com"))
        await wait_until(lambda: len(log.effects) == 1)
        await quiet()
    assert log.values("Rewards.welcome") == ["eve"]
    assert len(log.runs) == 1


async def test_a_handler_is_a_full_routine(world: World) -> None:
    """It calls another service, gathers sub-routines and sleeps durably, once per event."""
    log = Recorder()
    services = [CustomerService, Onboarding, Ledger]
    async with world.runtime(services, container=_container(log)) as rt:
        await rt.client.proxy(Customers).register("ref-gil")
        await rt.client.proxy(Customers).register("hal")
        await wait_until(lambda: len(log.values("Onboarding.onboard")) == 2)
        await quiet()
    assert sorted(log.values("Onboarding.onboard")) == [("hal", 100), ("ref-gil", 150)]
    assert sorted(log.values("Ledger.credit")) == [("hal", 100), ("ref-gil", 100)]
    assert len(log.runs) == 4


async def test_two_handlers_of_one_service_both_run(world: World) -> None:
    @dasync.service(name="Audit")
    class Audit:
        def __init__(self, customers: Customers, log: Recorder) -> None:
            self.log = log
            customers.registered += self.count
            customers.registered += self.archive

        async def count(self, info: CustomerInfo) -> None:
            self.log.handled("Audit.count", info.name)

        async def archive(self, info: CustomerInfo) -> None:
            self.log.handled("Audit.archive", info.name)

    log = Recorder()
    async with world.runtime([CustomerService, Audit], container=_container(log)) as rt:
        await rt.client.proxy(Customers).register("ivy")
        await wait_until(lambda: len(log.effects) == 2)
        await quiet()
    assert log.values("Audit.count") == ["ivy"] and log.values("Audit.archive") == ["ivy"]
    assert len(log.runs) == 2


async def test_duplicate_deliveries_run_the_handler_once(world: World) -> None:
    log = Recorder()
    async with world.runtime([Rewards], container=_container(log)):
        body = b'{"name":"jo","email":"jo@example.com"}'
        # the same message twice (the transport drops the copy) and the same event
        # under another message id (the handler routine, keyed by event id, drops it)
        for msg_id in ("event:dup-1", "event:dup-1", "resent-after-the-window"):
            await world.publish_raw(TOPIC, event_message(TOPIC, "dup-1", body, msg_id))
        await world.publish_raw(TOPIC, event_message(TOPIC, "dup-2", body))
        await wait_until(lambda: len(log.effects) == 2)
        await quiet(0.5)
    assert log.values("Rewards.welcome") == ["jo", "jo"]  # two events, each handled once
    assert len(log.runs) == 2
    assert set(log.effects) == {
        _wire.handler_routine_id("dup-1", "Rewards", "welcome"),
        _wire.handler_routine_id("dup-2", "Rewards", "welcome"),
    }


async def test_a_failing_handler_is_recorded_and_later_events_keep_flowing(world: World) -> None:
    log = Recorder()
    async with world.runtime([CustomerService, Rewards], container=_container(log)) as rt:
        customers = rt.client.proxy(Customers)
        for name in ("kim", "bad-lee", "max"):
            await customers.register(name)
        await wait_until(lambda: len(log.effects) == 2 and rt.worker.stats.failed)
        await quiet()
        [failure] = rt.worker.stats.failed
        assert "ValueError: no rewards for bad-lee" in failure
        # the failure is durable: the handler routine's outcome is in its journal
        routine_id = failure.split("/", 1)[1].split(":", 1)[0]
        assert routine_id.endswith("/Rewards.welcome")
        try:
            await rt.client.handle(Rewards.welcome, routine_id).result(timeout=10)
        except ValueError as exc:
            assert str(exc) == "no rewards for bad-lee"
        else:
            raise AssertionError("the failed handler routine reported success")
    assert sorted(log.values("Rewards.welcome")) == ["kim", "max"]


async def test_an_infrastructure_error_in_a_handler_is_retried(world: World) -> None:
    """The store fails the first commit of the handler: retried, handled once, no failure."""
    from dasync._errors import TransportError

    failures = []

    class FlakyStore:
        def __init__(self, inner: dasync.transports.JournalStore) -> None:
            self.inner = inner

        async def load(self, service: str, routine_id: str) -> list[bytes]:
            return await self.inner.load(service, routine_id)

        async def append(self, service: str, routine_id: str, entry: bytes, expected: int) -> None:
            if service == "Rewards" and not failures:
                failures.append(routine_id)
                raise TransportError("injected: store unreachable")
            await self.inner.append(service, routine_id, entry, expected)

        async def close(self) -> None:
            await self.inner.close()

    log = Recorder()
    async with (
        world.runtime([Rewards], container=_container(log), wrap_store=FlakyStore) as sub,
        world.runtime([CustomerService]) as pub,
    ):
        await pub.client.proxy(Customers).register("ned")
        await wait_until(lambda: len(log.effects) == 1)
        await quiet()
        assert failures and not sub.worker.stats.failed
    assert log.values("Rewards.welcome") == ["ned"]
    # the live worker retried the commit with the step it had computed: ran once
    assert log.run_count("Rewards.welcome") == 1
    assert sub.worker.stats.append_retries == 1


async def test_a_payload_that_does_not_decode_is_rejected_and_recorded(world: World) -> None:
    log = Recorder()
    async with world.runtime([Rewards], container=_container(log)) as rt:
        bad = {
            "junk-json": b"not json at all",
            "junk-field": b'{"name":"oz","mail":"typo@example.com"}',
            "junk-type": b'{"name":["a","list"],"email":"x@example.com"}',
        }
        for event_id, body in bad.items():
            await world.publish_raw(TOPIC, event_message(TOPIC, event_id, body))
        # no event id at all: not an event of dasync's
        await world.publish_raw(TOPIC, dasync.transports.Message("foreign-1", {}, b"{}"))
        good = b'{"name":"pam","email":"pam@example.com"}'
        await world.publish_raw(TOPIC, event_message(TOPIC, "fine-1", good))
        await wait_until(
            lambda: len(rt.worker.stats.failed) == 3 and len(rt.worker.stats.rejected) == 1
        )
        await wait_until(lambda: len(log.effects) == 1)
        await quiet()
        failed = "\n".join(rt.worker.stats.failed)
        assert "junk-json/Rewards.welcome: MalformedMessage" in failed
        assert "not valid JSON" in failed
        assert "junk-field/Rewards.welcome: InvalidArguments" in failed
        assert "'info.email'" in failed  # names the missing field
        assert "junk-type/Rewards.welcome: InvalidArguments" in failed
        assert "'info.name'" in failed
        [rejected] = rt.worker.stats.rejected
        assert rejected.startswith("foreign-1:") and _wire.EVENT_ID in rejected
    # the handler's code never saw garbage; the good event after them was handled
    assert log.values("Rewards.welcome") == ["pam"]
    assert len(log.runs) == 1


async def test_a_new_subscriber_gets_events_published_after_it_first_subscribed(
    world: World,
) -> None:
    log = Recorder()
    async with world.runtime([CustomerService]) as pub:
        customers = pub.client.proxy(Customers)
        await customers.register("before")  # nobody subscribed yet
        assert not await world.consumer_exists(TOPIC, "Rewards.welcome")
        async with world.runtime([Rewards], container=_container(log)):
            assert await world.consumer_exists(TOPIC, "Rewards.welcome")
            await customers.register("after")
            await wait_until(lambda: len(log.effects) == 1)
            await quiet()
    assert log.values("Rewards.welcome") == ["after"]


async def test_a_subscriber_that_was_down_catches_up(world: World) -> None:
    log = Recorder()
    c = _container(log)
    async with world.runtime([CustomerService]) as pub:
        customers = pub.client.proxy(Customers)
        async with world.runtime([Rewards], container=c):
            await customers.register("up-1")
            await wait_until(lambda: len(log.effects) == 1)
        # the subscriber is stopped: events keep being stored for its group
        for i in range(5):
            await customers.register(f"down-{i}")
        await quiet(0.2)
        assert len(log.effects) == 1
        async with world.runtime([Rewards], container=c):  # back: it gets what it missed
            await wait_until(lambda: len(log.effects) == 6)
            await customers.register("up-2")
            await wait_until(lambda: len(log.effects) == 7)
            await quiet()
    assert sorted(log.values("Rewards.welcome")) == sorted(
        ["up-1", "up-2", *(f"down-{i}" for i in range(5))]
    )
    assert len(log.runs) == 7


async def test_events_of_one_group_are_delivered_in_publish_order(world: World) -> None:
    """With one worker handling one event at a time, handlers start in publish order."""
    log = Recorder()
    names = [f"o{i:02}" for i in range(30)]
    async with (
        world.runtime([Rewards], container=_container(log), concurrency=1),
        world.runtime([CustomerService]) as pub,
    ):
        await pub.client.proxy(Customers).register_many(names)
        await wait_until(lambda: len(log.effects) == 30)
    assert log.values("Rewards.welcome") == names


async def test_unsubscribing_in_the_constructor_undoes_the_subscription(world: World) -> None:
    @dasync.service(name="Newsletter")
    class Newsletter:
        def __init__(self, customers: Customers, log: Recorder, enabled: bool) -> None:
            self.log = log
            customers.registered += self.subscribe_to_news
            if not enabled:
                customers.registered -= self.subscribe_to_news

        async def subscribe_to_news(self, info: CustomerInfo) -> None:
            self.log.handled("Newsletter.subscribe_to_news", info.name)

    log = Recorder()
    container = {"log": log, "enabled": False}
    async with (
        world.runtime([Newsletter, Rewards], container=container) as sub,
        world.runtime([CustomerService]) as pub,
    ):
        assert [s.handler for s in sub.events.subscriptions] == ["welcome"]
        await pub.client.proxy(Customers).register("quinn")
        await wait_until(lambda: len(log.effects) == 1)
        await quiet()
        assert not await world.consumer_exists(TOPIC, "Newsletter.subscribe_to_news")
    assert log.values("Rewards.welcome") == ["quinn"]
    assert log.values("Newsletter.subscribe_to_news") == []


async def test_workers_of_one_subscribing_service_share_its_events(world: World) -> None:
    """Two workers of the same subscriber: one group, each event handled by one of them."""
    log = Recorder()
    c = _container(log)
    names = [f"w{i:03}" for i in range(100)]
    async with (
        world.runtime([Rewards], container=c) as first,
        world.runtime([Rewards], container=c) as second,
        world.runtime([CustomerService]) as pub,
    ):
        for start in range(0, 100, 10):
            await pub.client.proxy(Customers).register_many(names[start : start + 10])
        await wait_until(lambda: len(log.effects) == 100)
        await quiet()
        handled = [rt.worker.stats.activations for rt in (first, second)]
    assert sorted(log.values("Rewards.welcome")) == names
    assert len(log.runs) == 100
    assert sum(handled) == 100  # one activation per event, across both workers
