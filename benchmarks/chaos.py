"""The chaos suite as a script: ``python benchmarks/chaos.py [--long | --routines N ...]``.

The same run as ``python -m tests.chaos.run`` (same options; ``--help`` lists them):
N orders across three services while worker processes are killed with ``kill -9``,
the nats-server is restarted and duplicates are injected, then every invariant is
checked and one summary line printed. ``docs/reliability.md`` ("Chaos suite") gives
the figures of the long configuration (``--routines 10000 --kills 20 --restarts 3``,
or ``--long``) and what each means.

It also prints the journal's **optimistic-concurrency conflicts per 1,000
routines, per service** (issue 14: two workers of one service committing the same
routine's steps, e.g. because replies of one routine's concurrent calls reached
different workers; each costs an eviction and a replay). They are counted from
the chaos workers' append logs (every ``JournalConflict`` an append raised), which
is what ``Report.conflicts`` holds. ``--no-chaos`` (= ``--kills 0 --restarts 0
--copy-rate 0 --twice-rate 0``) leaves only the conflicts of routing: no kill,
no outage, no injected duplicate.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # after PYTHONPATH: a checkout there brings its own tests

from tests.chaos._chaos import Report, run_chaos  # noqa: E402
from tests.chaos.run import _interrupt, parse  # noqa: E402


def conflicts_line(report: Report) -> str:
    """Conflicts per 1,000 routines, per service (and the counts)."""
    n = max(report.n, 1)
    services = sorted(set(report.conflicts) | {"Inventory", "Orders", "Payments"})
    parts = [
        f"{s} {report.conflicts.get(s, 0) * 1000 / n:.1f} ({report.conflicts.get(s, 0)})"
        for s in services
    ]
    total = sum(report.conflicts.values())
    return (
        f"journal conflicts per 1,000 routines ({report.n} routines, "
        f"{report.config.workers} workers per service): {', '.join(parts)}; "
        f"all services {total * 1000 / n:.1f} ({total})"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--no-chaos" in argv:
        argv.remove("--no-chaos")
        argv += ["--kills", "0", "--restarts", "0", "--copy-rate", "0", "--twice-rate", "0"]
    config, args = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # so that ``timeout`` stops every process
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report = run_chaos(config)
    print(report.summary())
    print(report.details())
    print(conflicts_line(report))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    problems = report.problems(allow_duplicate_executions=args.allow_duplicate_executions)
    for problem in problems:
        print("FAILED:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
