"""The web console: routines, their timelines, dead letters, retry and cancel, in a browser.

Server-rendered HTML (Jinja, the only user of it, with autoescape on: routine ids
and payloads are hostile) on the gateway's own client, mounted under
``/console/`` by ``Gateway.app(console=True)``. No build step, no CDN: the pages,
one stylesheet and a few lines of inline JavaScript are in the package, so it
works on a machine without internet; without JavaScript every page still works
(reload to see progress).

* Reads need the authorize hook's ``status`` on the routine's service and method,
  actions (cancel, retry) its ``cancel``: the rights ``GET`` and ``DELETE
  /routines/{id}`` need. Routines a principal may not read are left out of lists.
* A browser sends no ``Authorization`` or ``X-API-Key`` header by itself, so with a
  ``bearer_auth``/``api_key_auth`` hook the console has a sign-in form that keeps
  the token in an ``HttpOnly``, ``SameSite=Strict`` cookie scoped to the console and
  turns it back into the header for the hook. Other hooks see the request's headers
  as they come (a proxy in front may add them).
* Every ``POST`` carries a CSRF token in a hidden field: an HMAC of the principal
  under a per-process key (derived from ``$DASYNC_GATEWAY_SECRET`` when set, so
  replicas agree), compared in constant time; a request a browser marks
  ``Sec-Fetch-Site: cross-site`` is refused as well.
* Live updates are Server-Sent Events: ``/console/routine/events`` polls the
  routine (index entry, timeline, children) every ``poll`` seconds and says
  ``change`` when what the page shows changed; the page's script then fetches the
  timeline fragment again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

try:
    import jinja2
except ModuleNotFoundError as missing:  # an install of the http extra before it had jinja2
    from ._stack import INSTALL_HINT, MissingHttpStack

    raise MissingHttpStack(
        f"the web console needs jinja2: {INSTALL_HINT}", name="jinja2"
    ) from missing
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from .._errors import TransportRefused
from .._runtime._index import FINISHED, STATUSES, failure_summary
from .._runtime._timeline import Timeline
from ..codegen import _http as http
from ..transports import DeadLetter, DeadLetters, RoutineEntry
from ._ids import SECRET_VAR
from ._problems import HttpProblem

if TYPE_CHECKING:
    from .._runtime._client import Client
    from ._app import Gateway

__all__ = ["COOKIE", "CSRF_FIELD", "Console"]

_log = logging.getLogger("dasync.gateway")

COOKIE = "dasync_console"
"""The sign-in cookie (a ``bearer_auth``/``api_key_auth`` token)."""
CSRF_FIELD = "csrf"
"""The hidden form field every ``POST`` of the console carries."""
LIMITS = (25, 50, 100, 200, 500)
_FORM_LIMIT = 16 * 1024
_PAYLOAD_SHOWN = 20_000
_KEEPALIVE = 15.0
_NOTICES = {
    "cancel": "Cancel sent: the routine gets CancelledError at its current await.",
    "retry": "Dead letters put back in the queue: the routine resumes from its journal.",
    "letter": "The dead letter is back in its queue.",
    "signed-out": "Signed out.",
}
"""What a redirect after an action says (a fixed text per key: nothing of the request is
reflected)."""
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(d|h|m|s|)")
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dasync._gateway", "templates"),
        autoescape=True,  # every page: ids, arguments and results are user data
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["took"] = _took
    return env


def _when(epoch: float | None) -> str:
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _took(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if abs(seconds) < 10:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s" if abs(seconds) < 600 else f"{seconds / 60:.0f} min"


def _duration(text: str) -> float | None:
    """``7d``, ``12h``, ``30m``, ``45s`` or seconds; ``None`` if empty; ``ValueError``."""
    if not text.strip():
        return None
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"expected a duration such as 30m, 12h or 7d, not {text!r}")
    return float(match[1]) * _UNIT[match[2]]


def _pretty(payload: bytes | None) -> str:
    """A payload as indented JSON for a ``<pre>`` (escaped by the template), cut."""
    if payload is None:
        return ""
    try:
        text = json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        text = repr(payload[:_PAYLOAD_SHOWN])
    return text if len(text) <= _PAYLOAD_SHOWN else text[:_PAYLOAD_SHOWN] + "\n…"


@dataclass(frozen=True)
class _Viewer:
    """Who is looking, and what they may do (the authorize hook's answers, cached)."""

    principal: Any
    signed_in: bool
    csrf: str
    allowed: dict[tuple[str, str, str], bool]


class Console:
    """The console's routes on ``gateway``'s client and access hooks."""

    def __init__(self, gateway: Gateway, *, poll: float = 0.5, stream_for: float = 300.0) -> None:
        self.gateway = gateway
        self.poll = poll
        """Seconds between two reads of a routine a live page follows."""
        self.stream_for = stream_for
        """Seconds an event stream lasts; the browser then reconnects by itself."""
        self.env = _templates()
        shared = os.environ.get(SECRET_VAR)
        seed = shared.encode() if shared else secrets.token_bytes(32)
        self._csrf_key = hmac.new(seed, b"dasync-console-csrf-1", hashlib.sha256).digest()
        self._css = _static("console.css")
        self._icon = _static("favicon.svg")
        self._scheme = getattr(gateway.access.authenticate, "scheme", None)

    def routes(self) -> list[BaseRoute]:
        """The routes, relative to the mount point."""
        return [
            Route("/", self._page(self.routines), methods=["GET"], name="console"),
            Route("/routine", self._page(self.routine), methods=["GET"]),
            Route("/routine/timeline", self._page(self.fragment), methods=["GET"]),
            Route("/routine/events", self._page(self.events), methods=["GET"]),
            Route("/routine/cancel", self._page(self.cancel), methods=["POST"]),
            Route("/routine/retry", self._page(self.retry), methods=["POST"]),
            Route("/dead-letters", self._page(self.dead_letters), methods=["GET"]),
            Route("/dead-letters/retry", self._page(self.retry_letter), methods=["POST"]),
            Route("/login", self._page(self.login_form), methods=["GET"]),
            Route("/login", self._page(self.login), methods=["POST"]),
            Route("/logout", self._page(self.logout), methods=["POST"]),
            Route("/static/console.css", self.stylesheet, methods=["GET"]),
            Route("/static/favicon.svg", self.icon, methods=["GET"]),
        ]

    # --- plumbing ---------------------------------------------------------------------------

    def _page(self, handler: Callable[[Request], Awaitable[Response]]) -> Any:
        """``handler`` with its problems answered as HTML pages (a sign-in form for a
        ``401`` when the console has one)."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except HttpProblem as problem:
                return self._problem(request, problem)

        endpoint.__name__ = endpoint.__qualname__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    def _problem(self, request: Request, problem: HttpProblem) -> Response:
        detail = str(problem.problem.get("detail", ""))
        if problem.status == 401 and self._scheme in http.SECURITY_SCHEMES:
            return self._render(
                request, "login.html", None, status=401, problem=detail, headers=problem.headers
            )
        return self._render(
            request,
            "error.html",
            None,
            status=problem.status,
            title=str(problem.problem.get("title", "Error")),
            problem=detail,
            headers=problem.headers,
        )

    def _base(self, request: Request) -> str:
        """The console's own path (the mount point, under any ``root_path``)."""
        return str(request.scope.get("root_path", "")).rstrip("/")

    def _render(
        self,
        request: Request,
        template: str,
        viewer: _Viewer | None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> Response:
        nonce = secrets.token_urlsafe(16)
        base = self._base(request)
        done = request.query_params.get("done", "")

        def routine_url(service: str, routine_id: str, page: str = "routine") -> str:
            return f"{base}/{page}?{urlencode({'service': service, 'id': routine_id})}"

        def list_url(**query: Any) -> str:
            kept = {k: v for k, v in query.items() if v not in (None, "")}
            return f"{base}/?{urlencode(kept)}" if kept else f"{base}/"

        values = {
            "base": base,
            "nonce": nonce,
            "viewer": viewer,
            "csrf_field": CSRF_FIELD,
            "csrf": viewer.csrf if viewer else self._token(None),
            "signed_in": bool(viewer and viewer.signed_in),
            "login": self._scheme in http.SECURITY_SCHEMES,
            "notice": _NOTICES.get(done, ""),
            "problem": "",
            "routine_url": routine_url,
            "list_url": list_url,
            **context,
        }
        html = self.env.get_template(template).render(values)
        return Response(html, status, {**_headers(nonce), **dict(headers or {})}, "text/html")

    def _client(self) -> Client:
        return self.gateway._client()

    async def _nats(self, work: Awaitable[Any], what: str) -> Any:
        return await self.gateway._nats(work, what)

    def _token(self, principal: Any) -> str:
        scope = b"" if principal is None else str(principal).encode()
        return hmac.new(self._csrf_key, b"csrf\0" + scope, hashlib.sha256).hexdigest()[:32]

    def _credential_headers(self, request: Request, token: str | None = None) -> Headers:
        """The request's headers, with the sign-in cookie's token (or ``token``) as the
        header the authenticate hook reads when the request has none of its own."""
        token = token if token is not None else request.cookies.get(COOKIE)
        if not token or self._scheme not in http.SECURITY_SCHEMES:
            return request.headers
        if self._scheme == "api-key":
            name, value = http.API_KEY_HEADER.lower(), token
        else:
            name, value = "authorization", f"Bearer {token}"
        if name in request.headers:
            return request.headers
        raw = [*request.headers.raw, (name.encode(), value.encode("latin-1", "replace"))]
        return Headers(raw=raw)

    async def _viewer(self, request: Request) -> _Viewer:
        principal = await self.gateway.access.principal(self._credential_headers(request))
        signed_in = bool(request.cookies.get(COOKIE)) and principal is not None
        return _Viewer(principal, signed_in, self._token(principal), {})

    async def _may(self, viewer: _Viewer, service: str, method: str, action: str) -> bool:
        key = (service, method, action)
        if key not in viewer.allowed:
            try:
                await self.gateway.access.check(viewer.principal, service, method, action)
                viewer.allowed[key] = True
            except HttpProblem:
                viewer.allowed[key] = False
        return viewer.allowed[key]

    async def _must(self, viewer: _Viewer, service: str, method: str, action: str) -> None:
        if not await self._may(viewer, service, method, action):
            raise HttpProblem("forbidden", f"not allowed to {action} {service}.{method}")

    async def _form(self, request: Request, viewer: _Viewer | None) -> dict[str, str]:
        """The url-encoded body of a ``POST``, once its CSRF token is this viewer's."""
        site = request.headers.get("sec-fetch-site")
        if site == "cross-site":
            raise HttpProblem("forbidden", "a cross-site form may not act on the console")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > _FORM_LIMIT:
            raise HttpProblem("invalid-arguments", "the form is too large")
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > _FORM_LIMIT:
                raise HttpProblem("invalid-arguments", "the form is too large")
        fields = {k: v[0] for k, v in parse_qs(data.decode("utf-8", "replace")).items()}
        expected = self._token(None if viewer is None else viewer.principal)
        if not hmac.compare_digest(fields.get(CSRF_FIELD, "").encode(), expected.encode()):
            raise HttpProblem(
                "forbidden", "the form's CSRF token is missing or stale: reload the page"
            )
        return fields

    # --- the routines list ------------------------------------------------------------------

    async def routines(self, request: Request) -> Response:
        """``GET /console/``: the latest routines, filtered, a page at a time."""
        viewer = await self._viewer(request)
        query = request.query_params
        filters = {k: query.get(k, "").strip() for k in _FILTERS}
        problem = ""
        try:
            limit = int(filters["limit"] or 50)
            if not 1 <= limit <= LIMITS[-1]:
                raise ValueError(f"limit: 1 to {LIMITS[-1]}")
            newer = _duration(filters["newer"])
            older = _duration(filters["older"])
            if filters["status"] and filters["status"] not in STATUSES:
                raise ValueError(f"status: one of {', '.join(STATUSES)}")
            cursor = _cursor(filters["before"])
        except ValueError as exc:
            return self._render(
                request,
                "routines.html",
                viewer,
                status=400,
                entries=[],
                filters=filters,
                statuses=STATUSES,
                limits=LIMITS,
                services=self._services(),
                hidden=0,
                more="",
                problem=str(exc),
            )
        if cursor is not None:
            age = time.time() - cursor[0]
            older = age if older is None else max(older, age)
        client = self._client()
        entries: list[RoutineEntry] = []
        try:
            entries = await self._nats(
                client.list_routines(
                    filters["service"] or None,
                    method=filters["method"] or None,
                    status=filters["status"] or None,
                    parent=filters["parent"] or None,
                    older_than=older,
                    newer_than=newer,
                    limit=limit + 1 + (0 if cursor is None else 50),
                ),
                "listing routines",
            )
        except LookupError as exc:
            problem = str(exc).strip("'\"")
        if cursor is not None:
            entries = [e for e in entries if (e.started, _key(e)) < cursor]
        shown, hidden = [], 0
        for entry in entries:
            if await self._may(viewer, entry.service, entry.method, "status"):
                shown.append(entry)
            else:
                hidden += 1
        more = ""
        if len(shown) > limit:
            shown = shown[:limit]
            last = shown[-1]
            more = f"{last.started!r}|{_key(last)}"
        return self._render(
            request,
            "routines.html",
            viewer,
            entries=shown,
            filters=filters,
            statuses=STATUSES,
            limits=LIMITS,
            services=self._services(),
            hidden=hidden,
            more=more,
            problem=problem,
            now=time.time(),
        )

    def _services(self) -> list[str]:
        return sorted(self.gateway.services)

    # --- one routine ------------------------------------------------------------------------

    async def _load(
        self, request: Request, viewer: _Viewer, service: str, routine_id: str
    ) -> dict[str, Any]:
        """What the routine's page shows, once the viewer may read it."""
        if not service or not routine_id:
            raise HttpProblem("unknown-routine", "name a routine: ?service=S&id=ID")
        client = self._client()
        entry = await self._index_entry(client, service, routine_id)
        timeline: Timeline | None = None
        try:
            timeline = await self._nats(client.timeline(service, routine_id, depth=1), "reading")
        except LookupError:
            timeline = None
        if entry is None and timeline is None:
            raise HttpProblem("unknown-routine", f"no routine {routine_id!r} of {service}")
        method = entry.method if entry is not None and entry.method else ""
        method = method or (timeline.method if timeline is not None else "")
        await self._must(viewer, service, method, "status")
        record = await self._nats(client.routine(service, routine_id), "reading")
        status = entry.status if entry is not None else (timeline.status if timeline else "")
        if timeline is not None and timeline.status in FINISHED:
            status = timeline.status  # the journal is the truth; the index follows it
        children = []
        if timeline is not None:
            for call in timeline.calls:
                child = timeline.children.get(f"{call.service}/{call.callee}")
                children.append((call, child))
        outcome = record.outcome if record is not None else None
        return {
            "service": service,
            "routine_id": routine_id,
            "method": method,
            "entry": entry,
            "timeline": timeline,
            "state": status,
            "children": children,
            "args": _pretty(record.args if record is not None else None),
            "result": _pretty(outcome[1]) if outcome is not None and outcome[0] else "",
            "error": failure_summary(outcome[1]) if outcome and not outcome[0] else "",
            "error_payload": _pretty(outcome[1]) if outcome and not outcome[0] else "",
            "parent": _split(timeline.parent if timeline else (entry.parent if entry else "")),
            "may_cancel": status in ("running", "retrying")
            and await self._may(viewer, service, method, "cancel"),
            "may_retry": status in ("parked", "dead-lettered")
            and await self._may(viewer, service, method, "cancel"),
            "version": _version(entry, timeline),
            "live": not _settled(status, timeline),
        }

    async def _index_entry(
        self, client: Client, service: str, routine_id: str
    ) -> RoutineEntry | None:
        try:
            found: RoutineEntry = await self._nats(
                client.find_routine(routine_id, service), "reading the index"
            )
        except LookupError:
            return None
        return found

    async def routine(self, request: Request) -> Response:
        """``GET /console/routine?service=S&id=ID``: the routine's page."""
        viewer = await self._viewer(request)
        service, routine_id = _named(request)
        shown = await self._load(request, viewer, service, routine_id)
        return self._render(request, "routine.html", viewer, **shown)

    async def fragment(self, request: Request) -> Response:
        """``GET /console/routine/timeline?...``: the part of the page a live update
        replaces."""
        viewer = await self._viewer(request)
        service, routine_id = _named(request)
        shown = await self._load(request, viewer, service, routine_id)
        return self._render(request, "_routine.html", viewer, **shown)

    async def events(self, request: Request) -> Response:
        """``GET /console/routine/events?service=S&id=ID&since=V``: Server-Sent Events,
        ``change`` whenever what the routine's page shows changed since version ``V``,
        ``done`` once it finished (and its children did)."""
        viewer = await self._viewer(request)
        service, routine_id = _named(request)
        shown = await self._load(request, viewer, service, routine_id)
        since = request.query_params.get("since", "")
        return StreamingResponse(
            self._stream(service, routine_id, since, shown),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _stream(
        self, service: str, routine_id: str, since: str, shown: dict[str, Any]
    ) -> AsyncIterator[str]:
        client = self._client()
        draining = self.gateway._draining
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stream_for
        quiet_since = loop.time()
        version, live = shown["version"], shown["live"]
        yield "retry: 2000\n\n"
        while True:
            if version != since:
                since = version
                quiet_since = loop.time()
                yield f"event: change\ndata: {version}\n\n"
            if not live:
                yield "event: done\ndata: \n\n"
                return
            if draining.is_set() or loop.time() > deadline:
                return
            if loop.time() - quiet_since > _KEEPALIVE:
                quiet_since = loop.time()
                yield ": keep-alive\n\n"
            await asyncio.sleep(self.poll)
            try:
                entry = await self._index_entry(client, service, routine_id)
                try:
                    timeline = await self._nats(
                        client.timeline(service, routine_id, depth=1), "reading"
                    )
                except LookupError:
                    timeline = None
            except HttpProblem:
                continue  # NATS away for a while: the page keeps what it shows
            status = entry.status if entry is not None else ""
            if timeline is not None and timeline.status in FINISHED:
                status = timeline.status
            version, live = _version(entry, timeline), not _settled(status, timeline)

    # --- actions ----------------------------------------------------------------------------

    async def _act(self, request: Request) -> tuple[_Viewer, str, str, str]:
        """The routine a form names, once the form is genuine and the viewer may act."""
        viewer = await self._viewer(request)
        fields = await self._form(request, viewer)
        service, routine_id = fields.get("service", ""), fields.get("id", "")
        if not service or not routine_id:
            raise HttpProblem("unknown-routine", "the form names no routine")
        client = self._client()
        entry = await self._index_entry(client, service, routine_id)
        method = entry.method if entry is not None else ""
        if not method:
            record = await self._nats(client.routine(service, routine_id), "reading")
            method = (record.method or "") if record is not None else ""
        if entry is None and not method:
            raise HttpProblem("unknown-routine", f"no routine {routine_id!r} of {service}")
        await self._must(viewer, service, method, "cancel")
        return viewer, service, routine_id, method

    def _back(self, request: Request, service: str, routine_id: str, done: str) -> Response:
        query = urlencode({"service": service, "id": routine_id, "done": done})
        return RedirectResponse(f"{self._base(request)}/routine?{query}", 303)

    async def cancel(self, request: Request) -> Response:
        """``POST /console/routine/cancel``: cancel a routine as an operator."""
        _, service, routine_id, _ = await self._act(request)
        try:
            await self._nats(self._client().cancel_routine(service, routine_id), "cancelling")
        except TransportRefused as exc:
            raise HttpProblem(
                "forbidden", f"NATS refused the gateway's cancel (operator rights?): {exc}"
            ) from None
        return self._back(request, service, routine_id, "cancel")

    async def retry(self, request: Request) -> Response:
        """``POST /console/routine/retry``: put a parked or dead-lettered routine's dead
        letters back in its queue."""
        _, service, routine_id, _ = await self._act(request)
        try:
            await self._nats(self._client().retry_routine(service, routine_id), "retrying")
        except LookupError as exc:
            raise HttpProblem("unknown-routine", str(exc).strip("'\"")) from None
        except TransportRefused as exc:
            raise HttpProblem("forbidden", f"NATS refused the retry: {exc}") from None
        return self._back(request, service, routine_id, "retry")

    # --- dead letters -----------------------------------------------------------------------

    async def dead_letters(self, request: Request) -> Response:
        """``GET /console/dead-letters``: parked and dead-lettered routines, and every dead
        letter of the services the gateway serves or the index names as stuck."""
        viewer = await self._viewer(request)
        client = self._client()
        stuck: list[RoutineEntry] = []
        problem = ""
        for status in ("parked", "dead-lettered"):
            try:
                found = await self._nats(
                    client.list_routines(status=status, limit=200), "listing routines"
                )
            except LookupError as exc:
                problem = str(exc).strip("'\"")
                break
            stuck.extend(found)
        stuck.sort(key=lambda e: e.started, reverse=True)
        services = sorted({*self.gateway.services, *(e.service for e in stuck)})
        letters: list[tuple[DeadLetter, str, str, str]] = []
        transport = getattr(client, "_transport", None)
        if isinstance(transport, DeadLetters):
            for service in services:
                try:
                    found_letters = await self._nats(
                        transport.dead_letters(service), "reading dead letters"
                    )
                except HttpProblem:
                    raise
                except Exception as exc:  # no such queue, no permission: say so, go on
                    _log.info("dead letters of %s: %r", service, exc)
                    continue
                for letter in found_letters:
                    headers = letter.message.headers
                    routine_id = headers.get("dasync-routine", "")
                    method = headers.get("dasync-method", "")
                    if await self._may(viewer, service, method, "status"):
                        letters.append((letter, service, routine_id, method))
        shown = [e for e in stuck if await self._may(viewer, e.service, e.method, "status")]
        retryable = {
            (e.service, e.routine_id)
            for e in shown
            if await self._may(viewer, e.service, e.method, "cancel")
        }
        letter_retry = {
            (service, letter.id)
            for letter, service, _, method in letters
            if await self._may(viewer, service, method, "cancel")
        }
        return self._render(
            request,
            "dead_letters.html",
            viewer,
            stuck=shown,
            letters=letters,
            retryable=retryable,
            letter_retry=letter_retry,
            problem=problem,
        )

    async def retry_letter(self, request: Request) -> Response:
        """``POST /console/dead-letters/retry``: put one dead letter back in its queue."""
        viewer = await self._viewer(request)
        fields = await self._form(request, viewer)
        service, letter_id = fields.get("service", ""), fields.get("letter", "")
        client = self._client()
        transport = getattr(client, "_transport", None)
        if not isinstance(transport, DeadLetters):
            raise HttpProblem("unknown-routine", "the transport keeps no dead letters")
        letters = await self._nats(transport.dead_letters(service), "reading dead letters")
        letter = next((d for d in letters if d.id == letter_id), None)
        if letter is None:
            raise HttpProblem("unknown-routine", f"no dead letter {letter_id!r} in {service!r}")
        await self._must(viewer, service, letter.message.headers.get("dasync-method", ""), "cancel")
        try:
            await self._nats(client.retry_dead_letter(service, letter_id), "retrying")
        except LookupError as exc:
            raise HttpProblem("unknown-routine", str(exc).strip("'\"")) from None
        except TransportRefused as exc:
            raise HttpProblem("forbidden", f"NATS refused the retry: {exc}") from None
        return RedirectResponse(f"{self._base(request)}/dead-letters?done=letter", 303)

    # --- signing in -------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        """``GET /console/login``: a form for the token of ``bearer_auth``/``api_key_auth``."""
        return self._render(request, "login.html", None)

    async def login(self, request: Request) -> Response:
        """``POST /console/login``: keep the token in a cookie if the hook accepts it."""
        fields = await self._form(request, None)
        token = fields.get("token", "").strip()
        if self._scheme not in http.SECURITY_SCHEMES or not token:
            raise HttpProblem("unauthorized", "no token given")
        # raises 401 (the sign-in form again) unless the hook accepts the token
        await self.gateway.access.principal(self._credential_headers(request, token))
        response = RedirectResponse(f"{self._base(request)}/", 303)
        response.set_cookie(
            COOKIE,
            token,
            path=f"{self._base(request)}/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        """``POST /console/logout``: forget the sign-in cookie."""
        viewer = await self._viewer(request)
        await self._form(request, viewer)
        response = RedirectResponse(f"{self._base(request)}/login?done=signed-out", 303)
        response.delete_cookie(COOKIE, path=f"{self._base(request)}/")
        return response

    async def stylesheet(self, request: Request) -> Response:
        """``GET /console/static/console.css``."""
        return Response(self._css, 200, {"Cache-Control": "max-age=3600"}, media_type="text/css")

    async def icon(self, request: Request) -> Response:
        """``GET /console/static/favicon.svg``."""
        return Response(self._icon, 200, _CACHED, media_type="image/svg+xml")


_CACHED = {"Cache-Control": "max-age=3600"}
_FILTERS = ("service", "method", "status", "parent", "newer", "older", "limit", "before")


def _headers(nonce: str) -> dict[str, str]:
    """No script but the page's own (by nonce), nothing from elsewhere, no framing."""
    policy = (
        "default-src 'none'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        f"script-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def _static(name: str) -> bytes:
    from importlib.resources import files

    return files("dasync._gateway").joinpath("static", name).read_bytes()


def _named(request: Request) -> tuple[str, str]:
    return request.query_params.get("service", ""), request.query_params.get("id", "")


def _key(entry: RoutineEntry) -> str:
    return f"{entry.service}/{entry.routine_id}"


def _cursor(text: str) -> tuple[float, str] | None:
    """``started|Service/id`` of the last routine of the previous page."""
    if not text:
        return None
    started, sep, key = text.partition("|")
    if not sep:
        raise ValueError("before: expected STARTED|SERVICE/ID")
    return float(started), key


def _split(key: str) -> tuple[str, str] | None:
    service, sep, routine_id = key.partition("/")
    return (service, routine_id) if sep else None


def _version(entry: RoutineEntry | None, timeline: Timeline | None) -> str:
    """A digest of what the routine's page shows: it changes when the page would."""
    parts: list[Any] = [None if entry is None else (entry.status, entry.rank, entry.error)]
    if timeline is not None:
        parts.append((timeline.status, len(timeline.rows), timeline.outcome))
        for key in sorted(timeline.children):
            child = timeline.children[key]
            parts.append((key, child.status, len(child.rows)))
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _settled(status: str, timeline: Timeline | None) -> bool:
    """Nothing more will change by itself: finished, and so are its children."""
    if status not in FINISHED or timeline is None:
        return False
    return all(child.status in FINISHED for child in timeline.children.values())
