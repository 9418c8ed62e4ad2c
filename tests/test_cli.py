"""The ``dasync`` command: help, loading and discovery errors, exit codes, signals, ``call``.

End-to-end behaviour (exit status, signals) runs the real command in a
subprocess and waits on the lines it prints, never on sleeps; loading and
discovery are also tested in-process, where failures are quicker to read.
"""

from __future__ import annotations

import argparse
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import dasync
import dasync.testing
from dasync._runtime._module import DiscoveryError, ModuleLoadError, discover, load_module
from dasync.cli import _call, build_parser, main
from dasync.cli._common import trim_traceback

ROOT = Path(__file__).resolve().parent.parent
LINE_TIMEOUT = 15.0


# --- helpers ---------------------------------------------------------------------------------


def write(directory: Path, name: str, *parts: str) -> Path:
    """A source file made of ``parts``, each dedented on its own."""
    path = directory / name
    path.write_text("\n".join(textwrap.dedent(part) for part in parts))
    return path


def dasync_cmd(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dasync", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


class Running:
    """A ``dasync`` subprocess whose stdout lines can be awaited with a bound."""

    def __init__(self, *args: str | Path, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dasync", *map(str, args)],
            cwd=cwd,
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

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._pump.join(LINE_TIMEOUT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Started processes are killed and their pipes closed, whatever the test did."""
    started: list[Running] = []
    yield started
    for process in started:
        process.close()


@pytest.fixture
def isolated_imports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Undo what load_module does to sys.path, and forget the test's own modules."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


SERVICE = """
    import dasync

    @dasync.service
    class Echo:
        async def echo(self, text: str) -> str:
            return text
"""


# --- help --------------------------------------------------------------------------------------


def test_python_m_dasync_help() -> None:
    result = dasync_cmd("--help", cwd=ROOT)
    assert result.returncode == 0
    assert "usage: dasync" in result.stdout
    assert "run" in result.stdout and "call" in result.stdout


@pytest.mark.parametrize(
    ("command", "phrases"),
    [
        ([], ["durable workflows", "run", "call"]),
        (["run"], ["FILE", "--container", "async def main", "Ctrl-C", "exit status"]),
        (["call"], ["SERVICE.METHOD", "--url", "--timeout", "nats://", "memory://"]),
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
    for command in ("run", "call"):
        args = parser.parse_args([command, "x.y" if command == "call" else "x.py"])
        assert callable(args.handler)


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


# --- dasync run, end to end ------------------------------------------------------------------


def test_run_without_services_fails_with_explanation(tmp_path: Path) -> None:
    write(tmp_path, "empty.py", "class A: ...\nclass B: ...\n")
    result = dasync_cmd("run", "empty.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "empty.py defines no service" in result.stderr
    assert "found classes: A, B" in result.stderr
    assert "Traceback" not in result.stderr


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


def test_main_result_is_printed(tmp_path: Path) -> None:
    write(
        tmp_path,
        "greet.py",
        SERVICE,
        """
        async def main(echo: Echo) -> dict[str, str]:
            return {"said": await echo.echo("hello")}
        """,
    )
    result = dasync_cmd("run", "greet.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  service Echo: echo" in lines
    assert "  main(echo)" in lines
    assert lines[-1] == 'dasync: main() returned {"said":"hello"}'


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
    default = dasync_cmd("run", "greeter.py", cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert default.stdout.splitlines()[-1] == 'dasync: main() returned "hello, Ada"'
    chosen = dasync_cmd("run", "greeter.py", "--container", "settings:french", cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.splitlines()[-1] == 'dasync: main() returned "bonjour, Ada"'
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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_without_main_stops_cleanly_on_signal(
    sig: signal.Signals, tmp_path: Path, running: list[Running]
) -> None:
    write(tmp_path, "serve.py", SERVICE)
    process = Running("run", "serve.py", cwd=tmp_path)
    running.append(process)
    process.wait_for_line("dasync: ready")
    assert "  service Echo: echo" in process.seen
    process.proc.send_signal(sig)
    returncode, lines, stderr = process.finish()
    assert returncode == 0, stderr
    assert f"dasync: {sig.name} received, stopping" in lines
    assert "Traceback" not in stderr


def test_interrupting_main_exits_130(tmp_path: Path, running: list[Running]) -> None:
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
    process = Running("run", "forever.py", cwd=tmp_path)
    running.append(process)
    process.wait_for_line("main: started")
    process.proc.send_signal(signal.SIGINT)
    returncode, lines, stderr = process.finish()
    assert returncode == 130, stderr
    assert "dasync: SIGINT received, main() did not finish; stopping" in lines
    assert "Traceback" not in stderr


# --- dasync call ---------------------------------------------------------------------------------


def test_call_with_memory_url_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert main(["call", "Echo.echo", '{"text": "hi"}', "--url", "memory://"]) == 2
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert "in-memory transport only reaches services in the same process" in err
    assert "nats://" in err


def test_call_with_memory_url_fails_fast_as_a_command() -> None:
    result = dasync_cmd("call", "Echo.echo", "--url", "memory://", cwd=ROOT)
    assert result.returncode == 2
    assert "in-memory transport" in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["call", "echo", "{}"], "expected SERVICE.METHOD"),
        (["call", "Echo.echo", "{not json"], "ARGS is not valid JSON"),
        (["call", "Echo.echo", "[1, 2]"], "ARGS must be a JSON object"),
        (["call", "Echo.echo", "{}", "--url", "bogus://x"], "bogus://x"),
    ],
)
def test_call_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# The rest of `call` runs against an in-process runtime in place of a remote one.


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
        async def open_client(url: str, connect_timeout: float | None) -> AsyncIterator[object]:
            yield rt.client

        monkeypatch.setattr(_call, "_open_client", open_client)
        yield


def call_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["call", *argv])


@pytest.mark.usefixtures("in_process_client")
async def test_call_prints_the_json_result(capsys: pytest.CaptureFixture[str]) -> None:
    args = call_args("CliEcho.echo", '{"text": "hi"}')
    assert await _call._call(args, "CliEcho", "echo", b'{"text": "hi"}') == 0
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
    args = call_args(f"CliEcho.{method}", payload.decode(), "--traceback")
    assert await _call._call(args, "CliEcho", method, payload) == 1
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
