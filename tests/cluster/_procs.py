"""``dasync run`` processes of the cluster test's shop, configured by flags and environment.

Each service file of ``shop/`` runs in its own ``dasync run FILE --nats URLS``
process; its output goes to ``WORKDIR/<name>.log``. A process is ready when it
prints ``dasync: ready``; ``stop()`` sends SIGTERM (a clean stop), then SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOP = Path(__file__).resolve().parent / "shop"
READY = "dasync: ready"
_LOG_LINE = re.compile(r"^\S+ \S+ (INFO|WARNING|ERROR|CRITICAL) (\S+): (.*)$")
_IDS = re.compile(
    r"order-\d+[^\s',)]*|[0-9a-f]{16,}|\d+(\.\d+)?s\b|127\.0\.0\.1:\d+|_INBOX\.[^\s'\"]+"
    r"|\b\d{2,}\b"
)


class DasyncRuns:
    """The ``dasync run`` processes of one test."""

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.env = dict(env)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: dict[str, list[str]] = {}

    def spawn(
        self,
        name: str,
        file: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """``dasync run shop/FILE ARGS...`` with the environment of the runs plus ``env``."""
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DASYNC_")}
        environment.update(self.env)
        environment.update(env or {})
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), environment.get("PYTHONPATH")])
        )
        command = [sys.executable, "-m", "dasync", "run", str(SHOP / file), *args]
        log = open(self.log_path(name), "wb")
        proc = subprocess.Popen(
            command,
            cwd=self.workdir,  # never the repository: no embedded server is involved anyway
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs[name] = proc
        self.commands[name] = command
        return proc

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def grep(self, *texts: str) -> list[str]:
        """Lines of every process log that contain all of ``texts``."""
        found = []
        for name in self.procs:
            for line in self.log(name, tail=10**9).splitlines():
                if all(t in line for t in texts):
                    found.append(f"{name}: {line}")
        return found

    def log_summary(self, name: str) -> Counter[str]:
        """The process's log lines at INFO and above, grouped by what they say (ids blanked)."""
        found: Counter[str] = Counter()
        for line in self.log(name, tail=10**9).splitlines():
            match = _LOG_LINE.match(line)
            if match:
                level, logger, text = match.groups()
                text = _IDS.sub("<id>", text)
                found[f"{level} {logger}: {text[:110]}"] += 1
        return found

    def last_failure(self, name: str) -> float | None:
        """``time.time()`` of the process's last WARNING or append retry (log times are local)."""
        last = None
        for line in self.log(name, tail=10**9).splitlines():
            match = _LOG_LINE.match(line)
            if match and (match.group(1) != "INFO" or "failed" in match.group(3)):
                stamp = line[:23]
                try:
                    last = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S"))
                    last += int(stamp[20:23]) / 1000
                except ValueError:
                    continue
        return last

    async def ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        for name, proc in self.procs.items():
            while READY not in self.log(name, tail=10**9):
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} not ready within {within}s:\n{self.log(name)}")
                await asyncio.sleep(0.05)

    def exited(self) -> dict[str, int]:
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def stop(self, timeout: float = 15.0) -> dict[str, int]:
        """SIGTERM all, wait, SIGKILL what is left; the exit statuses."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return {n: p.returncode for n, p in self.procs.items()}
