"""Names operators can read, one-to-one; options from the environment."""

from __future__ import annotations

import ssl

import pytest

from dasync.transports.nats import NatsOptions, naming


def test_plain_service_names_are_kept():
    assert naming.work_stream("Shop") == "DASYNC_Shop_WORK"
    assert naming.journal_stream("Shop") == "DASYNC_Shop_JOURNAL"
    assert naming.work_subject("Shop") == "dasync.Shop.in.work"
    assert naming.call_subject("Shop", "Orders") == "dasync.Shop.in.svc.Orders"
    assert naming.call_subject("Shop", "Shop") == "dasync.Shop.in.work"
    assert naming.client_subject("Shop", "web") == "dasync.Shop.in.client.web"
    assert naming.operator_subject("Shop") == "dasync.Shop.in.operator"
    assert naming.journal_subject("Shop", "a1b2-3") == "dasync.Shop.journal.a1b2-3"
    assert naming.dead_subject("Shop") == "dasync.Shop.dead"
    assert naming.inbox_stream("web") == "DASYNC__INBOX_web"
    assert naming.inbox_subject("_inbox.web.abc123", "Shop") == "dasync._inbox.web.abc123.Shop"
    assert naming.inbox_consumer("_inbox.web.abc123") == "inbox_abc123"


def test_the_subject_names_the_sender():
    cases = {
        naming.work_subject("Shop"): ("service", "Shop"),
        naming.call_subject("Shop", "Orders"): ("service", "Orders"),
        naming.client_subject("Shop", "web"): ("client", "web"),
        naming.operator_subject("Shop"): ("operator", ""),
        naming.inbox_subject("_inbox.web.abc", "Shop"): ("service", "Shop"),
        "dasync.Shop.in.svc": None,
        "dasync.Shop.in.svc.a.b": None,
        "dasync.Shop.dead": None,
        "dasync.Shop.journal.x": None,
        "other.Shop.in.work": None,
        "dasync._inbox.web.abc": None,
    }
    for subject, origin in cases.items():
        assert naming.origin_of(subject) == origin, subject
    assert naming.origin_of(naming.client_subject("Shop", "web", "ns"), "ns") == ("client", "web")
    assert naming.origin_of(naming.client_subject("Shop", "web", "ns")) is None


@pytest.mark.parametrize("name", ["shop.v2", "a b", "$SYS", "_inbox", "x*", "é", "a" * 100])
def test_odd_names_become_safe_single_tokens(name):
    t = naming.token(name)
    assert t and "." not in t and "*" not in t and ">" not in t and " " not in t
    assert t.isascii() and not t.startswith("_") and len(t) <= 64


def test_tokens_are_one_to_one():
    names = ["a.b", "a_b", "a b", "a-b", "A.b", "_a", "a"]
    assert len({naming.token(n) for n in names}) == len(names)


def test_stream_kinds_cannot_collide():
    assert naming.work_stream("X_JOURNAL") != naming.journal_stream("X")
    for identity, service in [("WORK", "INBOX"), ("x_JOURNAL", "INBOX_x"), ("a", "_INBOX_a")]:
        inbox = naming.inbox_stream(identity)
        assert inbox not in {naming.work_stream(service), naming.journal_stream(service)}
        assert inbox != naming.state_stream(service)
    inbox = naming.inbox_subjects("web")[0]
    assert not naming.work_subject("_inbox").startswith(inbox.split("*")[0])


def test_schedule_subjects_are_per_message():
    a = naming.schedule_subject("Shop", "timer:r1:3")
    b = naming.schedule_subject("Shop", "timer:r1:4")
    assert a != b and a.startswith("dasync.Shop.schedule.")


def test_options_from_env():
    env = {
        "DASYNC_NATS_URL": "nats://a:4222, nats://b:4222",
        "DASYNC_NATS_USER": "u",
        "DASYNC_NATS_PASSWORD": "p",
        "DASYNC_NATS_TOKEN": "t",
        "DASYNC_NATS_CREDS": "/x.creds",
        "DASYNC_NATS_TLS_CA": "/ca.pem",
    }
    opts = NatsOptions.from_env(env, ack_wait=5)
    assert opts.servers == ("nats://a:4222", "nats://b:4222")
    assert (opts.user, opts.password, opts.token, opts.creds) == ("u", "p", "t", "/x.creds")
    assert opts.tls_ca == "/ca.pem" and opts.uses_tls and opts.ack_wait == 5
    assert NatsOptions.from_env({}).servers == ("nats://127.0.0.1:4222",)
    assert NatsOptions.from_env({}, servers="nats://c:1").servers == ("nats://c:1",)


def test_tls_context_only_when_asked():
    assert NatsOptions().ssl_context() is None
    assert isinstance(NatsOptions(servers=("tls://h:4222",)).ssl_context(), ssl.SSLContext)
    with pytest.raises(ValueError):
        NatsOptions().with_servers(" , ")


def test_stream_settings_come_from_the_environment_too():
    from dasync.transports.nats import NatsOptions

    env = {"DASYNC_NATS_REPLICAS": "3", "DASYNC_NATS_ACK_WAIT": "4.5",
           "DASYNC_NATS_DUPLICATE_WINDOW": "60", "DASYNC_NATS_MAX_ACK_PENDING": "100"}  # fmt: skip
    options = NatsOptions.from_env(env)
    assert (options.replicas, options.ack_wait) == (3, 4.5)
    assert (options.duplicate_window, options.max_ack_pending) == (60.0, 100)
    assert NatsOptions.from_env(env, replicas="1").replicas == 1  # a flag wins, as a string
    for bad in ({"DASYNC_NATS_REPLICAS": "three"}, {"DASYNC_NATS_REPLICAS": "7"}):
        with pytest.raises(ValueError, match="REPLICAS|replicas"):
            NatsOptions.from_env(bad)


LANE = "0123456789abcdef"


def test_a_worker_lane_stands_for_its_shared_lane():
    """``<svc>.at.<lane>.<sender lane>`` names the same sender as ``<svc>.in.<sender lane>``,
    and a dead letter retried from it goes back to the shared lane (any worker)."""
    for shared in (
        naming.work_subject("Shop"),
        naming.call_subject("Shop", "Orders"),
        naming.call_subject("Shop", "Orders", "ns"),
    ):
        laned = naming.lane_subject(shared, LANE)
        assert laned != shared and f".at.{LANE}." in laned
        assert naming.shared_lane(laned) == shared
        assert naming.sender_lane(laned, None, "ns" if "-ns" in shared else "") == shared
        assert naming.lane_of_subject(laned) == LANE
    assert naming.origin_of(naming.lane_subject(naming.call_subject("Shop", "Orders"), LANE)) == (
        "service",
        "Orders",
    )
    # an inbox of a client identity named "at" is not a lane
    inbox = naming.inbox_subject("_inbox.at.abc", "Shop")
    assert naming.shared_lane(inbox) == inbox and naming.lane_of_subject(inbox) == ""
    assert naming.origin_of(inbox) == ("service", "Shop")
    # lanes live in the work stream, apart from the shared consumer's filter
    assert naming.lanes_filter("Shop") in naming.work_subjects("Shop")
    assert not naming.lanes_filter("Shop").startswith(naming.inputs_filter("Shop")[:-1])


@pytest.mark.parametrize("lane", ["", "abc", "0123456789ABCDEF", "a.b", "x" * 16, "0" * 33])
def test_a_lane_is_hex_digits_only(lane):
    with pytest.raises(ValueError, match="worker lane"):
        naming.lane_subject(naming.work_subject("Shop"), lane)
    # a consumer for whatever a sender wrote there is still a valid consumer name
    name = naming.lane_consumer(lane or "x")
    assert "." not in name and "*" not in name and ">" not in name


def test_lanes_switch_from_env():
    assert NatsOptions.from_env({}).lanes is True
    assert NatsOptions.from_env({"DASYNC_NATS_LANES": "0"}).lanes is False
    assert NatsOptions.from_env({"DASYNC_NATS_LANES": "On"}).lanes is True
    with pytest.raises(ValueError, match="DASYNC_NATS_LANES='maybe'"):
        NatsOptions.from_env({"DASYNC_NATS_LANES": "maybe"})
