"""Tracing benchmark: the cost per routine of OpenTelemetry tracing in the worker.

Run: ``python benchmarks/tracing.py`` (``--quick`` for a short run).

One workload (W1 of ``_workloads.py``: a routine making three sequential durable calls,
so four routines and seven activations; with tracing, 7 CONSUMER and 7 PRODUCER
spans) on the memory transport, in one process, so that the figures are the
worker's own cost and not the network's. Four modes, each in a fresh child process,
interleaved over rounds (off, no-op, memory, unsampled, off, ...), medians reported:

* **off** — no tracer provider (OpenTelemetry's default): what every user without
  ``--trace`` pays;
* **no-op exporter** — the SDK's ``TracerProvider`` with a ``SimpleSpanProcessor``
  and an exporter that drops each span: the cost of making spans and propagating
  their context;
* **in-memory exporter** — the same with the SDK's ``InMemorySpanExporter``, which
  keeps every span;
* **sampler always off** — the SDK's provider with the ``ALWAYS_OFF`` sampler: what a
  routine whose trace is not sampled costs (context still propagated).

Each child runs the routines one after another and reports wall time and CPU time
(``time.process_time``) per routine; the parent prints them and the ratios to *off*.

``--baseline DIR`` adds a fourth mode: *off* with the dasync of another checkout
(``git worktree add DIR <commit before tracing>``), which shows what the tracing
code costs when it is off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _workloads

MODES = ("off", "noop", "memory", "unsampled")
LABELS = {
    "off": "off",
    "noop": "no-op exporter",
    "memory": "in-memory exporter",
    "unsampled": "sampler always off",
}


def _install(mode: str) -> object | None:
    """Set the global tracer provider of ``mode``; the in-memory exporter is returned."""
    if mode == "off":
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class Dropping(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    exporter: SpanExporter = InMemorySpanExporter() if mode == "memory" else Dropping()
    provider = TracerProvider(sampler=ALWAYS_OFF if mode == "unsampled" else ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


async def _child(mode: str, routines: int, warmup: int) -> dict[str, float]:
    import dasync

    exporter = _install(mode)
    async with dasync.Runtime([_workloads.LeafService, _workloads.FlowService]) as rt:
        flow = rt.client.proxy(_workloads.Flow)
        for i in range(warmup):
            assert await flow.w1(i) == _workloads.expected("W1", i)
        if hasattr(exporter, "clear"):
            exporter.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(routines):
            assert await flow.w1(i) == _workloads.expected("W1", i)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finished = getattr(exporter, "get_finished_spans", None)
    spans = len(finished()) if finished is not None else 0
    return {"wall_us": wall / routines * 1e6, "cpu_us": cpu / routines * 1e6,
            "spans": spans / routines}  # fmt: skip


def _run_child(
    mode: str, routines: int, warmup: int, pythonpath: str | None = None
) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--routines",
            str(routines),
            "--warmup",
            str(warmup),
        ],  # fmt: skip
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer routines and rounds")
    parser.add_argument("--routines", type=int, default=None, help="routines per child")
    parser.add_argument("--rounds", type=int, default=None, help="children per mode")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--baseline", metavar="DIR", help="a checkout to run 'off' with too")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    routines = args.routines or (500 if args.quick else 3000)
    if args.child:
        print(json.dumps(asyncio.run(_child(args.child, routines, args.warmup))))
        return
    rounds = args.rounds or (2 if args.quick else 5)
    modes = (*MODES, "baseline") if args.baseline else MODES
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for round_ in range(rounds):
        for mode in modes:
            if mode == "baseline":
                results[mode].append(_run_child("off", routines, args.warmup, args.baseline))
            else:
                results[mode].append(_run_child(mode, routines, args.warmup))
        print(f"round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
    median = {
        mode: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for mode, runs in results.items()
    }
    base = median["off"]
    print(f"W1 on the memory transport, {routines} routines x {rounds} rounds per mode "
          f"(medians; Python {sys.version.split()[0]})")  # fmt: skip
    print(f"{'tracing':<20} {'wall us/routine':>16} {'CPU us/routine':>15} "
          f"{'x off (CPU)':>12} {'spans/routine':>14}")  # fmt: skip
    labels = {**LABELS, "baseline": "off, --baseline"}
    for mode in modes:
        m = median[mode]
        print(f"{labels[mode]:<20} {m['wall_us']:>16.0f} {m['cpu_us']:>15.0f} "
              f"{m['cpu_us'] / base['cpu_us']:>12.2f} {m['spans']:>14.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
