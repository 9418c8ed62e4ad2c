"""The gateway's ASGI app: the routes of ``codegen._http.ROUTES`` on a ``dasync.Client``.

Starlette routes each row of the table to its handler (``call``, ``status``,
``cancel``, ``openapi``); the handlers answer by the table too (statuses,
headers, problems), so what ``/openapi.json`` says and what the gateway does
are one description. The gateway is a client only: it starts routines, reads
their journals and sends cancels, as ``client.start``/``client.handle`` do,
and never speaks for a service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route, compile_path

from .._contract import MethodSpec, ServiceSpec
from .._errors import InvalidArguments, RoutineFinished, TransportError, UnknownService
from .._event import EventSpec
from .._runtime._client import Client, RoutineHandle, RoutineRecord
from ..codegen import Contracts, contracts_of, contracts_of_module, dumps, openapi_document
from ..codegen import _http as http
from ._arguments import arguments_payload, event_payload, is_json
from ._auth import Access, Authenticate, Authorize
from ._ids import SECRET_VAR, PublicId, RoutineIds
from ._prefer import decide
from ._problems import HttpProblem, about_blank, body, failure_problem

if TYPE_CHECKING:
    from ..transports.nats import NatsOptions

__all__ = ["NATS_PATIENCE", "Gateway", "gateway_app"]

_log = logging.getLogger("dasync.gateway")

T = TypeVar("T")

NATS_PATIENCE = 10.0
"""Seconds a request waits for NATS (a start sent, a journal read) before ``503``: the
client rides out a restart or an election meanwhile."""
RETRY_AFTER = "1"
MAX_KEY = 255
"""Longest ``Idempotency-Key`` (the table's ``IdempotencyKey`` parameter)."""

_JSON = {"content-type": http.JSON}
_PROBLEM = {"content-type": http.PROBLEM_JSON}


class Gateway:
    """The services of ``contracts`` over HTTP, through ``client`` (see ``gateway_app``)."""

    def __init__(
        self,
        contracts: Contracts,
        *,
        client: Client | None = None,
        access: Access | None = None,
        security: Sequence[str] = (),
        secret: bytes | None = None,
        api_version: str = "1.0.0",
    ) -> None:
        self.contracts = contracts
        self.services: dict[str, ServiceSpec] = {s.name: s for s in contracts.services}
        self.client = client
        self.access = access or Access()
        self.ids = RoutineIds(secret)
        self.document = dumps(
            openapi_document(contracts, security=security, version=api_version)
        ).encode()
        self._draining = asyncio.Event()
        self._drained: asyncio.Task[bool] | None = None

    def drain(self) -> None:
        """Answer every request still waiting for a routine now (``202``): for a stop that
        should not wait out the longest ``Prefer: wait``."""
        self._draining.set()

    # --- helpers ---------------------------------------------------------------------------

    def _client(self) -> Client:
        if self.client is None:
            raise HttpProblem("unavailable", "the gateway is not connected to NATS yet")
        return self.client

    async def _nats(self, work: Awaitable[T], what: str) -> T:
        """``work`` on NATS, or ``503`` if it cannot be done in ``NATS_PATIENCE``."""
        try:
            return await asyncio.wait_for(work, NATS_PATIENCE)
        except (TimeoutError, TransportError, OSError) as exc:
            _log.warning("%s: %r", what, exc)
            raise HttpProblem(
                "unavailable",
                f"cannot reach the services ({what}); try again",
                headers={"Retry-After": RETRY_AFTER},
            ) from None

    async def _principal(self, request: Request) -> Any:
        """Who sent the request (``Access.principal``), asked of the hook once per request."""
        if "dasync_principal" not in request.scope:
            request.scope["dasync_principal"] = await self.access.principal(request.headers)
        return request.scope["dasync_principal"]

    def _keyed_id(self, key: str | None, principal: Any, service: str, what: str) -> str:
        """A fresh id, or the one an ``Idempotency-Key`` of the same principal always gets
        (two principals' keys never meet)."""
        if key is None:
            return self.ids.fresh()
        return self.ids.keyed("" if principal is None else str(principal), service, what, key)

    def _service(self, service: str) -> ServiceSpec:
        spec = self.services.get(service)
        if spec is None:
            known = ", ".join(sorted(self.services)) or "none"
            raise HttpProblem("unknown-service", f"no service {service!r} here (services: {known})")
        return spec

    def _method(self, service: str, name: str) -> MethodSpec:
        spec = self._service(service)
        method = spec.methods.get(name)
        if method is None:
            known = ", ".join(sorted(spec.methods)) or "none"
            raise HttpProblem(
                "unknown-method", f"{service} has no method {name!r} (methods: {known})"
            )
        return method

    def _href(self, request: Request, public_id: str) -> str:
        return str(request.scope.get("root_path", "")) + http.routine_href(public_id)

    async def _routine(
        self, request: Request, action: str
    ) -> tuple[PublicId, MethodSpec, RoutineRecord | None]:
        """The routine a ``/routines/{id}`` request names, once its caller may ``action`` it;
        ``404`` for an id that names no routine."""
        principal = await self._principal(request)
        text = request.path_params["id"]
        found = self.ids.parse(text)
        unknown = HttpProblem("unknown-routine", f"no routine has the id {text!r}")
        spec = self.services.get(found.service) if found else None
        if found is None or spec is None or found.method not in spec.methods:
            raise unknown
        method = spec.methods[found.method]
        await self.access.check(principal, found.service, found.method, action)
        client = self._client()
        record = await self._nats(client.routine(found.service, found.routine_id), "reading")
        if record is None:
            if not found.vouched:  # a queued start only the tag can vouch for
                raise unknown
        elif record.method not in (None, found.method) or not (
            record.caller is None or record.caller.startswith("client:")
        ):
            raise unknown  # another method's routine, or one no client started
        return found, method, record

    def _status(
        self, found: PublicId, method: MethodSpec, record: RoutineRecord | None, href: str
    ) -> bytes:
        """The ``RoutineStatus`` body: the result spliced in as the service encoded it."""
        status = {
            "id": self.ids.public(found.service, found.method, found.routine_id),
            "service": found.service,
            "method": found.method,
            "status": http.Status.RUNNING.value,
        }
        if record is None or record.outcome is None:
            return orjson.dumps(status)
        ok, payload = record.outcome
        if ok:
            status["status"] = http.Status.COMPLETED.value
            return orjson.dumps(status)[:-1] + b',"result":' + payload + b"}"
        error = failure_problem(method, payload, href)
        cancelled = error.get("type") == _CANCELLED_TYPE
        status["status"] = (http.Status.CANCELLED if cancelled else http.Status.FAILED).value
        return orjson.dumps({**status, "error": error})

    # --- handlers --------------------------------------------------------------------------

    async def call(self, request: Request) -> Response:
        """``POST /{Service}/{method}``: start, wait as ``Prefer`` says, answer."""
        principal = await self._principal(request)
        service, name = request.path_params["service"], request.path_params["method"]
        method = self._method(service, name)
        await self.access.check(principal, service, name, "call")
        client = self._client()
        payload = arguments_payload(
            method,
            await _read_body(request, client.max_payload),
            request.headers.get("content-type"),
        )
        wait = decide(request.headers.getlist(http.PREFER))
        key = _idempotency_key(request.headers.get(http.IDEMPOTENCY_KEY))
        handle: RoutineHandle[Any] | None = None
        outcome: tuple[bool, bytes] | None = None
        routine_id = self._keyed_id(key, principal, service, name)
        if key is not None:
            record = await self._nats(client.routine(service, routine_id), "reading")
            if record is not None and record.method is not None:
                if record.method != name or record.args != payload:
                    raise HttpProblem(
                        "idempotency-key-reused",
                        f"the Idempotency-Key {key!r} started a routine of {service}.{name} "
                        "with other arguments; use a new key for new arguments",
                    )
                handle = RoutineHandle(client, method, routine_id)  # the same routine again
                outcome = record.outcome
        if handle is None:
            try:
                handle = await self._nats(
                    client.start_encoded(method, payload, routine_id=routine_id), "starting"
                )
            except InvalidArguments as exc:  # over the client's payload limit
                raise HttpProblem("invalid-arguments", str(exc)) from None
        public = self.ids.public(service, name, routine_id)
        href = self._href(request, public)
        headers = {http.LOCATION: href, http.ROUTINE_ID: public}
        if outcome is None:
            outcome = await self._wait(handle, wait.seconds)
        if outcome is None:
            handle.detach()
            if wait.applied_async:
                headers[http.PREFERENCE_APPLIED] = ", ".join(wait.applied_async)
            accepted = {"id": public, "status": http.Status.RUNNING.value, "href": href}
            return Response(orjson.dumps(accepted), 202, {**headers, **_JSON})
        if wait.applied:
            headers[http.PREFERENCE_APPLIED] = ", ".join(wait.applied)
        ok, result = outcome
        if ok:
            return Response(result, 200, {**headers, **_JSON})
        problem = failure_problem(method, result, href)
        return Response(body(problem), problem["status"], {**headers, **_PROBLEM})

    async def fire(self, request: Request) -> Response:
        """``POST /{Service}/events/{event}``: ask the service to publish an ``ExternalEvent``
        with the body as its payload; ``202`` once the request is stored."""
        principal = await self._principal(request)
        service, name = request.path_params["service"], request.path_params["event"]
        event = self._event(service, name)
        await self.access.check(principal, service, name, "fire")
        client = self._client()
        payload = event_payload(
            event,
            await _read_body(request, client.max_payload),
            request.headers.get("content-type"),
        )
        key = _idempotency_key(request.headers.get(http.IDEMPOTENCY_KEY))
        fire_id = self._keyed_id(key, principal, service, f"events/{name}")  # one key, one event
        await self._nats(client.fire_encoded(event, payload, fire_id=fire_id), "firing")
        accepted = {"event": event.topic, "fire_id": fire_id, "status": "accepted"}
        return Response(orjson.dumps(accepted), 202, _JSON)

    def _event(self, service: str, name: str) -> EventSpec:
        spec = self._service(service)
        event = spec.events.get(name)
        if event is None or not event.external:
            known = ", ".join(sorted(e.name for e in spec.events.values() if e.external))
            raise HttpProblem(
                "unknown-event",
                f"{service} declares no event {name!r} that may be fired from outside "
                f"(external events: {known or 'none'})",
            )
        return event

    async def _wait(self, handle: RoutineHandle[Any], seconds: float) -> tuple[bool, bytes] | None:
        """The routine's outcome if it comes within ``seconds`` (and before a drain)."""
        if seconds <= 0 or self._draining.is_set():
            return None
        if self._drained is None:
            self._drained = asyncio.ensure_future(self._draining.wait())
        waiting = asyncio.ensure_future(handle.outcome())
        try:
            await asyncio.wait(
                {waiting, self._drained}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not waiting.done():
                waiting.cancel()
        if waiting.cancelled() or not waiting.done():
            return None
        error = waiting.exception()
        if error is not None:
            if isinstance(error, TransportError | OSError):
                return None  # the result could not be read in time: it is still running
            raise error
        return waiting.result()

    async def status(self, request: Request) -> Response:
        """``GET /routines/{id}``."""
        found, method, record = await self._routine(request, "status")
        href = self._href(request, self.ids.public(found.service, found.method, found.routine_id))
        return Response(self._status(found, method, record, href), 200, _JSON)

    async def cancel(self, request: Request) -> Response:
        """``DELETE /routines/{id}``: ask a running routine to cancel (its main task gets
        ``CancelledError``); a finished one is left as it is."""
        found, method, record = await self._routine(request, "cancel")
        client = self._client()
        href = self._href(request, self.ids.public(found.service, found.method, found.routine_id))
        if record is None or record.outcome is None:
            mine = f"client:{client.identity}"
            if record is not None and record.caller not in (None, mine):
                raise HttpProblem(
                    "forbidden",
                    f"the routine was started by {record.caller}, not by this gateway "
                    f"({mine}); only its starter may cancel it",
                )
            handle: RoutineHandle[Any] = RoutineHandle(client, method, found.routine_id)
            try:
                await self._nats(handle.cancel(), "cancelling")
            except UnknownService:
                raise HttpProblem(
                    "unknown-routine", f"no routine has the id {request.path_params['id']!r}"
                ) from None
        return Response(self._status(found, method, record, href), 202, _JSON)

    async def signal(self, request: Request) -> Response:
        """``POST /routines/{id}/signals/{name}``: send the routine a signal whose value is
        the body (any JSON); ``202`` once it is on its way."""
        found, _method, _record = await self._routine(request, "signal")
        name = request.path_params["name"]
        client = self._client()
        if not 1 <= len(name) <= 128:
            raise HttpProblem(
                "invalid-arguments",
                "a signal's name is 1 to 128 characters",
                members={"invalid-params": [{"name": "name", "reason": "1 to 128 characters"}]},
            )
        body = await _read_body(request, client.max_payload)
        if not is_json(request.headers.get("content-type")):
            raise HttpProblem("unsupported-media-type", "send the signal's value as JSON")
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HttpProblem("invalid-value", f"the body is not JSON ({exc})") from None
        key = _idempotency_key(request.headers.get(http.IDEMPOTENCY_KEY))
        public = self.ids.public(found.service, found.method, found.routine_id)
        principal = await self._principal(request)  # asked already by _routine
        signal_id = self._keyed_id(key, principal, found.service, f"signals/{name}/{public}")
        try:
            await self._nats(
                client.signal(found.service, found.routine_id, name, value, signal_id=signal_id),
                "signalling",
            )
        except LookupError:
            raise HttpProblem(
                "unknown-routine", f"routine {public!r} has not started yet; try again"
            ) from None
        except RoutineFinished as exc:
            raise HttpProblem("routine-finished", str(exc)) from None
        answer = {"id": public, "signal": name, "signal_id": signal_id, "status": "accepted"}
        return Response(orjson.dumps(answer), 202, _JSON)

    async def progress(self, request: Request) -> Response:
        """``GET /routines/{id}/progress``: the routine's progress updates as Server-Sent
        Events (``id: n``), then ``event: end``; ``Last-Event-ID`` resumes after update n."""
        found, method, _record = await self._routine(request, "status")
        client = self._client()
        last = request.headers.get(http.LAST_EVENT_ID, "")
        after = int(last) if last.isdigit() and len(last) <= 12 else 0
        href = self._href(request, self.ids.public(found.service, found.method, found.routine_id))

        async def events() -> AsyncIterator[bytes]:
            updates = client.progress(found.service, found.routine_id, after=after)
            async for n, update in _until(updates, self._draining):
                yield b"id: %d\ndata: %s\n\n" % (n, orjson.dumps(update))
            if self._draining.is_set():
                return  # the gateway stops: the reader reconnects with Last-Event-ID
            record = await client.routine(found.service, found.routine_id)
            yield b"event: end\ndata: " + self._status(found, method, record, href) + b"\n\n"

        headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
        return StreamingResponse(events(), media_type=http.EVENT_STREAM, headers=headers)

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``: the document ``dasync codegen openapi`` writes."""
        return Response(self.document, 200, _JSON)

    # --- the app ---------------------------------------------------------------------------

    def app(self, *, connect: Callable[[], Any] | None = None, console: bool = False) -> Starlette:
        """The Starlette app; ``connect`` (an async context manager factory yielding a
        ``Client``) opens the client for the app's lifetime when none was given;
        ``console``: the web console under ``/console/`` too (``_console``)."""
        handlers = {
            "call": self.call,
            "fire": self.fire,
            "status": self.status,
            "cancel": self.cancel,
            "openapi": self.openapi,
            "signal": self.signal,
            "progress": self.progress,
        }
        routes: list[BaseRoute] = [
            Route(r.path, _answering(handlers[r.name]), methods=[r.method], name=r.name)
            for r in http.ROUTES
        ]
        if console:
            from ._console import Console

            routes.insert(0, Mount("/console", routes=Console(self).routes()))

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            if self.client is not None or connect is None:
                yield
                return
            async with connect() as client:
                self.client = client
                try:
                    yield
                finally:
                    self.drain()
                    self.client = None

        app = Starlette(
            routes=routes,
            exception_handlers={HTTPException: _http_error, Exception: _internal_error},
            lifespan=lifespan,
        )
        app.state.gateway = self
        return app


async def _until(updates: AsyncIterator[T], stop: asyncio.Event) -> AsyncIterator[T]:
    """``updates`` until ``stop`` is set (a drain), even while none comes; closed at the end
    however it ends (the reader went away: Starlette closes this generator)."""
    stopped = asyncio.ensure_future(stop.wait())
    following: asyncio.Future[T] | None = None
    try:
        while True:
            following = asyncio.ensure_future(anext(updates))
            await asyncio.wait({following, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                return
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stopped.cancel()
        if following is not None and not following.done():
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        aclose = getattr(updates, "aclose", None)
        if aclose is not None:
            await aclose()


_CANCELLED_TYPE = next(p.type for p in http.PROBLEMS if p.key == "routine-cancelled")


def _answering(handler: Callable[[Request], Awaitable[Response]]) -> Any:
    """``handler`` with its ``HttpProblem`` answered as ``application/problem+json``."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except HttpProblem as problem:
            return Response(body(problem.problem), problem.status, {**problem.headers, **_PROBLEM})

    endpoint.__name__ = endpoint.__qualname__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def _allowed(path: str) -> str:
    """The ``Allow`` of a path: the methods of the most specific routes of the table that
    match it (``/routines/x`` is also ``/{service}/{method}``, but the table means
    ``/routines/{id}`` there)."""
    matching = [(r, compile_path(r.path)[0]) for r in http.ROUTES]
    found = [r for r, regex in matching if regex.fullmatch(path)]
    if not found:
        return ""
    literal = max(len(re.sub(r"\{[^}]*\}", "", r.path)) for r in found)
    methods = [r.method for r in found if len(re.sub(r"\{[^}]*\}", "", r.path)) == literal]
    if "GET" in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return ", ".join(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such path) and 405 (no such method on it), as problems."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        path, root = request.scope["path"], request.scope.get("root_path", "")
        headers["Allow"] = _allowed(path[len(root) :] if path.startswith(root) else path)
    detail = {
        404: f"no route {request.url.path}: the gateway serves POST /{{Service}}/{{method}}, "
        f"{http.ROUTINE_PATH} and {http.OPENAPI_PATH}",
        405: f"{request.url.path} does not take {request.method}",
    }.get(exc.status_code, str(exc.detail))
    problem = body(about_blank(exc.status_code, detail))
    return Response(problem, exc.status_code, {**headers, **_PROBLEM})


async def _internal_error(request: Request, exc: Exception) -> Response:
    _log.error("the gateway failed on %s %s", request.method, request.url.path, exc_info=exc)
    return Response(body(about_blank(500, "the gateway failed; see its log")), 500, _PROBLEM)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (``413``) past ``limit`` bytes before more is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the body is over {limit} bytes; pass a reference instead")


def _idempotency_key(value: str | None) -> str | None:
    """The header's key: a plain value or a structured-field string (``"..."``)."""
    if value is None:
        return None
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not 1 <= len(key) <= MAX_KEY:
        raise HttpProblem(
            "invalid-arguments",
            f"{http.IDEMPOTENCY_KEY} must be 1 to {MAX_KEY} characters",
            members={
                "invalid-params": [{"name": http.IDEMPOTENCY_KEY, "reason": "1 to 255 characters"}]
            },
        )
    return key


def gateway_app(
    contracts: Contracts | ModuleType | Iterable[type],
    *,
    client: Client | None = None,
    nats: str | NatsOptions | None = None,
    authenticate: Authenticate | None = None,
    authorize: Authorize | None = None,
    security: Sequence[str] | None = None,
    secret: bytes | str | None = None,
    api_version: str = "1.0.0",
    console: bool = False,
) -> Starlette:
    """An ASGI app serving ``contracts`` over HTTP (run it with uvicorn, or any ASGI server).

    ``contracts``: a ``dasync.codegen.Contracts``, a loaded service module (its contracts,
    as ``dasync codegen`` finds them) or contract classes. ``client``: an open client to
    use (``Runtime.client`` in a process that also hosts the services); without one the
    app connects for its lifetime with ``dasync.connect(nats)``. ``authenticate`` and
    ``authorize``: the hooks of ``_auth`` (``bearer_auth``/``api_key_auth`` build the
    first). ``security``: the schemes the OpenAPI document declares (default: the
    authenticate hook's). ``secret``: what public ids are tagged with (default:
    ``$DASYNC_GATEWAY_SECRET``, else random per process); give every replica the same.
    ``console``: serve the web console under ``/console/`` (``docs/observability.md``).
    """
    if isinstance(contracts, Contracts):
        found = contracts
    elif isinstance(contracts, ModuleType):
        found = contracts_of_module(contracts)
    else:
        found = contracts_of(list(contracts))
    schemes = list(security) if security is not None else _schemes_of(authenticate)
    if schemes and authenticate is None:
        raise ValueError(
            f"security {schemes} needs an authenticate hook: the OpenAPI document would "
            "declare a credential that nothing checks"
        )
    if secret is None:
        secret = os.environ.get(SECRET_VAR) or None
    gateway = Gateway(
        found,
        client=client,
        access=Access(authenticate, authorize),
        security=schemes,
        secret=secret.encode() if isinstance(secret, str) else secret,
        api_version=api_version,
    )

    connect = None
    if client is None:

        def connect() -> Any:
            from .._runtime._connect import connect as dasync_connect

            return dasync_connect(nats)

    return gateway.app(connect=connect, console=console)


def _schemes_of(authenticate: Authenticate | None) -> list[str]:
    scheme = getattr(authenticate, "scheme", None)
    return [scheme] if isinstance(scheme, str) and scheme in http.SECURITY_SCHEMES else []
