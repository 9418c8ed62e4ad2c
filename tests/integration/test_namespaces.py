"""Namespaces keep deployments apart on one NATS server (``NatsOptions.namespace``)."""

from __future__ import annotations

import asyncio
from typing import Protocol

import pytest

import dasync
from dasync.testing._nats_server import NatsServer
from dasync.transports.nats import NatsOptions, connect_nats, naming


def test_names_in_a_namespace():
    assert naming.work_stream("Shop", "staging") == "DASYNC-staging_Shop_WORK"
    assert naming.journal_stream("Shop", "staging") == "DASYNC-staging_Shop_JOURNAL"
    assert naming.inbox_stream("web", "staging") == "DASYNC-staging__INBOX_web"
    assert naming.inbox_stream("web") == "DASYNC__INBOX_web"
    assert naming.work_subject("Shop", "staging") == "dasync-staging.Shop.in.work"
    assert naming.journal_subject("Shop", "r-1", "staging") == "dasync-staging.Shop.journal.r-1"
    assert naming.dead_subject("Shop", "staging") == "dasync-staging.Shop.dead"
    assert (
        naming.inbox_subject("_inbox.web.abc", "Shop", "staging")
        == "dasync-staging._inbox.web.abc.Shop"
    )
    assert naming.schedule_subject("Shop", "timer:r:1", "staging").startswith(
        "dasync-staging.Shop.schedule."
    )
    # without a namespace, nothing changes
    assert naming.work_stream("Shop") == "DASYNC_Shop_WORK"
    assert naming.work_subject("Shop", "") == "dasync.Shop.in.work"


def test_namespaces_never_collide():
    """Stream names are one-to-one and subjects of different namespaces never overlap
    (JetStream refuses two streams whose subjects overlap)."""
    cases = [("", "a_b"), ("a", "b"), ("a-b", "c"), ("a", "b-c"), ("DASYNC", "x"), ("", "DASYNC_x")]
    streams = [f(svc, ns) for ns, svc in cases for f in (naming.work_stream, naming.journal_stream)]
    assert len(set(streams)) == len(streams)
    roots = {naming.work_subject(svc, ns).split(".")[0] for ns, svc in cases}
    assert roots == {"dasync", "dasync-a", "dasync-a-b", "dasync-DASYNC"}
    for ns, svc in cases:
        for other_ns, other_svc in cases:
            if ns != other_ns:
                mine = naming.work_subjects(svc, ns) + naming.journal_subjects(svc, ns)
                theirs = naming.work_subjects(other_svc, other_ns)
                assert not {s.split(".")[0] for s in mine} & {s.split(".")[0] for s in theirs}


@pytest.mark.parametrize("bad", ["a_b", "a.b", "-a", "a b", "é", "x" * 33, "a*"])
def test_invalid_namespaces_are_refused(bad):
    with pytest.raises(ValueError, match="namespace"):
        NatsOptions(namespace=bad)


def test_namespace_from_the_environment():
    assert NatsOptions.from_env({"DASYNC_NATS_NAMESPACE": "prod"}).namespace == "prod"
    assert NatsOptions.from_env({}).namespace == ""


class Where(Protocol):
    async def where(self) -> str: ...


class WhereService(Where):
    def __init__(self, label: str) -> None:
        self.label = label

    async def where(self) -> str:
        await asyncio.sleep(0.01)  # a timer too: schedules stay in their namespace
        return self.label


async def test_same_services_in_two_namespaces_on_one_server(tmp_path):
    with NatsServer(store_dir=tmp_path / "nats") as server:
        runtimes = []
        for ns in ("blue", "green"):
            transport, store = await connect_nats(NatsOptions(servers=(server.url,), namespace=ns))
            rt = dasync.Runtime(
                [WhereService], transport=transport, store=store, container={"label": ns}
            )
            await rt.start()
            runtimes.append(rt)
        try:
            for _ in range(5):
                blue, green = await asyncio.gather(
                    runtimes[0].client.proxy(Where).where(),
                    runtimes[1].client.proxy(Where).where(),
                )
                assert (blue, green) == ("blue", "green")
            # same routine id in both: two separate journals
            for rt in runtimes:
                handle = await rt.client.start(Where.where, routine_id="same-id")
                assert await handle.result(timeout=10) == rt.instance_of(WhereService).label
            info = await runtimes[0].transport.conn.api("STREAM.NAMES")  # type: ignore[attr-defined]
            names = set(info["streams"])
            assert {
                "DASYNC-blue_Where_WORK",
                "DASYNC-blue_Where_JOURNAL",
                "DASYNC-blue__INBOX_default",
                "DASYNC-green_Where_WORK",
                "DASYNC-green_Where_JOURNAL",
                "DASYNC-green__INBOX_default",
            } <= names
            assert not any(n.startswith("DASYNC_") for n in names)
            meta = await runtimes[1].transport.conn.api(  # type: ignore[attr-defined]
                "STREAM.INFO.DASYNC-green_Where_WORK"
            )
            assert meta["config"]["metadata"]["dasync.namespace"] == "green"
        finally:
            for rt in runtimes:
                await rt.close()
