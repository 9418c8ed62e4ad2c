"""Schemathesis hooks for ``test_shop.py`` (loaded through ``SCHEMATHESIS_HOOKS``).

``no_gateway_error`` stands in for Schemathesis' ``not_a_server_error``: the gateway
itself must never fail, but a routine that raises an exception its contract does not
declare is relayed as the table says, a ``500 routine-failed`` problem carrying the
exception (the service's bug, not the gateway's). Every other 5xx fails the run.
"""

from __future__ import annotations

from typing import Any

import schemathesis

ROUTINE_FAILED = "urn:dasync:problem:routine-failed"


@schemathesis.check
def no_gateway_error(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 500:
        return None
    try:
        problem = response.json()
    except Exception:
        problem = None
    if not isinstance(problem, dict) or problem.get("type") != ROUTINE_FAILED:
        raise AssertionError(
            f"the gateway answered {response.status_code} with {response.text[:300]!r}: only a "
            "routine's own undeclared exception may be a 5xx (routine-failed)"
        )
    if not isinstance(problem.get("exception"), str):
        raise AssertionError("a routine-failed problem without the exception it relays")
    return None
