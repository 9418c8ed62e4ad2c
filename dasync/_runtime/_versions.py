"""Which code committed a step, and which parked routines a new deployment retries.

Every journal entry names the version of the code that wrote it (``code_version``):
``Runtime(code_version=...)`` if the deployment sets one (a release tag, a commit),
else the contract's version and a digest of the file that defines the service, so
that any edit of that file is a new version. A routine parked for a divergence
(its replay under this code issued other commands than its journal) is set aside
with the version that could not replay it (``parked_reason``); a worker of
another version retries it when it starts (``parked_by``), once per version, so
deploying the fix resumes it with no operator, and a version that diverges too
parks it again.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._contract import ServiceSpec

__all__ = [
    "EXPORT_FORMAT",
    "code_version",
    "journal_export",
    "journal_import",
    "parked_by",
    "parked_reason",
]

EXPORT_FORMAT = "dasync-journal-1"
"""The ``format`` of an exported journal (``dasync show --export``, ``dasync export``)."""

_PARKED = re.compile(r"\[parked by code (?P<code>[^\]]{1,80})\]$")


def code_version(cls: type, spec: ServiceSpec, given: str | None = None) -> str:
    """``given``, else ``v<contract version>:<digest of the service's source file>``."""
    if given:
        return given[:80]
    try:
        source = inspect.getsourcefile(cls)
        data = Path(source).read_bytes() if source else b""
    except (OSError, TypeError):
        data = b""
    if not data:  # defined where no file says what it is (a REPL, exec): its name
        data = f"{cls.__module__}.{cls.__qualname__}".encode()
    return f"v{spec.version}:{hashlib.blake2b(data, digest_size=6).hexdigest()}"


def parked_reason(reason: str, code: str) -> str:
    """A dead letter's reason, for a routine parked by a divergence under ``code``."""
    return f"{reason} [parked by code {code}]"


def parked_by(reason: str) -> str | None:
    """The code version that parked a dead letter's routine, if a divergence did."""
    found = _PARKED.search(reason)
    return found["code"] if found else None


def journal_export(service: str, routine_id: str, entries: Sequence[bytes]) -> dict[str, Any]:
    """A journal as JSON-ready data: its entries' bytes in base64, exactly."""
    return {
        "format": EXPORT_FORMAT,
        "service": service,
        "routine_id": routine_id,
        "entries": [base64.b64encode(bytes(e)).decode() for e in entries],
    }


def journal_import(data: Mapping[str, Any]) -> tuple[str, str, list[bytes]]:
    """``(service, routine_id, entries)`` of an exported journal; ``ValueError`` if it is
    not one."""
    if not isinstance(data, Mapping) or data.get("format") != EXPORT_FORMAT:
        raise ValueError(f"not an exported dasync journal (format {EXPORT_FORMAT!r})")
    service, routine_id, entries = data.get("service"), data.get("routine_id"), data.get("entries")
    if (
        not isinstance(service, str)
        or not isinstance(routine_id, str)
        or not isinstance(entries, list)
    ):
        raise ValueError("an exported journal names its service, routine_id and entries")
    try:
        return service, routine_id, [base64.b64decode(e, validate=True) for e in entries]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"journal of {routine_id!r}: an entry is not base64 ({exc})") from None
