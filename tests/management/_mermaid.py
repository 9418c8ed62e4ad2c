"""A grammar check of the Mermaid sequence diagrams ``dasync show --mermaid`` prints: the
subset of the sequenceDiagram syntax it uses, line by line, with blocks balanced."""

from __future__ import annotations

import re

_ID = r"P\d+"
_TEXT = r"[^;#\n:]*"
"""Message text: ``;`` and ``#`` would end the statement or start an entity code."""
LINES = [
    re.compile(r"sequenceDiagram"),
    re.compile(rf"participant {_ID} as [^;#\n]+"),
    re.compile(rf"{_ID}(->>|-->>|--x){_ID}: \S{_TEXT}"),
    re.compile(rf"Note over {_ID}: \S{_TEXT}"),
    re.compile(rf"(activate|deactivate) {_ID}"),
    re.compile(r"rect rgb\(\d{1,3}, \d{1,3}, \d{1,3}\)"),
    re.compile(r"end"),
]


def check_grammar(diagram: str) -> None:
    lines = [line.strip() for line in diagram.strip().splitlines()]
    assert lines[0] == "sequenceDiagram", lines[0]
    declared: set[str] = set()
    depth = 0
    for line in lines:
        assert any(p.fullmatch(line) for p in LINES), f"not Mermaid we write: {line!r}"
        if line.startswith("participant "):
            declared.add(line.split()[1])
        for name in re.findall(_ID, line.split(":", 1)[0]):
            assert name in declared, f"{name} used before it is declared: {line!r}"
        depth += line.startswith("rect ") - (line == "end")
        assert depth >= 0, "end without a block"
    assert depth == 0, "a block is not closed"
