"""Declaring, firing and subscribing: what is accepted and the errors for what is not.

These checks happen before anything is sent (while services are constructed,
or where an event is fired), so they need no transport beyond memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pytest

import dasync
import dasync.testing

from ._helpers import Recorder, wait_until
from ._services import CustomerInfo, Customers, CustomerService, Rewards


def _runtime(*services: type, **container: Any) -> dasync.Runtime:
    container.setdefault("log", Recorder())
    return dasync.Runtime(services, container=container)


class Listener(Protocol):
    async def ping(self) -> None: ...


def _subscriber(handler_source: str) -> type:
    """A service class whose constructor subscribes ``handler_source`` (an expression)."""

    class Subscriber(Listener):
        def __init__(self, customers: Customers) -> None:
            customers.registered += eval(handler_source)

        async def ping(self) -> None: ...

        async def on_registered(self, info: CustomerInfo) -> None: ...

        async def _private(self, info: CustomerInfo) -> None: ...

        def not_async(self, info: CustomerInfo) -> None: ...

        async def no_argument(self) -> None: ...

        async def two_arguments(self, info: CustomerInfo, extra: int) -> None: ...

        async def with_default(self, info: CustomerInfo, extra: int = 0) -> None: ...

    return Subscriber


def test_a_contract_declares_events_with_their_payload_type() -> None:
    spec = dasync._contract.spec_of(Customers)
    event = spec.events["registered"]
    assert (event.service, event.name, event.payload) == ("Customers", "registered", CustomerInfo)
    assert event.topic == "Customers.registered"


def test_an_event_without_a_payload_type_is_a_contract_error() -> None:
    class Untyped(Protocol):
        happened: dasync.Event  # type: ignore[type-arg]

        async def act(self) -> None: ...

    with pytest.raises(dasync.ContractError, match=r"Untyped.happened: declare the payload type"):
        dasync._contract.spec_of(Untyped)


def test_a_public_async_method_of_the_service_subscribes() -> None:
    rt = _runtime(CustomerService, Rewards)
    [sub] = rt.events.subscriptions
    assert (sub.event.topic, sub.subscriber, sub.handler) == (
        "Customers.registered",
        Rewards,
        "welcome",
    )


def test_a_handler_may_have_optional_parameters() -> None:
    rt = _runtime(_subscriber("self.with_default"))
    assert [s.handler for s in rt.events.subscriptions] == ["with_default"]


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("self._private", "must be a public 'async def' method"),
        ("self.not_async", "must be a public 'async def' method"),
        ("self.no_argument", "must take exactly one argument, the event"),
        ("self.two_arguments", "must take exactly one argument, the event"),
        ("Other().handle", "must be a method of the service being constructed"),
        ("print", "must be a method of the service being constructed"),
        ("lambda info: None", "must be a method of the service being constructed"),
    ],
)
def test_a_bad_handler_is_refused_when_the_service_is_built(handler: str, message: str) -> None:
    with pytest.raises(dasync.ContractError, match=message) as err:
        _runtime(_subscriber(handler))
    assert "Customers.registered +=" in str(err.value)  # says which subscription


class Other:
    async def handle(self, info: CustomerInfo) -> None: ...


def test_unsubscribing_what_was_not_subscribed_is_an_error() -> None:
    @dasync.service(name="Forgetful")
    class Forgetful:
        def __init__(self, customers: Customers) -> None:
            customers.registered -= self.on_registered

        async def on_registered(self, info: CustomerInfo) -> None: ...

    with pytest.raises(dasync.ContractError, match="on_registered is not subscribed"):
        _runtime(Forgetful)


def test_assigning_an_event_attribute_is_refused() -> None:
    @dasync.service(name="Assigner")
    class Assigner:
        def __init__(self, customers: Customers) -> None:
            customers.registered = self.on_registered  # type: ignore[assignment,misc]

        async def on_registered(self, info: CustomerInfo) -> None: ...

    with pytest.raises(AttributeError, match=r"is an event: subscribe with \+="):
        _runtime(Assigner)


async def test_subscribing_after_the_service_started_is_refused() -> None:
    @dasync.service(name="Late")
    class Late:
        def __init__(self, customers: Customers) -> None:
            self.customers = customers

        async def subscribe_now(self) -> None:
            self.customers.registered += self.on_registered

        async def on_registered(self, info: CustomerInfo) -> None: ...

    async with dasync.testing.runtime([Late]) as rt:
        with pytest.raises(dasync.ContractError, match="made in a service's constructor"):
            await rt.client.proxy(Late).subscribe_now()
        with pytest.raises(dasync.ContractError, match="made in a service's constructor"):
            rt.instance_of(Late).customers.registered += rt.instance_of(Late).on_registered


async def test_clients_cannot_subscribe() -> None:
    async def handler(info: CustomerInfo) -> None: ...

    async with dasync.testing.runtime([CustomerService]) as rt:
        customers = rt.client.proxy(Customers)
        with pytest.raises(dasync.ContractError, match="clients cannot subscribe"):
            customers.registered += handler
        with pytest.raises(dasync.ContractError, match="clients cannot subscribe"):
            customers.registered -= handler


async def test_a_payload_of_the_wrong_type_is_refused_where_it_is_fired() -> None:
    @dataclass
    class NotCustomerInfo:
        title: str

    async with dasync.testing.runtime([CustomerService]) as rt:
        customers = rt.client.proxy(Customers)
        with pytest.raises(dasync.InvalidArguments, match="payload does not match CustomerInfo"):
            await customers.registered(NotCustomerInfo("x"))  # type: ignore[arg-type]

        class Sloppy(CustomerService):
            async def register(self, name: str) -> str:
                self.registered({"name": name})  # type: ignore[arg-type]
                return name

        async with dasync.testing.runtime([Sloppy]) as rt2:
            with pytest.raises(
                dasync.InvalidArguments, match=r"CustomerInfo, field 'email': Field required"
            ):
                await rt2.client.proxy(Customers).register("zed")


def test_an_event_fired_on_a_bare_proxy_or_declaration_is_an_error() -> None:
    proxy = dasync._proxy.make_proxy(Customers)
    with pytest.raises(dasync.ContractError, match="not connected to a runtime"):
        proxy.registered(CustomerInfo("a", "b"))
    with pytest.raises(dasync.ContractError, match="is a declaration"):
        dasync.Event()(1)


async def test_a_subscriber_can_be_unit_tested_with_instantiate() -> None:
    """``dasync.testing.instantiate`` accepts subscriptions (and ignores them)."""
    log = Recorder()
    rewards = dasync.testing.instantiate(Rewards, log=log)
    assert isinstance(rewards, Rewards)


async def test_subscriptions_collected_match_the_runtime_in_use() -> None:
    log = Recorder()
    async with dasync.testing.runtime([CustomerService, Rewards], container={"log": log}) as rt:
        await rt.client.proxy(Customers).register("uma")
        await wait_until(lambda: len(log.effects) == 1)
    assert log.values("Rewards.welcome") == ["uma"]
