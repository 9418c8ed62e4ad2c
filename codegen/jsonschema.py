"""JSON Schema (2020-12) of each method's arguments and result, from a ``ServiceSpec``."""

from __future__ import annotations

from typing import Any

from .._codec import args_json_schema, result_json_schema
from .._contract import ServiceSpec

__all__ = ["method_schemas"]


def method_schemas(spec: ServiceSpec) -> dict[str, dict[str, Any]]:
    """``{method: {"arguments": schema, "result": schema}}`` for every method of ``spec``."""
    return {
        name: {"arguments": args_json_schema(m), "result": result_json_schema(m)}
        for name, m in sorted(spec.methods.items())
    }
