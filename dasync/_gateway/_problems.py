"""RFC 9457 problem details, as the table in ``codegen._http`` defines them.

Every error answer is ``application/problem+json``. The gateway's own errors
are the table's ``PROBLEMS`` (``HttpProblem(key, detail)``); errors HTTP itself
defines (an unknown path, a method a path does not have, a body too large) are
``about:blank`` problems, which RFC 9457 reserves for "nothing more than the
status says". A routine's exception becomes the problem a Python caller's
``except`` would see: its class, message, args and fields, read straight from
the failure payload (tagged JSON, see ``dasync._failures``) without rebuilding
the exception. An exception of a class the method declares (``@dasync.raises``)
is a problem of its own type, ``urn:dasync:error:<module:qualname>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson

from .._contract import MethodSpec
from ..codegen import _http as http

__all__ = [
    "CANCELLED",
    "HttpProblem",
    "about_blank",
    "body",
    "failure_problem",
]

CANCELLED = "asyncio.exceptions:CancelledError"
"""How a failure payload names ``asyncio.CancelledError``."""

_BY_KEY = {p.key: p for p in http.PROBLEMS}


def body(problem: Mapping[str, Any]) -> bytes:
    return orjson.dumps(problem)


class HttpProblem(Exception):
    """Raised by a handler to answer with the table's problem ``key``."""

    def __init__(
        self,
        key: str,
        detail: str,
        *,
        instance: str | None = None,
        headers: Mapping[str, str] | None = None,
        members: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        spec = _BY_KEY[key]
        self.status = spec.status
        self.headers = dict(headers or {})
        self.problem: dict[str, Any] = {
            "type": spec.type,
            "title": spec.title,
            "status": spec.status,
            "detail": detail,
        }
        if instance is not None:
            self.problem["instance"] = instance
        self.problem.update(members or {})


_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}
"""RFC 9110's names where Python's ``http.HTTPStatus`` (before 3.13) has the older ones."""


def about_blank(status: int, detail: str) -> dict[str, Any]:
    """A problem that says no more than its HTTP status (RFC 9457, section 4.2.1)."""
    return {
        "type": "about:blank",
        "title": _PHRASES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }


def failure_problem(method: MethodSpec, payload: bytes, instance: str) -> dict[str, Any]:
    """The problem a routine's failure payload stands for: ``routine-cancelled`` for a
    cancellation, the declared error's own problem for a ``@dasync.raises`` class,
    else ``routine-failed``; each with the exception's members."""
    root = _root(payload)
    type_path = root.get("type")
    if not isinstance(type_path, str):
        type_path = "dasync._errors:MalformedMessage"
    message = root.get("message")
    message = message if isinstance(message, str) else ""
    if type_path == CANCELLED:
        spec = _BY_KEY["routine-cancelled"]
        return _spec_problem(spec, "the routine was cancelled before it finished", instance)
    declared = {f"{c.__module__}:{c.__qualname__}": c for c in method.raises}
    qualname = type_path.partition(":")[2] or type_path
    detail = f"{qualname}: {message}" if message else qualname
    if type_path in declared:
        problem: dict[str, Any] = {
            "type": http.error_problem_type(type_path),
            "title": declared[type_path].__qualname__,
            "status": http.DECLARED_ERROR_STATUS,
            "detail": detail,
            "instance": instance,
        }
    else:
        problem = _spec_problem(_BY_KEY["routine-failed"], detail, instance)
    args = root.get("args")
    state = root.get("state")
    fields = root.get("fields")
    problem.update(
        exception=type_path,
        message=message,
        args=args if isinstance(args, list) else [],
        fields={
            **(state if isinstance(state, dict) else {}),
            **(fields if isinstance(fields, dict) else {}),
        },
    )
    return problem


def _spec_problem(spec: http.Problem, detail: str, instance: str) -> dict[str, Any]:
    return {
        "type": spec.type,
        "title": spec.title,
        "status": spec.status,
        "detail": detail,
        "instance": instance,
    }


def _root(payload: bytes) -> dict[str, Any]:
    """The root exception object of a failure payload (format 2, or format 1's one object);
    an unreadable payload reads as an exception saying so."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        exceptions = data.get("exceptions")
        if isinstance(exceptions, list) and exceptions and isinstance(exceptions[0], dict):
            return exceptions[0]
        if "v" not in data and "type" in data:
            return data
    return {
        "type": "dasync._errors:MalformedMessage",
        "message": "the routine's failure payload is not one dasync can read",
    }
