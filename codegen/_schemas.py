"""Every JSON Schema of a file's contracts, as one pool of named schemas.

The three documents embed the same pool (``$defs`` of the JSON Schema document,
``components/schemas`` of the AsyncAPI and OpenAPI ones), so a name means the
same thing in each and the compatibility check can read any of them. *Roots*
have dotted names, which pydantic never gives a definition (it turns dots into
``__``): ``<Service>.<method>.arguments`` / ``.result`` / ``.failure`` (only for
a method that declares errors), ``<Service>.<event>.event`` and
``<module>.<qualname>.error``; ``dasync.*`` are the failure format's own.

Arguments are described as the service reads them (pydantic's validation
mode: a field with a default may be left out), results, events and errors as
the codec writes them (serialization mode: defaults are always written), all
under the wire rules (``_wire.WireJsonSchema``). The adapters are the codec's
own, so the schemas cannot drift from what is encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import pydantic

from .._codec import _args_wire, _type_wire
from .._contract import MethodSpec, ServiceSpec
from .._errors import ContractError
from .._event import EventSpec
from ._contracts import Contracts
from ._failure import error_schema, failure_schema, failure_schemas
from ._wire import WireJsonSchema

__all__ = [
    "DEFS",
    "ROLES",
    "Root",
    "SchemaPool",
    "arguments_name",
    "error_name",
    "EXTERNAL",
    "event_name",
    "failure_name",
    "parse_root",
    "result_name",
    "schema_pool",
]

DEFS = "#/$defs/"
"""Where the pool's references point; each document rewrites them to its own place."""

EXTERNAL = "x-dasync-external"
"""Marks the schema of an ``ExternalEvent``'s payload: others than its service write it."""

Role = Literal["arguments", "result", "failure", "event", "error"]
ROLES: tuple[Role, ...] = ("arguments", "result", "failure", "event", "error")
_MEMBER_ROOT = re.compile(r"([^.]+)\.([^.]+)\.(arguments|result|failure|event)")


def arguments_name(method: MethodSpec) -> str:
    return f"{method.service}.{method.name}.arguments"


def result_name(method: MethodSpec) -> str:
    return f"{method.service}.{method.name}.result"


def failure_name(method: MethodSpec) -> str:
    return f"{method.service}.{method.name}.failure"


def event_name(event: EventSpec) -> str:
    return f"{event.service}.{event.name}.event"


def error_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}.error"


@dataclass(frozen=True)
class Root:
    """What a root schema's name says: whose it is and its role."""

    role: Role
    service: str = ""
    member: str = ""
    """The method or event (empty for an error, named by ``error``)."""
    error: str = ""
    """An error root's ``module.qualname``."""


def parse_root(name: str) -> Root | None:
    """The role of a root schema's name; ``None`` for a shared definition."""
    if name.endswith(".error") and name.count(".") >= 2:
        return Root("error", error=name[: -len(".error")])
    match = _MEMBER_ROOT.fullmatch(name)
    if match is None:
        return None
    service, member, role = match.groups()
    return Root(role, service, member)  # type: ignore[arg-type]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": DEFS + name}


@dataclass(frozen=True)
class SchemaPool:
    """Named schemas, sorted by name, referring to each other as ``#/$defs/<name>``."""

    schemas: dict[str, dict[str, Any]]

    def roots(self) -> Iterator[tuple[str, Root]]:
        for name in self.schemas:
            root = parse_root(name)
            if root is not None:
                yield name, root


def schema_pool(contracts: Contracts) -> SchemaPool:
    """Every schema the documents of ``contracts`` refer to."""
    inputs: list[tuple[str, Any, pydantic.TypeAdapter[Any]]] = []
    methods: dict[str, MethodSpec] = {}
    for spec in contracts.services:
        for method in _methods(spec):
            methods[arguments_name(method)] = method
            result = _type_wire(method.returns).adapter
            inputs.append((arguments_name(method), "validation", _args_wire(method).adapter))
            inputs.append((result_name(method), "serialization", result))
        for event in _events(spec):
            inputs.append((event_name(event), "serialization", _type_wire(event.payload).adapter))
    generated, defs = _json_schemas(inputs)
    pool: dict[str, dict[str, Any]] = dict(defs.get("$defs", {}))
    for (name, _mode), schema in generated.items():
        pool[name] = schema
    for name, method in methods.items():
        pool[name] = _arguments(method, pool, contracts.method_doc(method))
        pool[result_name(method)] = _titled(pool[result_name(method)], f"{method.qualname} result")
    errors: dict[str, type[BaseException]] = {}
    for spec in contracts.services:
        for method in _methods(spec):
            for cls in method.raises:
                errors[error_name(cls)] = cls
            if method.raises:
                declared = [error_name(cls) for cls in method.raises]
                schema = failure_schema(_ref, declared)
                schema["title"] = f"{method.qualname} failure"
                pool[failure_name(method)] = schema
        for event in _events(spec):
            pool[event_name(event)] = _titled(pool[event_name(event)], f"{event.topic} event")
            if event.external:  # outsiders write it too (codegen._compat reads this mark)
                pool[event_name(event)] = {**pool[event_name(event)], EXTERNAL: True}
    for name, cls in errors.items():
        pool[name] = error_schema(cls, _ref)
    pool.update(failure_schemas(_ref))
    return SchemaPool({name: pool[name] for name in sorted(pool)})


def _json_schemas(
    inputs: list[tuple[str, Any, pydantic.TypeAdapter[Any]]],
) -> tuple[dict[tuple[str, Any], dict[str, Any]], dict[str, Any]]:
    """pydantic's schemas of ``inputs``, sharing their definitions; a type pydantic cannot
    describe is named with the schema it is in."""
    try:
        return pydantic.TypeAdapter.json_schemas(
            inputs, ref_template=DEFS + "{model}", schema_generator=WireJsonSchema
        )
    except pydantic.PydanticUserError as exc:
        for name, mode, adapter in inputs:
            try:
                adapter.json_schema(mode=mode, schema_generator=WireJsonSchema)
            except pydantic.PydanticUserError as found:
                why = found.message.splitlines()[0]
                raise ContractError(f"{name} cannot be described in JSON Schema: {why}") from None
        raise ContractError(f"the contracts cannot be described in JSON Schema: {exc}") from None


def _methods(spec: ServiceSpec) -> list[MethodSpec]:
    return [spec.methods[name] for name in sorted(spec.methods)]


def _events(spec: ServiceSpec) -> list[EventSpec]:
    return [spec.events[name] for name in sorted(spec.events)]


def _titled(schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {"title": title, **{k: v for k, v in schema.items() if k != "title"}}


def _arguments(
    method: MethodSpec, pool: dict[str, dict[str, Any]], doc: str | None
) -> dict[str, Any]:
    """The arguments root: the codec's arguments TypedDict inlined (its name is the
    codec's own), titled, described by the method's docstring, with each default."""
    schema = pool[arguments_name(method)]
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(DEFS):
        schema = pool.pop(ref[len(DEFS) :])
    schema = _titled(schema, f"{method.qualname} arguments")
    if doc:
        schema["description"] = doc
    properties = schema.get("properties", {})
    for param in method.params:
        prop = properties.get(param.name)
        if param.has_default and isinstance(prop, dict):
            default = _encoded(param.annotation, param.default)
            if default is not _NO_DEFAULT:
                prop["default"] = default
    return schema


_NO_DEFAULT = object()


def _encoded(annotation: Any, value: Any) -> Any:
    """``value`` as the codec writes it for ``annotation`` (as JSON data), if it can."""
    wire = _type_wire(annotation)
    try:
        return orjson.loads(wire.dump_json(wire.validator.validate_python(value)))
    except Exception:
        return _NO_DEFAULT
