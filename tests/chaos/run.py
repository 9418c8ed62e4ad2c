"""Run the chaos suite by hand.

    python -m tests.chaos.run                 # the short configuration CI runs
    python -m tests.chaos.run --long          # 10,000 routines, 20 kills, 3 server restarts
    python -m tests.chaos.run --routines 2000 --kills 6 --restarts 2 --rate 50

Prints progress, the summary line and a table of the figures; exits 1 if an
invariant does not hold (listing which). ``--keep DIR`` keeps the logs, the
SQLite tallies and the server store in DIR for inspection.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from ._chaos import ChaosConfig, run_chaos

SHORT: dict[str, Any] = {
    "routines": 300,
    "kills": 3,
    "restarts": 1,
    "rate": 40.0,
    "deadline": 120.0,
}
LONG: dict[str, Any] = {
    "routines": 10_000,
    "kills": 20,
    "restarts": 3,
    "rate": 40.0,
    "deadline": 1800.0,
}


def parse(argv: list[str] | None = None) -> tuple[ChaosConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="the long configuration")
    parser.add_argument("--routines", type=int)
    parser.add_argument("--kills", type=int)
    parser.add_argument("--restarts", type=int)
    parser.add_argument("--rate", type=float, help="routines started per second")
    parser.add_argument("--deadline", type=float, help="seconds for every routine to finish")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per service")
    parser.add_argument("--copy-rate", type=float, default=0.05)
    parser.add_argument("--twice-rate", type=float, default=0.02)
    parser.add_argument("--ack-wait", type=float, default=2.0)
    parser.add_argument("--outage", type=float, default=1.0, help="seconds the server is down")
    parser.add_argument("--server-stop", choices=("stop", "kill", "alternate"), default="stop")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the work directory here")
    parser.add_argument(
        "--allow-duplicate-executions",
        action="store_true",
        help="do not fail because a duplicate delivery ran a routine's code on two workers "
        "at once (the effect must still happen once)",
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    values = dict(LONG if args.long else SHORT)
    for key in ("routines", "kills", "restarts", "rate", "deadline"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    config = ChaosConfig(
        **values,
        workers=args.workers,
        copy_rate=args.copy_rate,
        twice_rate=args.twice_rate,
        ack_wait=args.ack_wait,
        outage=args.outage,
        server_stop=args.server_stop,
        seed=args.seed,
        workdir=args.keep,
        keep=args.keep is not None,
        progress=None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True)),
    )
    return config, args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that SIGTERM (``timeout``) stops every process of the run


def main(argv: list[str] | None = None) -> int:
    config, args = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    report = run_chaos(config)
    print(report.summary())
    print(report.details())
    problems = report.problems(allow_duplicate_executions=args.allow_duplicate_executions)
    for problem in problems:
        print("FAILED:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
