"""Versioned contracts: each version is a service of its own on the wire, so two versions
run side by side during a rollout (on both transports), and the specs say which is which."""

from __future__ import annotations

from typing import Protocol

import pytest

import dasync
from dasync._contract import spec_of
from dasync.codegen import contracts_of, method_schemas, openapi_document

from ..conftest import Backend


class Orders(Protocol):
    async def place(self, n: int) -> str: ...


@dasync.contract(name="Orders", version=2)
class OrdersV2(Protocol):
    """Version 2: a coupon, and a receipt instead of a string."""

    async def place(self, n: int, coupon: str) -> dict[str, str]: ...


class Later(Protocol):
    async def ready(self) -> str: ...


class OrdersV1Impl(Orders):
    def __init__(self, later: Later) -> None:
        self.later = later

    async def place(self, n: int) -> str:
        if n < 0:
            return f"v1 {n} after {await self.later.ready()}"  # waits for Later's workers
        return f"v1 {n}"


class OrdersV2Impl(OrdersV2):
    async def place(self, n: int, coupon: str) -> dict[str, str]:
        return {"version": "2", "order": str(n), "coupon": coupon}


class LaterImpl(Later):
    async def ready(self) -> str:
        return "ready"


def test_a_version_is_part_of_the_name_on_the_wire() -> None:
    assert (spec_of(Orders).name, spec_of(Orders).family, spec_of(Orders).version) == (
        "Orders",
        "Orders",
        1,
    )
    v2 = spec_of(OrdersV2)
    assert (v2.name, v2.family, v2.version) == ("Orders-v2", "Orders", 2)
    assert v2.doc == "Version 2: a coupon, and a receipt instead of a string."
    assert set(method_schemas(v2)["place"]["arguments"]["properties"]) == {"n", "coupon"}

    @dasync.contract(version=1)
    class Plain(Protocol):
        async def go(self) -> None: ...

    assert spec_of(Plain).name == "Plain"  # version 1 is the plain name: nothing changes

    @dasync.service(name="Billing", version=3)
    class BillingV3:
        async def charge(self, cents: int) -> int:
            return cents

    assert (spec_of(BillingV3).name, spec_of(BillingV3).version) == ("Billing-v3", 3)


@pytest.mark.parametrize("version", [0, -1, 1.5, True, "2"])
def test_a_version_is_a_whole_number_from_one(version: object) -> None:
    with pytest.raises(dasync.ContractError, match="whole number of at least 1"):
        dasync.contract(version=version)  # type: ignore[arg-type]


def test_contract_takes_protocols_only() -> None:
    class NotAProtocol:
        async def go(self) -> None: ...

    with pytest.raises(dasync.ContractError, match=r"@dasync.service\(name=..., version=...\)"):
        dasync.contract(version=2)(NotAProtocol)


async def test_two_versions_run_side_by_side(backend: Backend) -> None:
    async with backend.runtime([OrdersV1Impl], retention=None) as old:
        # a v1 routine in flight when v2 is deployed
        waiting = await old.client.start(Orders.place, -1, routine_id="in-flight")
        assert await old.client.proxy(Orders).place(1) == "v1 1"

        async with backend.runtime([OrdersV2Impl], retention=None) as new:
            assert await new.client.proxy(OrdersV2).place(2, "SPRING") == {
                "version": "2",
                "order": "2",
                "coupon": "SPRING",
            }
            # old callers still reach version 1, served by the old workers only
            assert await new.client.proxy(Orders).place(3) == "v1 3"
            assert len(await new.store.load("Orders", "in-flight")) == 1, "still waiting"

            async with backend.runtime([LaterImpl], retention=None):
                assert await waiting.result(timeout=20) == "v1 -1 after ready"
        assert len(await old.store.load("Orders", "in-flight")) >= 2
        assert await old.store.load("Orders-v2", "in-flight") == []
    if backend.transport == "nats":
        streams = await _streams(backend)
        for wanted in ("Orders_WORK", "Orders-v2_WORK", "Orders_JOURNAL", "Orders-v2_JOURNAL"):
            assert f"DASYNC-{backend.namespace}_{wanted}" in streams, streams


async def _streams(backend: Backend) -> set[str]:
    import nats

    nc = await nats.connect(backend.url, connect_timeout=5)
    try:
        return {info.config.name or "" for info in await nc.jetstream().streams_info()}
    finally:
        await nc.close()


def test_the_specs_name_each_version() -> None:
    doc = openapi_document(contracts_of([Orders, OrdersV2]))
    assert {"/Orders/place", "/Orders-v2/place"} <= set(doc["paths"])
    tags = {t["name"]: t for t in doc["tags"]}
    assert "x-dasync-contract" not in tags["Orders"]
    assert tags["Orders-v2"]["x-dasync-contract"] == {"name": "Orders", "version": 2}
