"""Exceptions round-trip through encode_failure/decode_failure with their state."""

from __future__ import annotations

import asyncio
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pytest

import dasync
from dasync._failures import (
    BUILTIN_FIELDS,
    MAX_CHAIN_DEPTH,
    MAX_EXCEPTIONS,
    decode_failure,
    encode_failure,
)

from ._shapes import REMOTE_NOTE, canon, shape


class HotelFull(Exception):
    def __init__(self, city: str) -> None:
        super().__init__(f"no room in {city}")
        self.city = city


class OutOfStock(Exception):
    def __init__(self, item: str, wanted: int) -> None:
        super().__init__(item, wanted)
        self.item = item
        self.wanted = wanted


class KeywordOnly(Exception):
    def __init__(self, *, code: int) -> None:
        super().__init__()
        self.code = code


class Plain(Exception):
    pass


class LostKey(KeyError):
    pass


class DiskFull(OSError):
    def __init__(self, path: str) -> None:
        super().__init__(28, "disk full", path)
        self.path = path


@dataclass(frozen=True)
class Frozen(Exception):
    code: int


class Batch(ExceptionGroup[Exception]):
    pass


class Outer:
    class Inner(Exception):
        pass


class Custom(BaseException):
    pass


class CustomGroup(BaseExceptionGroup[BaseException]):
    pass


def _hidden() -> type[Exception]:
    class Hidden(Exception):
        pass

    return Hidden


Hidden = _hidden()


def raised(exc: BaseException) -> BaseException:
    """``exc`` after being raised (it then has a traceback)."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def chained() -> BaseException:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise HotelFull("Rome") from inner
    except HotelFull as exc:
        return exc


def implicit_context() -> BaseException:
    try:
        try:
            raise ValueError("first")
        except ValueError:
            raise OutOfStock("tea", 2)  # noqa: B904 - the implicit context is the point
    except OutOfStock as exc:
        return exc


def from_none() -> BaseException:
    try:
        try:
            raise ValueError("hidden")
        except ValueError:
            raise LookupError("shown") from None
    except LookupError as exc:
        return exc


def with_notes() -> BaseException:
    exc = HotelFull("Oslo")
    exc.add_note("first note")
    exc.add_note("second\nnote")
    return exc


def unicode_decode() -> BaseException:
    try:
        b"ok \xff\x00".decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc
    raise AssertionError


def syntax_error() -> BaseException:
    try:
        compile("x = (1,\n", "<remote>", "exec")
    except SyntaxError as exc:
        return exc
    raise AssertionError


def file_not_found() -> BaseException:
    try:
        open("/nonexistent/dasync/file")
    except OSError as exc:
        return exc
    raise AssertionError


def state_with_exception() -> BaseException:
    exc = Plain("wrapper")
    exc.original = ValueError("inner")  # type: ignore[attr-defined]
    exc.shared = exc.original  # type: ignore[attr-defined]
    return exc


SPECIAL_ARGS = (
    b"\xff\x00",
    (1, (2, 3)),
    [1, [2]],
    2**70 + 1,
    -(2**80),
    float("inf"),
    float("-inf"),
    float("nan"),
    -0.0,
    {1: "int key", (2, 3): "tuple key"},
    {"$looks": "like a tag"},
    {3, 1, 2},
    frozenset({"a"}),
    None,
    True,
    "caf\u00e9 \U0001f600",
    "lone \udcff surrogate",
    ValueError("nested in args"),
)

ROUND_TRIPS: dict[str, Callable[[], BaseException]] = {
    "builtin": lambda: ValueError("bad value"),
    "no args": lambda: Plain(),
    "KeyError args": lambda: KeyError("lost key"),
    "KeyError subclass": lambda: LostKey("k", 1),
    "state set by __init__": lambda: HotelFull("Rome"),
    "two args": lambda: OutOfStock("tea", 3),
    "keyword-only __init__": lambda: KeywordOnly(code=7),
    "frozen dataclass": lambda: Frozen(5),
    "nested class": lambda: Outer.Inner("deep"),
    "raised": lambda: raised(HotelFull("Paris")),
    "cause": chained,
    "implicit context": implicit_context,
    "from None": from_none,
    "notes": with_notes,
    "special args": lambda: Plain(*SPECIAL_ARGS),
    "exception in state": state_with_exception,
    "UnicodeDecodeError": unicode_decode,
    "UnicodeEncodeError": lambda: UnicodeEncodeError("ascii", "caf\u00e9", 3, 4, "no"),
    "UnicodeTranslateError": lambda: UnicodeTranslateError("abc", 1, 2, "no"),
    "OSError fields": lambda: OSError(13, "denied", "/a", None, "/b"),
    "FileNotFoundError raised": file_not_found,
    "OSError no errno": lambda: OSError("just text"),
    "OSError subclass with __init__": lambda: DiskFull("/var"),
    "SyntaxError": syntax_error,
    "StopIteration value": lambda: StopIteration({"result": 42}),
    "ImportError fields": lambda: ImportError("no module", name="mod", path="/p/mod.py"),
    "NameError name": lambda: NameError("name 'x' is not defined", name="x"),
    "AttributeError name": lambda: AttributeError("no attr", name="attr"),
    "ExceptionGroup": lambda: ExceptionGroup("two", [ValueError(1), HotelFull("Rome")]),
    "nested groups": lambda: ExceptionGroup(
        "outer", [KeyError("a"), ExceptionGroup("inner", [OutOfStock("x", 1)])]
    ),
    "group subclass": lambda: Batch("batch", [ValueError("v")]),
    "BaseExceptionGroup": lambda: BaseExceptionGroup("base", [asyncio.CancelledError()]),
    "CancelledError": lambda: asyncio.CancelledError("stop"),
    "CallFailed": lambda: dasync.CallFailed("Svc", "r-1", "poison"),
    "RemoteError": lambda: dasync.RemoteError("x.Y", "m", "tb", (1, b"\x00"), {"a": 1}, ("n",)),
}


@pytest.mark.parametrize("make", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_exception_round_trips_with_its_state(make: Callable[[], BaseException]) -> None:
    original = make()
    rebuilt = decode_failure(encode_failure(original))
    assert shape(rebuilt) == shape(original)
    assert str(rebuilt) == str(original)


def test_state_keys_set_by_init_keep_their_values() -> None:
    rebuilt = decode_failure(encode_failure(HotelFull("Rome")))
    assert isinstance(rebuilt, HotelFull)
    assert rebuilt.city == "Rome"  # not the message, which __init__ gave to args
    assert rebuilt.args == ("no room in Rome",)


def test_chain_is_rebuilt_with_its_classes() -> None:
    rebuilt = decode_failure(encode_failure(chained()))
    assert isinstance(rebuilt, HotelFull) and isinstance(rebuilt.__cause__, KeyError)
    assert rebuilt.__context__ is rebuilt.__cause__  # one object, as in the callee
    assert rebuilt.__suppress_context__


def test_group_members_are_rebuilt() -> None:
    rebuilt = decode_failure(encode_failure(ROUND_TRIPS["nested groups"]()))
    assert isinstance(rebuilt, ExceptionGroup)
    matched, rest = rebuilt.split(OutOfStock)
    assert rest is not None and matched is not None
    assert [type(e) for e in rest.exceptions] == [KeyError]
    inner = matched.exceptions[0]
    assert isinstance(inner, ExceptionGroup) and inner.exceptions[0].args == ("x", 1)


def test_a_base_group_of_exceptions_only_becomes_an_exception_group() -> None:
    original = BaseExceptionGroup("b", [ValueError(1)])
    assert type(original) is ExceptionGroup  # Python's own rule, kept by the rebuild
    assert type(decode_failure(encode_failure(original))) is ExceptionGroup


@pytest.mark.parametrize("builtin", BUILTIN_FIELDS)
def test_every_builtin_field_in_the_table_round_trips(builtin: type[BaseException]) -> None:
    sample = _SAMPLES[builtin]
    assert isinstance(sample, builtin)
    rebuilt = decode_failure(encode_failure(sample))
    assert type(rebuilt) is type(sample) or builtin is SystemExit
    for name in BUILTIN_FIELDS[builtin]:
        got = rebuilt.state[name] if builtin is SystemExit else getattr(rebuilt, name)  # type: ignore[attr-defined]
        assert canon(got) == canon(getattr(sample, name)), name


_SAMPLES: dict[type[BaseException], BaseException] = {
    OSError: OSError(2, "gone", "/a", None, "/b"),
    UnicodeDecodeError: UnicodeDecodeError("utf-16", b"\xff\xfe\x00", 1, 3, "odd"),
    UnicodeEncodeError: UnicodeEncodeError("latin-1", "\u20ac!", 0, 1, "no euro"),
    UnicodeTranslateError: UnicodeTranslateError("x\u20acy", 1, 2, "no"),
    SyntaxError: SyntaxError("bad", ("f.py", 3, 5, "x = (\n", 3, 7)),
    ImportError: ImportError("gone", name="m", path="/m.py"),
    NameError: NameError("n", name="n"),
    AttributeError: AttributeError("a", name="a"),
    StopIteration: StopIteration((1, b"\x01")),
    StopAsyncIteration: StopAsyncIteration("done"),
    SystemExit: SystemExit(3),
    BaseExceptionGroup: ExceptionGroup("msg", [ValueError()]),
}
# every sample sets each field of its row to something other than None
assert all(
    getattr(_SAMPLES[b], n) is not None
    for b, names in BUILTIN_FIELDS.items()
    for n in names
    if n != "winerror"
)


NOT_REBUILT: dict[str, Callable[[], BaseException]] = {
    "SystemExit": lambda: SystemExit(3),
    "KeyboardInterrupt": lambda: KeyboardInterrupt(),
    "GeneratorExit": lambda: GeneratorExit("closing"),
    "custom BaseException": lambda: Custom("x"),
    "custom BaseExceptionGroup": lambda: CustomGroup("g", [Custom("c")]),
    "local class": lambda: raised(Hidden("secret reason")),
}


@pytest.mark.parametrize("make", NOT_REBUILT.values(), ids=NOT_REBUILT.keys())
def test_other_classes_become_remote_error_carrying_everything(
    make: Callable[[], BaseException],
) -> None:
    original = make()
    original.add_note("a note")
    try:
        raise original from ValueError("why")
    except BaseException as exc:
        original = exc
    rebuilt = decode_failure(encode_failure(original))
    assert type(rebuilt) is dasync.RemoteError
    cls = type(original)
    assert rebuilt.type_name == f"{cls.__module__}.{cls.__qualname__}"
    assert rebuilt.message == str(original)
    if isinstance(original, BaseExceptionGroup):  # its members became RemoteErrors too
        assert rebuilt.remote_args[0] == original.args[0]
        assert all(type(m) is dasync.RemoteError for m in rebuilt.state["exceptions"])
    else:
        assert canon(rebuilt.remote_args) == canon(original.args)
    assert rebuilt.notes == ("a note",) and rebuilt.__notes__ == ["a note"]
    assert isinstance(rebuilt.__cause__, ValueError) and rebuilt.__cause__.args == ("why",)
    assert "raise original from ValueError" in rebuilt.traceback
    assert not any(n.startswith(REMOTE_NOTE) for n in rebuilt.__notes__)


def test_remote_error_keeps_fields_and_group_members_in_state() -> None:
    rebuilt = decode_failure(encode_failure(SystemExit(4)))
    assert isinstance(rebuilt, dasync.RemoteError) and rebuilt.state == {"code": 4}
    group = decode_failure(encode_failure(CustomGroup("g", [Custom("c"), ValueError("v")])))
    assert isinstance(group, dasync.RemoteError)
    members = group.state["exceptions"]
    assert isinstance(members[0], dasync.RemoteError) and isinstance(members[1], ValueError)


def test_remote_error_pickles_and_keeps_the_old_constructor() -> None:
    old = dasync.RemoteError("m.T", "msg", "tb")
    assert (old.type_name, old.message, old.traceback, old.remote_args, old.state) == (
        "m.T",
        "msg",
        "tb",
        (),
        {},
    )
    full = dasync.RemoteError("m.T", "msg", "tb", (1, b"x"), {"k": [1]}, ("note",))
    back = pickle.loads(pickle.dumps(full))
    assert type(back) is dasync.RemoteError and str(back) == "m.T: msg"
    assert (back.remote_args, back.state, back.notes, back.__notes__) == (
        (1, b"x"),
        {"k": [1]},
        ("note",),
        ["note"],
    )


def test_a_remote_error_forwarded_again_stays_the_same() -> None:
    first = decode_failure(encode_failure(raised(Hidden("boom"))))
    second = decode_failure(encode_failure(first))
    assert type(second) is dasync.RemoteError
    assert (second.type_name, second.message, second.traceback) == (
        first.type_name,
        first.message,
        first.traceback,
    )


def test_remote_traceback_is_attached_as_a_note_without_dasync_frames() -> None:
    rebuilt = decode_failure(encode_failure(raised(HotelFull("Rome"))))
    notes = rebuilt.__notes__
    assert notes[-1].startswith(REMOTE_NOTE)
    assert "raise exc" in notes[-1] and "test_failures.py" in notes[-1]
    assert "dasync/_failures.py" not in notes[-1]


def test_a_note_is_added_per_hop() -> None:
    hop1 = decode_failure(encode_failure(raised(HotelFull("Rome"))))
    hop2 = decode_failure(encode_failure(raised(hop1)))
    remote_notes = [n for n in hop2.__notes__ if n.startswith(REMOTE_NOTE)]
    assert len(remote_notes) == 2


def test_an_exception_never_raised_gets_no_traceback_note() -> None:
    rebuilt = decode_failure(encode_failure(ValueError("x")))
    assert not hasattr(rebuilt, "__notes__")


def test_payload_is_deterministic_and_has_no_address() -> None:
    exc = Plain(object(), {"b": 1, "a": 2}, {"z", "y", "x"}, lambda: None)
    first, second = encode_failure(exc), encode_failure(exc)
    assert first == second
    assert b"0x" not in first
    payload = orjson.loads(first)
    assert payload["v"] == 2
    assert payload["exceptions"][0]["args"][1:3] == [{"b": 1, "a": 2}, {"$set": ["x", "y", "z"]}]


def test_payload_is_compact() -> None:
    payload = orjson.loads(encode_failure(ValueError("x")))
    assert payload == {
        "v": 2,
        "exceptions": [{"type": "builtins:ValueError", "message": "x", "args": ["x"]}],
    }


def test_payload_survives_the_journal_reparsing_it() -> None:
    """Format-1 journals (still replayed) re-dump payloads with orjson: nothing may change."""
    data = encode_failure(Plain(*SPECIAL_ARGS))
    assert orjson.dumps(orjson.loads(data)) == data


def test_cycles_end_and_chains_are_bounded() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a
    a.args = (a,)
    rebuilt = decode_failure(encode_failure(a))
    assert isinstance(rebuilt, ValueError) and rebuilt.__context__.__context__ is rebuilt  # type: ignore[union-attr]
    head = exc = ValueError(0)
    for i in range(1, 200):
        exc.__cause__ = ValueError(i)
        exc = exc.__cause__
    rebuilt = decode_failure(encode_failure(head))
    depth = 0
    while rebuilt.__cause__ is not None:
        rebuilt, depth = rebuilt.__cause__, depth + 1
    assert depth == MAX_CHAIN_DEPTH


def test_shared_links_are_encoded_once() -> None:
    """``raise X from e`` makes ``e`` both cause and context; a long chain of those must not
    double at every step."""
    exc: BaseException = ValueError("root")
    for i in range(MAX_CHAIN_DEPTH):
        nxt = ValueError(i)
        nxt.__cause__ = nxt.__context__ = exc
        exc = nxt
    payload = orjson.loads(encode_failure(exc))
    assert len(payload["exceptions"]) == MAX_CHAIN_DEPTH + 1


def test_large_groups_and_values_are_bounded() -> None:
    group = ExceptionGroup("many", [ValueError(i) for i in range(500)])
    data = encode_failure(group)
    assert len(orjson.loads(data)["exceptions"]) == MAX_EXCEPTIONS
    assert isinstance(decode_failure(data), ExceptionGroup)
    shared: list[object] = []
    for _ in range(40):
        shared = [shared, shared]  # a DAG whose repr is 2**40 items long
    big = Plain("x" * 10_000_000)
    big.shared = shared  # type: ignore[attr-defined]
    big.blob = b"\x00" * 10_000_000  # type: ignore[attr-defined]
    data = encode_failure(big)
    assert len(data) < 1024 * 1024
    assert isinstance(decode_failure(data), Plain)


class Nasty:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_unprintable_and_unrepresentable_values_never_fail_encoding() -> None:
    rebuilt = decode_failure(encode_failure(BadStr(Nasty())))
    assert isinstance(rebuilt, BadStr) and rebuilt.args == ("<unrepresentable Nasty>",)


def test_values_that_json_cannot_hold_become_their_repr() -> None:
    rebuilt = decode_failure(encode_failure(Plain(object(), range(3))))
    assert rebuilt.args == ("<object object>", "range(0, 3)")


def test_format_1_payloads_from_older_journals_still_decode() -> None:
    legacy = orjson.dumps(
        {
            "type": f"{__name__}:OutOfStock",
            "message": "('tea', 5)",
            "args": ["tea", 5],
            "state": {"item": "tea", "wanted": 5},
            "traceback": "  File x\nOutOfStock: ('tea', 5)\n",
        }
    )
    rebuilt = decode_failure(legacy)
    assert isinstance(rebuilt, OutOfStock)
    assert (rebuilt.args, rebuilt.item, rebuilt.wanted) == (("tea", 5), "tea", 5)
    assert rebuilt.__notes__[-1].startswith(REMOTE_NOTE)
    unknown = decode_failure(orjson.dumps({"type": "gone:Err", "message": "m", "args": [1]}))
    assert isinstance(unknown, dasync.RemoteError) and unknown.remote_args == (1,)


def test_decoding_never_imports() -> None:
    before = set(sys.modules)
    for name in ("this", "antigravity", "dasync_no_such_module", "tests.codec.never"):
        rebuilt = decode_failure(orjson.dumps({"v": 2, "exceptions": [{"type": f"{name}:E"}]}))
        assert isinstance(rebuilt, dasync.RemoteError)
    assert set(sys.modules) == before
