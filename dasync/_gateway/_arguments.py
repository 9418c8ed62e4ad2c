"""A POST body -> the arguments payload a start carries, checked at the edge.

The service checks its arguments anyway, but a wrong one would then be a
failed routine; here it is a ``400`` naming each wrong argument before
anything starts. The body is checked by the method's own codec
(``_codec.decode_args``, so exactly what a worker would accept) and encoded
again (``encode_args``): the payload is canonical, so two bodies meaning the
same arguments (other key order, spacing, defaults left out) journal the same
bytes, which is what ``Idempotency-Key`` compares.
"""

from __future__ import annotations

from typing import Any

import orjson

from .._codec import _args_wire, _type_wire, decode_args, decode_event, encode_args, encode_event
from .._contract import MethodSpec
from .._errors import InvalidArguments, MalformedMessage
from .._event import EventSpec
from ._problems import HttpProblem

__all__ = ["JSON_TYPES", "arguments_payload", "event_payload", "is_json"]

JSON_TYPES = ("application/json",)
"""Media types a body may have (and any ``application/<x>+json``); none at all is taken
as JSON too, so a client that sends a bare body is understood."""


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def arguments_payload(method: MethodSpec, body: bytes, content_type: str | None) -> bytes:
    """The canonical arguments payload of ``body``; ``HttpProblem`` if it is not one."""
    if not is_json(content_type):
        raise HttpProblem(
            "unsupported-media-type",
            f"the body is {content_type}; send the arguments as application/json",
        )
    if not body.strip():
        body = b"{}"  # no body: no arguments (a method whose parameters all have defaults)
    try:
        values = decode_args(method, body)
        return encode_args(method, values)
    except MalformedMessage:
        raise _not_an_object(body) from None
    except InvalidArguments as exc:
        if not _is_object(body):
            raise _not_an_object(body) from None
        raise HttpProblem(
            "invalid-arguments",
            str(exc),
            members={"invalid-params": _invalid_params(method, body)},
        ) from None


def event_payload(event: EventSpec, body: bytes, content_type: str | None) -> bytes:
    """The canonical payload of ``event`` in ``body`` (the payload itself, any JSON value of
    the event's type); ``HttpProblem`` if it is not one."""
    if not is_json(content_type):
        raise HttpProblem(
            "unsupported-media-type",
            f"the body is {content_type}; send the event's payload as application/json",
        )
    try:
        return encode_event(event, decode_event(event, body))
    except (MalformedMessage, InvalidArguments) as exc:
        params = _errors_of(lambda: _type_wire(event.payload).validator.validate_json(body))
        raise HttpProblem(
            "invalid-event",
            str(exc),
            members={"invalid-params": params or [{"name": "(payload)", "reason": str(exc)}]},
        ) from None


def _errors_of(validate: Any) -> list[dict[str, str]]:
    try:
        validate()
    except Exception as exc:  # pydantic's ValidationError; only _codec imports pydantic
        errors = getattr(exc, "errors", None)
        if callable(errors):
            return [
                {
                    "name": ".".join(str(p) for p in e.get("loc", ())) or "(payload)",
                    "reason": str(e.get("msg", "invalid")),
                }
                for e in errors()
            ]
    return []


def _is_object(body: bytes) -> bool:
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False


_KINDS = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _not_an_object(body: bytes) -> HttpProblem:
    try:
        value: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        why = f"it is not JSON ({exc})"
    else:
        why = f"it is {_KINDS.get(type(value), 'a number')}, not an object"
    return HttpProblem(
        "invalid-json",
        f"the body must be a JSON object of the arguments keyed by parameter name; {why}",
    )


def _invalid_params(method: MethodSpec, body: bytes) -> list[dict[str, str]]:
    """Each wrong argument, ``{"name": <dotted path into the body>, "reason": ...}``, from the
    codec's own validator (the structured form of ``InvalidArguments``' message)."""
    try:
        _args_wire(method).validator.validate_json(body)
    except Exception as exc:  # pydantic's ValidationError; only _codec imports pydantic
        errors = getattr(exc, "errors", None)
        if not callable(errors):
            return []
        found = []
        for error in errors():
            name = ".".join(str(part) for part in error.get("loc", ())) or "(arguments)"
            kind = error.get("type")
            if kind == "missing":
                reason = "missing: the method requires it"
            elif kind == "extra_forbidden":
                reason = "unexpected: the method has no such parameter"
            else:
                reason = str(error.get("msg", "invalid"))
            found.append({"name": name, "reason": reason})
        return found
    return []
