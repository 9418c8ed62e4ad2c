"""API specs generated from contracts (installed as ``dasync.codegen``).

Only JSON Schema of call messages exists so far; AsyncAPI and OpenAPI documents
come with their own issue.
"""

from .jsonschema import method_schemas as method_schemas

__all__ = ["method_schemas"]
