"""Signals and progress over HTTP: ``POST /routines/{id}/signals/{name}`` and the
Server-Sent Events of ``GET /routines/{id}/progress``, on real NATS and uvicorn."""

from __future__ import annotations

import pytest

from dasync.codegen import _http as http

pytestmark = pytest.mark.asyncio(loop_scope="module")

ASYNC = {"Prefer": "respond-async"}


async def events(client, href: str, **headers: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The stream's events, as text blocks, until the server ends it."""
    found: list[str] = []
    async with client.stream("GET", f"{href}/progress", headers=headers) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(http.EVENT_STREAM)
        buffer = ""
        async for chunk in answer.aiter_text():
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                found.append(block)
    return found


async def test_signal_a_routine_and_follow_its_progress(gateway):
    client = gateway.http
    started = await client.post("/Store/approve", json={"amount": 70}, headers=ASYNC)
    assert started.status_code == 202, started.text
    href = started.headers[http.LOCATION]

    first = None
    async with client.stream("GET", f"{href}/progress") as answer:
        async for line in answer.aiter_lines():
            if line.startswith("data: "):
                first = line
                break
    assert first == 'data: {"asked":70}'

    key = {http.IDEMPOTENCY_KEY: "approve-70"}
    sent = [
        await client.post(f"{href}/signals/approval", json=True, headers=key) for _ in range(2)
    ]
    assert [s.status_code for s in sent] == [202, 202], sent[0].text
    assert sent[0].json()["signal_id"] == sent[1].json()["signal_id"]
    assert sent[0].json()["signal"] == "approval"

    blocks = await events(client, href)
    assert blocks[:2] == ['id: 1\ndata: {"asked":70}', 'id: 2\ndata: {"approved":true}']
    assert blocks[2].startswith("event: end\ndata: ") and '"status":"completed"' in blocks[2]
    resumed = await events(client, href, **{http.LAST_EVENT_ID: "1"})
    assert resumed[0] == 'id: 2\ndata: {"approved":true}' and len(resumed) == 2

    finished = await client.post(f"{href}/signals/approval", json=False)
    assert finished.status_code == 409
    assert finished.json()["type"] == "urn:dasync:problem:routine-finished"


async def test_bad_signals_are_4xx(gateway):
    client = gateway.http
    started = await client.post("/Store/approve", json={"amount": 1}, headers=ASYNC)
    href = started.headers[http.LOCATION]
    bad = await client.post(
        f"{href}/signals/approval", content=b"{nope", headers={"content-type": http.JSON}
    )
    assert bad.status_code == 400 and bad.json()["type"] == "urn:dasync:problem:invalid-value"
    nobody = await client.post("/routines/Store.approve.hnope.x/signals/approval", json=True)
    assert nobody.status_code == 404
    assert (await client.post(f"{href}/signals/approval", json=False)).status_code == 202
