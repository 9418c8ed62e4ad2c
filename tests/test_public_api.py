"""``dasync.__all__`` is sorted, complete, and every name in it can be imported."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import dasync
import dasync.testing


def _public_names(module: types.ModuleType) -> set[str]:
    return {
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)
    }


def test_all_is_sorted_and_matches_the_public_names():
    assert dasync.__all__ == sorted(dasync.__all__)
    assert len(set(dasync.__all__)) == len(dasync.__all__)
    assert set(dasync.__all__) == _public_names(dasync)


def test_every_exported_name_is_importable():
    for name in dasync.__all__:
        assert getattr(dasync, name) is not None
    code = "; ".join(f"from dasync import {name}" for name in dasync.__all__)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_private_engine_names_leak():
    assert "RoutineInstance" not in dasync.__all__
    assert not any(name.startswith("_") for name in dasync.__all__)


def test_testing_exports():
    assert dasync.testing.__all__ == sorted(dasync.testing.__all__)
    assert set(dasync.testing.__all__) == _public_names(dasync.testing)
    for name in ("runtime", "VirtualClock", "instantiate", "check_transport"):
        assert name in dasync.testing.__all__


def test_errors_form_one_tree():
    for name in dasync.__all__:
        obj = getattr(dasync, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, dasync.DasyncError), name
    assert issubclass(dasync.JournalConflict, dasync.TransportError)
    assert issubclass(dasync.UnknownService, LookupError)
    assert issubclass(dasync.MalformedMessage, ValueError)


def test_version():
    assert importlib.import_module("dasync").__version__
