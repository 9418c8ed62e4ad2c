"""``dasync ls/show/cancel/result/retry`` against the shop example and test services
running on a real nats-server, each command run in this process as a user would type it."""

from __future__ import annotations

import asyncio
import json

import pytest

import dasync
from dasync._runtime._timeline import mermaid

from ._mermaid import check_grammar, render_with_mermaid_cli
from ._services import ARG, BROKEN, GATE, SEEN, Approver, Fickle, Flaky, Waiter
from .conftest import Deployment, shop_module, until


async def _orders(d: Deployment) -> None:
    from contracts import Shop  # examples/shop, on the path once shop_module() ran

    shop_module()
    alice = await d.runtime.client.start(Shop.place_order, "Alice", "book", 2, routine_id="alice")
    bob = await d.runtime.client.start(Shop.place_order, "Bob", "unicorn", 1, routine_id="bob")
    assert await alice.result(timeout=20) == "ok"
    assert await bob.result(timeout=20) == "refunded"


async def test_ls_lists_filters_and_prints_json(deployment: Deployment) -> None:
    await _orders(deployment)
    code, text = await deployment.cli("ls")
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0].split() == ["ROUTINE", "METHOD", "STATUS", "STARTED", "TOOK", "PARENT", "ERROR"]
    assert any(line.startswith("Shop/bob ") and " completed " in line for line in lines), text
    assert len(lines) == 1 + 7, text  # two orders, their 2 + 3 calls
    assert sum("/Shop.place_order." in line for line in lines) == 5, text

    code, text = await deployment.cli("ls", "--status", "failed")
    assert code == 0, text
    [failed] = [line for line in text.splitlines()[1:]]
    assert failed.startswith("Warehouse/bob/Shop.place_order.") and "OutOfStock" in failed

    code, text = await deployment.cli("ls", "Payments", "--parent", "Shop/bob", "--json")
    assert code == 0, text
    rows = [json.loads(line) for line in text.splitlines()]
    assert sorted(r["method"] for r in rows) == ["credit", "refund"]
    assert {r["status"] for r in rows} == {"completed"} and {r["parent"] for r in rows} == {
        "Shop/bob"
    }
    code, text = await deployment.cli("ls", "Shop", "--newer-than", "1h", "--method", "nope")
    assert (code, text.strip().split(" (")[0]) == (0, "no routines")
    code, text = await deployment.cli("ls", "--status", "sleeping")
    assert code == 2, text


async def test_show_prints_the_timeline_and_a_mermaid_saga(deployment: Deployment) -> None:
    await _orders(deployment)
    code, text = await deployment.cli("show", "Shop/bob")
    assert code == 0, text
    assert text.splitlines()[0].startswith('Shop/bob  place_order(customer="Bob"')
    assert "call Warehouse.reserve(" in text and "raised OutOfStock" in text
    assert "call Payments.refund(" in text and "compensating for Warehouse.reserve" in text
    assert 'completed: returned "refunded"' in text
    assert "      Warehouse/bob/Shop.place_order." in text, "the children's timelines follow"

    code, diagram = await deployment.cli("show", "bob", "--service", "Shop", "--mermaid")
    assert code == 0, diagram
    check_grammar(diagram)
    lines = [line.strip() for line in diagram.splitlines()]
    rect = lines.index("rect rgb(255, 236, 236)")
    assert lines[rect + 1].startswith("Note over P2: compensation after Warehouse.reserve")
    assert any(line.startswith("P4--xP2: OutOfStock") for line in lines), diagram
    assert any(line.startswith("P2->>P3: refund(") for line in lines[rect:]), diagram
    timeline = await deployment.runtime.client.timeline("Shop", "bob")
    assert mermaid(timeline).strip() == diagram.strip()
    svg = await asyncio.to_thread(render_with_mermaid_cli, diagram)
    if svg is not None:  # the Mermaid CLI parsed and drew it
        assert "compensation after Warehouse.reserve" in svg and "refund(" in svg


async def test_result_prints_outcomes(deployment: Deployment) -> None:
    await _orders(deployment)
    assert await deployment.cli("result", "Shop/alice") == (0, '"ok"\n')
    [child] = await deployment.runtime.client.list_routines("Warehouse", status="failed")
    code, text = await deployment.cli("result", f"Warehouse/{child.routine_id}")
    assert code == 1 and "raised OutOfStock: 1 x unicorn requested, 0 in stock" in text, text
    code, text = await deployment.cli("result", "nobody")
    assert code == 1 and "no routine 'nobody' in the index" in text, text


async def test_cancel_reaches_the_call_it_waits_on(deployment: Deployment) -> None:
    SEEN["finally"].clear()
    SEEN["callee"].clear()
    client = deployment.runtime.client
    handle = await client.start(Waiter.wait, routine_id="w1")

    async def napping() -> bool:
        return bool(await client.list_routines("Sleeper", parent="Waiter/w1", status="running"))

    await until(napping, "the callee runs")
    code, text = await deployment.cli("result", "w1")
    assert code == 4 and "Waiter/w1 is still running" in text, text
    code, text = await deployment.cli("cancel", "Waiter/w1")
    assert (code, text.strip()) == (0, "asked Waiter/w1 to cancel"), text
    with pytest.raises(asyncio.CancelledError):
        await handle.result(timeout=20)
    assert SEEN["finally"] == ["wait"], "the routine's finally ran"
    assert SEEN["callee"] == ["cancelled"], "the callee got the cancellation"

    async def cancelled() -> bool:
        found = await client.list_routines(status="cancelled")
        return {e.service for e in found} == {"Waiter", "Sleeper"}

    await until(cancelled, "both routines are indexed as cancelled")
    code, text = await deployment.cli("show", "Waiter/w1")
    assert "cancel requested" in text and "cancel call #1 (Sleeper)" in text, text


async def test_retry_resumes_a_parked_routine(deployment: Deployment) -> None:
    client = deployment.runtime.client
    GATE["leaf"] = asyncio.get_running_loop().create_future()
    ARG["n"] = 1
    try:
        handle = await client.start(Fickle.run, routine_id="f1")

        async def called() -> bool:
            return bool(await client.list_routines("Fickle", status="running"))

        await until(called, "Fickle's first step is committed")
        ARG["n"] = 2  # the replay after the reply issues another call: a divergence
        GATE["leaf"].set_result(None)

        async def parked() -> bool:
            return bool(await client.list_routines("Fickle", status="parked"))

        await until(parked, "the routine is parked")
        code, text = await deployment.cli("ls", "Fickle", "--status", "parked")
        assert code == 0 and "Fickle/f1" in text and "NonDeterminismError" in text, text
        ARG["n"] = 1  # the fix is deployed
        code, text = await deployment.cli("retry", "f1")
        assert (code, text.strip()) == (0, "Fickle/f1: 1 dead letter(s) back in the queue"), text
        assert await handle.result(timeout=20) == 2
        [entry] = await client.list_routines("Fickle")
        assert entry.status == "completed"
        code, text = await deployment.cli("retry", "Fickle/f1")
        assert code == 1 and "has no dead letter" in text, text
    finally:
        GATE.pop("leaf", None)


async def test_retry_completes_a_dead_lettered_routine(deployment: Deployment) -> None:
    client = deployment.runtime.client
    BROKEN["Flaky"] = True
    try:
        handle = await client.start(Flaky.run, routine_id="d1")
        with pytest.raises(dasync.CallFailed):
            await handle.result(timeout=20)  # its caller was told

        async def dead() -> bool:
            return bool(await client.list_routines("Flaky", status="dead-lettered"))

        await until(dead, "the routine is indexed as dead-lettered")
        BROKEN["Flaky"] = False  # the fix is deployed
        code, text = await deployment.cli("retry", "Flaky/d1")
        assert (code, text.strip()) == (0, "Flaky/d1: 1 dead letter(s) back in the queue"), text
        again = client.handle(Flaky.run, "d1")
        assert await again.result(timeout=20) == 42
        code, text = await deployment.cli("ls", "Flaky", "--json")
        assert json.loads(text)["status"] == "completed", text
    finally:
        BROKEN["Flaky"] = False


async def test_signal_and_show_follow(deployment: Deployment) -> None:
    client = deployment.runtime.client
    handle = await client.start(Approver.approve, 250, routine_id="a1")

    async def asked() -> bool:
        return bool(await client.list_routines("Approver", status="running"))

    await until(asked, "the routine waits for its signal")
    code, text = await deployment.cli("signal", "a1", "approval", "maybe")
    assert code == 1 and "not JSON" in text, text
    code, text = await deployment.cli("signal", "Approver/a1", "approval", "true", "--id", "k1")
    assert code == 0 and "sent signal 'approval' to Approver/a1 (id k1)" in text, text
    assert await handle.result(timeout=20) == "approved"
    code, text = await deployment.cli("show", "a1", "--follow")
    assert code == 0, text
    assert "signal 'approval' = true from client:" in text, text
    assert 'progress #1: {"stage": "asked", "amount": 250}' in text, text
    assert 'progress #2: {"stage": "decided", "approved": true}' in text, text
    assert text.rstrip().endswith("Approver/a1 completed"), text
    code, text = await deployment.cli("signal", "a1", "approval", "false")
    assert code != 0 and "has finished" in text, text


async def test_export_then_replay_in_ci(deployment: Deployment) -> None:
    """``dasync export`` of the running routines, checked by ``dasync.testing.replay``."""
    from dasync.testing import load_journals, replay

    from ._services import ApproverImpl

    client = deployment.runtime.client
    await client.start(Approver.approve, 9, routine_id="x1")

    async def asked() -> bool:
        entries = await client.list_routines("Approver", status="running")
        return any(e.routine_id == "x1" for e in entries)

    await until(asked, "x1 waits for its signal")
    code, text = await deployment.cli("export", "Approver")
    assert code == 0, text
    journals = load_journals(text.split("exported")[0])
    assert "x1" in {j["routine_id"] for j in journals}
    code, single = await deployment.cli("show", "Approver/x1", "--export")
    assert code == 0 and load_journals(single)[0]["routine_id"] == "x1", single
    results = await replay(journals, ApproverImpl)
    assert results and all(r.ok for r in results), [str(r) for r in results]
    await client.signal("Approver", "x1", "approval", False)
