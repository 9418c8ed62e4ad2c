"""Connection and provisioning settings for the NATS transport, from code or environment."""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dasync.transports._contract import check_name

from ._naming import check_namespace

__all__ = ["NatsOptions"]

DEFAULT_URL = "nats://127.0.0.1:4222"
_INBOX_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


@dataclass(frozen=True)
class NatsOptions:
    """How to reach NATS and how dasync sets up its streams and consumers.

    Every process of a deployment must use the same provisioning settings
    (``ack_wait``, ``duplicate_window``, ``replicas``...): a process keeps a stream that
    exists as it is (and warns when its settings differ); ``dasync nats-provision``
    changes it.
    """

    servers: tuple[str, ...] = (DEFAULT_URL,)
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None
    """Path of a ``.creds`` file (JWT + NKey seed)."""
    nkey_seed: str | None = None
    """Path of a file holding an NKey seed (``SU...``): NKey authentication without a JWT
    (needs the ``nkeys`` package, ``pip install nkeys``)."""
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    name: str = "dasync"
    """Client name shown by ``nats server report connections``."""
    inbox_prefix: str = "_INBOX"
    """First token(s) of the subjects this connection receives replies and pulled messages
    on. Give each service its own (``_INBOX_<service>``, as ``dasync nats-permissions``
    prints) so that a user allowed to subscribe to ``<prefix>.>`` sees no other's traffic."""
    identity: str = "default"
    """The client identity this process speaks as when it starts routines (its inboxes are
    ``_inbox.<identity>.<id>``, on the stream ``DASYNC__INBOX_<identity>``). Give each user
    its own, as ``dasync nats-permissions`` prints, so that only it can read its replies."""
    namespace: str = ""
    """Keeps this deployment's streams and subjects apart from others on the same server
    (``DASYNC-<ns>_...`` streams, ``dasync-<ns>.`` subjects); empty for none. Every
    worker and client of one deployment must use the same namespace."""

    connect_timeout: float = 5.0
    reconnect_wait: float = 1.0
    """Pause between reconnect attempts; attempts never stop."""
    request_timeout: float = 5.0
    """Publish acknowledgements and JetStream API calls fail with ``TransportError`` after this."""

    ack_wait: float = 4.0
    """An unacknowledged delivery goes to another worker after this (the worker died): work
    in flight in a killed worker moves on within this many seconds (plus a pull: measured
    4.7-5.7 s at 5 s in the chaos suite, hence 4 s for "within 5 s"). A live worker keeps
    each delivery (and its first-step lease) alive every third of it while a step runs,
    so a long step is never handed to a second worker."""
    duplicate_window: float = 120.0
    """Messages re-sent with the same id within this window are dropped by the server."""
    max_ack_pending: int = 20_000
    """Deliveries in flight per service, across all its workers."""
    replicas: int = 1
    """Stream replicas (use 3 on a cluster)."""
    pull_expires: float = 30.0
    """Lifetime of one pull request; idle heartbeats every quarter of it detect a lost one."""
    inbox_max_age: float = 3600.0
    """Replies to a client that never reads them are dropped after this."""
    inbox_inactive: float = 300.0
    """A client inbox's consumer is deleted after this long without a pull (client gone)."""
    lanes: bool = True
    """Give each worker its own lane, so that the replies and timers of a routine reach the
    worker that holds it (no journal conflict, no replay), as long as that worker lives."""
    lane_rescue: float = 2.0
    """How often a worker looks for lanes with messages whose worker is gone, and pulls
    them: what a reply to a dead worker waits, at most, besides ``ack_wait``."""
    lane_inactive: float = 300.0
    """A lane's consumer is deleted after this long without a pull (its worker gone and
    the lane drained)."""
    index_hold: float = 0.5
    """How long the index entry of a routine that is still running after its first step
    may wait to be written (0: at once): a routine that completes within it costs one index
    write instead of two and a purge; ``dasync ls`` may show a new routine this much late."""
    journal_cache: int = 10_000
    """Routines whose last journal (count, sequence) is remembered, saving a read per append."""
    use_schedules: bool = True
    """Use server-side scheduled messages (NATS 2.12+) for delayed delivery when available."""
    close_timeout: float = 5.0
    """How long ``close()`` waits for in-flight handlers before handing their messages back."""
    event_max_age: float = 7 * 24 * 3600.0
    """How long events are kept: a subscriber down for less than this catches up."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for ``nats.connect`` (escape hatch)."""

    def __post_init__(self) -> None:
        check_namespace(self.namespace)
        check_name("client identity", self.identity)
        if not 1 <= self.replicas <= 5:
            raise ValueError(f"replicas must be 1 to 5, not {self.replicas}")
        if self.lane_rescue <= 0 or self.lane_inactive <= 0:
            raise ValueError("lane_rescue and lane_inactive must be positive (seconds)")
        if self.ack_wait <= 0 or self.duplicate_window <= 0:
            raise ValueError("ack_wait and duplicate_window must be positive (seconds)")
        if not _INBOX_PREFIX.fullmatch(self.inbox_prefix):
            raise ValueError(
                f"invalid inbox prefix {self.inbox_prefix!r}: dot-separated tokens of "
                "letters, digits, '_' and '-' (no wildcards)"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> NatsOptions:
        """Read ``DASYNC_NATS_*`` variables; keyword arguments win over them.

        ``DASYNC_NATS_URL`` (comma-separated servers), ``DASYNC_NATS_USER``,
        ``DASYNC_NATS_PASSWORD``, ``DASYNC_NATS_TOKEN``, ``DASYNC_NATS_CREDS``,
        ``DASYNC_NATS_TLS_CA``, ``DASYNC_NATS_TLS_CERT``, ``DASYNC_NATS_TLS_KEY``,
        ``DASYNC_NATS_NKEY_SEED``, ``DASYNC_NATS_INBOX_PREFIX``, ``DASYNC_NATS_IDENTITY``,
        ``DASYNC_NATS_NAMESPACE``, and the provisioning settings ``DASYNC_NATS_REPLICAS``,
        ``_ACK_WAIT``, ``_DUPLICATE_WINDOW``, ``_MAX_ACK_PENDING``, ``_INBOX_MAX_AGE``,
        ``_EVENT_MAX_AGE`` (seconds), ``DASYNC_NATS_LANES`` (``0`` turns worker lanes off).
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for key, kind in _PROVISIONING.items():
            raw = env.get(f"DASYNC_NATS_{key.upper()}", "").strip()
            if raw:
                try:
                    values[key] = kind(raw)
                except ValueError:
                    raise ValueError(
                        f"DASYNC_NATS_{key.upper()}={raw!r}: expected {kind.__name__}"
                    ) from None
        if url := env.get("DASYNC_NATS_URL", "").strip():
            values["servers"] = split_servers(url)
        keys = (
            "user",
            "password",
            "token",
            "creds",
            "nkey_seed",
            "tls_ca",
            "tls_cert",
            "tls_key",
            "inbox_prefix",
            "identity",
            "namespace",
        )
        for key in keys:
            if value := env.get(f"DASYNC_NATS_{key.upper()}"):
                values[key] = value
        if lanes := env.get("DASYNC_NATS_LANES", "").strip().lower():
            if lanes not in _SWITCH:
                raise ValueError(f"DASYNC_NATS_LANES={lanes!r}: expected one of {sorted(_SWITCH)}")
            values["lanes"] = _SWITCH[lanes]
        for key, given in overrides.items():
            convert = _PROVISIONING.get(key)
            values[key] = convert(given) if convert and isinstance(given, str) else given
        if isinstance(values.get("servers"), str):
            values["servers"] = split_servers(values["servers"])
        return cls(**values)

    def with_servers(self, url: str) -> NatsOptions:
        """A copy using the servers of ``url`` (``nats://a:4222,nats://b:4222``)."""
        return replace(self, servers=split_servers(url))

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert) or any(
            s.startswith("tls://") for s in self.servers
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context, or ``None`` for plain connections."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


_PROVISIONING: dict[str, type[int] | type[float]] = {
    "replicas": int,
    "ack_wait": float,
    "duplicate_window": float,
    "max_ack_pending": int,
    "inbox_max_age": float,
    "event_max_age": float,
}
"""Stream and consumer settings read from ``DASYNC_NATS_<NAME>``: every process of a
deployment must use the same (a process never changes a stream that exists)."""


_SWITCH = {"1": True, "true": True, "yes": True, "on": True,
           "0": False, "false": False, "no": False, "off": False}  # fmt: skip


def split_servers(url: str) -> tuple[str, ...]:
    servers = tuple(s.strip() for s in url.split(",") if s.strip())
    if not servers:
        raise ValueError(f"no NATS server in {url!r}")
    return servers
