"""JSON Schemas of failure payloads and of the error types a contract declares.

A callee's exception travels as ``{"v": 2, "exceptions": [root, ...]}``
(``dasync._failures``), its values as tagged JSON (``dasync._values``), not
through pydantic: no annotation describes them. So these schemas are written
here from those two formats, and the typed part of a declared error (the
fields of an exception dataclass, the annotated parameters of its
``__init__``) is mapped to the tagged JSON each field is written as: an ``int``
is a JSON integer or ``{"$int": "..."}``, a ``str`` a string or ``{"$str":
...}``, a type tagged JSON has no form for (``Decimal``, a dataclass...) its
``{"$repr": ...}``, and any value may become its ``$repr`` when a payload is
over its size budget.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

from .._failures import MAX_EXCEPTIONS

__all__ = [
    "EXCEPTION",
    "FAILURE",
    "TAG_BODIES",
    "VALUE",
    "error_fields",
    "error_schema",
    "exception_schema",
    "failure_schema",
    "failure_schemas",
    "type_path",
]

Ref = Callable[[str], dict[str, Any]]
"""Makes the ``$ref`` to a named schema of the document being written."""

VALUE = "dasync.Value"
EXCEPTION = "dasync.Exception"
FAILURE = "dasync.Failure"
_REPR = "dasync.Repr"
TAG_BODIES: dict[str, dict[str, Any]] = {
    "$bytes": {"type": "string", "contentEncoding": "base64"},
    "$str": {"type": "string", "contentEncoding": "base64"},
    "$tuple": {"type": "array", "items": "value"},
    "$set": {"type": "array", "items": "value"},
    "$frozenset": {"type": "array", "items": "value"},
    "$dict": {
        "type": "array",
        "items": {"type": "array", "prefixItems": ["value", "value"], "minItems": 2, "maxItems": 2},
    },
    "$int": {"type": "string", "pattern": "^-?[0-9]+$"},
    "$float": {"enum": ["inf", "-inf", "nan"]},
    "$exc": {"type": "integer", "minimum": 0},
    "$repr": {"type": "string"},
}
"""The body of each tag of ``dasync._values`` (``"value"``: any tagged value); a test
checks that every tag the decoder knows is here."""
_TAG_DOCS = {
    "$bytes": "bytes, base64 (standard alphabet, padded)",
    "$str": "a str with lone surrogates, as base64 of its UTF-8 (surrogatepass)",
    "$tuple": "a tuple",
    "$set": "a set, items in a stable order",
    "$frozenset": "a frozenset, items in a stable order",
    "$dict": "a dict with a key that is no str or starts with '$', as [key, value] pairs",
    "$int": "an int outside [-2**63, 2**64)",
    "$float": "a float JSON has no number for",
    "$exc": "the index of another exception of the same payload",
    "$repr": "any other value, as its repr (decoded as that str)",
}


def type_path(cls: type) -> str:
    """How a failure payload names a class: ``module:qualname``."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _tag(tag: str, ref: Ref) -> dict[str, Any]:
    body = _resolve(TAG_BODIES[tag], ref)
    return {
        "title": tag,
        "type": "object",
        "description": _TAG_DOCS[tag],
        "properties": {tag: body},
        "required": [tag],
        "additionalProperties": False,
    }


def _resolve(template: Any, ref: Ref) -> Any:
    if template == "value":
        return ref(VALUE)
    if isinstance(template, dict):
        return {k: _resolve(v, ref) for k, v in template.items()}
    if isinstance(template, list):
        return [_resolve(v, ref) for v in template]
    return template


def failure_schemas(ref: Ref) -> dict[str, dict[str, Any]]:
    """The named schemas every failure payload uses: any tagged value, an exception
    object, the payload."""
    plain_object = {
        "type": "object",
        "propertyNames": {"pattern": "^([^$]|$)"},
        "additionalProperties": ref(VALUE),
    }
    value = {
        "title": "tagged JSON value",
        "description": "A value of an exception (an argument, an attribute, a field): plain "
        "JSON, or an object of one key starting with '$' for what JSON lacks.",
        "anyOf": [
            {"type": ["null", "boolean", "number", "string"]},
            {"type": "array", "items": ref(VALUE)},
            plain_object,
            *(_tag(tag, ref) for tag in sorted(TAG_BODIES)),
        ],
    }
    return {
        VALUE: value,
        _REPR: _tag("$repr", ref),
        EXCEPTION: exception_schema(ref),
        FAILURE: failure_schema(ref, None),
    }


def exception_schema(
    ref: Ref,
    *,
    name: str | None = None,
    state: dict[str, Any] | None = None,
    title: str = "exception",
    description: str | None = None,
) -> dict[str, Any]:
    """One exception of a failure payload; ``name`` (``module:qualname``) and ``state``
    (the schema of its attributes) narrow it to one declared error type."""
    links = {"type": "integer", "minimum": 0, "maximum": MAX_EXCEPTIONS - 1}
    schema: dict[str, Any] = {
        "title": title,
        "type": "object",
        "properties": {
            "type": {"const": name}
            if name
            else {
                "type": "string",
                "pattern": "^[^:]+:.+$",
                "description": "the class, as module:qualname",
            },
            "message": {"type": "string", "description": "str() of the exception"},
            "args": {"type": "array", "items": ref(VALUE)},
            "state": state or {"type": "object", "additionalProperties": ref(VALUE)},
            "fields": {
                "type": "object",
                "description": "fields builtin exceptions keep outside args (OSError.errno...)",
                "additionalProperties": ref(VALUE),
            },
            "exceptions": {"type": "array", "items": links, "description": "a group's members"},
            "cause": links,
            "context": links,
            "suppress_context": {"const": True},
            "notes": {"type": "array", "items": ref(VALUE)},
            "traceback": {"type": "string", "description": "the callee's frames"},
        },
        "required": ["type", "message"],
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def failure_schema(ref: Ref, errors: list[str] | None) -> dict[str, Any]:
    """A failure payload; with ``errors`` (names of declared error schemas) its root
    exception is described as one of them, or any other exception."""
    root: dict[str, Any] = ref(EXCEPTION)
    if errors:
        root = {"anyOf": [*(ref(e) for e in errors), ref(EXCEPTION)]}
    return {
        "title": "failure",
        "description": "The exception a routine raised, with the exceptions linked to it "
        "(cause, context, group members); the root first.",
        "type": "object",
        "properties": {
            "v": {"const": 2},
            "exceptions": {
                "type": "array",
                "prefixItems": [root],
                "items": ref(EXCEPTION),
                "minItems": 1,
                "maxItems": MAX_EXCEPTIONS,
            },
        },
        "required": ["v", "exceptions"],
        "additionalProperties": False,
    }


def error_fields(cls: type[BaseException]) -> tuple[dict[str, Any], list[str]]:
    """``({field: annotation}, required)``: the attributes an exception class declares, from
    its dataclass fields, else the annotated parameters of its ``__init__``."""
    if dataclasses.is_dataclass(cls):
        try:
            hints = typing.get_type_hints(cls)
        except Exception:
            hints = {}
        fields = {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}
        return fields, list(fields)
    init = vars_init(cls)
    if init is None:
        return {}, []
    try:
        hints = typing.get_type_hints(init)
        params = list(inspect.signature(init).parameters.values())[1:]
    except Exception:
        return {}, []
    fields = {
        p.name: hints[p.name]
        for p in params
        if p.name in hints and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    return fields, []  # an __init__ may keep its parameters under other names


def vars_init(cls: type) -> Any:
    """The nearest ``__init__`` written in Python between ``cls`` and ``BaseException``."""
    for klass in cls.__mro__:
        if klass is BaseException or klass is Exception:
            return None
        init = vars(klass).get("__init__")
        if inspect.isfunction(init):
            return init
    return None


def error_schema(cls: type[BaseException], ref: Ref) -> dict[str, Any]:
    """The exception object a failure payload holds for ``cls``."""
    fields, required = error_fields(cls)
    state: dict[str, Any] = {
        "type": "object",
        "properties": {name: tagged_schema(hint, ref) for name, hint in fields.items()},
        "additionalProperties": ref(VALUE),
    }
    if required:
        state["required"] = required
    return exception_schema(
        ref,
        name=type_path(cls),
        state=state,
        title=cls.__qualname__,
        description=inspect.getdoc(cls) if cls.__doc__ else None,
    )


def tagged_schema(annotation: Any, ref: Ref) -> dict[str, Any]:
    """What the tagged JSON of a value of type ``annotation`` can be (or its ``$repr``)."""
    plain = _plain(annotation, ref)
    return {"anyOf": [*plain, ref(_REPR)]} if plain else ref(_REPR)


def _tag_of(tag: str, body: dict[str, Any] | None, ref: Ref) -> dict[str, Any]:
    schema = _tag(tag, ref)
    if body is not None:
        schema["properties"][tag] = body
    return schema


def _plain(annotation: Any, ref: Ref) -> list[dict[str, Any]]:
    """The forms other than ``$repr`` (empty: only a repr)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _plain(args[0], ref)
    if annotation is Any:
        return [ref(VALUE)]
    if annotation is None or annotation is type(None):
        return [{"type": "null"}]
    if origin in (typing.Union, types.UnionType):
        return [form for arg in args for form in _plain(arg, ref)]
    if origin is Literal:
        plain = [a for a in args if a is None or type(a) in (bool, int, str)]
        return [{"enum": plain}] if plain else []
    simple: dict[Any, list[dict[str, Any]]] = {
        bool: [{"type": "boolean"}],
        int: [{"type": "integer"}, _tag_of("$int", None, ref)],
        float: [{"type": "number"}, _tag_of("$float", None, ref)],
        str: [{"type": "string"}, _tag_of("$str", None, ref)],
        bytes: [_tag_of("$bytes", None, ref)],
    }
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseException):
        return [_tag_of("$exc", None, ref)]
    item = tagged_schema(args[0], ref) if args else ref(VALUE)
    if origin is list or annotation is list:
        return [{"type": "array", "items": item}]
    if origin in (set, frozenset) or annotation in (set, frozenset):
        tag = "$set" if (origin or annotation) is set else "$frozenset"
        return [_tag_of(tag, {"type": "array", "items": item}, ref)]
    if origin is tuple or annotation is tuple:
        return [_tag_of("$tuple", _tuple_body(args, ref), ref)]
    if origin is dict or annotation is dict:
        value = tagged_schema(args[1], ref) if len(args) == 2 else ref(VALUE)
        plain_object = {
            "type": "object",
            "propertyNames": {"pattern": "^([^$]|$)"},
            "additionalProperties": value,
        }
        return [plain_object, _tag_of("$dict", None, ref)]
    return []  # Decimal, UUID, datetime, a dataclass...: only their repr


def _tuple_body(args: tuple[Any, ...], ref: Ref) -> dict[str, Any]:
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        item = tagged_schema(args[0], ref) if args else ref(VALUE)
        return {"type": "array", "items": item}
    if args == ((),):
        return {"type": "array", "maxItems": 0}
    return {
        "type": "array",
        "prefixItems": [tagged_schema(a, ref) for a in args],
        "items": False,
        "minItems": len(args),
    }
