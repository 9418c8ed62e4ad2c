"""Type-directed encoding of call arguments, results and events, and their JSON Schemas.

A contract's annotations say what each payload holds, so pydantic checks and
encodes it (the only module that imports pydantic). Arguments travel as one
JSON object keyed by parameter name, results and events as the JSON of their
annotated type. *Wire rules* make the documented types round-trip exactly:
inf/nan as ``"Infinity"``/``"-Infinity"``/``"NaN"``, bytes as base64, ints of
any size as JSON numbers, a ``ZoneInfo`` datetime as RFC 9557 text
(``2026-03-29T01:30:00+01:00[Europe/Rome]``; fixed offsets decode as
``datetime.timezone``). They are applied by rewriting the core schema pydantic
generates (public ``pydantic_core`` API, no patching), so they reach nested
containers, unions, dataclasses and TypedDicts, but not the inside of pydantic
models and pydantic dataclasses, which keep their own config. In a ``str |
float`` union inf and nan come back as the ``str``.

Exceptions have no annotation: ``_failures`` encodes them (re-exported here).
"""

from __future__ import annotations

import inspect
import re
import typing
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, NotRequired
from zoneinfo import ZoneInfo

import orjson
import pydantic
from pydantic_core import (
    CoreConfig,
    PydanticSerializationError,
    PydanticSerializationUnexpectedValue,
    SchemaSerializer,
    SchemaValidator,
    TzInfo,
    core_schema,
)
from typing_extensions import TypedDict

from ._contract import MethodSpec
from ._errors import ContractError, InvalidArguments, MalformedMessage
from ._event import EventSpec
from ._failures import decode_failure, encode_failure

__all__ = [
    "args_json_schema",
    "check_method_types",
    "decode_args",
    "decode_failure",
    "decode_json",
    "decode_result",
    "encode_args",
    "encode_event",
    "encode_failure",
    "encode_json",
    "encode_result",
    "encode_value",
    "decode_value",
    "result_json_schema",
]


_MISSING: Any = object()


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value)


def decode_json(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"payload is not valid JSON: {exc}") from None


# --- wire rules for typed payloads ------------------------------------------------------------

_WIRE_CONFIG: CoreConfig = {
    "ser_json_inf_nan": "strings",
    "ser_json_bytes": "base64",
    "val_json_bytes": "base64",
}
_NOT_SCHEMAS = frozenset(
    {
        "metadata",
        "cls",
        "default",
        "expected",
        "members",
        "config",
        "ref",
        "schema_ref",
        "function",
        "generic_origin",
        "custom_error_context",
        "validation_alias",
    }
)
"""Core-schema keys whose values are user data or settings, never schemas to rewrite."""
_ZONE_KEY = re.compile(r"[A-Za-z0-9_+\-]{1,64}(/[A-Za-z0-9_+\-]{1,64}){0,3}")


class _Wire:
    """A type's validator and serializer under the wire rules; the adapter gives JSON Schema."""

    __slots__ = ("adapter", "serializer", "validator")

    def __init__(self, adapter: pydantic.TypeAdapter[Any]) -> None:
        self.adapter = adapter
        schema = _wire_schema(adapter.core_schema)
        self.validator = SchemaValidator(schema, _WIRE_CONFIG)
        self.serializer = SchemaSerializer(schema, _WIRE_CONFIG)

    def dump_json(self, value: Any) -> bytes:
        return self.serializer.to_json(value, by_alias=True, round_trip=True)


def _wire_schema(node: Any) -> Any:
    """A copy of a core schema with the wire rules: configs overridden, datetimes given a
    serializer and a validator unless the user gave them their own."""
    if isinstance(node, list | tuple):
        return type(node)(_wire_schema(item) for item in node)
    if not isinstance(node, dict):
        return node
    out = {k: v if k in _NOT_SCHEMAS else _wire_schema(v) for k, v in node.items()}
    if isinstance(out.get("config"), dict):
        out["config"] = {**out["config"], **_WIRE_CONFIG}
    if out.get("type") == "datetime" and "serialization" not in out:
        return core_schema.no_info_wrap_validator_function(
            _validate_datetime,
            out,
            serialization=core_schema.wrap_serializer_function_ser_schema(
                _serialize_datetime, when_used="json"
            ),
        )
    return out


def _serialize_datetime(value: Any, handler: core_schema.SerializerFunctionWrapHandler) -> Any:
    if not isinstance(value, datetime):
        raise PydanticSerializationUnexpectedValue(f"expected datetime, got {type(value).__name__}")
    text = handler(value)
    zone = getattr(value, "tzinfo", None)
    key = zone.key if isinstance(zone, ZoneInfo) else None
    if key and isinstance(text, str):
        offset = value.utcoffset()
        if offset is not None and offset.total_seconds() % 60:
            # pydantic writes offsets in whole minutes; an old local time whose offset has
            # seconds needs them, or a repeated wall time loses its fold
            text = value.isoformat()
        return f"{text}[{key}]"
    return text


def _validate_datetime(value: Any, handler: core_schema.ValidatorFunctionWrapHandler) -> Any:
    if isinstance(value, str) and value.endswith("]") and "[" in value:
        text, _, key = value[:-1].rpartition("[")
        try:
            parsed = datetime.fromisoformat(text)  # keeps an offset's seconds
        except ValueError:
            parsed = handler(text)
        return _in_zone(parsed, _zone(key.removeprefix("!")))
    result = handler(value)
    if isinstance(result, datetime) and isinstance(result.tzinfo, TzInfo):
        offset = result.utcoffset() or timedelta(0)
        result = result.replace(tzinfo=timezone(offset) if offset else UTC)
    return result


def _zone(key: str) -> ZoneInfo:
    if not _ZONE_KEY.fullmatch(key):
        raise ValueError(f"{key[:80]!r} is not an IANA time zone name")
    try:
        return ZoneInfo(key)
    except Exception:  # ZoneInfoNotFoundError is a KeyError, which pydantic would not wrap
        raise ValueError(f"unknown time zone {key!r}") from None


def _in_zone(value: datetime, zone: ZoneInfo) -> datetime:
    """The wall time of ``value`` in ``zone``, with the fold its offset selects; an offset
    that the zone never had at that time wins (RFC 9557: the instant is kept)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=zone)
    wall = value.replace(tzinfo=None)
    for exact in (True, False):
        for fold in (0, 1):
            candidate = wall.replace(tzinfo=zone, fold=fold)
            offset = candidate.utcoffset()
            if (offset if exact else _whole_minutes(offset)) == value.utcoffset():
                return candidate
    return value.astimezone(zone)


def _whole_minutes(offset: timedelta | None) -> timedelta | None:
    """An offset as ISO 8601 text keeps it (pydantic drops the seconds of old local times)."""
    if offset is None:
        return None
    return timedelta(minutes=int(offset.total_seconds() / 60))


@lru_cache(maxsize=4096)
def _args_wire(method: MethodSpec) -> _Wire:
    fields: dict[str, Any] = {
        p.name: (NotRequired[p.annotation] if p.has_default else p.annotation)
        for p in method.params
    }
    make_typed_dict: Any = TypedDict
    typed = make_typed_dict(f"{method.service}_{method.name}_args", fields)
    typed.__pydantic_config__ = pydantic.ConfigDict(extra="forbid", **_WIRE_CONFIG)  # type: ignore[typeddict-item]
    return _Wire(pydantic.TypeAdapter(typed))


@lru_cache(maxsize=4096)
def _type_wire(annotation: Any) -> _Wire:
    try:  # the config only changes the JSON Schema (bytes: base64url); _Wire applies the rules
        adapter = pydantic.TypeAdapter(annotation, config=pydantic.ConfigDict(**_WIRE_CONFIG))  # type: ignore[typeddict-item]
    except pydantic.PydanticUserError as exc:
        if exc.code != "type-adapter-config-unused":
            raise
        adapter = pydantic.TypeAdapter(annotation)  # a model, dataclass or TypedDict
    return _Wire(adapter)


def check_method_types(method: MethodSpec) -> list[str]:
    """Problems that would stop ``method``'s arguments or result from being encoded."""
    problems = []
    for p in method.params:
        problem = _type_problem(p.annotation)
        if problem:
            problems.append(
                f"{method.qualname}: parameter {p.name!r} ({_type_name(p.annotation)}) "
                f"cannot be encoded: {problem}"
            )
    if not problems:
        try:
            _args_wire(method)
        except Exception as exc:
            problems.append(f"{method.qualname}: the parameters cannot be encoded: {_why(exc)}")
    problem = _type_problem(method.returns)
    if problem:
        problems.append(
            f"{method.qualname}: the return type {_type_name(method.returns)} "
            f"cannot be encoded: {problem}"
        )
    return problems


def _type_problem(annotation: Any) -> str | None:
    try:
        _type_wire(annotation)
    except Exception as exc:
        return _why(exc)
    return None


def _why(exc: Exception) -> str:
    """What to change, for an error pydantic raised while building a type's schema."""
    if isinstance(exc, pydantic.PydanticUndefinedAnnotation):
        return f"the annotation {exc.name!r} is not defined; import it or define it first"
    if isinstance(exc, pydantic.PydanticUserError):
        if exc.code == "typed-dict-version":
            return (
                "typing.TypedDict cannot be validated on Python < 3.12; "
                "use typing_extensions.TypedDict instead"
            )
        if exc.code == "schema-for-unknown-type":
            return (
                f"{exc.message.splitlines()[0]} Use builtins, containers, dataclasses, "
                "TypedDict, enums, UUID, datetime, Decimal or pydantic models, or give the "
                "class a __get_pydantic_core_schema__"
            )
        return exc.message.splitlines()[0]
    return f"{type(exc).__name__}: {exc}"


_POSITIONAL: dict[int, tuple[MethodSpec, tuple[str, ...] | None, int]] = {}
"""Per method (by id, with the spec itself, so that a reused id is noticed): its parameter
names and how many have no default when every parameter may be given by position (else
None)."""
_BY_POSITION = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _positional(method: MethodSpec) -> tuple[tuple[str, ...] | None, int]:
    known = _POSITIONAL.get(id(method))
    if known is None or known[0] is not method:
        names = None
        if all(p.kind in _BY_POSITION for p in method.params):
            names = tuple(p.name for p in method.params)
        required = sum(1 for p in method.params if not p.has_default)
        known = _POSITIONAL[id(method)] = (method, names, required)
    return known[1], known[2]


def bind_args(method: MethodSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Bind a Python call to the contract's parameters (without ``self``).

    A call by position only, to parameters that all take positions, binds without
    ``inspect`` (every proxied call passes here); anything else as ``Signature.bind``."""
    if not kwargs:
        names, required = _positional(method)
        if names is not None and required <= len(args) <= len(names):
            return dict(zip(names, args, strict=False))
    try:
        bound = method.signature.bind(None, *args, **kwargs)
    except TypeError as exc:
        raise InvalidArguments(f"{method.qualname}(): {exc}") from None
    values = dict(bound.arguments)
    values.pop(next(iter(method.signature.parameters)), None)  # self
    return values


def encode_args(method: MethodSpec, values: dict[str, Any]) -> bytes:
    """Validate bound arguments against their annotations and encode them."""
    wire = _args_wire(method)
    try:
        return wire.dump_json(wire.validator.validate_python(values))
    except pydantic.ValidationError as exc:
        raise InvalidArguments(_describe(method, exc)) from None
    except PydanticSerializationError as exc:
        raise InvalidArguments(f"{method.qualname}(): arguments cannot be encoded: {exc}") from None


def decode_args(method: MethodSpec, data: bytes) -> dict[str, Any]:
    """Decode and type-check an arguments payload; the message names what was wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessage(f"{method.qualname}: arguments payload must be bytes")
    try:
        values: dict[str, Any] = _args_wire(method).validator.validate_json(data)
    except pydantic.ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise MalformedMessage(
                f"{method.qualname}: arguments payload is not valid JSON ({exc.errors()[0]['msg']})"
            ) from None
        raise InvalidArguments(_describe(method, exc)) from None
    for p in method.params:
        if p.has_default and p.name not in values:
            values[p.name] = p.default
    return values


def encode_result(method: MethodSpec, value: Any) -> bytes:
    """Encode a return value as its annotated type.

    The annotation wins: a subclass instance returned for a class annotation
    reaches the caller as the annotated class, built from that class's fields
    (a union that names the subclass keeps it).
    """
    wire = _type_wire(method.returns)
    try:
        return wire.dump_json(wire.validator.validate_python(value))
    except (pydantic.ValidationError, PydanticSerializationError) as exc:
        why = exc.errors()[0]["msg"] if isinstance(exc, pydantic.ValidationError) else str(exc)
        raise ContractError(
            f"{method.qualname} returned {type(value).__name__!s}, which does not match its "
            f"annotated return type {_type_name(method.returns)}: {why}"
        ) from None


def decode_result(method: MethodSpec, data: bytes) -> Any:
    try:
        return _type_wire(method.returns).validator.validate_json(data)
    except pydantic.ValidationError as exc:
        raise MalformedMessage(
            f"{method.qualname}: reply does not match return type "
            f"{_type_name(method.returns)}: {exc.errors()[0]['msg']}"
        ) from None


def encode_event(event: EventSpec, value: Any) -> bytes:
    """Validate an event payload against its declared type and encode it."""
    wire = _type_wire(event.payload)
    try:
        return wire.dump_json(wire.validator.validate_python(value))
    except pydantic.ValidationError as exc:
        raise _mismatch(f"event {event.topic}: payload", event.payload, exc, value) from None
    except PydanticSerializationError as exc:
        raise InvalidArguments(f"event {event.topic}: payload cannot be encoded: {exc}") from None


def decode_event(event: EventSpec, data: bytes) -> Any:
    """Decode and type-check an event payload from the wire (a fire request from outside)."""
    try:
        return _type_wire(event.payload).validator.validate_json(data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        if err["type"] == "json_invalid":
            raise MalformedMessage(
                f"event {event.topic}: payload is not valid JSON ({err['msg']})"
            ) from None
        raise _mismatch(f"event {event.topic}: payload", event.payload, exc) from None


def encode_value(value: Any, annotation: Any = None, *, what: str = "value") -> bytes:
    """``value`` as the wire JSON of ``annotation`` (default: its own type), e.g. a signal's
    payload or a progress update, which no contract annotates."""
    kind: Any = type(value) if annotation is None else annotation
    wire = _type_wire(kind)
    try:
        return wire.dump_json(wire.validator.validate_python(value))
    except (pydantic.ValidationError, PydanticSerializationError) as exc:
        why = exc.errors()[0]["msg"] if isinstance(exc, pydantic.ValidationError) else str(exc)
        raise InvalidArguments(f"{what}: {_short(value)} cannot be encoded: {why}") from None


def decode_value(annotation: Any, data: bytes, *, what: str = "value") -> Any:
    """Wire JSON read as ``annotation``; ``InvalidArguments`` names what did not match."""
    try:
        return _type_wire(annotation).validator.validate_json(data)
    except pydantic.ValidationError as exc:
        raise _mismatch(what, annotation, exc) from None


def _mismatch(
    what: str, annotation: Any, exc: pydantic.ValidationError, value: Any = _MISSING
) -> InvalidArguments:
    """``InvalidArguments`` naming what did not match ``annotation``, the field and why."""
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"])
    at = f", field {where!r}" if where else ""
    got = err.get("input") if value is _MISSING else value
    return InvalidArguments(
        f"{what} does not match {_type_name(annotation)}{at}: {err['msg']} (got {_short(got)})"
    )


def args_json_schema(method: MethodSpec) -> dict[str, Any]:
    """JSON Schema of the arguments object of ``method`` (used by codegen and `dasync call`)."""
    schema: dict[str, Any] = _args_wire(method).adapter.json_schema()
    schema["title"] = f"{method.qualname} arguments"
    return schema


def result_json_schema(method: MethodSpec) -> dict[str, Any]:
    schema: dict[str, Any] = _type_wire(method.returns).adapter.json_schema()
    return schema


def _describe(method: MethodSpec, exc: pydantic.ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(arguments)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unexpected argument {loc!r}")
        elif err["type"] == "missing":
            lines.append(f"missing argument {loc!r}")
        else:
            lines.append(f"argument {loc!r}: {err['msg']} (got {_short(err.get('input'))})")
    return f"{method.qualname}(): " + "; ".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(annotation: Any) -> str:
    name: str = getattr(annotation, "__name__", None) or typing._type_repr(annotation)
    return name
