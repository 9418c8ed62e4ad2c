"""Authentication and authorization hooks: 401 without a valid credential, 403 when
the authorize hook says no, keys scoped per principal, the scheme in the OpenAPI."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from dasync import api_key_auth, bearer_auth
from dasync.codegen import _http as http
from dasync.codegen import contracts_of, dumps, openapi_document

from ._services import Store
from .conftest import serve_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKENS = {"alice-token": "alice", "bob-token": "bob"}
ALICE = {"authorization": "Bearer alice-token"}
BOB = {"authorization": "bearer bob-token"}  # the scheme is case-insensitive


def policy(principal: str, service: str, method: str, action: str) -> bool:
    """alice may do anything; bob may only start Store.buy."""
    return principal == "alice" or (method, action) == ("buy", "call")


async def test_bearer_tokens_and_an_authorize_hook(runtime):
    async with serve_gateway(
        runtime.client, authenticate=bearer_auth(TOKENS), authorize=policy
    ) as served:
        client = served.http
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic x"}):
            denied = await client.post("/Store/buy", json={"item": "tea"}, headers=headers)
            assert denied.status_code == 401
            assert denied.json()["type"] == "urn:dasync:problem:unauthorized"
            assert denied.headers["www-authenticate"].startswith("Bearer")
        # unauthenticated callers learn nothing, not even which services exist
        assert (await client.post("/Nope/x", json={})).status_code == 401

        bought = await client.post("/Store/buy", json={"item": "tea"}, headers=BOB)
        assert bought.status_code == 200
        href = bought.headers[http.LOCATION]
        forbidden = await client.post("/Store/brew", json={"seconds": 0}, headers=BOB)
        assert forbidden.status_code == 403
        assert forbidden.json()["type"] == "urn:dasync:problem:forbidden"
        assert (await client.get(href, headers=BOB)).status_code == 403
        assert (await client.delete(href, headers=BOB)).status_code == 403
        assert (await client.get(href, headers=ALICE)).json()["status"] == "completed"
        delivery = {"item": "tea", "qty": 1, "total": 3}
        fired = await client.post("/Store/events/delivered", json=delivery, headers=BOB)
        assert fired.status_code == 403  # firing is an action of its own: "fire"
        assert "fire Store.delivered" in fired.json()["detail"]
        assert (await client.post("/Store/events/delivered", json=delivery)).status_code == 401
        fired = await client.post("/Store/events/delivered", json=delivery, headers=ALICE)
        assert fired.status_code == 202

        # the same Idempotency-Key from two principals: two routines
        key = {http.IDEMPOTENCY_KEY: "same"}
        a = await client.post("/Store/buy", json={"item": "tea"}, headers={**ALICE, **key})
        b = await client.post("/Store/buy", json={"item": "tea"}, headers={**BOB, **key})
        assert a.status_code == b.status_code == 200
        assert a.headers[http.ROUTINE_ID] != b.headers[http.ROUTINE_ID]

        # the document is public and declares the scheme, as 'dasync codegen' would
        spec = await client.get(http.OPENAPI_PATH)
        assert spec.status_code == 200
        expected = openapi_document(contracts_of([Store]), security=["bearer"])
        assert spec.content == dumps(expected).encode()
        assert orjson.loads(spec.content)["security"] == [{"bearerAuth": []}]


async def test_api_keys_async_hooks_and_hooks_that_fail_closed(runtime):
    async def lookup(key: str) -> str | None:
        await asyncio.sleep(0)
        return {"k-1": "svc"}.get(key)

    async def authorize(principal: str, service: str, method: str, action: str) -> bool:
        if method == "crash":
            raise RuntimeError("a bug in the hook")
        return True

    async with serve_gateway(
        runtime.client, authenticate=api_key_auth(lookup), authorize=authorize
    ) as served:
        client = served.http
        ok = await client.post("/Store/buy", json={"item": "tea"}, headers={"x-api-key": "k-1"})
        assert ok.status_code == 200
        assert (await client.post("/Store/buy", json={"item": "tea"})).status_code == 401
        refused = await client.post("/Store/crash", headers={"x-api-key": "k-1"})
        assert refused.status_code == 403  # the hook raised: refused, not a 500
        spec = orjson.loads((await client.get(http.OPENAPI_PATH)).content)
        assert spec["security"] == [{"apiKeyAuth": []}]

    def broken(headers: object) -> str:
        raise ValueError("a bug in the hook")

    async with serve_gateway(runtime.client, authenticate=broken) as served:
        assert (await served.http.post("/Store/buy", json={"item": "tea"})).status_code == 401
