"""A contract's specs carry its own docstrings, never ones inherited from ``Protocol`` or
``ABCMeta`` (which ``inspect.getdoc`` would give and the specs would then publish)."""

from __future__ import annotations

from typing import Protocol

from dasync._contract import spec_of


class Undocumented(Protocol):
    async def register(self, name: str) -> None: ...


class Documented(Protocol):
    """Keeps the names of things."""

    async def register(self, name: str) -> None:
        """Remember ``name``.

        Twice is once."""


def test_an_undocumented_contract_and_method_have_no_doc() -> None:
    spec = spec_of(Undocumented)
    assert spec.doc is None
    assert spec.methods["register"].doc is None  # not ABCMeta.register's


def test_own_docstrings_are_kept_cleaned() -> None:
    spec = spec_of(Documented)
    assert spec.doc == "Keeps the names of things."
    assert spec.methods["register"].doc == "Remember ``name``.\n\nTwice is once."
