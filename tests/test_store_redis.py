"""The shared Redis of §8 against a real redis-server: bounded calls, circuit breaker, recovery."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.store.redis import SharedRedis, StoreUnavailable, key, token_hash


def test_keys_carry_a_hash_never_the_token():
    k = key("rpm", "sk-team-alice-secret", "gpt-4o")
    assert "sk-team-alice-secret" not in k
    assert k == f"gw:rpm:{token_hash('sk-team-alice-secret')}:gpt-4o"
    assert token_hash("a") != token_hash("b") and len(token_hash("a")) == 16


def test_calls_and_redis_time(redis_server):
    async def run():
        store = SharedRedis(redis_server.url)
        try:
            await store.run(lambda r: r.set("gw:test", "1"))
            value = await store.run(lambda r: r.get("gw:test"))
            now = await store.run(store.now)
            return value, now
        finally:
            await store.aclose()

    value, now = asyncio.run(run())
    assert value == b"1"
    assert abs(now - time.time()) < 5


def test_frozen_redis_fails_fast_then_recovers(redis_server):
    """SIGSTOP: the first call gives up within the timeout, later ones at once; /healthz reasons
    name it; after SIGCONT the probe marks it up and calls work again."""

    async def run():
        store = SharedRedis(redis_server.url, timeout=0.2, probe_seconds=0.05)
        try:
            await store.run(lambda r: r.ping())
            redis_server.freeze()
            try:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await store.run(lambda r: r.incr("gw:test:n"))
                first = time.monotonic() - started
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await store.run(lambda r: r.incr("gw:test:n"))
                second = time.monotonic() - started
                reasons = store.reasons()
            finally:
                redis_server.thaw()
            deadline = time.monotonic() + 10
            while not store.up and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            answered = await store.run(lambda r: r.ping())
            return first, second, reasons, answered, store.failures
        finally:
            await store.aclose()

    first, second, reasons, answered, failures = asyncio.run(run())
    assert first < 1.0  # bounded by the 0.2 s timeout (generous margin for a loaded machine)
    assert second < 0.05  # the breaker answers at once
    assert reasons == ["redis unreachable"]
    assert answered is True
    assert failures == 2
