"""Moving a schema pool into a document: its references follow it.

The pool refers to its schemas as ``#/$defs/<name>``; OpenAPI and AsyncAPI keep
schemas under ``#/components/schemas/``. The JSON Schema dialect of AsyncAPI's
default schema format is draft-07, so its copy is also rewritten to say in
draft-07 what pydantic says in 2020-12 (``to_draft07``). Both walk schemas by
keyword, so data (``const``, ``enum``, ``default``) and property names are
never taken for schemas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ANNOTATIONS", "COMPONENTS", "map_schemas", "rebase", "to_draft07"]

COMPONENTS = "#/components/schemas/"
ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly"}
)
"""Keywords that assert nothing: a draft-07 ``$ref`` may ignore them beside it."""

SCHEMA = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "not",
        "contains",
        "propertyNames",
        "if",
        "then",
        "else",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})
SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})


def map_schemas(node: Any, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """A copy of schema ``node`` with ``fn`` applied to it and every subschema, innermost
    first (booleans are schemas too, and left as they are)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in SCHEMA_LISTS and isinstance(value, list):
            out[key] = [map_schemas(item, fn) for item in value]
        elif key in SCHEMA:
            out[key] = map_schemas(value, fn)
        elif key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: map_schemas(v, fn) for k, v in value.items()}
        else:
            out[key] = value
    return fn(out)


def rebase(node: Any, old: str, new: str) -> Any:
    """A copy of ``node`` whose ``$ref`` (and discriminator mapping) values starting with
    ``old`` start with ``new`` instead."""

    def move(ref: Any) -> Any:
        return new + ref[len(old) :] if isinstance(ref, str) and ref.startswith(old) else ref

    def one(schema: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in schema:
            schema["$ref"] = move(schema["$ref"])
        discriminator = schema.get("discriminator")
        if isinstance(discriminator, dict) and isinstance(discriminator.get("mapping"), dict):
            mapping = {k: move(v) for k, v in discriminator["mapping"].items()}
            schema["discriminator"] = {**discriminator, "mapping": mapping}
        return schema

    return map_schemas(node, one)


def to_draft07(node: Any) -> Any:
    """A 2020-12 schema (as pydantic and ``_failure`` write them) said in draft-07:
    ``prefixItems`` + ``items`` become array ``items`` + ``additionalItems``, a ``$ref``
    with asserting siblings goes into an ``allOf`` (draft-07 ignores its siblings), and
    an OpenAPI discriminator object becomes AsyncAPI's property name."""

    def one(schema: dict[str, Any]) -> dict[str, Any]:
        if "prefixItems" in schema:
            prefix = schema.pop("prefixItems")
            rest = schema.pop("items", None)
            schema["items"] = prefix
            if rest is not None:
                schema["additionalItems"] = rest
        discriminator = schema.get("discriminator")
        if isinstance(discriminator, dict):
            schema["discriminator"] = discriminator.get("propertyName")
        if "$ref" in schema and any(k not in ANNOTATIONS and k != "$ref" for k in schema):
            ref = schema.pop("$ref")
            schema["allOf"] = [{"$ref": ref}, *schema.pop("allOf", [])]
        return schema

    return map_schemas(node, one)
