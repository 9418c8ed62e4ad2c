"""Payload size limits and callers built against an incompatible version of a contract."""

from __future__ import annotations

from typing import Protocol

import pytest

import dasync

LIMIT = 4096


class Store(Protocol):
    async def put(self, key: str, blob: str) -> int: ...
    async def get(self, key: str) -> str: ...


class StoreImpl(Store):
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def put(self, key: str, blob: str) -> int:
        self.data[key] = blob
        return len(blob)

    async def get(self, key: str) -> str:
        return self.data.get(key, "")


class StoreV0(Protocol):
    """What an old client still believes the Store service looks like."""

    async def put(self, key: str, blob: int) -> int: ...  # the parameter's type changed since
    async def delete(self, key: str) -> None: ...  # removed from the service since


StoreV0.__dasync_service_name__ = "Store"  # type: ignore[attr-defined]


def _old_client_spec() -> dasync.ServiceSpec:
    from dasync._contract import _build_spec

    return _build_spec(StoreV0, "Store")


async def test_arguments_over_the_limit_are_refused_by_the_client(make_runtime):
    async with make_runtime([StoreImpl], max_payload=LIMIT) as rt:
        with pytest.raises(dasync.InvalidArguments, match=f"over the limit of {LIMIT} bytes"):
            await rt.client.proxy(Store).put("k", "x" * LIMIT)
        assert await rt.client.proxy(Store).put("k", "small") == 5


async def test_a_raw_payload_over_the_limit_is_refused_by_the_worker(make_runtime):
    async with make_runtime([StoreImpl], max_payload=LIMIT) as rt:
        body = b'{"key": "k", "blob": "' + b"y" * LIMIT + b'"}'
        ok, payload = await rt.client.call_raw("Store", "put", body)
        assert not ok
        error = dasync._codec.decode_failure(payload)
        assert isinstance(error, dasync.InvalidArguments)
        assert f"payload of {len(body)} bytes is over the limit of {LIMIT} bytes" in str(error)
        assert any("over the limit" in r for r in rt.worker.stats.rejected)
        assert await rt.client.proxy(Store).put("k", "fine") == 4  # still serving


async def test_a_caller_with_a_removed_method_gets_unknown_method(make_runtime):
    old = _old_client_spec()
    async with make_runtime([StoreImpl]) as rt:
        ok, payload = await rt.client.call_raw(
            "Store", "delete", dasync._codec.encode_args(old.methods["delete"], {"key": "k"})
        )
        assert not ok
        error = dasync._codec.decode_failure(payload)
        assert isinstance(error, dasync.UnknownMethod)
        assert "no method 'delete'" in str(error) and "get, put" in str(error)
        assert await rt.client.proxy(Store).get("k") == ""


async def test_a_caller_with_a_changed_parameter_type_gets_invalid_arguments(make_runtime):
    old = _old_client_spec()
    async with make_runtime([StoreImpl]) as rt:
        args = dasync._codec.encode_args(old.methods["put"], {"key": "k", "blob": 42})
        ok, payload = await rt.client.call_raw("Store", "put", args)
        assert not ok
        error = dasync._codec.decode_failure(payload)
        assert isinstance(error, dasync.InvalidArguments)
        assert "argument 'blob'" in str(error) and "valid string" in str(error)
        assert await rt.client.proxy(Store).put("k", "v") == 1
