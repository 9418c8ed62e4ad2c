"""The console's pages and actions over HTTP, on a gateway served by uvicorn in front of
a real nats-server: lists and filters, a routine's page, escaping of hostile ids and
payloads, retry of a dead letter, cancel, the live event stream, CSRF and the access
hooks."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from html import unescape
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from dasync._gateway import api_key_auth, gateway_app, serving

from ._services import BROKEN, GATE, Echo, Flaky, Relay, open_gate
from .conftest import Deployment, started, until

pytestmark = pytest.mark.asyncio(loop_scope="module")

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
HOSTILE = "<script>alert('x')</script>&\"?#%"
HOSTILE_ID = 'id<img src=x onerror=alert(1)>&"?#% ;'
"""A routine id a client may choose (no ``/``) that would run script if not escaped."""


def page(service: str, routine_id: str, kind: str = "routine") -> str:
    return f"/console/{kind}?{urlencode({'service': service, 'id': routine_id})}"


async def status_is(deployment: Deployment, service: str, rid: str, *statuses: str) -> bool:
    try:
        entry = await deployment.client.find_routine(rid, service)
    except LookupError:
        return False
    return entry.status in statuses


def shop() -> Any:
    import management_shop  # type: ignore[import-not-found]

    return management_shop


async def test_console_is_off_unless_asked(deployment: Deployment) -> None:
    app = gateway_app([shop().Shop], client=deployment.client)
    async with serving(app, "127.0.0.1", 0) as where:
        async with httpx.AsyncClient(base_url=where.url) as http:
            assert (await http.get("/console/")).status_code == 404


async def test_list_filters_and_pages(deployment: Deployment) -> None:
    client = deployment.client
    bob = await started(client, shop().Shop.place_order, "Bob", "unicorn", 1)
    ada = await started(client, shop().Shop.place_order, "Ada", "book", 1)
    for rid in (bob, ada):
        await until(lambda r=rid: status_is(deployment, "Shop", r, "completed"), "orders done")
    listing = await deployment.http.get("/console/")
    assert listing.status_code == 200 and listing.headers["content-type"].startswith("text/html")
    assert "script-src 'nonce-" in listing.headers["content-security-policy"]
    text = unescape(listing.text)
    assert f"Shop/{bob}" in text and f"Shop/{ada}" in text
    assert f"Warehouse/{bob}/Shop.place_order.3" in text  # the failed reserve, a child
    assert "OutOfStock" in text

    failed = unescape((await deployment.http.get("/console/?status=failed")).text)
    assert f"Warehouse/{bob}/Shop.place_order.3" in failed and "<td>place_order<" not in failed
    shops = unescape((await deployment.http.get("/console/?service=Shop&method=place_order")).text)
    assert f"Shop/{bob}" in shops and "Payments/" not in shops
    children = unescape(
        (await deployment.http.get("/console/?" + urlencode({"parent": f"Shop/{bob}"}))).text
    )
    assert f"Payments/{bob}/Shop.place_order.2" in children and f"Shop/{ada}" not in children
    assert f"Shop/{bob}" not in (await deployment.http.get("/console/?older=1h")).text
    assert f"Shop/{bob}" in (await deployment.http.get("/console/?newer=1h")).text

    first = await deployment.http.get("/console/?service=Shop&limit=1")
    more = re.search(r'<a rel="next" href="([^"]+)"', first.text)
    assert more is not None, "a next page link"
    second = await deployment.http.get(unescape(more.group(1)))
    ids = re.findall(r"Shop/([0-9a-f]{32})<", first.text + second.text)
    assert len(ids) == 2 and len(set(ids)) == 2, "the two pages do not overlap"

    bad = await deployment.http.get("/console/?status=sleeping")
    assert bad.status_code == 400 and "status: one of" in bad.text


async def test_routine_page_timeline_children_and_parent(deployment: Deployment) -> None:
    client = deployment.client
    bob = await started(client, shop().Shop.place_order, "Bob", "unicorn", 1)
    await until(lambda: status_is(deployment, "Shop", bob, "completed"), "the order completes")
    answer = await deployment.http.get(page("Shop", bob))
    assert answer.status_code == 200
    text = unescape(answer.text)
    for seen in (
        "Payments.credit",
        "Warehouse.reserve",
        "OutOfStock: 1 x unicorn requested, 0 in stock",
        "compensating for Warehouse.reserve",
        '"refunded"',
        "recorded dasync.uuid4()",
    ):
        assert seen in text, seen
    child = f"{bob}/Shop.place_order.3"
    assert page("Warehouse", child).replace("&", "&amp;") in answer.text  # the callee's link
    assert "data-events" not in answer.text  # finished: nothing to follow
    child_page = await deployment.http.get(page("Warehouse", child))
    assert page("Shop", bob).replace("&", "&amp;") in child_page.text  # the parent's link
    fragment = await deployment.http.get(page("Shop", bob, "routine/timeline"))
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert "Payments.refund" in fragment.text

    missing = await deployment.http.get(page("Shop", "no-such-routine"))
    assert missing.status_code == 404 and "no routine" in missing.text


async def test_hostile_ids_and_payloads_are_escaped(deployment: Deployment) -> None:
    client = deployment.client
    rid = await started(client, Echo.echo, "fail:" + HOSTILE, routine_id=HOSTILE_ID)
    await until(lambda: status_is(deployment, "Echo", rid, "failed"), "the echo fails")
    for url in ("/console/", "/console/?service=Echo", page("Echo", rid)):
        answer = await deployment.http.get(url)
        assert answer.status_code == 200, url
        assert "<script>alert" not in answer.text, url
        assert "<img src=x" not in answer.text, url
        assert "&lt;img src=x onerror=alert(1)&gt;" in answer.text, url
    shown = (await deployment.http.get(page("Echo", rid))).text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in shown  # the payload
    listing = (await deployment.http.get("/console/?service=Echo")).text
    assert page("Echo", rid).replace("&", "&amp;") in listing  # the id URL-encoded in links
    assert "id%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E%26%22%3F%23%25+%3B" in listing


async def test_retry_a_dead_letter(deployment: Deployment) -> None:
    BROKEN["Flaky"] = True
    try:
        handle = await deployment.client.start(Flaky.run, 41)
        handle.detach()  # its caller is told it failed; a new handle waits for the retry
        rid = handle.routine_id
        await until(lambda: status_is(deployment, "Flaky", rid, "dead-lettered"), "a dead letter")
    finally:
        BROKEN["Flaky"] = False
    letters = await deployment.http.get("/console/dead-letters")
    assert letters.status_code == 200
    assert f"Flaky/{rid}" in unescape(letters.text) and "a bug in the worker" in letters.text
    token = CSRF.search(letters.text)
    assert token is not None
    form = {"service": "Flaky", "id": rid}

    forged = await deployment.http.post("/console/routine/retry", data=form)
    assert forged.status_code == 403 and "CSRF" in forged.text
    cross = await deployment.http.post(
        "/console/routine/retry",
        data={**form, "csrf": token.group(1)},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403

    retried = await deployment.http.post(
        "/console/routine/retry", data={**form, "csrf": token.group(1)}
    )
    assert retried.status_code == 303
    assert retried.headers["location"].startswith("/console/routine?")
    assert await deployment.client.handle(Flaky.run, rid).result(timeout=20) == 42
    after = await deployment.http.get(retried.headers["location"])
    assert "back in the queue" in after.text and "completed" in after.text
    again = await deployment.http.post(
        "/console/routine/retry", data={**form, "csrf": token.group(1)}
    )
    assert again.status_code == 404 and "no dead letter" in again.text


async def test_cancel_a_running_routine(deployment: Deployment) -> None:
    rid = await started(deployment.client, Relay.relay, "nap")
    shown = await deployment.http.get(page("Relay", rid))
    assert "data-events" in shown.text and "Cancel</button>" in shown.text
    token = CSRF.search(shown.text)
    assert token is not None
    done = await deployment.http.post(
        "/console/routine/cancel", data={"service": "Relay", "id": rid, "csrf": token.group(1)}
    )
    assert done.status_code == 303
    await until(lambda: status_is(deployment, "Relay", rid, "cancelled"), "cancelled")
    after = await deployment.http.get(page("Relay", rid))
    assert "cancelled" in after.text and "Cancel</button>" not in after.text


async def test_the_event_stream_says_change_then_done(deployment: Deployment) -> None:
    GATE["stream"] = asyncio.get_running_loop().create_future()
    rid = await started(deployment.client, Relay.relay, "stream")
    shown = await deployment.http.get(page("Relay", rid))
    events = re.search(r'data-events="([^"]+)"', shown.text)
    assert events is not None
    seen: list[str] = []
    async with deployment.http.stream("GET", unescape(events.group(1))) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        asyncio.get_running_loop().call_later(0.3, open_gate, "stream")
        async with asyncio.timeout(20):
            async for line in lines:
                if line.startswith("event: "):
                    seen.append(line[7:])
                if seen[-1:] == ["done"]:
                    break
    assert seen[0] == "change" and seen[-1] == "done"
    final = await deployment.http.get(page("Relay", rid, "routine/timeline"))
    assert "released stream" in final.text and "completed" in final.text


# --- the access hooks -------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {"k-ops": "ops", "k-viewer": "viewer"}


async def _guarded(deployment: Deployment, keys: dict[str, str]) -> AsyncIterator[str]:
    def authorize(principal: str, service: str, method: str, action: str) -> bool:
        if service == "Echo":
            return False  # nobody reads Echo here
        return action == "status" or principal == "ops"

    app = gateway_app(
        [shop().Shop, Relay],
        client=deployment.client,
        authenticate=api_key_auth(keys),
        authorize=authorize,
        console=True,
    )
    async with serving(app, "127.0.0.1", 0) as where:
        yield where.url


async def test_sign_in_authorize_and_csrf(deployment: Deployment, keys: dict[str, str]) -> None:
    GATE["guarded"] = asyncio.get_running_loop().create_future()
    rid = await started(deployment.client, Relay.relay, "guarded")
    await started(deployment.client, Echo.echo, "secret")
    try:
        async for url in _guarded(deployment, keys):
            async with httpx.AsyncClient(base_url=url) as browser:
                locked = await browser.get("/console/")
                assert locked.status_code == 401 and 'name="token"' in locked.text
                assert "Relay/" not in locked.text
                token = CSRF.search(locked.text)
                assert token is not None
                wrong = await browser.post(
                    "/console/login", data={"token": "nope", "csrf": token.group(1)}
                )
                assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
                signed = await browser.post(
                    "/console/login", data={"token": "k-viewer", "csrf": token.group(1)}
                )
                assert signed.status_code == 303
                cookie = signed.headers["set-cookie"].lower()
                assert "httponly" in cookie and "samesite=strict" in cookie
                listing = await browser.get("/console/?newer=1h")
                assert listing.status_code == 200 and f"Relay/{rid}" in listing.text
                assert "Echo/" not in listing.text and "may not read" in listing.text
                viewing = await browser.get(page("Relay", rid))
                assert "Cancel</button>" not in viewing.text  # the viewer may not cancel
                mine = CSRF.search(viewing.text)
                assert mine is not None and mine.group(1) != token.group(1)
                refused = await browser.post(
                    "/console/routine/cancel",
                    data={"service": "Relay", "id": rid, "csrf": mine.group(1)},
                )
                assert refused.status_code == 403
                assert (await browser.get(page("Echo", "x"))).status_code in (403, 404)
            async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": "k-ops"}) as ops:
                viewing = await ops.get(page("Relay", rid))
                assert "Cancel</button>" in viewing.text  # the header works without a cookie
    finally:
        open_gate("guarded")
