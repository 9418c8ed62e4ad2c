"""The ``differential`` marker: every test here runs in the normal suite (``pytest``), and
``pytest -m differential`` runs just these."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "differential: dasync compared with plain asyncio on the same program"
    )
