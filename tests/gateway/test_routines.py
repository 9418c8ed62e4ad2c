"""Routines over HTTP: start and wait (``Prefer: wait``), read, idempotent retries,
``202`` and polling for a durable timer, cancelling; real NATS and uvicorn."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from dasync.codegen import _http as http

from ._services import SEEN

pytestmark = pytest.mark.asyncio(loop_scope="module")

JSON = {"content-type": "application/json"}


async def poll(client: httpx.AsyncClient, href: str, status: str, within: float = 15.0) -> Any:
    """``GET href`` until the routine's status is ``status`` (what a client does)."""
    deadline = time.monotonic() + within
    while True:
        answer = await client.get(href)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if body["status"] == status or time.monotonic() > deadline:
            assert body["status"] == status, body
            return body
        await asyncio.sleep(0.05)


async def test_start_wait_read_and_retry_with_the_same_key(gateway):
    client = gateway.http
    headers = {**JSON, "Prefer": "wait=10", "Idempotency-Key": "order-1"}
    first = await client.post("/Store/buy", json={"item": "book", "qty": 2}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"item": "book", "qty": 2, "total": 24}
    assert first.headers[http.PREFERENCE_APPLIED] == "wait=10"
    routine = first.headers[http.ROUTINE_ID]
    assert routine.startswith("Store.buy.k")
    assert first.headers[http.LOCATION] == http.routine_href(routine)

    read = await client.get(first.headers[http.LOCATION])
    assert read.status_code == 200
    assert read.json() == {
        "id": routine,
        "service": "Store",
        "method": "buy",
        "status": "completed",
        "result": {"item": "book", "qty": 2, "total": 24},
    }

    runs = SEEN.buys.count(("book", 2))
    # the same key and arguments (written otherwise): the same routine, not another run
    again = await client.post(
        "/Store/buy", content=b'{ "qty": 2,  "item": "book" }', headers=headers
    )
    assert again.status_code == 200
    assert again.headers[http.ROUTINE_ID] == routine
    assert again.json() == first.json()
    assert SEEN.buys.count(("book", 2)) == runs

    # the same key with other arguments is refused, naming the key
    other = await client.post("/Store/buy", json={"item": "book", "qty": 3}, headers=headers)
    assert other.status_code == 422
    assert other.headers["content-type"] == http.PROBLEM_JSON
    assert other.json()["type"] == "urn:dasync:problem:idempotency-key-reused"
    assert "order-1" in other.json()["detail"]

    # a key belongs to its principal, service and method: on another method it is new
    brew = await client.post("/Store/brew", json={"seconds": 0}, headers=headers)
    assert brew.status_code == 200 and brew.json() == "ready"
    assert brew.headers[http.ROUTINE_ID].startswith("Store.brew.k")
    # without a key, every POST is a routine of its own
    new = await client.post("/Store/buy", json={"item": "book", "qty": 2}, headers=JSON)
    assert new.status_code == 200
    assert new.headers[http.ROUTINE_ID] != routine
    assert SEEN.buys.count(("book", 2)) == runs + 1
    assert "Preference-Applied" not in new.headers  # no Prefer: the default wait


async def test_a_durable_timer_answers_202_then_polling_finds_the_result(gateway):
    client = gateway.http
    started = await client.post(
        "/Store/brew", json={"seconds": 0.6}, headers={**JSON, "Prefer": "respond-async"}
    )
    assert started.status_code == 202, started.text
    assert started.headers[http.PREFERENCE_APPLIED] == "respond-async"
    accepted = started.json()
    assert accepted == {
        "id": started.headers[http.ROUTINE_ID],
        "status": "running",
        "href": started.headers[http.LOCATION],
    }
    assert (await client.get(accepted["href"])).json()["status"] == "running"
    done = await poll(client, accepted["href"], "completed")
    assert done["result"] == "ready"

    # a wait shorter than the timer: 202 after it, saying so
    t0 = time.monotonic()
    short = await client.post(
        "/Store/brew", json={"seconds": 1.0}, headers={**JSON, "Prefer": "wait=0.2"}
    )
    assert short.status_code == 202
    assert 0.2 <= time.monotonic() - t0 < 1.0
    assert short.headers[http.PREFERENCE_APPLIED] == "wait=0.2"
    # a wait longer than the timer: the result
    long = await client.post(
        "/Store/brew", json={"seconds": 0.3}, headers={**JSON, "Prefer": "wait=20"}
    )
    assert long.status_code == 200 and long.json() == "ready"


async def test_delete_cancels_and_the_routine_sees_cancelled_error(gateway):
    client = gateway.http
    holding = SEEN.holding["t1"] = asyncio.Event()
    started = await client.post(
        "/Store/hold", json={"tag": "t1"}, headers={**JSON, "Prefer": "wait=0"}
    )
    assert started.status_code == 202
    href = started.headers[http.LOCATION]
    await asyncio.wait_for(holding.wait(), 15)

    cancel = await client.delete(href)
    assert cancel.status_code == 202
    assert cancel.json()["status"] == "running"  # asked; it stops on its own time
    stopped = await poll(client, href, "cancelled")
    assert stopped["error"]["type"] == "urn:dasync:problem:routine-cancelled"
    assert stopped["error"]["status"] == 409
    assert SEEN.cancelled == ["t1"]

    # cancelling a finished routine changes nothing
    again = await client.delete(href)
    assert again.status_code == 202 and again.json()["status"] == "cancelled"
    assert SEEN.cancelled == ["t1"]


async def test_a_post_waiting_for_a_routine_that_is_cancelled_gets_a_409_problem(gateway):
    client = gateway.http
    holding = SEEN.holding["t2"] = asyncio.Event()
    headers = {**JSON, "Idempotency-Key": "hold-t2"}
    waiting = asyncio.ensure_future(
        client.post("/Store/hold", json={"tag": "t2"}, headers={**headers, "Prefer": "wait=20"})
    )
    await asyncio.wait_for(holding.wait(), 15)
    # the same key finds the routine (and its URL) while the first POST still waits
    found = await client.post(
        "/Store/hold", json={"tag": "t2"}, headers={**headers, "Prefer": "respond-async"}
    )
    assert found.status_code == 202
    assert (await client.delete(found.headers[http.LOCATION])).status_code == 202
    answer = await asyncio.wait_for(waiting, 15)
    assert answer.status_code == 409
    assert answer.headers[http.ROUTINE_ID] == found.headers[http.ROUTINE_ID]
    assert answer.json()["type"] == "urn:dasync:problem:routine-cancelled"


async def test_an_app_without_a_client_connects_for_its_lifetime(runtime, store_backend):
    """``gateway_app`` as ``uvicorn module:app`` would run it: no client given, so it
    connects in its lifespan (here with the test namespace's ``NatsOptions``)."""
    from dasync import gateway_app
    from dasync._gateway import serving
    from tests.conftest import nats_options

    from ._services import Store

    app = gateway_app([Store], nats=nats_options(store_backend.url, store_backend.namespace))
    async with serving(app, "127.0.0.1", 0) as where:
        async with httpx.AsyncClient(base_url=where.url, timeout=30) as client:
            answer = await client.post("/Store/buy", json={"item": "tea", "qty": 3})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"item": "tea", "qty": 3, "total": 9}
    assert app.state.gateway.client is None  # closed with the app
