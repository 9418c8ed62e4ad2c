"""``codegen check``'s rules, one case per kind of change: every breaking kind is flagged,
every compatible one passes, and docs/specs.md shows the same table as ``RULES``.

Each case defines the committed contract and today's in a few lines of Python
(executed into a module of their own, so a class keeps its name across the two),
generates both JSON Schema documents and compares them.
"""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dasync._contract import is_contract
from dasync.codegen import (
    RULES,
    Change,
    Verdict,
    compare,
    contracts_of,
    jsonschema_document,
    pool_of,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "specs.md"
HEADING = "## What the check calls compatible"

PRELUDE = """
import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Literal, Protocol
import pydantic
from typing_extensions import NotRequired, TypedDict
import dasync
"""


def _document(source: str) -> dict[str, Any]:
    """The JSON Schema document of the contracts ``source`` defines, in a module named
    ``cases`` (error types and classes keep their names from one version to the next)."""
    module = types.ModuleType("cases")
    sys.modules["cases"] = module
    try:
        exec(PRELUDE + source, module.__dict__)
        found = [v for v in vars(module).values() if is_contract(v) and v.__module__ == "cases"]
        return jsonschema_document(contracts_of(found))
    finally:
        del sys.modules["cases"]


def _changes(old: str, new: str) -> list[Change]:
    return compare(pool_of(_document(old)), pool_of(_document(new)))


@dataclass(frozen=True)
class Case:
    kind: str
    where: str
    old: str
    new: str
    path: str

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.where}"


def _shop(signature: str, before: str = "") -> str:
    return f"{before}\nclass Shop(Protocol):\n    async def {signature}: ...\n"


MODEL = "class Item(pydantic.BaseModel):\n    name: str\n    price: int\n"
CLOSED = (
    "class Item(pydantic.BaseModel):\n"
    "    model_config = pydantic.ConfigDict(extra='forbid')\n"
    "    name: str\n    price: int\n"
)
ITEM = "@dataclass\nclass Item:\n    name: str\n    price: int = 1\n"
SMALL_ITEM = "@dataclass\nclass Item:\n    name: str\n"
BIG_ITEM = "@dataclass\nclass Item:\n    name: str\n    price: int = 1\n    stock: int = 0\n"
TD = "class Item(TypedDict):\n    name: str\n    note: NotRequired[str]\n"
TD_NO_NOTE = "class Item(TypedDict):\n    name: str\n"
TD_NOTE_REQUIRED = "class Item(TypedDict):\n    name: str\n    note: str\n"
TD_ALL_OPTIONAL = "class Item(TypedDict):\n    name: NotRequired[str]\n    note: NotRequired[str]\n"
ERR = "class Declined(Exception):\n    pass\n"
ERR_DC = "@dataclass\nclass Declined(Exception):\n    code: {0}\n"
EVENT = "@dataclass\nclass Sold:\n    item: str\n{0}\n"
SOLD = "    sold: dasync.Event[Sold]\n"
BANK = "class Bank(Protocol):\n    async def pay(self) -> None: ...\n"

CASES = [
    # --- the contract's shape ---
    Case("service-added", "contract", _shop("buy(self) -> None"),
         _shop("buy(self) -> None") + BANK, "Bank"),
    Case("service-removed", "contract", _shop("buy(self) -> None") + BANK,
         _shop("buy(self) -> None"), "Bank"),
    Case("method-added", "contract", _shop("buy(self) -> None"),
         _shop("buy(self) -> None") + "    async def sell(self) -> None: ...\n", "Shop.sell"),
    Case("method-removed", "contract",
         _shop("buy(self) -> None") + "    async def sell(self) -> None: ...\n",
         _shop("buy(self) -> None"), "Shop.sell"),
    Case("event-added", "contract", _shop("buy(self) -> None"),
         _shop("buy(self) -> None") + "    sold: dasync.Event[str]\n", "Shop.sold"),
    Case("event-removed", "contract", _shop("buy(self) -> None") + "    sold: dasync.Event[str]\n",
         _shop("buy(self) -> None"), "Shop.sold"),
    Case("event-opened", "contract", _shop("buy(self) -> None") + "    sold: dasync.Event[str]\n",
         _shop("buy(self) -> None") + "    sold: dasync.ExternalEvent[str]\n", "Shop.sold"),
    Case("event-closed", "contract",
         _shop("buy(self) -> None") + "    sold: dasync.ExternalEvent[str]\n",
         _shop("buy(self) -> None") + "    sold: dasync.Event[str]\n", "Shop.sold"),
    Case("error-declared", "contract", ERR + _shop("buy(self) -> None"),
         ERR + "class Shop(Protocol):\n    @dasync.raises(Declined)\n"
         "    async def buy(self) -> None: ...\n", "Shop.buy"),
    Case("error-undeclared", "contract",
         ERR + "class Shop(Protocol):\n    @dasync.raises(Declined)\n"
         "    async def buy(self) -> None: ...\n",
         ERR + _shop("buy(self) -> None"), "Shop.buy"),
    # --- arguments: read by the service ---
    Case("type-changed", "arguments", _shop("buy(self, qty: int) -> None"),
         _shop("buy(self, qty: str) -> None"), "Shop.buy.arguments.qty"),
    Case("type-widened", "arguments", _shop("buy(self, qty: int) -> None"),
         _shop("buy(self, qty: float) -> None"), "Shop.buy.arguments.qty"),
    Case("type-narrowed", "arguments", _shop("buy(self, qty: float) -> None"),
         _shop("buy(self, qty: int) -> None"), "Shop.buy.arguments.qty"),
    Case("enum-value-added", "arguments", _shop("buy(self, size: Literal['s', 'm']) -> None"),
         _shop("buy(self, size: Literal['s', 'm', 'l']) -> None"), "Shop.buy.arguments.size"),
    Case("enum-value-removed", "arguments",
         _shop("buy(self, size: Literal['s', 'm', 'l']) -> None"),
         _shop("buy(self, size: Literal['s', 'm']) -> None"), "Shop.buy.arguments.size"),
    Case("alternative-added", "arguments", _shop("buy(self, qty: int) -> None"),
         _shop("buy(self, qty: int | None) -> None"), "Shop.buy.arguments.qty"),
    Case("alternative-removed", "arguments", _shop("buy(self, qty: int | str) -> None"),
         _shop("buy(self, qty: int) -> None"), "Shop.buy.arguments.qty"),
    Case("constraint-loosened", "arguments",
         _shop("buy(self, qty: Annotated[int, pydantic.Field(le=10)]) -> None"),
         _shop("buy(self, qty: Annotated[int, pydantic.Field(le=20)]) -> None"),
         "Shop.buy.arguments.qty"),
    Case("constraint-tightened", "arguments",
         _shop("buy(self, qty: Annotated[int, pydantic.Field(le=20)]) -> None"),
         _shop("buy(self, qty: Annotated[int, pydantic.Field(le=10)]) -> None"),
         "Shop.buy.arguments.qty"),
    Case("constraint-changed", "arguments",
         _shop("buy(self, code: Annotated[str, pydantic.Field(pattern='^a')]) -> None"),
         _shop("buy(self, code: Annotated[str, pydantic.Field(pattern='^b')]) -> None"),
         "Shop.buy.arguments.code"),
    Case("required-field-added", "arguments", _shop("buy(self) -> None"),
         _shop("buy(self, qty: int) -> None"), "Shop.buy.arguments.qty"),
    Case("optional-field-added", "arguments", _shop("buy(self) -> None"),
         _shop("buy(self, qty: int = 1) -> None"), "Shop.buy.arguments.qty"),
    Case("field-removed", "arguments", _shop("buy(self, item: Item) -> None", MODEL),
         _shop("buy(self, item: Item) -> None", "class Item(pydantic.BaseModel):\n    name: str\n"),
         "Shop.buy.arguments.item.price"),
    Case("field-removed-closed", "arguments", _shop("buy(self, qty: int = 1) -> None"),
         _shop("buy(self) -> None"), "Shop.buy.arguments.qty"),
    Case("field-became-required", "arguments", _shop("buy(self, qty: int = 1) -> None"),
         _shop("buy(self, qty: int) -> None"), "Shop.buy.arguments.qty"),
    Case("field-became-optional", "arguments", _shop("buy(self, qty: int) -> None"),
         _shop("buy(self, qty: int = 1) -> None"), "Shop.buy.arguments.qty"),
    Case("default-changed", "arguments", _shop("buy(self, qty: int = 1) -> None"),
         _shop("buy(self, qty: int = 2) -> None"), "Shop.buy.arguments.qty"),
    Case("object-closed", "arguments", _shop("buy(self, item: Item) -> None", MODEL),
         _shop("buy(self, item: Item) -> None", CLOSED), "Shop.buy.arguments.item"),
    Case("object-opened", "arguments", _shop("buy(self, item: Item) -> None", CLOSED),
         _shop("buy(self, item: Item) -> None", MODEL), "Shop.buy.arguments.item"),
    # --- results, events and errors: read by callers and subscribers ---
    Case("type-changed", "results", _shop("buy(self) -> int"), _shop("buy(self) -> str"),
         "Shop.buy.result"),
    Case("type-widened", "results", _shop("buy(self) -> int"), _shop("buy(self) -> float"),
         "Shop.buy.result"),
    Case("type-narrowed", "results", _shop("buy(self) -> float"), _shop("buy(self) -> int"),
         "Shop.buy.result"),
    Case("enum-value-added", "results", _shop("buy(self) -> Literal['ok', 'later']"),
         _shop("buy(self) -> Literal['ok', 'later', 'never']"), "Shop.buy.result"),
    Case("enum-value-removed", "results", _shop("buy(self) -> Literal['ok', 'later']"),
         _shop("buy(self) -> Literal['ok']"), "Shop.buy.result"),
    Case("alternative-added", "results", _shop("buy(self) -> int"),
         _shop("buy(self) -> int | None"), "Shop.buy.result"),
    Case("alternative-removed", "results", _shop("buy(self) -> int | None"),
         _shop("buy(self) -> int"), "Shop.buy.result"),
    Case("constraint-loosened", "results",
         _shop("buy(self) -> Annotated[str, pydantic.Field(max_length=5)]"),
         _shop("buy(self) -> Annotated[str, pydantic.Field(max_length=9)]"), "Shop.buy.result"),
    Case("constraint-tightened", "results",
         _shop("buy(self) -> Annotated[str, pydantic.Field(max_length=9)]"),
         _shop("buy(self) -> Annotated[str, pydantic.Field(max_length=5)]"), "Shop.buy.result"),
    Case("constraint-changed", "results",
         _shop("buy(self) -> Annotated[str, pydantic.Field(pattern='^a')]"),
         _shop("buy(self) -> Annotated[str, pydantic.Field(pattern='^b')]"), "Shop.buy.result"),
    Case("required-field-added", "results", _shop("buy(self) -> Item", ITEM),
         _shop("buy(self) -> Item", BIG_ITEM), "Shop.buy.result.stock"),
    Case("optional-field-added", "results", _shop("buy(self) -> Item", TD_NO_NOTE),
         _shop("buy(self) -> Item", TD), "Shop.buy.result.note"),
    Case("field-added-closed", "results", _shop("buy(self) -> Item", CLOSED),
         _shop("buy(self) -> Item", CLOSED + "    stock: int = 0\n"), "Shop.buy.result.stock"),
    Case("required-field-removed", "results", _shop("buy(self) -> Item", ITEM),
         _shop("buy(self) -> Item", SMALL_ITEM), "Shop.buy.result.price"),
    Case("optional-field-removed", "results", _shop("buy(self) -> Item", TD),
         _shop("buy(self) -> Item", TD_NO_NOTE), "Shop.buy.result.note"),
    Case("field-became-required", "results", _shop("buy(self) -> Item", TD),
         _shop("buy(self) -> Item", TD_NOTE_REQUIRED), "Shop.buy.result.note"),
    Case("field-became-optional", "results", _shop("buy(self) -> Item", TD),
         _shop("buy(self) -> Item", TD_ALL_OPTIONAL), "Shop.buy.result.name"),
    Case("default-changed", "results", _shop("buy(self) -> Item", ITEM),
         _shop("buy(self) -> Item", ITEM.replace("= 1", "= 2")), "Shop.buy.result.price"),
    Case("object-closed", "results", _shop("buy(self) -> Item", MODEL),
         _shop("buy(self) -> Item", CLOSED), "Shop.buy.result"),
    Case("object-opened", "results", _shop("buy(self) -> Item", CLOSED),
         _shop("buy(self) -> Item", MODEL), "Shop.buy.result"),
]  # fmt: skip

MORE_CASES = [
    # an event's payload is read by subscribers, an error's fields by callers
    Case("required-field-removed", "results",
         EVENT.format("    price: int") + _shop("buy(self) -> None") + SOLD,
         EVENT.format("") + _shop("buy(self) -> None") + SOLD, "Shop.sold.event.price"),
    Case("alternative-added", "results",
         ERR_DC.format("int") + "class Shop(Protocol):\n    @dasync.raises(Declined)\n"
         "    async def buy(self) -> None: ...\n",
         ERR_DC.format("str") + "class Shop(Protocol):\n    @dasync.raises(Declined)\n"
         "    async def buy(self) -> None: ...\n",
         "cases.Declined.error.state.code"),
    # a renamed parameter: the old name is refused, the new one is not sent
    Case("field-removed-closed", "arguments", _shop("buy(self, qty: int) -> None"),
         _shop("buy(self, count: int) -> None"), "Shop.buy.arguments.qty"),
    # a changed field of a shared model is found under every schema that uses it
    Case("type-changed", "arguments", _shop("buy(self, item: Item) -> Item", ITEM),
         _shop("buy(self, item: Item) -> Item", ITEM.replace("price: int", "price: str")),
         "Shop.buy.arguments.item.price"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES + MORE_CASES, ids=lambda case: case.id)
def test_each_kind_of_change_gets_its_verdict(case: Case) -> None:
    changes = _changes(case.old, case.new)
    found = {(c.kind, c.where, c.path) for c in changes}
    assert (case.kind, case.where, case.path) in found, "\n".join(c.line() for c in changes)
    expected = RULES[(case.kind, case.where)].verdict  # type: ignore[index]
    verdicts = {c.verdict for c in changes}
    if expected is Verdict.BREAKING:
        assert Verdict.BREAKING in verdicts
    else:  # a compatible change brings no breaking one along
        assert verdicts == {Verdict.COMPATIBLE}, "\n".join(c.line() for c in changes)


def test_every_rule_has_a_case() -> None:
    assert {(c.kind, c.where) for c in CASES} == set(RULES)


def test_an_external_events_payload_is_read_as_arguments_too() -> None:
    """Outsiders write an ExternalEvent's payload: narrowing it breaks them, as it would
    break callers of a method; widening it breaks subscribers, as for any event."""
    base = _shop("buy(self) -> None")
    narrowed = _changes(base + "    sold: dasync.ExternalEvent[float]\n",
                        base + "    sold: dasync.ExternalEvent[int]\n")  # fmt: skip
    wheres = {c.where for c in narrowed}
    assert wheres == {"results", "arguments"}
    for change in narrowed:  # compatible for subscribers (results), not for outsiders
        verdict = RULES[(change.kind, change.where)].verdict
        assert verdict is (Verdict.BREAKING if change.where == "arguments" else Verdict.COMPATIBLE)
    plain = _changes(
        base + "    sold: dasync.Event[float]\n", base + "    sold: dasync.Event[int]\n"
    )
    assert {c.where for c in plain} == {"results"}


def test_no_change_no_line() -> None:
    source = _shop("buy(self, item: Item, qty: int = 1) -> list[Item]", ITEM)
    assert _changes(source, source) == []


def test_a_renamed_model_with_the_same_fields_is_no_change() -> None:
    old = _shop("buy(self, item: Item) -> Item", ITEM)
    assert _changes(old, old.replace("Item", "Article")) == []


def test_a_line_says_verdict_path_kind_and_why() -> None:
    (change,) = _changes(_shop("buy(self) -> None"), _shop("buy(self, qty: int) -> None"))
    assert change.line() == (
        "breaking   Shop.buy.arguments.qty: required-field-added: "
        "callers that predate it do not send it"
    )


# --- the table in docs/specs.md ------------------------------------------------------------


def _docs_rows() -> list[list[str]]:
    text = DOCS.read_text(encoding="utf-8")
    assert text.count(HEADING) == 1, f"{DOCS} must have one section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    assert header == ["change", "where", "verdict", "why"]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines[2:]]


def test_the_docs_table_is_the_rules_table() -> None:
    rows = []
    for change, where, verdict, why in _docs_rows():
        kind = re.fullmatch(r"`([a-z-]+)`", change)
        assert kind, f"a change must be a kind in backticks, not {change!r}"
        rows.append(((kind[1], where), verdict.strip("*"), why))
    expected = [(key, rule.verdict.value, rule.why) for key, rule in RULES.items()]
    assert rows == expected
