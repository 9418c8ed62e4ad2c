"""API specs generated from contracts (installed as ``dasync.codegen``).

``contracts_of_module`` (a loaded service file) or ``contracts_of`` (contract
classes) gives the ``Contracts`` that each generator takes:
``jsonschema_document``, ``asyncapi_document`` and ``openapi_document``.
``compare`` diffs two documents' schemas (``pool_of``) into ``Change``s judged
by ``RULES``. ``dumps`` writes a document as committed. docs/specs.md tells
what each document holds and how to check one in CI.
"""

from ._asyncapi import asyncapi_document as asyncapi_document
from ._compat import RULES as RULES
from ._compat import Change as Change
from ._compat import Rule as Rule
from ._compat import Verdict as Verdict
from ._compat import compare as compare
from ._compat import pool_of as pool_of
from ._contracts import Contracts as Contracts
from ._contracts import contracts_of as contracts_of
from ._contracts import contracts_of_module as contracts_of_module
from ._openapi import openapi_document as openapi_document
from ._output import KINDS as KINDS
from ._output import dumps as dumps
from ._output import spec_path as spec_path
from .jsonschema import jsonschema_document as jsonschema_document
from .jsonschema import method_schemas as method_schemas

__all__ = [
    "KINDS",
    "RULES",
    "Change",
    "Contracts",
    "Rule",
    "Verdict",
    "asyncapi_document",
    "compare",
    "contracts_of",
    "contracts_of_module",
    "dumps",
    "jsonschema_document",
    "method_schemas",
    "openapi_document",
    "pool_of",
    "spec_path",
]
