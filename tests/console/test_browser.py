"""The console in a real browser: headless Chromium from the system (``/usr/bin/chromium``,
Debian's ``chromium``), driven by Playwright, against the shop example and the console's
test services on a real nats-server. It lists routines, opens one and reads its
timeline, retries a dead letter and sees it complete, and watches a running routine
finish without a reload (Server-Sent Events). No browser is downloaded: Playwright
drives the system's. ``DASYNC_SCREENSHOTS=DIR`` saves the pages it shows there
(``docs/images/console.png`` and ``console-routine.png`` come from it).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ._services import BROKEN, GATE, Flaky, Relay, open_gate
from .conftest import Deployment, started, status_is_, until

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = os.environ.get("DASYNC_SCREENSHOTS")

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no {CHROMIUM} (Debian package chromium; .ci/run installs it where it can)",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def shot(page: Any, name: str) -> None:
    if SHOTS:
        await page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


async def test_the_console_in_chromium(deployment: Deployment, browser: Any) -> None:
    import management_shop as shop  # type: ignore[import-not-found]
    from playwright.async_api import expect

    client = deployment.client
    alice = await started(client, shop.Shop.place_order, "Alice", "book", 2)
    bob = await started(client, shop.Shop.place_order, "Bob", "unicorn", 1)
    BROKEN["Flaky"] = True
    try:
        flaky = await client.start(Flaky.run, 41)
        flaky.detach()
        await until(lambda: status_is_(client, "Flaky", flaky.routine_id, "dead-lettered"), "dead")
    finally:
        BROKEN["Flaky"] = False
    GATE["live"] = asyncio.get_running_loop().create_future()
    live = await started(client, Relay.relay, "live")
    for rid in (alice, bob):
        await until(lambda r=rid: status_is_(client, "Shop", r, "completed"), "orders done")

    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith(deployment.url) else elsewhere.append(r.url),
    )
    try:
        # the list: every routine, newest first, children included
        await page.goto(f"{deployment.url}/console/")
        rows = page.locator("table.routines tbody tr")

        def row(key: str) -> Any:  # the routine's own row (children name it as parent)
            return rows.filter(has=page.locator("td:first-child", has_text=key))

        await expect(row(f"Shop/{bob}").first).to_contain_text("completed")
        await expect(row(f"Warehouse/{alice}/Shop.place_order.3")).to_contain_text("reserve")
        await expect(row(f"Flaky/{flaky.routine_id}")).to_contain_text("dead-lettered")
        await expect(row(f"Relay/{live}")).to_contain_text("running")
        await shot(page, "console.png")

        # a routine: its timeline, calls and compensation
        await page.get_by_role("link", name=f"Shop/{bob}", exact=True).first.click()
        await expect(page.locator("h1 .badge")).to_have_text("completed")
        calls = page.locator("table.calls")
        await expect(calls).to_contain_text("Warehouse.reserve")
        await expect(calls).to_contain_text("compensating for Warehouse.reserve")
        await expect(page.locator("table.timeline")).to_contain_text("Payments.refund")
        await shot(page, "console-routine.png")
        await page.locator("table.calls a").nth(1).click()  # the reserve that failed
        await expect(page.locator("h1 .badge")).to_have_text("failed")
        await expect(page.locator(".facts")).to_contain_text(f"Shop/{bob}")  # its parent

        # a dead letter, retried: the page follows the routine until it completes
        await page.get_by_role("link", name="Dead letters").click()
        stuck = page.locator("table.routines tbody tr", has_text=flaky.routine_id)
        await stuck.get_by_role("button", name="Retry").click()
        await expect(page.locator(".notice")).to_contain_text("back in the queue")
        await expect(page.locator("h1 .badge")).to_have_text("completed", timeout=10_000)
        await expect(page.locator("pre.result")).to_have_text("42")

        # a running routine: it completes while the page is open, with no reload
        await page.goto(f"{deployment.url}/console/")
        await page.get_by_role("link", name=f"Relay/{live}", exact=True).first.click()
        await expect(page.locator("h1 .badge")).to_have_text("running")
        await expect(page.locator("table.calls")).to_contain_text("waiting…")
        await page.evaluate("window.notReloaded = true")
        open_gate("live")
        await expect(page.locator("h1 .badge")).to_have_text("completed", timeout=10_000)
        await expect(page.locator("table.calls")).to_contain_text("released live")
        assert await page.evaluate("window.notReloaded === true"), "the page was reloaded"
    finally:
        await context.close()
    assert not problems, problems  # no script error, no refused by the CSP
    assert not elsewhere, elsewhere  # nothing but the gateway: works offline
