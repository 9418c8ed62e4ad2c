"""How documents are written and where a set of them lives.

Same input, same bytes: documents are built in a fixed order (services,
methods, channels and schemas sorted by name; properties and parameters in the
order the code declares them, which means something), written as JSON with two
spaces of indent and a final newline, with no time stamp and no absolute path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

__all__ = ["KINDS", "Kind", "dumps", "spec_path"]

Kind = Literal["jsonschema", "asyncapi", "openapi"]
KINDS: tuple[Kind, ...] = ("jsonschema", "asyncapi", "openapi")


def dumps(document: Any) -> str:
    """The document's JSON text, as committed."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def spec_path(directory: str | Path, source: str | Path, kind: Kind) -> Path:
    """Where ``dasync codegen all SOURCE -o DIRECTORY`` writes the ``kind`` document:
    ``DIRECTORY/<stem of SOURCE>.<kind>.json``."""
    return Path(directory) / f"{Path(source).stem}.{kind}.json"
