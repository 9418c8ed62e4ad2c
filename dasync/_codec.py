"""Type-directed encoding of call arguments, results and exceptions.

The only module that imports orjson and pydantic. Arguments travel as one JSON
object keyed by parameter name; results as the JSON of the annotated return
type; exceptions as ``{type, args, message, traceback}`` so that the caller can
rebuild the same class when it can import it.
"""

from __future__ import annotations

import importlib
import os
import traceback as _traceback
import typing
from functools import lru_cache
from typing import Any, NotRequired

import orjson
import pydantic
from typing_extensions import TypedDict

from ._contract import MethodSpec
from ._errors import ContractError, InvalidArguments, MalformedMessage, RemoteError
from ._event import EventSpec

__all__ = [
    "check_method_types",
    "decode_args",
    "decode_failure",
    "decode_json",
    "decode_result",
    "encode_args",
    "encode_failure",
    "encode_json",
    "encode_result",
]


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value)


def decode_json(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"payload is not valid JSON: {exc}") from None


@lru_cache(maxsize=4096)
def _args_adapter(method: MethodSpec) -> pydantic.TypeAdapter[Any]:
    fields: dict[str, Any] = {
        p.name: (NotRequired[p.annotation] if p.has_default else p.annotation)
        for p in method.params
    }
    make_typed_dict: Any = TypedDict
    typed = make_typed_dict(f"{method.service}_{method.name}_args", fields)
    typed.__pydantic_config__ = pydantic.ConfigDict(extra="forbid")
    return pydantic.TypeAdapter(typed)


@lru_cache(maxsize=4096)
def _type_adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(annotation)


def check_method_types(method: MethodSpec) -> list[str]:
    """Problems that would stop ``method``'s arguments or result from being encoded."""
    problems = []
    try:
        _args_adapter(method)
    except pydantic.PydanticSchemaGenerationError as exc:
        problems.append(f"{method.qualname}: a parameter type cannot be encoded ({exc.message})")
    try:
        _type_adapter(method.returns)
    except pydantic.PydanticSchemaGenerationError as exc:
        problems.append(f"{method.qualname}: the return type cannot be encoded ({exc.message})")
    return problems


def bind_args(method: MethodSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Bind a Python call to the contract's parameters (without ``self``)."""
    try:
        bound = method.signature.bind(None, *args, **kwargs)
    except TypeError as exc:
        raise InvalidArguments(f"{method.qualname}(): {exc}") from None
    values = dict(bound.arguments)
    values.pop(next(iter(method.signature.parameters)), None)  # self
    return values


def encode_args(method: MethodSpec, values: dict[str, Any]) -> bytes:
    """Validate bound arguments against their annotations and encode them."""
    adapter = _args_adapter(method)
    try:
        checked = adapter.validate_python(values)
    except pydantic.ValidationError as exc:
        raise InvalidArguments(_describe(method, exc)) from None
    return adapter.dump_json(checked)


def decode_args(method: MethodSpec, data: bytes) -> dict[str, Any]:
    """Decode and type-check an arguments payload; the message names what was wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessage(f"{method.qualname}: arguments payload must be bytes")
    adapter = _args_adapter(method)
    try:
        values: dict[str, Any] = adapter.validate_json(data)
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
    adapter = _type_adapter(method.returns)
    try:
        checked = adapter.validate_python(value)
    except pydantic.ValidationError as exc:
        raise ContractError(
            f"{method.qualname} returned {type(value).__name__!s}, which does not match its "
            f"annotated return type {_type_name(method.returns)}: {exc.errors()[0]['msg']}"
        ) from None
    return adapter.dump_json(checked)


def decode_result(method: MethodSpec, data: bytes) -> Any:
    try:
        return _type_adapter(method.returns).validate_json(data)
    except pydantic.ValidationError as exc:
        raise MalformedMessage(
            f"{method.qualname}: reply does not match return type "
            f"{_type_name(method.returns)}: {exc.errors()[0]['msg']}"
        ) from None


def encode_failure(exc: BaseException) -> bytes:
    """Encode an exception so that the caller can raise the same class.

    Carries the constructor arguments (from ``__reduce__``, which exceptions
    with custom ``__init__`` keep right), the instance attributes that are
    JSON-encodable, and the callee's traceback without dasync's own frames.
    """
    cls = type(exc)
    ctor_args: Any = exc.args
    state: dict[str, Any] = {}
    if isinstance(exc, RemoteError):
        ctor_args = (exc.type_name, exc.message, exc.traceback)
    else:
        reduced = exc.__reduce__()
        if isinstance(reduced, tuple) and len(reduced) >= 2 and reduced[0] is cls:
            ctor_args = reduced[1]
        for key, value in getattr(exc, "__dict__", {}).items():
            if key.startswith("__"):
                continue
            try:
                orjson.dumps(value)
            except TypeError:
                continue
            state[key] = value
    payload = {
        "type": f"{cls.__module__}:{cls.__qualname__}",
        "message": str(exc),
        "args": list(ctor_args),
        "state": state,
        "traceback": _user_traceback(exc),
    }
    return orjson.dumps(payload, default=repr)


def decode_failure(data: bytes) -> BaseException:
    """Rebuild a callee's exception: same class if importable, else ``RemoteError``.

    When the class's constructor does not accept the carried arguments, the
    instance is rebuilt without calling ``__init__`` (args and attributes
    restored), so ``except OutOfStock:`` still matches.
    """
    try:
        payload = orjson.loads(data)
        type_path, message = str(payload["type"]), str(payload.get("message", ""))
        args, tb = list(payload.get("args") or []), str(payload.get("traceback", ""))
        state = dict(payload.get("state") or {})
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return MalformedMessage(f"undecodable failure payload: {bytes(data)[:200]!r}")
    cls = _import_exception(type_path)
    exc: BaseException | None = None
    if cls is not None:
        try:
            exc = cls(*args)
        except Exception:
            exc = _rebuild_without_init(cls, args)
        if exc is not None and state:
            try:
                exc.__dict__.update({k: v for k, v in state.items() if k not in exc.__dict__})
            except AttributeError:
                pass
    if exc is None:
        return RemoteError(type_path.replace(":", "."), message, tb)
    if tb:
        exc.add_note("Remote traceback (from the callee):\n" + tb.rstrip())
    return exc


def _rebuild_without_init(cls: type[BaseException], args: list[Any]) -> BaseException | None:
    try:
        exc = cls.__new__(cls, *args)
        exc.args = tuple(args)
    except Exception:
        return None
    return exc


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without frames from dasync's own modules."""
    frames = [
        f
        for f in _traceback.extract_tb(exc.__traceback__)
        if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR)
    ]
    lines = _traceback.format_list(frames)
    lines += _traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _import_exception(type_path: str) -> type[BaseException] | None:
    module_name, _, qualname = type_path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None


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


def args_json_schema(method: MethodSpec) -> dict[str, Any]:
    """JSON Schema of the arguments object of ``method`` (used by codegen and `dasync call`)."""
    schema: dict[str, Any] = _args_adapter(method).json_schema()
    schema["title"] = f"{method.qualname} arguments"
    return schema


def result_json_schema(method: MethodSpec) -> dict[str, Any]:
    schema: dict[str, Any] = _type_adapter(method.returns).json_schema()
    return schema


def encode_event(event: EventSpec, value: Any) -> bytes:
    """Validate an event payload against its declared type and encode it."""
    adapter = _type_adapter(event.payload)
    try:
        checked = adapter.validate_python(value)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        at = f", field {where!r}" if where else ""
        raise InvalidArguments(
            f"event {event.topic}: payload does not match {_type_name(event.payload)}{at}: "
            f"{err['msg']} (got {_short(value)})"
        ) from None
    return adapter.dump_json(checked)
