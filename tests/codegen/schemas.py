"""Helpers shared by the codegen tests: validators for the schemas of a pool."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from dasync.codegen import contracts_of, jsonschema_document

FORMATS = Draft202012Validator.FORMAT_CHECKER


def pool(*contracts: type) -> dict[str, Any]:
    """The JSON Schema document of ``contracts``."""
    return jsonschema_document(contracts_of(contracts))


_VALIDATORS: dict[tuple[int, str], tuple[dict[str, Any], Draft202012Validator]] = {}


def validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    """Validates instances against ``#/$defs/<name>`` of ``document``, formats checked
    (the document is checked against the 2020-12 meta-schema once)."""
    key = (id(document), name)
    cached = _VALIDATORS.get(key)
    if cached is not None and cached[0] is document:
        return cached[1]
    if not any(k[0] == id(document) for k in _VALIDATORS):
        Draft202012Validator.check_schema(document)
    schema = {"$schema": document["$schema"], "$defs": document["$defs"], "$ref": f"#/$defs/{name}"}
    made = Draft202012Validator(schema, format_checker=FORMATS)
    _VALIDATORS[key] = (document, made)
    return made


def errors(document: dict[str, Any], name: str, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
        for e in validator(document, name).iter_errors(instance)
    ]
