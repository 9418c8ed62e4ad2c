"""The long run by hand: ``python -m tests.differential.run --examples 20000``.

Runs the CI property over many more programs with a random seed (printed;
``--seed`` replays a run), two crash points per program, and prints every group
of disagreements with a minimized program. ``--ignore cause`` compares
exceptions without their ``__cause__`` (a known codec loss) to see past it.
"""

from __future__ import annotations

import argparse
import random
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.differential.run")
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--crashes", type=int, default=2, help="crash points per program")
    parser.add_argument("--max-nodes", type=int, default=14, help="size bound of a program")
    parser.add_argument("--minimize", type=float, default=120.0, help="seconds to shrink, in all")
    parser.add_argument(
        "--ignore", default="", help="exception parts not to compare: cause,notes (exploration)"
    )
    args = parser.parse_args(argv)

    from ._property import run_survey
    from ._shape import IGNORED

    IGNORED.update(x.strip() for x in args.ignore.split(",") if x.strip())
    random_seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed {random_seed} (replay with --seed {random_seed})", flush=True)
    started = time.monotonic()

    def progress(survey: object) -> None:
        n = getattr(survey, "examples", 0)
        if n % 500 == 0:
            rate = n / (time.monotonic() - started)
            print(
                f"... {n} programs, {getattr(survey, 'failed', 0)} disagreed, "
                f"{len(getattr(survey, 'groups', {}))} groups, {rate:.1f}/s",
                file=sys.stderr,
                flush=True,
            )

    survey = run_survey(
        args.examples,
        random_seed=random_seed,
        crashes=args.crashes,
        max_nodes=args.max_nodes,
        progress=progress,
        budget=float("inf"),
    )
    if not survey.groups and not survey.harness:
        print(f"{survey.examples} programs agreed with plain asyncio in {survey.seconds:.0f}s")
        return 0
    print(survey.report(args.minimize))
    return 1


if __name__ == "__main__":
    sys.exit(main())
