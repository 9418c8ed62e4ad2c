"""Is today's contract compatible with the one committed? A diff of JSON Schemas.

Two schema pools (from any of the three documents: they embed the same named
schemas) are compared name by name, and every difference becomes a ``Change``
of a *kind*. Whether a kind breaks anything depends on who reads the schema:

* **arguments** are written by callers and read by the service: the new
  service must accept whatever callers that predate it send (and routines in
  flight already sent), so widening is compatible and narrowing breaks;
* **results**, events and errors are written by the service and read by callers
  and subscribers that predate it: narrowing is compatible, widening breaks.

``RULES`` maps each (kind, where) to its verdict and the reason; it is the
table of docs/specs.md (a test reads that table back). The comparison knows the
JSON Schema pydantic and ``_failure`` write (``$ref``, ``anyOf``/``oneOf``,
``type``, ``enum``/``const``, objects, arrays and tuples, and their bounds),
so a committed document of another shape is compared as far as it goes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from ._refs import COMPONENTS
from ._schemas import DEFS, EXTERNAL, parse_root

__all__ = [
    "RULES",
    "Change",
    "Rule",
    "Verdict",
    "compare",
    "pool_of",
]

Where = Literal["contract", "arguments", "results"]


class Verdict(StrEnum):
    COMPATIBLE = "compatible"
    BREAKING = "breaking"


@dataclass(frozen=True)
class Rule:
    """What a kind of change means where it happens."""

    verdict: Verdict
    why: str


_C, _B = Verdict.COMPATIBLE, Verdict.BREAKING

RULES: dict[tuple[str, Where], Rule] = {
    ("service-added", "contract"): Rule(_C, "nobody depends on it yet"),
    ("service-removed", "contract"): Rule(
        _B, "its callers, its subscribers and its routines in flight still need it"
    ),
    ("method-added", "contract"): Rule(_C, "nobody calls it yet"),
    ("method-removed", "contract"): Rule(
        _B, "callers and routines in flight still call it and would get UnknownMethod"
    ),
    ("event-added", "contract"): Rule(_C, "nobody subscribes to it yet"),
    ("event-removed", "contract"): Rule(_B, "its subscribers would wait for it forever"),
    ("event-opened", "contract"): Rule(
        _C, "it became an ExternalEvent: outsiders may fire it, subscribers read it as before"
    ),
    ("event-closed", "contract"): Rule(
        _B, "it is no longer an ExternalEvent: the service refuses outsiders who fire it"
    ),
    ("error-declared", "contract"): Rule(
        _C, "callers that do not catch it get it as any other exception, as before"
    ),
    ("error-undeclared", "contract"): Rule(_C, "callers that catch it are no worse off"),
    ("type-changed", "arguments"): Rule(_B, "the service no longer reads what callers send"),
    ("type-changed", "results"): Rule(_B, "callers no longer read what the service writes"),
    ("type-widened", "arguments"): Rule(_C, "the service still reads all it read before"),
    ("type-widened", "results"): Rule(_B, "callers may get values they cannot read"),
    ("type-narrowed", "arguments"): Rule(_B, "callers may send values the service now refuses"),
    ("type-narrowed", "results"): Rule(_C, "callers get a part of what they read before"),
    ("enum-value-added", "arguments"): Rule(_C, "the service reads one more value"),
    ("enum-value-added", "results"): Rule(_B, "callers may get a value they do not know"),
    ("enum-value-removed", "arguments"): Rule(_B, "callers may still send it"),
    ("enum-value-removed", "results"): Rule(_C, "callers just never get it"),
    ("alternative-added", "arguments"): Rule(_C, "the service reads one more kind of value"),
    ("alternative-added", "results"): Rule(_B, "callers may get a kind of value they cannot read"),
    ("alternative-removed", "arguments"): Rule(_B, "callers may still send that kind of value"),
    ("alternative-removed", "results"): Rule(_C, "callers just never get it"),
    ("constraint-loosened", "arguments"): Rule(_C, "the service accepts more than before"),
    ("constraint-loosened", "results"): Rule(_B, "callers may get values outside the old bounds"),
    ("constraint-tightened", "arguments"): Rule(_B, "values callers send may be refused"),
    ("constraint-tightened", "results"): Rule(_C, "callers get values within the old bounds"),
    ("constraint-changed", "arguments"): Rule(_B, "values callers send may be refused"),
    ("constraint-changed", "results"): Rule(_B, "callers may get values they refuse"),
    ("required-field-added", "arguments"): Rule(_B, "callers that predate it do not send it"),
    ("required-field-added", "results"): Rule(_C, "callers ignore fields they do not know"),
    ("optional-field-added", "arguments"): Rule(_C, "callers that predate it leave it out"),
    ("optional-field-added", "results"): Rule(_C, "callers ignore fields they do not know"),
    ("field-added-closed", "results"): Rule(
        _B, "the object forbids unknown fields, so callers that predate it refuse it"
    ),
    ("field-removed", "arguments"): Rule(
        _C, "the service ignores it when callers that predate the change still send it"
    ),
    ("field-removed-closed", "arguments"): Rule(
        _B, "callers that predate it still send it, and the object forbids unknown fields"
    ),
    ("required-field-removed", "results"): Rule(_B, "callers that predate it need it"),
    ("optional-field-removed", "results"): Rule(_C, "callers did without it already"),
    ("field-became-required", "arguments"): Rule(_B, "callers that leave it out are refused"),
    ("field-became-required", "results"): Rule(_C, "callers get it every time"),
    ("field-became-optional", "arguments"): Rule(_C, "callers that send it are still read"),
    ("field-became-optional", "results"): Rule(_B, "callers that need it may not get it"),
    ("default-changed", "arguments"): Rule(_C, "callers that leave it out get the new default"),
    ("default-changed", "results"): Rule(_C, "the service writes the field anyway"),
    ("object-closed", "arguments"): Rule(_B, "callers sending other fields are refused"),
    ("object-closed", "results"): Rule(_C, "callers get fewer fields"),
    ("object-opened", "arguments"): Rule(_C, "the service ignores fields it does not know"),
    ("object-opened", "results"): Rule(_B, "callers that refuse unknown fields may get some"),
}
"""(kind, where) -> verdict and reason; ``where`` is ``contract`` for the shape of the
contract, else whether the schema is read by the service (arguments) or by callers."""


@dataclass(frozen=True)
class Change:
    """One difference between the committed and today's contracts."""

    path: str
    """Where: a root schema's name and the path of the field in its values."""
    kind: str
    where: Where
    detail: str = ""

    @property
    def rule(self) -> Rule:
        return RULES[(self.kind, self.where)]

    @property
    def verdict(self) -> Verdict:
        return self.rule.verdict

    def line(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.verdict.value:<10} {self.path}: {self.kind}{detail}: {self.rule.why}"


def pool_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """The named schemas of a JSON Schema, AsyncAPI or OpenAPI document."""
    if "asyncapi" in document or "openapi" in document:
        schemas = document.get("components", {}).get("schemas", {})
    else:
        schemas = document.get("$defs", {})
    if not isinstance(schemas, dict):
        raise ValueError("the document has no schemas")
    return schemas


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every change from the ``old`` pool of schemas to the ``new`` one."""
    return list(_Compare(old, new).changes())


# --- the contract's shape -------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    services: set[str]
    methods: set[tuple[str, str]]
    events: set[tuple[str, str]]
    external: set[tuple[str, str]]
    """The events outsiders may fire (``ExternalEvent``): they write the payload too."""
    errors: dict[tuple[str, str], set[str]]
    """(service, method) -> the error roots its failure root names."""


def _shape(pool: Mapping[str, Any]) -> _Shape:
    roots = {name: root for name in pool if (root := parse_root(name)) is not None}
    services = {r.service for r in roots.values() if r.service}
    methods = {(r.service, r.member) for r in roots.values() if r.role == "arguments"}
    events = {(r.service, r.member) for r in roots.values() if r.role == "event"}
    external = {
        (r.service, r.member)
        for name, r in roots.items()
        if r.role == "event" and isinstance(pool[name], dict) and pool[name].get(EXTERNAL)
    }
    errors: dict[tuple[str, str], set[str]] = {m: set() for m in methods}
    for name, root in roots.items():
        if root.role == "failure":
            errors.setdefault((root.service, root.member), set()).update(
                ref for ref in _refs(pool[name]) if ref.endswith(".error")
            )
    return _Shape(services, methods, events, external, errors)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _refs(item)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield _name(ref)
        for key, value in node.items():
            if key not in ("const", "enum", "default", "examples"):
                yield from _refs(value)


def _name(ref: str) -> str:
    for prefix in (DEFS, COMPONENTS):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


class _Compare:
    def __init__(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        self.old, self.new = old, new

    def changes(self) -> Iterator[Change]:
        old, new = _shape(self.old), _shape(self.new)
        for service in sorted(old.services - new.services):
            yield Change(service, "service-removed", "contract")
        for service in sorted(new.services - old.services):
            yield Change(service, "service-added", "contract")
        live = old.services & new.services
        for kind, before, after in (
            ("method", old.methods, new.methods),
            ("event", old.events, new.events),
        ):
            for s, m in sorted(before - after):
                if s in live:
                    yield Change(f"{s}.{m}", f"{kind}-removed", "contract")
            for s, m in sorted(after - before):
                if s in live:
                    yield Change(f"{s}.{m}", f"{kind}-added", "contract")
        for s, m in sorted(old.methods & new.methods):
            name = f"{s}.{m}"
            yield from self._root(f"{name}.arguments", "arguments")
            yield from self._root(f"{name}.result", "results")
            declared, undeclared = old.errors.get((s, m), set()), new.errors.get((s, m), set())
            for error in sorted(undeclared - declared):
                yield Change(name, "error-declared", "contract", error.removesuffix(".error"))
            for error in sorted(declared - undeclared):
                yield Change(name, "error-undeclared", "contract", error.removesuffix(".error"))
        for s, e in sorted(old.events & new.events):
            yield from self._root(f"{s}.{e}.event", "results")
            if (s, e) in old.external and (s, e) in new.external:
                yield from self._root(f"{s}.{e}.event", "arguments")  # outsiders write it
            elif (s, e) in old.external:
                yield Change(f"{s}.{e}", "event-closed", "contract")
            elif (s, e) in new.external:
                yield Change(f"{s}.{e}", "event-opened", "contract")
        for name in sorted(self.old):
            root = parse_root(name)
            if root is not None and root.role == "error" and name in self.new:
                yield from self._root(name, "results")

    def _root(self, name: str, where: Where) -> Iterator[Change]:
        if name in self.old and name in self.new:
            diff = _SchemaDiff(self.old, self.new, where)
            diff.schema(self.old[name], self.new[name], name)
            yield from diff.found


# --- schemas ---------------------------------------------------------------------------------

_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_EXACT = ("pattern", "format", "multipleOf", "contentEncoding", "propertyNames")


@dataclass
class _Alternative:
    schema: dict[str, Any]
    ref: str = ""
    """The definition it comes from, if any."""


class _SchemaDiff:
    """The changes between two schemas, followed through references (each pair once)."""

    def __init__(self, old: Mapping[str, Any], new: Mapping[str, Any], where: Where) -> None:
        self.pools = (old, new)
        self.where = where
        self.found: list[Change] = []
        self.seen: set[tuple[str, str]] = set()

    def add(self, path: str, kind: str, detail: str = "") -> None:
        change = Change(path, kind, self.where, detail)
        if change not in self.found:
            self.found.append(change)

    # --- unions -----------------------------------------------------------------------------

    def alternatives(
        self, schema: Any, side: int, ref: str = "", chain: frozenset[str] = frozenset()
    ) -> list[_Alternative]:
        """The flat list of what ``schema`` may be (references resolved, unions split)."""
        if schema is True or schema == {}:
            return [_Alternative({}, ref)]
        if not isinstance(schema, dict):
            return [_Alternative({"not": {}}, ref)]
        if "$ref" in schema:
            name = _name(schema["$ref"])
            if name in chain:  # a reference to itself: nothing more to learn
                return [_Alternative({}, name)]
            target = self.pools[side].get(name, {})
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return self.alternatives({**target, **_asserting(rest)}, side, name, chain | {name})
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            inner = all_of[0]
            if isinstance(inner, dict) and "$ref" in inner:
                return self.alternatives({**inner, **_asserting(rest)}, side, ref, chain)
            return self.alternatives({**inner, **rest}, side, ref, chain)
        for union in ("anyOf", "oneOf"):
            if isinstance(schema.get(union), list):
                rest = {k: v for k, v in schema.items() if k != union and k not in _NOTES}
                return [
                    alt
                    for member in schema[union]
                    for alt in self.alternatives(
                        {**member, **rest} if rest else member, side, "", chain
                    )
                ]
        types = schema.get("type")
        if isinstance(types, list):
            rest = {k: v for k, v in schema.items() if k != "type"}
            return [_Alternative({**rest, "type": t}, ref) for t in types]
        return [_Alternative(schema, ref)]

    def schema(self, old: Any, new: Any, path: str) -> None:
        if isinstance(old, dict) and isinstance(new, dict) and "$ref" in old and "$ref" in new:
            edge = (_name(old["$ref"]), _name(new["$ref"]))
            if edge in self.seen:  # compared already (or being compared: a recursive type)
                return
            self.seen.add(edge)
        before = self.alternatives(old, 0)
        after = self.alternatives(new, 1)
        if len(before) == 1 and len(after) == 1:
            self.pair(before[0], after[0], path)
            return
        pairs, gone, added = _match(before, after)
        for a, b in pairs:
            self.pair(a, b, path)
        for alt in gone:
            self.add(path, "alternative-removed", _label(alt.schema))
        for alt in added:
            self.add(path, "alternative-added", _label(alt.schema))

    # --- one alternative against another --------------------------------------------------

    def pair(self, old: _Alternative, new: _Alternative, path: str) -> None:
        a, b = old.schema, new.schema
        fa, fb = _family(a), _family(b)
        if fa == "any" or fb == "any":
            if fa != fb:
                self.add(
                    path,
                    "type-narrowed" if fa == "any" else "type-widened",
                    f"{_label(a)} -> {_label(b)}",
                )
            return
        if fa != fb:
            self.add(path, "type-changed", f"{_label(a)} -> {_label(b)}")
            return
        if fa == "number" and a.get("type") != b.get("type"):
            kind = "type-widened" if b.get("type") == "number" else "type-narrowed"
            self.add(path, kind, f"{a.get('type')} -> {b.get('type')}")
        self.values(a, b, path)
        self.bounds(a, b, path)
        if fa == "object":
            self.object(a, b, path)
        elif fa == "array":
            self.array(a, b, path)

    def values(self, a: dict[str, Any], b: dict[str, Any], path: str) -> None:
        before, after = _values(a), _values(b)
        if before is None and after is None:
            return
        if before is None:
            self.add(path, "constraint-tightened", f"only {_show(after)}")
        elif after is None:
            self.add(path, "constraint-loosened", f"no longer only {_show(before)}")
        else:
            for value in after:
                if value not in before:
                    self.add(path, "enum-value-added", _show([value]))
            for value in before:
                if value not in after:
                    self.add(path, "enum-value-removed", _show([value]))

    def bounds(self, a: dict[str, Any], b: dict[str, Any], path: str) -> None:
        for key in (*_LOWER, *_UPPER):
            x, y = a.get(key), b.get(key)
            if x == y or (x is not None and y is not None and not _numbers(x, y)):
                continue
            if x is None or y is None:
                tighter = x is None
            else:
                tighter = y > x if key in _LOWER else y < x
            kind = "constraint-tightened" if tighter else "constraint-loosened"
            self.add(path, kind, f"{key} {_show(x)} -> {_show(y)}")
        for key in (*_EXACT, "uniqueItems"):
            x, y = a.get(key), b.get(key)
            if x == y:
                continue
            kind = (
                "constraint-tightened"
                if x is None
                else "constraint-loosened"
                if y is None
                else "constraint-changed"
            )
            self.add(path, kind, f"{key} {_show(x)} -> {_show(y)}")

    def object(self, a: dict[str, Any], b: dict[str, Any], path: str) -> None:
        props_a, props_b = a.get("properties", {}), b.get("properties", {})
        req_a, req_b = set(a.get("required", [])), set(b.get("required", []))
        closed_a = a.get("additionalProperties") is False
        closed_b = b.get("additionalProperties") is False
        results = self.where == "results"
        for name in props_b:
            if name in props_a:
                continue
            at = f"{path}.{name}"
            if results and closed_a:
                self.add(at, "field-added-closed")
            else:
                self.add(at, "required-field-added" if name in req_b else "optional-field-added")
        for name in props_a:
            if name in props_b:
                continue
            at = f"{path}.{name}"
            if results:
                required = name in req_a
                self.add(at, "required-field-removed" if required else "optional-field-removed")
            else:
                self.add(at, "field-removed-closed" if closed_b else "field-removed")
        for name in props_a:
            if name not in props_b:
                continue
            at = f"{path}.{name}"
            if name in req_a and name not in req_b:
                self.add(at, "field-became-optional")
            elif name in req_b and name not in req_a:
                self.add(at, "field-became-required")
            x, y = _default(props_a[name]), _default(props_b[name])
            if x != y:
                self.add(at, "default-changed", f"{_show(x)} -> {_show(y)}")
            self.schema(props_a[name], props_b[name], at)
        if closed_a != closed_b:
            self.add(path, "object-opened" if closed_a else "object-closed")
        extra_a, extra_b = a.get("additionalProperties"), b.get("additionalProperties")
        if isinstance(extra_a, dict) and isinstance(extra_b, dict):
            self.schema(extra_a, extra_b, f"{path}.*")
        elif isinstance(extra_b, dict) and extra_a in (None, True):
            self.add(f"{path}.*", "type-narrowed", f"any -> {_label(extra_b)}")
        elif isinstance(extra_a, dict) and extra_b in (None, True):
            self.add(f"{path}.*", "type-widened", f"{_label(extra_a)} -> any")

    def array(self, a: dict[str, Any], b: dict[str, Any], path: str) -> None:
        tuple_a, items_a = _tuple(a)
        tuple_b, items_b = _tuple(b)
        if len(tuple_a) != len(tuple_b):
            self.add(path, "type-changed", f"{len(tuple_a)} -> {len(tuple_b)} tuple items")
            return
        for i, (x, y) in enumerate(zip(tuple_a, tuple_b, strict=True)):
            self.schema(x, y, f"{path}[{i}]")
        if items_a is False and items_b is False:
            return
        if items_a is False or items_b is False:
            kind = "type-widened" if items_a is False else "type-narrowed"
            self.add(f"{path}[]", kind, "more items" if items_a is False else "no more items")
            return
        self.schema(
            {} if items_a is None else items_a, {} if items_b is None else items_b, f"{path}[]"
        )


_NOTES = frozenset({"title", "description", "default", "examples", "$comment", "deprecated"})


def _asserting(schema: dict[str, Any]) -> dict[str, Any]:
    """The keywords beside a ``$ref`` that assert something (annotations are the target's)."""
    return {k: v for k, v in schema.items() if k not in _NOTES}


def _family(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return "number"
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if "enum" in schema or "const" in schema:
        values = _values(schema) or []
        kinds = {_json_type(v) for v in values}
        return kinds.pop() if len(kinds) == 1 else "enum"
    if schema.get("not") == {}:
        return "nothing"
    return "any"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _values(schema: dict[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    enum = schema.get("enum")
    return list(enum) if isinstance(enum, list) else None


def _default(schema: Any) -> Any:
    return schema.get("default") if isinstance(schema, dict) else None


def _tuple(schema: dict[str, Any]) -> tuple[list[Any], Any]:
    """``(prefix items, the rest)`` in 2020-12 or draft-07 spelling."""
    if isinstance(schema.get("prefixItems"), list):
        return schema["prefixItems"], schema.get("items")
    if isinstance(schema.get("items"), list):
        return schema["items"], schema.get("additionalItems")
    return [], schema.get("items")


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _key(alt: _Alternative) -> str:
    schema = alt.schema
    return f"{_family(schema)}:{schema.get('title', '')}"


def _match(
    before: list[_Alternative], after: list[_Alternative]
) -> tuple[list[tuple[_Alternative, _Alternative]], list[_Alternative], list[_Alternative]]:
    """Pairs the alternatives of two unions: by kind and title, then by kind alone where
    one of a kind is left on each side; the rest were removed or added."""
    pairs: list[tuple[_Alternative, _Alternative]] = []
    left, right = list(before), list(after)
    for a in list(left):
        candidates = [b for b in right if _key(b) == _key(a)]
        if candidates:
            pairs.append((a, candidates[0]))
            left.remove(a)
            right.remove(candidates[0])
    for a in list(left):  # a renamed class: the one object left on each side, alike
        family = _family(a.schema)
        candidates = [b for b in right if _family(b.schema) == family]
        same = [x for x in left if _family(x.schema) == family]
        if len(candidates) == 1 and len(same) == 1 and _alike(a.schema, candidates[0].schema):
            pairs.append((a, candidates[0]))
            left.remove(a)
            right.remove(candidates[0])
    return pairs, left, right


def _alike(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two alternatives of one kind may be one type under two names: objects that
    share a property (a tag object of tagged JSON shares none with another tag)."""
    props_a, props_b = a.get("properties"), b.get("properties")
    if isinstance(props_a, dict) and isinstance(props_b, dict):
        return bool(set(props_a) & set(props_b)) or not (props_a or props_b)
    return True


def _label(schema: Any) -> str:
    if not isinstance(schema, dict):
        return str(schema)
    values = _values(schema)
    if values is not None:
        return _show(values)
    title = schema.get("title")
    kind = schema.get("type") or _family(schema)
    return f"{kind} {title}" if title and kind == "object" else str(kind)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return " | ".join(_show(v) for v in value)
    return json.dumps(value, ensure_ascii=False)
