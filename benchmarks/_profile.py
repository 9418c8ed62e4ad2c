"""Profiling the throughput phase: py-spy from outside (no overhead here) or cProfile.

``py-spy record --format raw`` writes folded stacks (``frame;frame;... count``);
``summarize`` turns them into CPU milliseconds per routine by layer (which
library the innermost frame belongs to) and the hottest functions.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SPY_RATE", "default_profiler", "profiling", "profiling_pids", "summarize"]

SPY_RATE = 250
"""py-spy samples per second; each sample of a busy thread stands for 1/SPY_RATE s of CPU."""

_LAYERS = (  # first match wins: dasync's own paths before the libraries' ("nats/")
    ("dasync/_engine", "dasync engine (replay loop, steps)"),
    ("transports/nats", "dasync NATS transport + store"),
    ("dasync/_runtime", "dasync worker, client, wire"),
    ("dasync/_codec", "dasync codec + proxy (pydantic, wrapt)"),
    ("dasync/_proxy", "dasync codec + proxy (pydantic, wrapt)"),
    ("pydantic", "dasync codec + proxy (pydantic, wrapt)"),
    ("wrapt", "dasync codec + proxy (pydantic, wrapt)"),
    ("inspect", "dasync codec + proxy (pydantic, wrapt)"),
    ("asyncio/", "asyncio (loop, tasks, futures, timers)"),
    ("_weakrefset", "asyncio (loop, tasks, futures, timers)"),
    ("selectors", "asyncio (loop, tasks, futures, timers)"),
    ("nats/", "nats-py (protocol, headers, requests)"),
    ("secrets", "nats-py (protocol, headers, requests)"),
)
_FILE = re.compile(r"\((.*?):\d+\)")


def _spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def default_profiler() -> str:
    return "py-spy" if _spy() else "cprofile"


@contextlib.contextmanager
def profiling(prefix: str | None, profiler: str, tag: str | None) -> Iterator[str | None]:
    """Profile this process inside the block; yields the output path (or None)."""
    if not prefix or tag is None:
        yield None
        return
    if profiler == "py-spy":
        spy = _spy()
        if spy is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        path = f"{prefix}.{tag}.folded"
        proc = subprocess.Popen(
            [spy, "record", "--pid", str(os.getpid()), "--rate", str(SPY_RATE)]
            + ["--nonblocking", "--format", "raw", "--output", path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # let it attach
        try:
            yield path
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    else:
        path = f"{prefix}.{tag}.prof"
        prof = cProfile.Profile()
        prof.enable()
        try:
            yield path
        finally:
            prof.disable()
            prof.dump_stats(path)


@contextlib.contextmanager
def profiling_pids(
    prefix: str | None, tag: str | None, pids: dict[str, int]
) -> Iterator[dict[str, str]]:
    """py-spy every process of ``pids`` (label -> pid) inside the block, one file each.

    Yields label -> ``PREFIX.TAG.LABEL.folded`` (empty without a prefix or a tag)."""
    if not prefix or tag is None:
        yield {}
        return
    spy = _spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    paths = {label: f"{prefix}.{tag}.{label}.folded" for label in pids}
    procs = [
        subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", str(SPY_RATE)]
            + ["--nonblocking", "--format", "raw", "--output", paths[label]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for label, pid in pids.items()
    ]
    time.sleep(0.5)  # let them attach
    try:
        yield paths
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            proc.wait(timeout=30)


def _layer(frame: str) -> str:
    match = _FILE.search(frame)
    file = match.group(1) if match else frame
    for needle, layer in _LAYERS:
        if needle in file:
            return layer
    return "other (json, uuid, benchmark and user code)"


def summarize(path: str, routines: int, top: int = 12) -> str:
    """CPU ms per routine by layer, and the hottest functions, from py-spy folded stacks."""
    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        n = int(count)
        leaf = stack.split(";")[-1]
        total += n
        layers[_layer(leaf)] += n
        functions[re.sub(r":\d+\)", ")", leaf)] += n
    ms = 1000 / SPY_RATE / max(routines, 1)
    lines = [f"  {total * ms:7.3f} ms CPU per routine sampled ({total} samples)"]
    lines += [f"  {n * ms:7.3f} ms  {layer}" for layer, n in layers.most_common()]
    lines.append("  hottest functions (own time):")
    lines += [
        f"  {n * ms:7.3f} ms  {100 * n / total:4.1f}%  {fn}" for fn, n in functions.most_common(top)
    ]
    return "\n".join(lines)
