"""Constructor injection: contracts get proxies, other parameters come from a container."""

from __future__ import annotations

from typing import Protocol

import pytest
from dependency_injector import containers, providers

import dasync
from dasync.testing import runtime


class Greeter(Protocol):
    async def greet(self, name: str) -> str: ...


class GreeterImpl(Greeter):
    def __init__(self, greeting: str, punctuation: str = "!") -> None:
        self.greeting = greeting
        self.punctuation = punctuation

    async def greet(self, name: str) -> str:
        return f"{self.greeting}, {name}{self.punctuation}"


class Settings:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix


class Front(Protocol):
    async def hello(self, name: str) -> str: ...


class FrontImpl(Front):
    def __init__(self, greeter: Greeter, settings: Settings) -> None:
        self.greeter = greeter
        self.settings = settings

    async def hello(self, name: str) -> str:
        return self.settings.prefix + await self.greeter.greet(name)


class AppContainer(containers.DeclarativeContainer):
    greeting = providers.Object("Hello")
    settings = providers.Singleton(Settings, prefix="> ")


async def test_contract_parameters_get_proxies_that_pass_isinstance(make_runtime):
    async with make_runtime(
        [GreeterImpl, FrontImpl], container={"greeting": "Hi", "settings": Settings("")}
    ) as rt:
        front = rt.instance_of(FrontImpl)
        assert isinstance(front.greeter, Greeter)
        assert not isinstance(front.greeter, GreeterImpl)  # a proxy, not the implementation
        assert "Greeter" in repr(front.greeter)
        assert isinstance(rt.client.proxy(Greeter), Greeter)
        assert await rt.client.proxy(Front).hello("Ada") == "Hi, Ada!"


async def test_dependency_injector_container(make_runtime):
    container = AppContainer()
    async with make_runtime([GreeterImpl, FrontImpl], container=container) as rt:
        front = rt.instance_of(FrontImpl)
        assert front.settings is container.settings()
        assert rt.instance_of(GreeterImpl).punctuation == "!"  # default kept
        assert await rt.client.proxy(Front).hello("Bob") == "> Hello, Bob!"


async def test_mapping_container(make_runtime):
    mapping = {"greeting": "Hey", "punctuation": "?", "settings": Settings("# ")}
    async with make_runtime([GreeterImpl, FrontImpl], container=mapping) as rt:
        assert await rt.client.proxy(Front).hello("Cy") == "# Hey, Cy?"


async def test_missing_dependencies_are_all_named():
    with pytest.raises(dasync.ContractError) as info:
        async with runtime([GreeterImpl]):
            pass
    assert "'greeting'" in str(info.value)
    assert "'punctuation'" not in str(info.value)  # it has a default
    with pytest.raises(dasync.ContractError) as info:
        async with runtime([FrontImpl], container={"unrelated": 1}):
            pass
    message = str(info.value)
    assert "FrontImpl" in message and "'settings'" in message and "Settings" in message
    assert "'greeter'" not in message  # a contract: injected as a proxy


def test_instantiate_with_fakes_for_plain_unit_tests():
    from dasync.testing import instantiate

    front = instantiate(FrontImpl, settings=Settings("* "))
    assert isinstance(front.greeter, Greeter)
    greeter = instantiate(GreeterImpl, greeting="Yo")
    assert greeter.greeting == "Yo"
