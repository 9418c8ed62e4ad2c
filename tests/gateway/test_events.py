"""Firing a contract's ``ExternalEvent`` over HTTP: ``POST /{service}/events/{event}``, on
real NATS and uvicorn; the service publishes it and its subscriber handles it once."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from dasync.codegen import _http as http
from dasync.codegen import contracts_of, openapi_document

from ._services import SEEN, Receipt, Store

pytestmark = pytest.mark.asyncio(loop_scope="module")

PATH = "/Store/events/delivered"


async def deliveries(n: int, within: float = 15.0) -> list[Receipt]:
    deadline = time.monotonic() + within
    while len(SEEN.deliveries) < n and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)  # the handler runs in this process: poll what it saw
    await asyncio.sleep(0.3)  # a duplicate would show up by now
    return list(SEEN.deliveries)


async def test_a_post_fires_the_event_once_per_idempotency_key(gateway):
    SEEN.deliveries.clear()
    client = gateway.http
    body = {"item": "tea", "qty": 3, "total": 9}
    first = await client.post(PATH, json=body)
    assert first.status_code == 202, first.text
    answer = first.json()
    assert answer["event"] == "Store.delivered" and answer["status"] == "accepted"
    assert await deliveries(1) == [Receipt("tea", 3, 9)]

    key = {http.IDEMPOTENCY_KEY: "delivery-7"}
    again = [await client.post(PATH, json={**body, "qty": 7}, headers=key) for _ in range(3)]
    assert [a.status_code for a in again] == [202, 202, 202]
    assert len({a.json()["fire_id"] for a in again}) == 1
    assert await deliveries(2) == [Receipt("tea", 3, 9), Receipt("tea", 7, 9)]


async def test_bad_payloads_are_400_naming_the_field_and_nothing_is_fired(gateway):
    SEEN.deliveries.clear()
    client = gateway.http
    wrong = await client.post(PATH, json={"item": "tea", "qty": "many", "total": 1})
    assert wrong.status_code == 400
    problem = wrong.json()
    assert problem["type"] == "urn:dasync:problem:invalid-event"
    assert [p["name"] for p in problem["invalid-params"]] == ["qty"]
    for content in (b"{nope", b"[1, 2]", b""):
        answer = await client.post(PATH, content=content, headers={"content-type": http.JSON})
        assert answer.status_code == 400, (content, answer.text)
        assert answer.json()["type"] == "urn:dasync:problem:invalid-event"
    text = await client.post(PATH, content=b"x", headers={"content-type": "text/plain"})
    assert text.status_code == 415
    assert await deliveries(0, within=0) == []


async def test_only_external_events_of_known_services_can_be_fired(gateway):
    client = gateway.http
    plain = await client.post("/Store/events/sold", json={"item": "x", "qty": 1, "total": 1})
    assert plain.status_code == 404
    assert plain.json()["type"] == "urn:dasync:problem:unknown-event"
    assert "external events: delivered" in plain.json()["detail"]
    nobody = await client.post("/Nope/events/delivered", json={})
    assert nobody.status_code == 404
    assert nobody.json()["type"] == "urn:dasync:problem:unknown-service"


async def test_the_document_lists_the_external_event_only(gateway):
    document = orjson.loads((await gateway.http.get(http.OPENAPI_PATH)).content)
    assert document == openapi_document(contracts_of([Store]))
    assert PATH in document["paths"] and "/Store/events/sold" not in document["paths"]
    fire = document["paths"][PATH]["post"]
    assert set(fire["responses"]) == {"202", "400", "415", "503"}
    assert len(fire["responses"]["400"]["content"][http.PROBLEM_JSON]["schema"]["anyOf"]) == 2
    assert fire["requestBody"]["content"][http.JSON]["schema"] == {
        "$ref": "#/components/schemas/Store.delivered.event"
    }
