"""Failure payloads come from the network: forged or broken ones never import, never raise
out of decode_failure, never hang; they give RemoteError or MalformedMessage."""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dasync
from dasync._failures import MAX_EXCEPTIONS, MAX_FAILURE_BYTES, decode_failure
from dasync._values import MAX_DEPTH


def payload(*nodes: dict[str, Any], **top: Any) -> bytes:
    return orjson.dumps({"v": 2, "exceptions": list(nodes), **top})


def node(type_path: str = "builtins:ValueError", **fields: Any) -> dict[str, Any]:
    return {"type": type_path, "message": "forged", **fields}


FORGED_TYPES = [
    "this:Nothing",  # importing it prints the Zen of Python
    "antigravity:Fly",
    "dasync_no_such_module:Err",
    "builtins:SystemExit",
    "builtins:KeyboardInterrupt",
    "builtins:GeneratorExit",
    "builtins:BaseException",
    "builtins:object",
    "builtins:eval",
    "builtins:type",
    "os:system",
    "os:error",  # an alias of OSError: only canonical names are looked up
    "subprocess:Popen",
    "builtins:OSError.__init__",
    "builtins:OSError.__class__",
    "builtins:ValueError.mro",
    "dasync._failures:_lookup",
    "tests.codec.test_failures:_hidden.<locals>.Hidden",
    "builtins",
    ":ValueError",
    "builtins:",
    "",
    "builtins:Value Error",
    "builtins:__builtins__",
    "sys:modules",
    "x" * 5000,
]


@pytest.mark.parametrize("type_path", FORGED_TYPES)
def test_forged_type_names_give_remote_error_and_import_nothing(type_path: str) -> None:
    before = set(sys.modules)
    err = decode_failure(payload(node(type_path, args=["rm -rf /"])))
    assert type(err) is dasync.RemoteError
    assert err.message == "forged" and err.remote_args == ("rm -rf /",)
    assert set(sys.modules) == before


def test_forged_names_in_format_1_give_remote_error_too() -> None:
    before = set(sys.modules)
    for type_path in FORGED_TYPES:
        err = decode_failure(orjson.dumps({"type": type_path, "message": "m", "args": []}))
        assert type(err) is dasync.RemoteError, type_path
    assert set(sys.modules) == before


def test_a_loaded_builtin_name_is_still_rebuilt() -> None:
    err = decode_failure(payload(node("builtins:ValueError", args=["fine"])))
    assert type(err) is ValueError and err.args == ("fine",)


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"$tuple": [value]}
    return value


MALFORMED: dict[str, bytes] = {
    "not JSON": b"not json",
    "empty": b"",
    "truncated": b'{"v": 2, "exceptions": [',
    "invalid UTF-8": b"\xff\xfe",
    "array": b"[1, 2]",
    "string": b'"ValueError"',
    "unknown version": payload(node(), v=3),
    "no exceptions": payload(),
    "exceptions not a list": orjson.dumps({"v": 2, "exceptions": {"type": "x"}}),
    "too many exceptions": payload(*[node()] * (MAX_EXCEPTIONS + 1)),
    "exception not an object": payload(["builtins:ValueError"]),  # type: ignore[arg-type]
    "type missing": payload({"message": "m"}),
    "type not a string": payload(node(type_path=5)),  # type: ignore[arg-type]
    "message not a string": payload(node(message=["m"])),
    "args not a list": payload(node(args="abc")),
    "state not an object": payload(node(state=[1])),
    "fields not an object": payload(node(fields="x")),
    "notes not a list": payload(node(notes="n")),
    "traceback not a string": payload(node(traceback=1)),
    "suppress_context not a bool": payload(node(suppress_context=1)),
    "cause out of range": payload(node(cause=1)),
    "cause negative": payload(node(cause=-1)),
    "cause a bool": payload(node(cause=True)),
    "cause a string": payload(node(cause="0")),
    "member out of range": payload(node("builtins:ExceptionGroup", exceptions=[7])),
    "$exc out of range": payload(node(args=[{"$exc": 3}])),
    "$exc not an int": payload(node(args=[{"$exc": "0"}])),
    "$exc in a note": payload(node(notes=[{"$exc": 0}])),
    "unknown tag": payload(node(args=[{"$pickle": "gASV"}])),
    "tag with extra keys": payload(node(args=[{"$bytes": "", "x": 1}])),
    "bad base64": payload(node(args=[{"$bytes": "***"}])),
    "bytes not a string": payload(node(args=[{"$bytes": 1}])),
    "bad float": payload(node(args=[{"$float": "1e999"}])),
    "bad int": payload(node(args=[{"$int": "12a"}])),
    "huge int": payload(node(args=[{"$int": "9" * 100_000}])),
    "unhashable set item": payload(node(args=[{"$set": [[1]]}])),
    "unhashable dict key": payload(node(args=[{"$dict": [[[1], 2]]}])),
    "dict pairs wrong": payload(node(args=[{"$dict": [[1, 2, 3]]}])),
    "bad surrogate text": payload(node(args=[{"$str": "/w=="}])),
    "deep tags": payload(node(args=[_nested(MAX_DEPTH + 5)])),
    "deep lists": b'{"v":2,"exceptions":[{"type":"builtins:ValueError","args":'
    + b"[" * 200
    + b"]" * 200
    + b"}]}",
    "deeper than JSON allows": b"[" * 100_000,
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_payloads_give_malformed_message(data: bytes) -> None:
    err = decode_failure(data)
    assert type(err) is dasync.MalformedMessage, err
    assert "undecodable failure payload" in str(err)
    assert len(str(err)) < 1000


def test_an_oversized_payload_is_refused_before_parsing() -> None:
    data = b'{"v": 2, "exceptions": [' + b" " * MAX_FAILURE_BYTES + b"]}"
    started = time.monotonic()
    err = decode_failure(data)
    assert type(err) is dasync.MalformedMessage and "over the limit" in str(err)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("data", [None, "text", 42, bytearray(b"[]"), memoryview(b"{}")])
def test_non_bytes_never_raise(data: Any) -> None:
    assert isinstance(decode_failure(data), dasync.MalformedMessage)


def test_wrong_constructor_arguments_give_remote_error_not_a_crash() -> None:
    forged = [
        node("builtins:UnicodeDecodeError", args=["only one"]),
        node("builtins:UnicodeDecodeError", fields={"start": "not an int", "object": 5}),
        node("builtins:ExceptionGroup", args=["g", []], fields={"message": "g"}),
        node("builtins:ExceptionGroup", fields={"message": 5}, exceptions=[0]),
        node("builtins:OSError", fields={"errno": "x", "filename": {"$bytes": "AA=="}}),
        node("builtins:StopIteration", state={"__class__": "x", "__dict__": 1}),
    ]
    for forged_node in forged:
        err = decode_failure(payload(forged_node))
        assert isinstance(err, BaseException), forged_node
        assert isinstance(err, Exception)


def test_an_exception_group_cannot_smuggle_a_base_exception() -> None:
    err = decode_failure(
        payload(
            node("builtins:ExceptionGroup", fields={"message": "g"}, exceptions=[1]),
            node("builtins:KeyboardInterrupt"),
        )
    )
    assert not isinstance(err, KeyboardInterrupt)
    members = err.exceptions if isinstance(err, BaseExceptionGroup) else err.state["exceptions"]  # type: ignore[attr-defined]
    assert all(isinstance(m, dasync.RemoteError) for m in members)


def test_cycles_in_links_and_members_end() -> None:
    err = decode_failure(
        payload(
            node(cause=1, context=1, args=[{"$exc": 1}]),
            node(cause=0, context=0, args=[{"$exc": 0}]),
        )
    )
    assert isinstance(err, ValueError) and err.__cause__.__cause__ is err  # type: ignore[union-attr]
    group = decode_failure(payload(node("builtins:ExceptionGroup", exceptions=[0])))
    assert isinstance(group, dasync.RemoteError)


def test_state_cannot_overwrite_exception_internals() -> None:
    err = decode_failure(payload(node(state={"__class__": 1, "__traceback__": 2, "args": 3})))
    assert type(err) is ValueError and err.__traceback__ is None
    assert err.args == () and err.__dict__["args"] == 3  # an attribute, not the real args


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "message",
                    "args",
                    "state",
                    "fields",
                    "exceptions",
                    "cause",
                    "context",
                    "notes",
                    "traceback",
                    "$exc",
                    "$bytes",
                    "$tuple",
                    "$int",
                    "$dict",
                    "$set",
                    "v",
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_json, st.sampled_from(["builtins:ValueError", "builtins:ExceptionGroup", "x:Y"]))
def test_arbitrary_json_never_raises(body: Any, type_path: str) -> None:
    for data in (
        orjson.dumps(body),
        orjson.dumps({"v": 2, "exceptions": [body]}),
        orjson.dumps(
            {"v": 2, "exceptions": [{"type": type_path, "args": [body], "state": {"s": body}}]}
        ),
        orjson.dumps({"type": type_path, "args": body}),
    ):
        err = decode_failure(data)
        assert isinstance(err, Exception)
