"""Differential tests: plain asyncio is the oracle (see below)."""
