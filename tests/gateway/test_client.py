"""The client methods the gateway stands on, on the memory transport: a start from an
encoded payload, a routine read from its journal, an undecoded outcome, detaching."""

from __future__ import annotations

import pytest

import dasync.testing
from dasync._codec import encode_args
from dasync._runtime._client import RoutineRecord

from ._services import OutOfStock, Store, StoreService

RECEIPT = b'{"item":"tea","qty":2,"total":6}'


async def test_start_encoded_routine_outcome_and_detach():
    async with dasync.testing.runtime([StoreService]) as rt:
        client = rt.client
        buy = dasync.spec_of(Store).methods["buy"]
        payload = encode_args(buy, {"item": "tea", "qty": 2})
        handle = await client.start_encoded(buy, payload, routine_id="r-1")
        assert await handle.outcome(10) == (True, RECEIPT)
        assert await client.routine("Store", "r-1") == RoutineRecord(
            "Store", "r-1", "buy", payload, f"client:{client.identity}", (True, RECEIPT)
        )
        assert await client.routine("Store", "never") is None

        # a contract method works as well as a spec; a failure comes back undecoded
        failed = await client.start_encoded(Store.buy, encode_args(buy, {"item": "x"}))
        ok, failure = await failed.outcome(10)
        assert not ok and b"tests.gateway._services:OutOfStock" in failure
        with pytest.raises(OutOfStock):
            await client.handle(Store.buy, failed.routine_id).result(10)

        # detached: nothing waits for the reply here any more; the journal still tells it
        brew = dasync.spec_of(Store).methods["brew"]
        brewing = await client.start_encoded(brew, encode_args(brew, {"seconds": 60}))
        brewing.detach()
        brewing.detach()  # twice is harmless
        assert f"Store/{brewing.routine_id}" not in client._waiters
        assert await brewing.result(10) == "ready"
