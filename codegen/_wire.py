"""pydantic's JSON Schema generator, told what dasync's codec really writes.

pydantic describes a type as pydantic would encode it with the type's own
config; the codec encodes under its *wire rules* (``dasync._codec``): inf and
nan as strings, bytes as URL-safe base64, a ``ZoneInfo`` datetime with an RFC
9557 zone suffix, except inside pydantic models and pydantic dataclasses, which
keep their own config. ``WireJsonSchema`` overrides the few types where those
differ, so the schemas validate the codec's real bytes (``tests/codegen``
checks it on generated values). It also writes what the codec always writes as
required (fields with defaults are always encoded), takes attribute docstrings
of dataclasses and models as descriptions, and leaves out pydantic's
per-field titles, which only repeat the field names.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from functools import lru_cache
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from .._codec import _ZONE_KEY

__all__ = [
    "DATETIME_PATTERN",
    "INF_NAN",
    "WireJsonSchema",
    "datetime_pattern",
]

INF_NAN = ("Infinity", "-Infinity", "NaN")
"""How the wire rules write the floats JSON has no number for."""

_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIME = r"[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
_OFFSET = r"(Z|[+-][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)"
_ZONE = rf"\[{_ZONE_KEY.pattern}\]"
"""The zone suffix, with the codec's own pattern for a zone key."""


def datetime_pattern(*, zone: bool, offset: str = "any") -> str:
    """The pattern of an encoded datetime: ISO 8601 with an offset (``Z``, ``+01:00``, or
    with seconds for old local times) or without (a naive datetime), and with ``zone`` an
    RFC 9557 ``[Area/City]`` after the offset of a ``ZoneInfo`` datetime.

    ``offset``: ``any``, ``aware`` (required) or ``naive`` (absent), from the type's
    ``AwareDatetime``/``NaiveDatetime`` constraint.
    """
    aware = _OFFSET + (f"({_ZONE})?" if zone else "")
    tail = {"aware": aware, "naive": "", "any": f"({aware})?"}[offset]
    return f"^{_DATE}T{_TIME}{tail}$"


DATETIME_PATTERN = datetime_pattern(zone=True)
_TIME_PATTERN = rf"^{_TIME}{_OFFSET}?$"
_BASE64URL = r"^[A-Za-z0-9_-]*={0,2}$"
_DECIMAL = r"^-?[0-9]+(\.[0-9]+)?(E[+-][0-9]+)?$|^-?(Infinity|s?NaN)$"
_DECIMAL_IN = r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
"""Decimal strings an argument takes (each of them the codec reads; it reads a few more)."""


class WireJsonSchema(GenerateJsonSchema):
    """JSON Schema of what ``dasync._codec`` writes for a type (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._own_config = [False]
        """Whether the schema being generated is inside a pydantic model or dataclass."""

    # --- where the wire rules apply ---------------------------------------------------------

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        self._own_config.append(True)
        try:
            json_schema = super().model_schema(schema)
        finally:
            self._own_config.pop()
        return _with_attribute_docs(json_schema, schema["cls"])

    def dataclass_schema(self, schema: core_schema.DataclassSchema) -> JsonSchemaValue:
        cls = schema["cls"]
        self._own_config.append(self._own_config[-1] or _is_pydantic_dataclass(cls))
        try:
            json_schema = super().dataclass_schema(schema)
        finally:
            self._own_config.pop()
        return _with_attribute_docs(json_schema, cls)

    def typed_dict_schema(self, schema: core_schema.TypedDictSchema) -> JsonSchemaValue:
        json_schema = super().typed_dict_schema(schema)
        cls = schema.get("cls")
        return _with_attribute_docs(json_schema, cls) if cls is not None else json_schema

    @property
    def _wire(self) -> bool:
        return not self._own_config[-1]

    # --- the types whose encoding the wire rules change ---------------------------------------

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        number = super().float_schema(schema)
        strings = self._wire or self._config.ser_json_inf_nan == "strings"
        if not strings or schema.get("allow_inf_nan") is False:
            return number  # (inf under the 'null' rule does not decode again: not described)
        specials = [s for s in INF_NAN if _may_be(s, schema)]
        if not specials:
            return number
        return {"anyOf": [number, {"enum": specials}]}

    def bytes_schema(self, schema: core_schema.BytesSchema) -> JsonSchemaValue:
        if not self._wire and self._config.ser_json_bytes != "base64":
            return super().bytes_schema(schema)
        return {"type": "string", "format": "base64url", "pattern": _BASE64URL}

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        json_schema = super().decimal_schema(schema)
        if self.mode == "serialization" and "pattern" not in json_schema:
            json_schema["pattern"] = _DECIMAL  # str() of a Decimal
        branches = json_schema.get("anyOf")
        if isinstance(branches, list):  # validation: a number or a string
            for i, branch in enumerate(branches):
                if branch.get("type") == "string" and "pattern" not in branch:
                    branch["pattern"] = _DECIMAL_IN  # not any string: "" or "abc" is refused
                elif "anyOf" in branch and not schema.get("allow_inf_nan"):
                    branches[i] = {"type": "number"}  # a Decimal argument takes no inf or nan
        return json_schema

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        if not self._wire and "ser_json_temporal" in self._config.config_dict:
            if self._config.ser_json_temporal != "iso8601":
                return super().datetime_schema(schema)
        constraint = schema.get("tz_constraint")
        offset = constraint if constraint in ("aware", "naive") else "any"
        return {"type": "string", "pattern": datetime_pattern(zone=self._wire, offset=offset)}

    def time_schema(self, schema: core_schema.TimeSchema) -> JsonSchemaValue:
        if "ser_json_temporal" in self._config.config_dict:
            if self._config.ser_json_temporal != "iso8601":
                return super().time_schema(schema)
        return {"type": "string", "pattern": _TIME_PATTERN}  # a naive time is no RFC 3339 time

    # --- presentation ----------------------------------------------------------------------

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        if self.mode == "serialization" and field["type"] != "typed-dict-field":
            return field.get("serialization_exclude_if") is None  # defaults are written too
        return super().field_is_required(field, total)


def _may_be(special: str, schema: core_schema.FloatSchema) -> bool:
    """Whether a float constrained by ``schema`` can be ``special`` (nan passes no bound)."""
    low = any(k in schema for k in ("ge", "gt"))
    high = any(k in schema for k in ("le", "lt"))
    if special == "NaN":
        return not (low or high or "multiple_of" in schema)
    if special == "Infinity":
        return not high
    return not low


def _is_pydantic_dataclass(cls: Any) -> bool:
    return dataclasses.is_dataclass(cls) and "__pydantic_fields__" in vars(cls)


def _with_attribute_docs(json_schema: JsonSchemaValue, cls: Any) -> JsonSchemaValue:
    """``json_schema`` with each property that has no description described by the
    docstring written under its attribute in ``cls`` (or its bases)."""
    properties = json_schema.get("properties")
    if not isinstance(properties, dict):
        return json_schema
    docs = attribute_docs(cls)
    for name, prop in properties.items():
        doc = docs.get(name)
        if doc and isinstance(prop, dict) and "description" not in prop:
            prop["description"] = doc
    return json_schema


@lru_cache(maxsize=1024)
def attribute_docs(cls: type) -> dict[str, str]:
    """``{attribute: docstring}`` for the string literals right under annotated attributes
    in the class bodies of ``cls`` and its bases (the nearest class wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(getattr(cls, "__mro__", (cls,))):
        if klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
            tree = ast.parse(source)
        except (OSError, TypeError, SyntaxError):
            continue
        body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs
