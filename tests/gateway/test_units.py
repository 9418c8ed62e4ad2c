"""The gateway's decisions on their own: Prefer, public ids, problems from failure
payloads, addresses, and the error when the HTTP stack is missing."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

import dasync
from dasync._codec import encode_failure
from dasync._gateway import parse_address
from dasync._gateway._ids import RoutineIds
from dasync._gateway._prefer import Wait, decide
from dasync._gateway._problems import failure_problem
from dasync.codegen import _http as http

from ._services import OutOfStock, Store


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ([], Wait(http.DEFAULT_WAIT)),
        (["wait=5"], Wait(5.0, ("wait=5",), ("wait=5",))),
        (["respond-async"], Wait(0.0, (), ("respond-async",))),
        (["respond-async, wait=3"], Wait(3.0, ("wait=3",), ("wait=3", "respond-async"))),
        (["Wait = 2 ; x=y"], Wait(2.0, ("wait=2",), ("wait=2",))),
        (["wait=1", "wait=9"], Wait(1.0, ("wait=1",), ("wait=1",))),  # the first counts
        (["wait=100000"], Wait(http.MAX_WAIT, ("wait=300",), ("wait=300",))),
        (["wait=soon", "handling=lenient"], Wait(http.DEFAULT_WAIT)),  # ignored
        (['wait="4"'], Wait(4.0, ("wait=4",), ("wait=4",))),
        (["wait=-1"], Wait(http.DEFAULT_WAIT)),
    ],
)
def test_prefer(headers, wait):
    assert decide(headers) == wait


def test_public_ids():
    ids, other = RoutineIds(b"s" * 32), RoutineIds(b"t" * 32)
    routine = ids.fresh()
    public = ids.public("Store", "buy", routine)
    found = ids.parse(public)
    assert found is not None and found.vouched
    assert (found.service, found.method, found.routine_id) == ("Store", "buy", routine)
    # another secret cannot vouch for it; the journal still can (the gateway checks it)
    elsewhere = other.parse(public)
    assert elsewhere is not None and not elsewhere.vouched
    assert elsewhere.routine_id == routine
    # an id started elsewhere, with dots of its own: the rest is the routine id
    untagged = ids.parse("Store.buy.order.42")
    assert untagged is not None and untagged.routine_id == "order.42" and not untagged.vouched
    for bad in ("", "Store", "Store.buy", "Store.b-uy.x", "Store.buy.a/b", ".buy.x"):
        assert ids.parse(bad) is None, bad
    # keys: the same for every gateway, whatever its secret; scoped by principal and method
    assert ids.keyed("alice", "Store", "buy", "k") == other.keyed("alice", "Store", "buy", "k")
    assert ids.keyed("alice", "Store", "buy", "k") != ids.keyed("bob", "Store", "buy", "k")
    assert ids.keyed("alice", "Store", "buy", "k") != ids.keyed("alice", "Store", "brew", "k")
    assert ids.keyed("a", "b", "c", "d") != ids.keyed("a\0b", "", "c", "d")


def test_problems_of_failure_payloads():
    method = dasync.spec_of(Store).methods["buy"]
    declared = failure_problem(method, encode_failure(OutOfStock("book", 9, 1)), "/r")
    assert declared["type"] == http.error_problem_type("tests.gateway._services:OutOfStock")
    assert declared["status"] == http.DECLARED_ERROR_STATUS
    other = failure_problem(method, encode_failure(OSError(2, "gone", "f.txt")), "/r")
    assert other["type"] == "urn:dasync:problem:routine-failed"
    assert other["fields"] == {"errno": 2, "strerror": "gone", "filename": "f.txt"}
    legacy = orjson.dumps({"type": "builtins:ValueError", "message": "old", "args": ["old"]})
    assert failure_problem(method, legacy, "/r")["exception"] == "builtins:ValueError"
    garbage = failure_problem(method, b"\x00not json", "/r")
    assert garbage["status"] == 500 and garbage["exception"] == "dasync._errors:MalformedMessage"


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        (":9000", ("127.0.0.1", 9000)),
        ("9001", ("127.0.0.1", 9001)),
        ("[::1]:80", ("::1", 80)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_addresses(text, address):
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["", "host:", "host:http", "1:70000", "[::1]"])
def test_bad_addresses(text):
    with pytest.raises(ValueError, match="expected"):
        parse_address(text)


def test_without_starlette_the_error_says_what_to_install():
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "import importlib.util; real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'starlette' else real(n, *a)\n"
        "from dasync.cli import main\n"
        "sys.exit(main(['gateway', 'nothing.py']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "pip install 'dasync[http]'" in done.stderr


def test_security_without_an_authenticate_hook_is_refused():
    with pytest.raises(ValueError, match="nothing checks"):
        dasync.gateway_app([Store], security=["bearer"])


def test_command_line_settings(tmp_path, monkeypatch):
    from dasync.cli import build_parser
    from dasync.cli._common import EXIT_USAGE, CliError
    from dasync.cli._gateway import http_settings

    parse = build_parser().parse_args
    assert http_settings(parse(["run", "f.py"])) is None
    for argv, message in (
        (["run", "f.py", "--auth", "auth:hook"], "--auth needs --http"),
        (["gateway", "f.py", "--http", "1:99999"], "--http: expected"),
        (["gateway", "f.py", "--security", "bearer"], "needs --auth"),
        (["gateway", "f.py", "--auth", "nomodule_here:x"], "cannot import"),
        (["gateway", "f.py", "--auth", "auth"], "expected MODULE:ATTR"),
    ):
        with pytest.raises(CliError, match=message) as raised:
            http_settings(parse(argv))
        assert raised.value.code == EXIT_USAGE

    (tmp_path / "gw_auth_hooks.py").write_text(
        "import dasync\n"
        "authenticate = dasync.bearer_auth({'t': 'alice'})\n"
        "def authorize(principal, service, method, action):\n"
        "    return True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["run", "f.py", "--http", ":0", "--auth", "gw_auth_hooks:authenticate"]
    settings = http_settings(parse([*argv, "--authorize", "gw_auth_hooks:authorize"]))
    assert settings is not None
    assert (settings.host, settings.port, settings.security) == ("127.0.0.1", 0, ("bearer",))
    assert settings.authorize is not None and settings.authorize("a", "S", "m", "call")
