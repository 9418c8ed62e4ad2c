"""A 3-node nats-server cluster on 127.0.0.1, for tests: start, kill -9, restart, leaders.

Each node is a ``NatsServer`` (the controller the suite uses for single
servers) with its own free client port, cluster port, monitoring port, store
directory and ``server_name`` (``n1``, ``n2``, ``n3``), JetStream on, and
routes to the other two. Nothing listens beyond loopback.

    with NatsCluster(tmp_path) as cluster:          # started, meta leader elected
        await cluster.ready()                       # JetStream answers on every node
        node = await cluster.stream_leader("DASYNC_Orders_JOURNAL")
        cluster.kill(node)                          # kill -9
        cluster.restart(node)                       # same ports, same store
        await cluster.ready()

``ready()`` waits for a JetStream meta leader (``/jsz`` of the monitoring
port), ``/healthz`` answering ``ok`` on every running node, and
``$JS.API.INFO`` answering through a nats-py connection. ``stream_info`` and
``stream_leader`` read ``$JS.API.STREAM.INFO`` (``cluster.leader`` is a
``server_name``, mapped back to its ``Node``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors

from dasync.transports.nats import NatsServer

HOST = "127.0.0.1"
CLUSTER_NAME = "dasync-test"


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now (held open together, then closed)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class Node:
    """One nats-server of the cluster."""

    name: str
    port: int
    cluster_port: int
    http_port: int
    store_dir: Path
    server: NatsServer = field(repr=False)
    killed_at: float | None = None
    """``time.monotonic()`` of the last ``kill -9``."""

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.server.running

    @property
    def pid(self) -> int | None:
        return self.server.pid

    def http(self, path: str, timeout: float = 1.0) -> tuple[int, Any]:
        """GET ``path`` on the monitoring port: ``(status, JSON)``; ``(0, None)`` if down."""
        url = f"http://{HOST}:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, None
        except (OSError, ValueError):
            return 0, None


class NatsCluster:
    """Three JetStream nodes routed to each other on loopback (sync context manager)."""

    def __init__(self, directory: Path, size: int = 3, *, ready_timeout: float = 30.0) -> None:
        self.directory = Path(directory)
        self.ready_timeout = ready_timeout
        every = free_ports(3 * size)
        ports = [every[3 * i : 3 * i + 3] for i in range(size)]
        self.nodes: list[Node] = []
        for i, (port, cluster_port, http_port) in enumerate(ports):
            name = f"n{i + 1}"
            home = self.directory / name
            home.mkdir(parents=True, exist_ok=True)
            routes = ",".join(f"nats://{HOST}:{p[1]}" for j, p in enumerate(ports) if j != i)
            args = (
                "--server_name", name,
                "--cluster_name", CLUSTER_NAME,
                "--cluster", f"nats://{HOST}:{cluster_port}",
                "--routes", routes,
                "-m", str(http_port),
            )  # fmt: skip
            server = NatsServer(
                port=port,
                store_dir=home / "js",
                log_file=home / "server.log",
                args=args,
                ready_timeout=ready_timeout,
            )
            self.nodes.append(Node(name, port, cluster_port, http_port, home, server))

    # --- the cluster ----------------------------------------------------------------------

    @property
    def urls(self) -> str:
        """Every node, as ``--nats`` takes them: ``nats://127.0.0.1:a,nats://127.0.0.1:b,...``."""
        return ",".join(node.url for node in self.nodes)

    @property
    def servers(self) -> tuple[str, ...]:
        return tuple(node.url for node in self.nodes)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node named {name!r} in {[n.name for n in self.nodes]}")

    def running(self) -> list[Node]:
        return [node for node in self.nodes if node.running]

    def start(self) -> NatsCluster:
        """Start every node that is not running (each returns once it accepts clients)."""
        for node in self.nodes:
            if not node.running:
                node.server.start()
        return self

    def stop(self) -> None:
        """SIGTERM every node (JetStream flushes), SIGKILL after 10 s."""
        for node in self.nodes:
            node.server.stop()

    def __enter__(self) -> NatsCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- one node -------------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """``kill -9`` the node: no flush, no goodbye to clients or to its peers."""
        proc, node.server.process = node.server.process, None
        assert proc is not None, f"{node.name} is not running"
        proc.kill()
        proc.wait()
        node.killed_at = time.monotonic()

    def stop_node(self, node: Node) -> None:
        node.server.stop()

    def restart(self, node: Node) -> None:
        """Start a stopped or killed node again on its ports and store."""
        node.server.start()

    # --- waiting and asking ---------------------------------------------------------------

    def meta_leader(self) -> str | None:
        """The ``server_name`` of the JetStream meta leader, as a running node reports it."""
        for node in self.running():
            status, jsz = node.http("/jsz")
            if status == 200 and isinstance(jsz, dict):
                leader = (jsz.get("meta_cluster") or {}).get("leader")
                if leader:
                    return str(leader)
        return None

    async def ready(self, within: float | None = None) -> float:
        """Wait until every running node is healthy and JetStream answers; returns seconds.

        Healthy: a meta leader is known, ``/healthz`` says ``ok`` on each running node
        (JetStream current there), and ``$JS.API.INFO`` answers on each of them.
        """
        within = self.ready_timeout if within is None else within
        began = time.monotonic()
        deadline = began + within
        waiting_for = "a meta leader"
        while True:
            problem = await asyncio.to_thread(self._health_problem)
            if problem is None:
                problem = await self._api_problem()
            if problem is None:
                return time.monotonic() - began
            waiting_for = problem
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster not ready within {within}s: {waiting_for}")
            await asyncio.sleep(0.1)

    def _health_problem(self) -> str | None:
        if self.meta_leader() is None:
            return "no JetStream meta leader"
        for node in self.running():
            status, body = node.http("/healthz")
            if status != 200:
                return f"{node.name} /healthz: {status} {body}"
        return None

    async def _api_problem(self) -> str | None:
        for node in self.running():
            try:
                info = await self.api("INFO", servers=(node.url,))
            except Exception as exc:
                return f"{node.name} $JS.API.INFO: {exc!r}"
            if "error" in info:
                return f"{node.name} $JS.API.INFO: {info['error']}"
        return None

    async def api(
        self,
        endpoint: str,
        payload: dict[str, Any] | None = None,
        *,
        servers: tuple[str, ...] | None = None,
        wait: float = 2.0,
    ) -> dict[str, Any]:
        """One ``$JS.API.<endpoint>`` request through a fresh connection to a running node."""
        servers = servers or tuple(node.url for node in self.running())
        nc = await nats.connect(
            servers=list(servers),
            connect_timeout=2,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            name="dasync-test-cluster-probe",
        )
        try:
            data = json.dumps(payload).encode() if payload is not None else b""
            msg = await nc.request(f"$JS.API.{endpoint}", data, timeout=wait)
            answer: dict[str, Any] = json.loads(msg.data)
            return answer
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def stream_names(self) -> list[str]:
        names: list[str] = []
        while True:
            page = await self.api("STREAM.NAMES", {"offset": len(names)})
            batch = page.get("streams") or []
            names.extend(batch)
            if not batch or len(names) >= int(page.get("total", 0)):
                return sorted(names)

    async def stream_info(self, stream: str, wait: float = 2.0) -> dict[str, Any]:
        """``STREAM.INFO`` (answered by the stream's leader: no answer while it has none)."""
        info = await self.api(f"STREAM.INFO.{stream}", wait=wait)
        if "error" in info:
            raise AssertionError(f"STREAM.INFO {stream}: {info['error']}")
        return info

    async def consumer_infos(self, stream: str) -> list[dict[str, Any]]:
        infos: list[dict[str, Any]] = []
        while True:
            page = await self.api(f"CONSUMER.LIST.{stream}", {"offset": len(infos)})
            batch = page.get("consumers") or []
            infos.extend(batch)
            if not batch or len(infos) >= int(page.get("total", 0)):
                return infos

    async def stream_leader(self, stream: str, within: float = 10.0, wait: float = 2.0) -> Node:
        """The node leading ``stream`` (``STREAM.INFO`` ``cluster.leader``), once it has one;
        ``wait`` is how long one request waits for an answer."""
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(AssertionError, nats.errors.Error, OSError, TimeoutError):
                info = await self.stream_info(stream, wait=wait)
                leader = (info.get("cluster") or {}).get("leader")
                if leader:
                    return self.node(str(leader))
            if time.monotonic() > deadline:
                raise AssertionError(f"stream {stream} has no leader after {within}s")
            await asyncio.sleep(0.1)

    def logs(self, text: str = "") -> Iterator[str]:
        """Lines of the nodes' logs (containing ``text``), prefixed with the node name."""
        for node in self.nodes:
            path = node.store_dir / "server.log"
            if path.exists():
                for line in path.read_text(errors="replace").splitlines():
                    if text in line:
                        yield f"{node.name}: {line}"
