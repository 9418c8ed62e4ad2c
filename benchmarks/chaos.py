"""The chaos suite as a script: ``python benchmarks/chaos.py [--long | --routines N ...]``.

A thin wrapper around ``python -m tests.chaos.run`` (same options; ``--help``
lists them): N orders across three services while worker processes are killed
with ``kill -9``, the nats-server is restarted and duplicates are injected, then
every invariant is checked and one summary line printed. ``docs/reliability.md``
("Chaos suite") gives the figures of the long configuration
(``--routines 10000 --kills 20 --restarts 3``, or ``--long``) and what each means.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chaos.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
