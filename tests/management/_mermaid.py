"""Checks of the Mermaid sequence diagrams ``dasync show --mermaid`` prints: a grammar check
of the subset of the sequenceDiagram syntax it uses (always), and the Mermaid CLI drawing
it with the system Chromium where both are installed (``npm install`` in
``tests/management/node``, ``apt-get install chromium``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

NODE = Path(__file__).parent / "node"
CHROMIUM = os.environ.get("DASYNC_CHROMIUM", "/usr/bin/chromium")

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


def render_with_mermaid_cli(diagram: str) -> str | None:
    """The SVG the Mermaid CLI draws of ``diagram`` (it fails on a diagram it cannot parse);
    None when the CLI or Chromium is not installed here."""
    mmdc = NODE / "node_modules" / ".bin" / "mmdc"
    if not mmdc.exists() or shutil.which(CHROMIUM) is None:
        return None
    with tempfile.TemporaryDirectory() as work:
        source, target = Path(work) / "saga.mmd", Path(work) / "saga.svg"
        source.write_text(diagram)
        config = Path(work) / "puppeteer.json"
        config.write_text(
            json.dumps({"executablePath": CHROMIUM, "args": ["--no-sandbox", "--disable-gpu"]})
        )
        done = subprocess.run(
            [str(mmdc), "-p", str(config), "-i", str(source), "-o", str(target)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"the Mermaid CLI refused the diagram: {done.stderr}"
        return target.read_text()
