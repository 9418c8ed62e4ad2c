"""Events fired from outside their service (``dasync.ExternalEvent``), on memory and NATS.

An event is its service's statement: a client or another service may only *ask*
the service to fire one its contract opens to outsiders, and the service checks
the request and publishes the event. A repeated fire id is one event; a forged
or malformed request is set aside and the worker keeps serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pytest

import dasync
from dasync._codec import encode_event
from dasync._contract import spec_of
from dasync._event import EventSpec
from dasync._runtime import _wire
from dasync.transports import Message, Origin

from ._helpers import Recorder, World, quiet, wait_until

PAID = "Payments.paid"


@dataclass(frozen=True)
class Payment:
    order: str
    cents: int


class Payments(Protocol):
    paid: dasync.ExternalEvent[Payment]
    """A payment provider's webhook says an order was paid: anyone may report it."""
    settled: dasync.Event[Payment]
    """Only Payments itself says an order was settled."""

    async def settle(self, order: str) -> str: ...


class PaymentService(Payments):
    def __init__(self, log: Recorder) -> None:
        self.log = log

    async def settle(self, order: str) -> str:
        self.settled(Payment(order, 0))
        return order


@dasync.service
class Orders:
    def __init__(self, payments: Payments, log: Recorder) -> None:
        self.payments = payments
        self.log = log
        payments.paid += self.on_paid

    async def on_paid(self, payment: Payment) -> None:
        self.log.handled("Orders.on_paid", (payment.order, payment.cents))

    async def pay(self, order: str, cents: int) -> str:
        """Fires another service's ExternalEvent inside a routine: asked of Payments."""
        self.payments.paid(Payment(order, cents))
        return order

    async def forge(self, order: str) -> str:
        """Fires another service's plain Event: refused where it is fired."""
        self.payments.settled(Payment(order, 1))
        return order


def _container(log: Recorder) -> dict[str, object]:
    return {"log": log}


def _event(name: str) -> EventSpec:
    return spec_of(Payments).events[name]


def test_the_contract_says_which_events_outsiders_may_fire() -> None:
    assert _event("paid").external
    assert not _event("settled").external


async def test_a_client_fires_an_external_event_through_the_service(world: World) -> None:
    log = Recorder()
    async with world.runtime([PaymentService, Orders], container=_container(log)) as rt:
        await rt.client.proxy(Payments).paid(Payment("o1", 500))
        await wait_until(lambda: log.values("Orders.on_paid") == [("o1", 500)])
        await quiet()
    assert log.values("Orders.on_paid") == [("o1", 500)]
    assert world.kind != "nats" or await world.stored(PAID) == 1


async def test_a_fire_id_repeated_is_one_event(world: World) -> None:
    log = Recorder()
    async with world.runtime([PaymentService, Orders], container=_container(log)) as rt:
        payload = encode_event(_event("paid"), Payment("o2", 700))
        for _ in range(3):  # a webhook delivered three times with its own id
            assert await rt.client.fire_encoded(_event("paid"), payload, fire_id="hook-2") == (
                "hook-2"
            )
        await rt.client.fire_encoded(_event("paid"), payload, fire_id="hook-3")
        await wait_until(lambda: len(log.effects) == 2)
        await quiet()
    assert sorted(log.values("Orders.on_paid")) == [("o2", 700), ("o2", 700)]
    assert log.run_count("Orders.on_paid") == 2


async def test_a_client_may_not_fire_a_plain_event(world: World) -> None:
    async with world.runtime([PaymentService], container=_container(Recorder())) as rt:
        with pytest.raises(dasync.ContractError, match="Payments.settled is declared dasync.Event"):
            rt.client.proxy(Payments).settled(Payment("o3", 1))  # refused at the fire
        payload = encode_event(_event("settled"), Payment("o3", 1))
        with pytest.raises(dasync.ContractError, match="ExternalEvent"):
            await rt.client.fire_encoded(_event("settled"), payload)


async def test_a_routine_fires_another_services_external_event_once(world: World) -> None:
    log = Recorder()
    async with world.runtime(
        [PaymentService, Orders], container=_container(log), force_replay=True
    ) as rt:
        orders = rt.client.proxy(Orders)
        assert await orders.pay("o4", 900) == "o4"
        assert await orders.pay("o5", 100) == "o5"
        await wait_until(lambda: len(log.effects) == 2)
        await quiet()
    assert sorted(log.values("Orders.on_paid")) == [("o4", 900), ("o5", 100)]
    assert log.run_count("Orders.on_paid") == 2


async def test_a_routine_may_not_fire_another_services_plain_event(world: World) -> None:
    async with world.runtime([PaymentService, Orders], container=_container(Recorder())) as rt:
        with pytest.raises(dasync.ContractError, match="Orders fired Payments.settled"):
            await rt.client.proxy(Orders).forge("o6")
        assert await world.stored("Payments.settled") == 0


async def test_forged_fire_requests_are_set_aside_and_the_worker_keeps_serving(
    world: World,
) -> None:
    log = Recorder()
    async with world.runtime([PaymentService, Orders], container=_container(log)) as rt:
        good = encode_event(_event("paid"), Payment("ok", 1))
        forged = {
            "unknown event": ("f1", "refunded", good),
            "plain event": ("f2", "settled", good),
            "bad payload": ("f3", "paid", b'{"order": "x", "cents": "many"}'),
            "not JSON": ("f4", "paid", b"{nope"),
            "bad id": ("f/5", "paid", good),
        }
        for fire_id, event, body in forged.values():
            message = _wire.fire_message(fire_id, event, body, _wire.client_fire_id(fire_id))
            await rt.transport.send("Payments", message, rt.client.origin)
        await rt.client.proxy(Payments).paid(Payment("after", 2))
        await wait_until(lambda: log.values("Orders.on_paid") == [("after", 2)])
        await wait_until(lambda: len(rt.worker.stats.rejected) >= len(forged))
        await quiet()
        rejected = "\n".join(rt.worker.stats.rejected)
    assert log.values("Orders.on_paid") == [("after", 2)]
    assert "declares no event" in rejected
    assert "does not open the event" in rejected
    assert "field 'cents'" in rejected
    assert "not valid JSON" in rejected
    assert rejected.count("fire") >= len(forged)


async def test_the_event_says_who_asked_for_it(world: World) -> None:
    seen: list[Message] = []
    async with world.runtime([PaymentService], container=_container(Recorder())) as rt:
        real_publish = rt.transport.publish

        async def spy(topic: str, message: Message) -> None:
            seen.append(message)
            await real_publish(topic, message)

        rt.transport.publish = spy  # type: ignore[method-assign]
        await rt.client.fire_encoded(
            _event("paid"), encode_event(_event("paid"), Payment("o7", 3)), fire_id="who"
        )
        await wait_until(lambda: bool(seen))
    (message,) = seen
    assert message.headers[_wire.FIRED_BY] == f"client:{rt.client.identity}"
    expected = _wire.fired_event_id(Origin.client(rt.client.identity), "who")
    assert message.headers[_wire.EVENT_ID] == expected


async def test_a_fire_waits_for_the_services_workers_to_start(world: World) -> None:
    """Services start in any order: the request waits in the queue of a service whose
    workers never ran, and the event is published once they do."""
    log = Recorder()
    async with world.runtime([Orders], container=_container(log)) as rt:
        assert await rt.client.proxy(Orders).pay("o8", 42) == "o8"
        await quiet()
        assert log.values("Orders.on_paid") == []
        async with world.runtime([PaymentService], container=_container(log)):
            await wait_until(lambda: log.values("Orders.on_paid") == [("o8", 42)])
            await quiet()
    assert log.run_count("Orders.on_paid") == 1
