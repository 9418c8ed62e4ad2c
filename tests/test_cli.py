"""The ``dasync`` command: help, loading and discovery, backends, exit codes, signals, ``call``.

End-to-end behaviour runs the real command in a subprocess, in the test's own
temporary directory (so the embedded server's ``./.dasync/`` is made there,
never in the repository), and waits on the lines it prints, never on sleeps.
Every embedded server a test starts is stopped when it ends, and the module
checks at the end that none is left running. Loading, discovery and flag
errors are also tested in-process, where failures are quicker to read.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import dasync
import dasync.testing
from dasync._runtime._module import DiscoveryError, ModuleLoadError, discover, load_module
from dasync.cli import _call, _nats, build_parser, main
from dasync.cli._common import trim_traceback
from dasync.cli._nats import Target, find_embedded, redact, resolve_target
from dasync.testing._nats_server import NatsServer
from dasync.transports.nats import NatsOptions, stop_embedded

ROOT = Path(__file__).resolve().parent.parent
LINE_TIMEOUT = 15.0
NATS_ENV = tuple(name for name in os.environ if name.startswith("DASYNC_NATS_"))


# --- helpers ---------------------------------------------------------------------------------


def write(directory: Path, name: str, *parts: str) -> Path:
    """A source file made of ``parts``, each dedented on its own."""
    path = directory / name
    path.write_text("\n".join(textwrap.dedent(part) for part in parts))
    return path


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without the developer's ``DASYNC_NATS_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASYNC_NATS_")}
    env.update(extra or {})
    return env


def dasync_cmd(
    *args: str | Path, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dasync", *map(str, args)],
        cwd=cwd,
        env=command_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Running:
    """A ``dasync`` subprocess whose stdout lines can be awaited with a bound."""

    def __init__(self, *args: str | Path, cwd: Path, env: Mapping[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dasync", *map(str, args)],
            cwd=cwd,
            env=command_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, prefix: str, timeout: float = LINE_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line starting {prefix!r} within {timeout} s; got {self.seen}")
            if line is None:
                pytest.fail(f"exited before printing {prefix!r}; got {self.seen}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float = LINE_TIMEOUT) -> tuple[int, list[str], str]:
        """Exit status, every stdout line and stderr, once the process has ended."""
        returncode = self.proc.wait(timeout)
        self._pump.join(timeout)
        while (line := self.lines.get_nowait() if not self.lines.empty() else None) is not None:
            self.seen.append(line)
        assert self.proc.stderr is not None
        return returncode, self.seen, self.proc.stderr.read()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, list[str], str]:
        self.proc.send_signal(sig)
        return self.finish()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._pump.join(LINE_TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def nats_servers_under(base: Path) -> list[int]:
    """PIDs of the nats-server processes whose store is under ``base`` (Linux ``/proc``)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"nats-server"):
            continue
        if any(arg.startswith(os.fsencode(base)) for arg in argv[1:]):
            found.append(int(entry.name))
    return found


def url_in(line: str) -> str:
    match = re.search(r"nats://127\.0\.0\.1:\d+", line)
    assert match, line
    return match.group(0)


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (as good as it gets without races)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


_TEST_DIRS: list[Path] = []
"""The temporary directories of this module's tests (other modules' servers are not ours)."""


@pytest.fixture(autouse=True, scope="module")
def no_server_left_behind() -> Iterator[None]:
    """After the module's tests, no server started under their temporary dirs runs."""
    yield
    if not Path("/proc").is_dir():
        return
    left = sorted({pid for base in _TEST_DIRS for pid in nats_servers_under(base)})
    _TEST_DIRS.clear()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"nats-server processes left running: {left}"


@pytest.fixture(autouse=True)
def embedded_server_stopped(tmp_path: Path) -> Iterator[None]:
    """Whatever a test did, the embedded server of its directory is stopped after it."""
    _TEST_DIRS.append(tmp_path)
    yield
    stop_embedded(tmp_path / ".dasync")


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Started processes are killed and their pipes closed, whatever the test did."""
    started: list[Running] = []
    yield started
    for process in started:
        process.close()


@pytest.fixture
def start(running: list[Running]) -> type[Running]:
    """``start("run", "x.py", cwd=...)``: a ``Running`` cleaned up after the test."""

    class Started(Running):
        def __init__(
            self, *args: str | Path, cwd: Path, env: Mapping[str, str] | None = None
        ) -> None:
            super().__init__(*args, cwd=cwd, env=env)
            running.append(self)

    return Started


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server of the test's own, as an operator would run (not the embedded one)."""
    with NatsServer(store_dir=tmp_path / "operated-nats") as server:
        yield server


@pytest.fixture
def isolated_imports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Undo what load_module does to sys.path, and forget the test's own modules."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``DASYNC_NATS_*`` in this process's environment (in-process commands)."""
    for name in NATS_ENV:
        monkeypatch.delenv(name)
    return monkeypatch


SERVICE = """
    import dasync

    @dasync.service
    class Echo:
        async def echo(self, text: str) -> str:
            if text == "fail":
                raise ValueError("asked to fail")
            return text
"""

SLOW = """
    import asyncio
    import dasync

    @dasync.service
    class Slow:
        async def work(self, seconds: float) -> str:
            print("slow: started", flush=True)
            await dasync.io(asyncio.sleep(seconds))
            print("slow: done", flush=True)
            return "done"
"""

GREET = """
    async def main(echo: Echo) -> dict[str, str]:
        return {"said": await echo.echo("hello")}
"""


# --- help --------------------------------------------------------------------------------------


def test_python_m_dasync_help() -> None:
    result = dasync_cmd("--help", cwd=ROOT)
    assert result.returncode == 0
    assert "usage: dasync" in result.stdout
    for command in ("run", "call", "server"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("command", "phrases"),
    [
        ([], ["durable workflows", "run", "call", "server"]),
        (
            ["run"],
            [
                "FILE",
                "--container",
                "async def main",
                "Ctrl-C",
                "--nats URL",
                "--memory",
                "--nats-user",
                "--nats-password",
                "--nats-token",
                "--nats-creds",
                "--nats-tls-ca",
                "--nats-tls-cert",
                "--nats-tls-key",
                "DASYNC_NATS_URL",
                "./.dasync/nats/",
                "exit status",
            ],
        ),
        (
            ["call"],
            ["SERVICE.METHOD", "--nats URL", "--timeout", "--nats-creds", "./.dasync/", "exit"],
        ),
        (["server"], ["status", "stop", "./.dasync/nats/"]),
        (["server", "status"], ["embedded NATS server"]),
        (["server", "stop"], ["embedded NATS server"]),
    ],
)
def test_help_of_every_command(
    command: list[str], phrases: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for phrase in phrases:
        assert phrase in text


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: dasync" in capsys.readouterr().err


def test_every_subcommand_is_wired() -> None:
    parser = build_parser()
    for argv in (["run", "x.py"], ["call", "x.y"], ["server", "status"], ["server", "stop"]):
        assert callable(parser.parse_args(argv).handler)


# --- load_module and discover, in-process -----------------------------------------------------


@pytest.mark.usefixtures("isolated_imports")
class TestLoadAndDiscover:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ModuleLoadError, match="no such file"):
            load_module(tmp_path / "absent.py")

    def test_directory_and_non_python_file(self, tmp_path: Path) -> None:
        with pytest.raises(ModuleLoadError, match="is a directory"):
            load_module(tmp_path)
        with pytest.raises(ModuleLoadError, match=r"not a Python file"):
            load_module(write(tmp_path, "notes.txt", "hello"))

    def test_import_error_shows_the_cause_and_the_users_line(self, tmp_path: Path) -> None:
        path = write(tmp_path, "broken_import_mod.py", "x = 1\nimport no_such_module_xyz\n")
        with pytest.raises(ModuleLoadError) as info:
            load_module(path)
        text = str(info.value)
        assert "ModuleNotFoundError" in text and "no_such_module_xyz" in text
        assert f'"{path}", line 2' in text
        assert "importlib" not in text
        assert "broken_import_mod" not in sys.modules

    def test_relative_import_gets_a_hint(self, tmp_path: Path) -> None:
        path = write(tmp_path, "relative_mod_xyz.py", "from .contracts import Order\n")
        with pytest.raises(ModuleLoadError, match="import siblings absolutely"):
            load_module(path)

    def test_syntax_error(self, tmp_path: Path) -> None:
        with pytest.raises(ModuleLoadError, match="SyntaxError"):
            load_module(write(tmp_path, "syntax_err_mod.py", "def f(:\n"))

    def test_sibling_imports_and_stable_name(self, tmp_path: Path) -> None:
        write(tmp_path, "sibling_contracts_xyz.py", "class Boom(Exception):\n    pass\n")
        path = write(tmp_path, "sibling_service_xyz.py", "from sibling_contracts_xyz import Boom\n")
        module = load_module(path)
        assert module.__name__ == "sibling_service_xyz"
        assert sys.modules["sibling_service_xyz"] is module
        assert module.Boom.__module__ == "sibling_contracts_xyz"
        assert load_module(path) is module  # loading the same file again is a no-op

    def test_name_taken_by_another_module(self, tmp_path: Path) -> None:
        with pytest.raises(ModuleLoadError, match="already taken"):
            load_module(write(tmp_path, "json.py", "x = 1\n"))

    def test_no_service_lists_what_was_found(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "no_service_mod.py",
            """
            from typing import Protocol

            class Alpha: ...
            class Beta: ...

            class Payments(Protocol):
                async def pay(self, amount: int) -> None: ...
            """,
        )
        with pytest.raises(DiscoveryError) as info:
            discover(load_module(path))
        text = str(info.value)
        assert "defines no service" in text
        assert "subclasses its Protocol contract or is decorated @dasync.service" in text
        assert "found classes: Alpha, Beta" in text
        assert "Payments" in text and "without an implementation" in text

    def test_imported_services_are_not_run_but_named(self, tmp_path: Path) -> None:
        write(tmp_path, "provider_mod_xyz.py", SERVICE)
        path = write(tmp_path, "importer_mod_xyz.py", "from provider_mod_xyz import Echo\n")
        with pytest.raises(DiscoveryError, match=r"Echo \(from provider_mod_xyz\)"):
            discover(load_module(path))

    def test_services_and_main(self, tmp_path: Path) -> None:
        path = write(tmp_path, "with_main_mod.py", SERVICE, "async def main() -> None: ...\n")
        services, found_main = discover(load_module(path))
        assert [cls.__name__ for cls in services] == ["Echo"]
        assert found_main is not None and found_main.__name__ == "main"

    def test_main_only_is_accepted(self, tmp_path: Path) -> None:
        path = write(tmp_path, "main_only_mod.py", "async def main() -> int:\n    return 1\n")
        assert discover(load_module(path))[0] == []

    def test_plain_def_main_is_rejected(self, tmp_path: Path) -> None:
        path = write(tmp_path, "sync_main_mod.py", SERVICE, "def main() -> None: ...\n")
        with pytest.raises(DiscoveryError, match="async def main"):
            discover(load_module(path))


# --- dasync run, end to end (on the embedded NATS server unless said otherwise) -----------------


def test_run_without_services_fails_with_explanation(tmp_path: Path) -> None:
    write(tmp_path, "empty.py", "class A: ...\nclass B: ...\n")
    result = dasync_cmd("run", "empty.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "empty.py defines no service" in result.stderr
    assert "found classes: A, B" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".dasync").exists()  # no server started for a file that cannot run


def test_run_missing_file(tmp_path: Path) -> None:
    result = dasync_cmd("run", "nope.py", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: nope.py: no such file"


def test_run_import_error(tmp_path: Path) -> None:
    write(tmp_path, "broken.py", "import no_such_module_xyz\n")
    result = dasync_cmd("run", "broken.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "importing it failed with ModuleNotFoundError" in result.stderr
    assert "import no_such_module_xyz" in result.stderr


def test_run_invalid_service_reports_contract_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        "invalid.py",
        """
        import dasync

        @dasync.service
        class Untyped:
            async def go(self, x) -> None: ...
        """,
    )
    result = dasync_cmd("run", "invalid.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "parameter 'x' has no type annotation" in result.stderr
    assert find_embedded(tmp_path / ".dasync") is None


def test_main_result_is_printed_and_the_server_stopped(tmp_path: Path) -> None:
    write(tmp_path, "greet.py", SERVICE, GREET)
    result = dasync_cmd("run", "greet.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dasync: started the NATS server of this directory at nats://")
    assert "(pid " in lines[0] and "store and log in ./.dasync/nats" in lines[0]
    assert lines[1] == f"dasync: running greet.py on NATS at {url_in(lines[0])}"
    assert "  service Echo: echo" in lines
    assert "  main(echo)" in lines
    assert 'dasync: main() returned {"said":"hello"}' in lines
    assert (
        lines[-1] == "dasync: stopped the NATS server of this directory (no dasync process uses it)"
    )
    assert result.stderr == ""
    assert (tmp_path / ".dasync" / "nats" / "jetstream").is_dir()
    assert find_embedded(tmp_path / ".dasync") is None
    assert nats_servers_under(tmp_path) == []


def test_serve_runs_the_services_of_a_file_with_main_without_main(
    tmp_path: Path, start: type[Running]
) -> None:
    write(tmp_path, "greet.py", SERVICE, GREET)
    server = start("run", "greet.py", "--serve", cwd=tmp_path)
    server.wait_for_line("dasync: ready, serving until Ctrl-C")
    assert "  main(echo)" in server.seen  # hosted, not started
    called = dasync_cmd("call", "Echo.echo", '{"text": "hi"}', cwd=tmp_path)
    assert called.returncode == 0, called.stderr
    returncode, lines, stderr = server.stop(signal.SIGTERM)
    assert returncode == 0, stderr
    assert not any("main() returned" in line for line in lines)


CONNECT_SCRIPT = """
import asyncio, sys
import dasync

async def main():
    try:
        async with dasync.connect() as client:
            ok, body = await asyncio.wait_for(client.call_raw("Echo", "echo", b'{"text":"hi"}'), 20)
            print("result", ok, body.decode())
    except ConnectionError as exc:
        print("refused", exc)

asyncio.run(main())
"""


def test_connect_with_no_url_finds_the_server_of_this_directory(
    tmp_path: Path, start: type[Running]
) -> None:
    """``dasync.connect()`` reaches what ``dasync run`` serves here, as ``dasync call`` does;
    with nothing running it says how to start something, instead of reaching nothing."""
    write(tmp_path, "client.py", CONNECT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "DASYNC_NATS_URL"}
    alone = subprocess.run(
        [sys.executable, "client.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert alone.stdout.startswith("refused dasync.connect(): no NATS server"), alone.stderr
    assert "dasync run FILE" in alone.stdout
    write(tmp_path, "serve.py", SERVICE)
    server = start("run", "serve.py", cwd=tmp_path)
    server.wait_for_line("dasync: ready")
    found = subprocess.run(
        [sys.executable, "client.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert found.stdout.startswith("result True"), (found.stdout, found.stderr)
    assert server.stop()[0] == 0


def test_memory_backend(tmp_path: Path) -> None:
    write(tmp_path, "greet.py", SERVICE, GREET)
    result = dasync_cmd("run", "greet.py", "--memory", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "dasync: running greet.py on the in-memory transport (this process only)"
    assert lines[-1] == 'dasync: main() returned {"said":"hello"}'
    assert not (tmp_path / ".dasync").exists()


def test_main_raising_exits_1_with_the_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        "boom.py",
        SERVICE,
        """
        async def main(echo: Echo) -> None:
            await echo.echo("first")
            raise ValueError("the roof is on fire")
        """,
    )
    result = dasync_cmd("run", "boom.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "error: main() raised ValueError: the roof is on fire" in result.stderr
    assert 'boom.py", line' in result.stderr  # the user's own frame is shown...
    assert "_engine" not in result.stderr  # ...and dasync's are not
    assert find_embedded(tmp_path / ".dasync") is None


def test_container_default_and_option(tmp_path: Path) -> None:
    source = """
        import dasync

        @dasync.service
        class Greeter:
            def __init__(self, greeting: str) -> None:
                self.greeting = greeting

            async def greet(self, name: str) -> str:
                return f"{self.greeting}, {name}"

        container = {"greeting": "hello"}

        async def main(greeter: Greeter) -> str:
            return await greeter.greet("Ada")
        """
    write(tmp_path, "greeter.py", source)
    write(tmp_path, "settings.py", "french = {'greeting': 'bonjour'}\n")
    default = dasync_cmd("run", "greeter.py", "--memory", cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert default.stdout.splitlines()[-1] == 'dasync: main() returned "hello, Ada"'
    chosen = dasync_cmd("run", "greeter.py", "--container", "settings:french", cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stderr
    assert 'dasync: main() returned "bonjour, Ada"' in chosen.stdout.splitlines()
    wrong = dasync_cmd("run", "greeter.py", "--container", "settings", cwd=tmp_path)
    assert wrong.returncode == 2
    assert "expected MODULE:ATTR" in wrong.stderr


def test_missing_injection_is_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        "needs.py",
        """
        import dasync

        @dasync.service
        class Needy:
            def __init__(self, database_url: str) -> None: ...

            async def go(self) -> None: ...
        """,
    )
    result = dasync_cmd("run", "needs.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "database_url" in result.stderr
    assert find_embedded(tmp_path / ".dasync") is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_without_main_stops_cleanly_on_signal(
    sig: signal.Signals, tmp_path: Path, start: type[Running]
) -> None:
    write(tmp_path, "serve.py", SERVICE)
    process = start("run", "serve.py", cwd=tmp_path)
    process.wait_for_line("dasync: ready, serving until Ctrl-C")
    assert "  service Echo: echo" in process.seen
    returncode, lines, stderr = process.stop(sig)
    assert returncode == 0, stderr
    assert f"dasync: {sig.name} received, stopping" in lines
    assert lines[-1].startswith("dasync: stopped the NATS server of this directory")
    assert "Traceback" not in stderr
    assert find_embedded(tmp_path / ".dasync") is None


def test_stopping_lets_work_in_flight_finish(tmp_path: Path, start: type[Running]) -> None:
    write(tmp_path, "slow.py", SLOW)
    server = start("run", "slow.py", cwd=tmp_path)
    server.wait_for_line("dasync: ready")
    call = start("call", "Slow.work", '{"seconds": 1.5}', cwd=tmp_path)
    server.wait_for_line("slow: started")
    returncode, lines, stderr = server.stop(signal.SIGTERM)
    assert returncode == 0, stderr
    assert lines.index("dasync: SIGTERM received, stopping") < lines.index("slow: done")
    # what the stop waits for is said
    waiting = "dasync: stopping: letting 1 delivery in flight finish (up to 10 s)"
    assert lines.index("dasync: SIGTERM received, stopping") < lines.index(waiting), lines
    call_status, call_lines, call_stderr = call.finish()
    assert (call_status, call_lines) == (0, ['"done"']), call_stderr


def test_interrupting_main_exits_130(tmp_path: Path, start: type[Running]) -> None:
    write(
        tmp_path,
        "forever.py",
        SERVICE,
        """
        import asyncio

        async def main(echo: Echo) -> None:
            print(await echo.echo("main: started"))
            await asyncio.sleep(3600)
        """,
    )
    process = start("run", "forever.py", cwd=tmp_path)
    process.wait_for_line("main: started")
    returncode, lines, stderr = process.stop(signal.SIGINT)
    assert returncode == 130, stderr
    assert (
        "dasync: SIGINT received, main() did not finish; stopping "
        "(it is kept in NATS and resumes when this file runs here again)"
    ) in lines
    assert "Traceback" not in stderr


def test_running_a_file_again_resumes_its_interrupted_main_and_never_doubles_it(
    tmp_path: Path, start: type[Running]
) -> None:
    write(
        tmp_path,
        "waits.py",
        SERVICE,
        """
        import asyncio
        from pathlib import Path

        @dasync.service
        class Gate:
            async def released(self) -> bool:  # a durable call: its answer is journaled
                return Path("release").exists()

        async def main(echo: Echo, gate: Gate) -> str:
            print(await echo.echo(f"main: started {dasync.call_id()}"), flush=True)
            while not await gate.released():
                await asyncio.sleep(0.2)  # a durable timer: nothing runs while it waits
            return dasync.call_id()
        """,
    )
    first = start("run", "waits.py", cwd=tmp_path)
    started = first.wait_for_line("main: started ")
    assert first.stop(signal.SIGINT)[0] == 130
    (tmp_path / "release").write_text("go")
    again = start("run", "waits.py", cwd=tmp_path)
    again.wait_for_line("dasync: resuming main() of an earlier run (routine run-1)")
    line = again.wait_for_line("dasync: main() returned")
    assert line == 'dasync: main() returned "run-1"', line
    assert started == "main: started run-1"
    assert again.finish()[0] == 0
    # finished: the next run is a new main
    third = start("run", "waits.py", cwd=tmp_path)
    assert third.wait_for_line("dasync: main() returned") == 'dasync: main() returned "run-2"'
    assert third.finish()[0] == 0


def test_two_files_in_one_directory_keep_their_own_main(tmp_path: Path) -> None:
    """Both examples define main() in a service.py: each runs its own, on its own queue."""
    from dasync.cli._run import main_service_name

    names = set()
    for folder in ("coffee", "shop", "shop"):
        module = types.ModuleType("service")
        module.__file__ = str(tmp_path / folder / "service.py")
        names.add(main_service_name(module))
    assert len(names) == 2
    assert all(re.fullmatch(r"main_service_[0-9a-f]{8}", name) for name in names)


# --- the embedded server: shared, reused, reported ---------------------------------------------


def test_second_run_in_the_directory_reuses_the_server(
    tmp_path: Path, start: type[Running]
) -> None:
    write(tmp_path, "serve.py", SERVICE)
    first = start("run", "serve.py", cwd=tmp_path)
    url = url_in(first.wait_for_line("dasync: started the NATS server of this directory"))
    first.wait_for_line("dasync: ready")
    second = start("run", "serve.py", cwd=tmp_path)
    line = second.wait_for_line("dasync: reusing the NATS server of this directory")
    assert url_in(line) == url and "started by another dasync process" in line
    second.wait_for_line("dasync: ready")

    status = dasync_cmd("server", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"runs at {url}" in status.stdout
    (users,) = [line for line in status.stdout.splitlines() if "used by dasync processes" in line]
    assert str(first.proc.pid) in users and str(second.proc.pid) in users

    returncode, lines, stderr = first.stop(signal.SIGTERM)
    assert returncode == 0, stderr
    assert (
        lines[-1]
        == f"dasync: left the NATS server running for the dasync processes {second.proc.pid}"
    )
    called = dasync_cmd("call", "Echo.echo", '{"text": "still there"}', cwd=tmp_path)
    assert (called.returncode, called.stdout) == (0, '"still there"\n'), called.stderr

    returncode, lines, stderr = second.stop(signal.SIGINT)
    assert returncode == 0, stderr
    assert (
        lines[-1] == "dasync: stopped the NATS server of this directory (no dasync process uses it)"
    )
    assert find_embedded(tmp_path / ".dasync") is None


def test_server_status_and_stop_after_a_killed_run(tmp_path: Path, start: type[Running]) -> None:
    absent = dasync_cmd("server", "status", cwd=tmp_path)
    assert absent.returncode == 3
    assert "no NATS server is running for this directory (./.dasync/nats)" in absent.stdout
    write(tmp_path, "serve.py", SERVICE)
    process = start("run", "serve.py", cwd=tmp_path)
    url = url_in(process.wait_for_line("dasync: started the NATS server"))
    process.wait_for_line("dasync: ready")
    process.proc.kill()  # as a crash would: the server stays
    process.proc.wait()

    status = dasync_cmd("server", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert f"runs at {url}" in status.stdout
    assert "used by dasync processes: none" in status.stdout
    stopped = dasync_cmd("server", "stop", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert "dasync: stopped the NATS server of this directory (pid" in stopped.stdout
    assert find_embedded(tmp_path / ".dasync") is None
    again = dasync_cmd("server", "stop", cwd=tmp_path)
    assert again.returncode == 0
    assert "no NATS server is running" in again.stdout


def test_credentials_in_the_environment_are_ignored_by_the_embedded_server(tmp_path: Path) -> None:
    write(tmp_path, "greet.py", SERVICE, GREET)
    result = dasync_cmd("run", "greet.py", cwd=tmp_path, env={"DASYNC_NATS_TOKEN": "t0ken"})
    assert result.returncode == 0, result.stderr
    assert "dasync: note: DASYNC_NATS_TOKEN ignored: the embedded server takes no credentials" in (
        result.stderr
    )
    assert "t0ken" not in result.stdout + result.stderr


# --- an existing NATS server: --nats URL and DASYNC_NATS_* -------------------------------------


def test_run_and_call_on_a_given_server(
    tmp_path: Path, start: type[Running], nats_server: NatsServer
) -> None:
    write(tmp_path, "serve.py", SERVICE)
    process = start("run", "serve.py", "--nats", nats_server.url, cwd=tmp_path)
    assert process.wait_for_line("dasync: running") == (
        f"dasync: running serve.py on NATS at {nats_server.url}"
    )
    process.wait_for_line("dasync: ready")
    by_flag = dasync_cmd(
        "call", "Echo.echo", '{"text": "flag"}', "--nats", nats_server.url, cwd=tmp_path
    )
    assert (by_flag.returncode, by_flag.stdout) == (0, '"flag"\n'), by_flag.stderr
    by_env = dasync_cmd(
        "call",
        "Echo.echo",
        '{"text": "env"}',
        cwd=tmp_path,
        env={"DASYNC_NATS_URL": nats_server.url},
    )
    assert (by_env.returncode, by_env.stdout) == (0, '"env"\n'), by_env.stderr
    returncode, lines, stderr = process.stop(signal.SIGTERM)
    assert returncode == 0, stderr
    assert lines[-1] == "dasync: SIGTERM received, stopping"  # not our server to stop
    assert nats_server.running
    assert not (tmp_path / ".dasync").exists()


def test_call_without_a_worker_times_out_with_the_routine_id(
    tmp_path: Path, start: type[Running], nats_server: NatsServer
) -> None:
    write(tmp_path, "serve.py", SERVICE)
    process = start("run", "serve.py", cwd=tmp_path, env={"DASYNC_NATS_URL": nats_server.url})
    process.wait_for_line("dasync: ready")
    assert process.stop(signal.SIGTERM)[0] == 0  # Echo's queue exists, no worker serves it
    started = time.monotonic()
    result = dasync_cmd(
        "call", "Echo.echo", '{"text": "later"}', "--nats", nats_server.url, "--timeout", "1",
        cwd=tmp_path,
    )  # fmt: skip
    assert time.monotonic() - started < 10
    assert result.returncode == 3
    match = re.search(r"The routine keeps running: its id is ([0-9a-f]{32})", result.stderr)
    assert match, result.stderr
    assert "no reply from Echo.echo within 1 s" in result.stderr

    # the call is durable: a worker started later answers it
    process = start("run", "serve.py", "--nats", nats_server.url, cwd=tmp_path)
    process.wait_for_line("dasync: ready")
    assert process.stop()[0] == 0


def test_user_and_password(tmp_path: Path, start: type[Running]) -> None:
    write(tmp_path, "serve.py", SERVICE)
    with NatsServer(
        store_dir=tmp_path / "operated-nats", args=("--user", "alice", "--pass", "s3cret")
    ) as server:
        process = start(
            "run", "serve.py", "--nats", server.url, "--nats-user", "alice",
            "--nats-password", "s3cret", cwd=tmp_path,
        )  # fmt: skip
        process.wait_for_line("dasync: ready")
        env = {
            "DASYNC_NATS_URL": server.url,
            "DASYNC_NATS_USER": "alice",
            "DASYNC_NATS_PASSWORD": "s3cret",
        }
        called = dasync_cmd("call", "Echo.echo", '{"text": "authorized"}', cwd=tmp_path, env=env)
        assert (called.returncode, called.stdout) == (0, '"authorized"\n'), called.stderr
        refused = dasync_cmd(
            "call", "Echo.echo", '{"text": "x"}', "--nats-password", "hunter2", "--timeout", "2",
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert refused.returncode == 3
        assert refused.stderr.startswith("error: ") and server.url in refused.stderr
        assert "authorization violation" in refused.stderr.lower()
        assert "hunter2" not in refused.stderr
        assert process.stop()[0] == 0


@pytest.mark.usefixtures("isolated_imports")
def test_run_gives_up_on_an_unreachable_server(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setattr(_nats, "CONNECT_WAIT", 0.5)
    clean_env.chdir(tmp_path)
    write(tmp_path, "unreachable_svc_xyz.py", SERVICE)
    url = f"nats://bob:pw@127.0.0.1:{closed_port()}"
    assert main(["run", "unreachable_svc_xyz.py", "--nats", url]) == 3
    err = capsys.readouterr().err
    assert f"error: cannot connect to NATS at {redact(url)} within 0.5 s" in err
    assert "ConnectionRefusedError" in err
    assert "pw" not in err


@pytest.mark.usefixtures("isolated_imports")
def test_a_slow_connection_says_what_it_waits_for(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setattr(_nats, "CONNECT_WAIT", 0.6)
    clean_env.setattr(_nats, "NOTICE_AFTER", 0.1)
    clean_env.chdir(tmp_path)
    write(tmp_path, "slow_connect_svc_xyz.py", SERVICE)
    url = f"nats://127.0.0.1:{closed_port()}"
    assert main(["run", "slow_connect_svc_xyz.py", "--nats", url]) == 3
    lines = capsys.readouterr().err.splitlines()
    assert f"dasync: waiting for NATS at {url} (up to 0.6 s)..." in lines, lines
    assert lines[-1].startswith(f"error: cannot connect to NATS at {url} within 0.6 s"), lines


def test_call_gives_up_on_an_unreachable_server(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{closed_port()}"
    result = dasync_cmd("call", "Echo.echo", "--nats", url, "--timeout", "1", cwd=tmp_path)
    assert result.returncode == 3
    assert f"error: cannot connect to NATS at {url} within 1 s: ConnectionRefusedError" in (
        result.stderr
    )


# --- dasync call ---------------------------------------------------------------------------------


def test_call_a_running_service(tmp_path: Path, start: type[Running]) -> None:
    write(tmp_path, "serve.py", SERVICE)
    process = start("run", "serve.py", cwd=tmp_path)
    process.wait_for_line("dasync: ready")

    ok = dasync_cmd("call", "Echo.echo", '{"text": "hi"}', cwd=tmp_path)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, '"hi"\n', "")

    failed = dasync_cmd("call", "Echo.echo", '{"text": "fail"}', "--traceback", cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert "error: Echo.echo raised ValueError: asked to fail" in failed.stderr
    assert 'serve.py", line' in failed.stderr  # --traceback: where it was raised

    bad_args = dasync_cmd("call", "Echo.echo", '{"text": 5}', cwd=tmp_path)
    assert bad_args.returncode == 1
    assert "raised InvalidArguments: Echo.echo(): argument 'text'" in bad_args.stderr

    no_method = dasync_cmd("call", "Echo.shout", cwd=tmp_path)
    assert no_method.returncode == 1
    assert "raised UnknownMethod" in no_method.stderr

    no_service = dasync_cmd("call", "Nobody.echo", cwd=tmp_path)
    assert no_service.returncode == 1
    assert "error: Nobody.echo: no worker of Nobody has ever started" in no_service.stderr
    assert "services known there: Echo" in no_service.stderr  # the embedded server lists
    assert "--wait queues the call" in no_service.stderr
    # --wait: the call is kept until Nobody's worker starts (here: it never does)
    queued = dasync_cmd("call", "Nobody.echo", "--wait", "--timeout", "1", cwd=tmp_path)
    assert queued.returncode == 3 and "no reply from Nobody.echo within 1 s" in queued.stderr
    assert process.stop()[0] == 0


def test_call_with_nothing_running_here_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    result = dasync_cmd("call", "Echo.echo", '{"text": "hi"}', cwd=tmp_path)
    assert time.monotonic() - started < 10
    assert result.returncode == 3
    assert "no NATS server to talk to" in result.stderr
    assert "'dasync run FILE'" in result.stderr and "--nats URL" in result.stderr
    assert not (tmp_path / ".dasync").exists()  # call never starts a server


# --- command line and environment errors, in-process ---------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["call", "echo", "{}"], {}, "expected SERVICE.METHOD"),
        (["call", "Echo.echo", "{not json"], {}, "ARGS is not valid JSON"),
        (["call", "Echo.echo", "[1, 2]"], {}, "ARGS must be a JSON object"),
        (["call", "Echo.echo", "--timeout", "-1"], {}, "--timeout -1: must be 0"),
        (
            ["call", "Echo.echo", "--nats", "memory://"],
            {},
            "the in-memory transport only reaches services in the same process",
        ),
        (["run", "x.py", "--nats", "memory://"], {}, "use --memory instead"),
        (["run", "x.py", "--nats", "http://h:1"], {}, "unsupported scheme 'http'"),
        (["run", "x.py"], {"DASYNC_NATS_URL": "http://h:1"}, "$DASYNC_NATS_URL http://h:1"),
        (["run", "x.py", "--nats", "nats://h:99999"], {}, "bad port number"),
        (["run", "x.py", "--nats", " , "], {}, "no NATS server in it"),
        (["run", "x.py", "--nats-user", "u"], {}, "--nats-user: connection flags need --nats URL"),
        (["run", "x.py", "--memory", "--nats-token", "t"], {}, "do not apply with --memory"),
        (
            ["run", "x.py", "--nats", "nats://h:1", "--nats-password", "p"],
            {},
            "--nats-password needs --nats-user (or $DASYNC_NATS_USER)",
        ),
        (
            ["run", "x.py"],
            {"DASYNC_NATS_URL": "nats://h:1", "DASYNC_NATS_PASSWORD": "p"},
            "$DASYNC_NATS_PASSWORD needs --nats-user",
        ),
        (
            ["call", "A.b", "--nats", "nats://h:1", "--nats-token", "t", "--nats-user", "u"],
            {},
            "two ways to authenticate",
        ),
        (
            ["run", "x.py", "--nats", "nats://h:1", "--nats-creds", "/no/such.creds"],
            {},
            "--nats-creds /no/such.creds: no such file",
        ),
        (
            ["run", "x.py"],
            {"DASYNC_NATS_URL": "tls://h:1", "DASYNC_NATS_TLS_CA": "/no/ca.pem"},
            "$DASYNC_NATS_TLS_CA /no/ca.pem: no such file",
        ),
        (
            ["run", "x.py", "--nats", "nats://h:1", "--nats-tls-key", __file__],
            {},
            "--nats-tls-key needs --nats-tls-cert",
        ),
        (
            ["run", "x.py", "--nats", "tls://h:1", "--nats-tls-ca", __file__],
            {},
            "cannot load the TLS files",
        ),
    ],
)
def test_bad_flags_and_environment(
    argv: list[str],
    env: dict[str, str],
    message: str,
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env.chdir(tmp_path)
    for name, value in env.items():
        clean_env.setenv(name, value)
    started = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - started < 5
    assert message in capsys.readouterr().err
    assert not (tmp_path / ".dasync").exists()


def test_memory_and_nats_flags_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "x.py", "--memory", "--nats", "nats://h:1"])
    assert info.value.code == 2
    assert "not allowed with argument --memory" in capsys.readouterr().err


def test_flags_override_the_environment(tmp_path: Path) -> None:
    creds = write(tmp_path, "app.creds", "not checked here\n")
    args = build_parser().parse_args(
        ["run", "x.py", "--nats-token", "from-flag", "--nats-creds", str(creds)]
    )
    env = {
        "DASYNC_NATS_URL": "nats://a:4222, nats://b:4222",
        "DASYNC_NATS_TOKEN": "from-env",
        "DASYNC_NATS_CREDS": "/ignored.creds",
    }
    target = resolve_target(args, env, command="run")
    assert target.kind == "nats" and target.source == "$DASYNC_NATS_URL"
    assert target.options == NatsOptions(
        servers=("nats://a:4222", "nats://b:4222"), token="from-flag", creds=str(creds)
    )
    args = build_parser().parse_args(["run", "x.py", "--nats", "nats://u:pw@c:4222"])
    target = resolve_target(args, {"DASYNC_NATS_URL": "nats://ignored:4222"}, command="run")
    assert target.options is not None and target.options.servers == ("nats://u:pw@c:4222",)
    assert target.url == "nats://u:***@c:4222"
    memory = resolve_target(
        build_parser().parse_args(["run", "x.py", "--memory"]), env, command="run"
    )
    assert memory.kind == "memory"
    embedded = resolve_target(
        build_parser().parse_args(["run", "x.py", "--nats-namespace", "dev"]),
        {"DASYNC_NATS_TOKEN": "t", "DASYNC_NATS_NAMESPACE": "prod"},
        command="run",
    )
    assert embedded.kind == "embedded" and embedded.ignored == ("DASYNC_NATS_TOKEN",)
    assert embedded.options is not None
    assert (embedded.options.namespace, embedded.options.token) == ("dev", None)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://alice:s3cret@h:4222", "nats://alice:***@h:4222"),
        ("tls://t0ken@h:4222", "tls://***@h:4222"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


# The output of `call` is also checked against an in-process runtime (quick to debug).


@dasync.service
class CliEcho:
    async def echo(self, text: str) -> dict[str, str]:
        if text == "fail":
            raise ValueError("asked to fail")
        return {"echo": text}


@pytest.fixture
async def in_process_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    async with dasync.testing.runtime([CliEcho]) as rt:

        @asynccontextmanager
        async def open_client(options: object, limit: float | None) -> AsyncIterator[object]:
            yield rt.client

        monkeypatch.setattr(_call, "_open_client", open_client)
        yield


def call_args(*argv: str) -> tuple[argparse.Namespace, Target]:
    args = build_parser().parse_args(["call", *argv, "--nats", "nats://127.0.0.1:1"])
    return args, resolve_target(args, {}, command="call")


@pytest.mark.usefixtures("in_process_client")
async def test_call_prints_the_json_result(capsys: pytest.CaptureFixture[str]) -> None:
    args, target = call_args("CliEcho.echo", '{"text": "hi"}')
    assert await _call._call(args, target, "CliEcho", "echo", b'{"text": "hi"}') == 0
    assert capsys.readouterr().out == '{\n  "echo": "hi"\n}\n'


@pytest.mark.usefixtures("in_process_client")
@pytest.mark.parametrize(
    ("method", "payload", "message"),
    [
        ("echo", b'{"text": "fail"}', "error: CliEcho.echo raised ValueError: asked to fail"),
        ("echo", b'{"text": 5}', "raised InvalidArguments: CliEcho.echo(): argument 'text'"),
        ("nope", b"{}", "raised UnknownMethod"),
    ],
)
async def test_call_failures_print_type_and_message(
    method: str, payload: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args, target = call_args(f"CliEcho.{method}", payload.decode(), "--traceback")
    assert await _call._call(args, target, "CliEcho", method, payload) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_trim_traceback_keeps_user_frames_only() -> None:
    dasync_file = Path(dasync.__file__).parent / "_proxy.py"
    text = (
        "Traceback (most recent call last):\n"
        f'  File "{dasync_file}", line 1, in call\n'
        "    return await durable_call(method, payload)\n"
        '  File "/app/service.py", line 7, in greet\n'
        '    raise ValueError("no")\n'
        "ValueError: no"
    )
    assert trim_traceback(text) == (
        "Traceback (most recent call last):\n"
        '  File "/app/service.py", line 7, in greet\n'
        '    raise ValueError("no")\n'
        "ValueError: no"
    )
