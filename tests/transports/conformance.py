"""The transport/store conformance suite, as pytest tests (one per check).

A backend's test module subclasses ``TransportConformance`` and provides the
``backend_factory`` fixture (see ``test_memory.py``); the checks themselves
live in ``dasync.testing`` so that users can run them on their own transports.
"""

from __future__ import annotations

import pytest

from dasync.testing import BackendFactory
from dasync.testing._conformance import CHECKS


class TransportConformance:
    """Every conformance check against the backend that ``backend_factory`` opens."""

    @pytest.fixture
    def backend_factory(self) -> BackendFactory:
        raise NotImplementedError("subclasses provide the backend_factory fixture")

    @pytest.mark.parametrize("check", list(CHECKS))
    async def test_conformance(self, backend_factory: BackendFactory, check: str) -> None:
        await CHECKS[check](backend_factory)
