"""Every wrong request is a 4xx RFC 9457 problem naming what is wrong, never a 500;
a routine's exception is the problem a Python caller's ``except`` would see."""

from __future__ import annotations

import pytest

from dasync.codegen import _http as http

pytestmark = pytest.mark.asyncio(loop_scope="module")

JSON = {"content-type": "application/json"}
PROBLEM = "urn:dasync:problem:"


def problem(answer, status: int, kind: str) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == http.PROBLEM_JSON
    body = answer.json()
    assert body["type"] == (kind if ":" in kind else PROBLEM + kind), body
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def test_bad_json_and_bodies_that_are_not_objects(gateway):
    post = gateway.http.post
    body = problem(
        await post("/Store/buy", content=b'{"item": ', headers=JSON), 400, "invalid-json"
    )
    assert "not JSON" in body["detail"]
    body = problem(await post("/Store/buy", content=b"[1, 2]", headers=JSON), 400, "invalid-json")
    assert "an array, not an object" in body["detail"]
    body = problem(await post("/Store/buy", content=b"\xff\xfe", headers=JSON), 400, "invalid-json")
    problem(
        await post("/Store/buy", content=b"item=book", headers={"content-type": "text/plain"}),
        415,
        "unsupported-media-type",
    )


async def test_wrong_missing_and_unexpected_arguments_are_named(gateway):
    post = gateway.http.post
    body = problem(
        await post("/Store/buy", json={"item": "book", "qty": "two"}), 400, "invalid-arguments"
    )
    assert body["invalid-params"] == [
        {
            "name": "qty",
            "reason": "Input should be a valid integer, unable to parse string as an integer",
        }
    ]
    assert "'qty'" in body["detail"]
    body = problem(
        await post("/Store/buy", json={"qty": 1, "colour": "red"}), 400, "invalid-arguments"
    )
    assert {p["name"] for p in body["invalid-params"]} == {"item", "colour"}
    assert all(p["reason"] for p in body["invalid-params"])
    body = problem(
        await post("/Store/buy", json={"item": "book"}, headers={http.IDEMPOTENCY_KEY: "x" * 256}),
        400,
        "invalid-arguments",
    )
    assert body["invalid-params"][0]["name"] == http.IDEMPOTENCY_KEY
    # no body at all: no arguments; here one is required
    body = problem(await post("/Store/buy"), 400, "invalid-arguments")
    assert body["invalid-params"] == [{"name": "item", "reason": "missing: the method requires it"}]


async def test_unknown_services_methods_routines_and_paths(gateway):
    client = gateway.http
    body = problem(await client.post("/Shop/buy", json={}), 404, "unknown-service")
    assert "Store" in body["detail"]
    body = problem(await client.post("/Store/steal", json={}), 404, "unknown-method")
    assert "buy" in body["detail"]
    problem(await client.get("/routines/nothing"), 404, "unknown-routine")
    problem(await client.get("/routines/Nope.buy.h0123"), 404, "unknown-routine")
    problem(await client.delete("/routines/Store.nope.h0123"), 404, "unknown-routine")
    # well formed, tagged by another secret: nothing vouches for it and no journal has it
    problem(
        await client.get("/routines/Store.buy.h" + "0" * 32 + ".0123456789abcdef"),
        404,
        "unknown-routine",
    )
    missing = await client.get("/a/b/c")
    assert problem(missing, 404, "about:blank")["title"] == "Not Found"
    wrong = await client.put("/routines/x")
    assert problem(wrong, 405, "about:blank")["title"] == "Method Not Allowed"
    assert wrong.headers["allow"] == "GET, HEAD, DELETE"
    assert (await client.get("/Store/buy")).headers["allow"] == "POST"


async def test_a_declared_error_is_a_problem_of_its_own_type(gateway):
    answer = await gateway.http.post("/Store/buy", json={"item": "book", "qty": 50})
    body = problem(answer, 422, "urn:dasync:error:tests.gateway._services:OutOfStock")
    assert body["title"] == "OutOfStock"
    assert body["exception"] == "tests.gateway._services:OutOfStock"
    assert body["message"] == "50 x book requested, 5 in stock"
    assert body["args"] == ["book", 50, 5]
    assert body["fields"] == {"item": "book", "requested": 50, "available": 5}
    assert body["instance"] == answer.headers[http.LOCATION]
    read = (await gateway.http.get(answer.headers[http.LOCATION])).json()
    assert read["status"] == "failed"
    assert read["error"] == body


async def test_an_undeclared_error_is_routine_failed_with_the_exception(gateway):
    answer = await gateway.http.post("/Store/crash")
    body = problem(answer, 500, "routine-failed")
    assert body["exception"] == "builtins:KeyError"
    assert body["args"] == ["b"]
    assert body["detail"] == "KeyError: 'b'"


async def test_a_body_over_the_payload_limit_is_refused_before_it_is_read(gateway):
    big = b'{"item": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    answer = await gateway.http.post("/Store/buy", content=big, headers=JSON)
    assert problem(answer, 413, "about:blank")["title"] == "Content Too Large"
