"""The HTTP gateway's API, as data: routes, headers, statuses, problem types, security.

The OpenAPI document is generated from these tables and the gateway is meant
to answer by them, so the two cannot say different things. A routine is
started by ``POST /{service}/{method}`` with its arguments as a JSON object;
the answer is its result (``200``) when it finishes within the time the client
asked for with ``Prefer: wait=N`` (RFC 7240), else ``202 Accepted`` with the
routine's URL in ``Location``, where ``GET`` reads its status and ``DELETE``
cancels it. An event the contract declares ``ExternalEvent`` is fired by
``POST /{service}/events/{event}`` with its payload as the body (``202``: the
service will publish it; an ``Idempotency-Key`` makes a retried POST one
event). Every error is an RFC 9457 problem (``application/problem+json``)
carrying what a Python caller would get: the exception's class, message,
arguments and fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote

__all__ = [
    "API_KEY_HEADER",
    "AUTH_PROBLEMS",
    "DECLARED_ERROR_STATUS",
    "DEFAULT_WAIT",
    "EXCEPTION_MEMBERS",
    "IDEMPOTENCY_KEY",
    "JSON",
    "LOCATION",
    "MAX_WAIT",
    "OPENAPI_PATH",
    "PREFER",
    "PREFERENCE_APPLIED",
    "PROBLEMS",
    "PROBLEM_JSON",
    "ROUTES",
    "ROUTINE_ID",
    "ROUTINE_PATH",
    "SIGNAL_PATH",
    "PROGRESS_PATH",
    "EVENT_STREAM",
    "LAST_EVENT_ID",
    "SECURITY_SCHEMES",
    "Problem",
    "Route",
    "Status",
    "call_path",
    "error_problem_type",
    "fire_path",
    "routine_href",
]

JSON: Final = "application/json"
PROBLEM_JSON: Final = "application/problem+json"

PREFER: Final = "Prefer"
"""Request: ``wait=N`` (seconds the client will wait for the result), ``respond-async``."""
PREFERENCE_APPLIED: Final = "Preference-Applied"
"""Response: the preferences the gateway honoured (``wait=N``, ``respond-async``)."""
IDEMPOTENCY_KEY: Final = "Idempotency-Key"
"""Request: the same key gives the same routine (a retried POST starts nothing new)."""
ROUTINE_ID: Final = "Dasync-Routine-Id"
"""Response: the id of the routine a POST started (or found for its Idempotency-Key)."""
LOCATION: Final = "Location"
API_KEY_HEADER: Final = "X-API-Key"

DEFAULT_WAIT: Final = 10.0
"""Seconds a POST without ``Prefer: wait`` waits for the result before answering 202."""
MAX_WAIT: Final = 300.0
"""The longest wait honoured; ``Preference-Applied`` says what was."""

ROUTINE_PATH: Final = "/routines/{id}"
SIGNAL_PATH: Final = "/routines/{id}/signals/{name}"
PROGRESS_PATH: Final = "/routines/{id}/progress"
EVENT_STREAM: Final = "text/event-stream"
LAST_EVENT_ID: Final = "Last-Event-ID"
"""Request (SSE): the last progress update a reconnecting reader saw; it gets the later ones."""
OPENAPI_PATH: Final = "/openapi.json"
DECLARED_ERROR_STATUS: Final = 422

EXCEPTION_MEMBERS: Final = {
    "exception": "the exception's class, as module:qualname",
    "message": "str() of the exception",
    "args": "its args, as tagged JSON values",
    "fields": "its attributes, as tagged JSON values",
}
"""The extension members of a problem that reports an exception (what ``except`` gets)."""


class Status(StrEnum):
    """A routine's ``status`` in ``GET /routines/{id}``."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def call_path(service: str, method: str) -> str:
    return f"/{service}/{method}"


def fire_path(service: str, event: str) -> str:
    """Where an ``ExternalEvent`` is fired (two segments: no method's path can take it)."""
    return f"/{service}/events/{event}"


def routine_href(routine_id: str) -> str:
    """The URL path of a routine (its id percent-encoded as one path segment)."""
    return ROUTINE_PATH.replace("{id}", quote(routine_id, safe=""))


def error_problem_type(type_path: str) -> str:
    """The problem type of an exception class named ``module:qualname``."""
    return f"urn:dasync:error:{type_path}"


@dataclass(frozen=True)
class Problem:
    """A kind of error response: its status, its RFC 9457 ``type`` and ``title``, and the
    extension members it carries besides ``type``, ``title``, ``status``, ``detail`` and
    ``instance``."""

    key: str
    status: int
    title: str
    when: str
    """When the gateway answers with it (for the documentation)."""
    members: Mapping[str, Any] = field(default_factory=dict)
    """Extension member -> its JSON Schema."""
    error: bool = False
    """Whether it carries the ``EXCEPTION_MEMBERS`` of the exception a routine raised."""
    listed: bool = True
    """Whether a path the document lists (a known method) can answer with it."""

    @property
    def type(self) -> str:
        return f"urn:dasync:problem:{self.key}"


_INVALID_PARAMS = {
    "type": "array",
    "description": "each argument that is wrong: its name (a dotted path into the body) and why",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
        "required": ["name", "reason"],
    },
}

PROBLEMS: tuple[Problem, ...] = (
    Problem(
        "invalid-json",
        400,
        "The request body is not a JSON object",
        "the body does not parse as JSON, or is JSON but not an object",
    ),
    Problem(
        "invalid-arguments",
        400,
        "The arguments do not match the method's parameters",
        "an argument is missing, unexpected, or of the wrong type; `invalid-params` names each",
        {"invalid-params": _INVALID_PARAMS},
    ),
    Problem(
        "invalid-event",
        400,
        "The body is not a payload of the event",
        "the body is not JSON, or not of the event's payload type; `invalid-params` names "
        "the field",
        {"invalid-params": _INVALID_PARAMS},
    ),
    Problem("unauthorized", 401, "Authentication is required", "no or a wrong credential"),
    Problem("forbidden", 403, "Not allowed", "the credential may not call this method"),
    Problem("unknown-service", 404, "No such service", "the path names no service", listed=False),
    Problem(
        "unknown-method", 404, "No such method", "the service has no such method", listed=False
    ),
    Problem(
        "unknown-event",
        404,
        "No such event",
        "the service declares no event of this name that may be fired from outside",
        listed=False,
    ),
    Problem("unknown-routine", 404, "No such routine", "no routine has this id"),
    Problem(
        "routine-cancelled",
        409,
        "The routine was cancelled",
        "the routine waited for was cancelled before it finished",
    ),
    Problem(
        "invalid-value",
        400,
        "The body is not JSON",
        "a signal's body (its value: any JSON) does not parse",
    ),
    Problem(
        "routine-finished",
        409,
        "The routine has finished",
        "a signal was sent to a routine that has finished: nothing would take it",
    ),
    Problem(
        "unsupported-media-type",
        415,
        "The request body must be application/json",
        "the body has another Content-Type",
    ),
    Problem(
        "idempotency-key-reused",
        422,
        "The Idempotency-Key was used with other arguments",
        "a POST repeats an Idempotency-Key with another method or other arguments",
    ),
    Problem(
        "routine-failed",
        500,
        "The routine raised an exception its contract does not declare",
        "the method raised an exception that is not one of its `@dasync.raises` types "
        "(a declared one is a 422 problem of its own)",
        error=True,
    ),
    Problem(
        "unavailable",
        503,
        "The gateway cannot reach the services",
        "NATS is unreachable; try again later",
    ),
)
"""Every problem the gateway answers with but declared errors, which are 422 problems
typed ``error_problem_type(<module:qualname>)`` with the exception members."""

AUTH_PROBLEMS: tuple[str, ...] = ("unauthorized", "forbidden")
"""Answered only when a security scheme is configured."""


@dataclass(frozen=True)
class Route:
    """One route of the gateway: what it answers with on success, and which problems."""

    method: str
    path: str
    name: str
    summary: str
    success: tuple[int, ...]
    problems: tuple[str, ...]


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/{service}/{method}",
        "call",
        "Start a routine; its result if it finishes within the wait",
        (200, 202),
        (
            "invalid-json",
            "invalid-arguments",
            "unknown-service",
            "unknown-method",
            "routine-cancelled",
            "unsupported-media-type",
            "idempotency-key-reused",
            "routine-failed",
            "unavailable",
        ),
    ),
    Route(
        "POST",
        "/{service}/events/{event}",
        "fire",
        "Fire an event the contract lets outsiders fire; the service publishes it",
        (202,),
        (
            "invalid-event",
            "invalid-arguments",  # a malformed Idempotency-Key header, as on a call
            "unknown-service",
            "unknown-event",
            "unsupported-media-type",
            "unavailable",
        ),
    ),
    Route(
        "GET",
        ROUTINE_PATH,
        "status",
        "A routine's status, and its result or error once it finished",
        (200,),
        ("unknown-routine", "unavailable"),
    ),
    Route(
        "DELETE",
        ROUTINE_PATH,
        "cancel",
        "Cancel a routine (its status says when it has stopped)",
        (202,),
        ("unknown-routine", "unavailable"),
    ),
    Route(
        "POST",
        SIGNAL_PATH,
        "signal",
        "Send a routine a signal (its value is the body); the routine takes it at "
        "`await dasync.signal(name, type)`",
        (202,),
        (
            "invalid-value",
            "invalid-arguments",  # a malformed Idempotency-Key header, as on a call
            "unknown-routine",
            "routine-finished",
            "unsupported-media-type",
            "unavailable",
        ),
    ),
    Route(
        "GET",
        PROGRESS_PATH,
        "progress",
        "The routine's progress updates as Server-Sent Events, until it finishes",
        (200,),
        ("unknown-routine", "unavailable"),
    ),
    Route("GET", OPENAPI_PATH, "openapi", "This OpenAPI document", (200,), ()),
)

SECURITY_SCHEMES: Mapping[str, tuple[str, dict[str, Any]]] = {
    "bearer": (
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "A token in `Authorization: Bearer <token>`, checked by the "
            "gateway's authentication hook.",
        },
    ),
    "api-key": (
        "apiKeyAuth",
        {
            "type": "apiKey",
            "in": "header",
            "name": API_KEY_HEADER,
            "description": f"A key in the `{API_KEY_HEADER}` header, checked by the "
            "gateway's authentication hook.",
        },
    ),
}
"""``--security`` choice -> (component name, OpenAPI security scheme)."""
