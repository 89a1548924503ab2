"""§6's counters on a real Redis (§8): the same rules as the memory store, shared by processes."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import GatewayError
from gateway.keys.redis_store import RedisCounterStore
from gateway.keys.store import Ask, Grant, Refusal
from gateway.store.redis import SharedRedis


def _run(redis_server, body, *, stores: int = 1, on_store_error: str = "local", timeout: float = 0.25):
    redis_server.flush()

    async def main():
        shared = [SharedRedis(redis_server.url, timeout=timeout, probe_seconds=0.05) for _ in range(stores)]
        try:
            return await body(*[RedisCounterStore(s, on_store_error) for s in shared])
        finally:
            for s in shared:
                await s.aclose()

    return asyncio.run(main())


def test_rpm_is_one_limit_for_two_processes(redis_server):
    async def body(one, two):
        ask = lambda: Ask("k1", tokens=10, rpm_limit=4)  # noqa: E731
        results = [await (one if i % 2 else two).reserve(ask(), 0.0) for i in range(6)]
        return results

    results = _run(redis_server, body, stores=2)
    assert [isinstance(r, Grant) for r in results] == [True] * 4 + [False] * 2
    refusal = results[4]
    assert isinstance(refusal, Refusal) and refusal.reason == "rpm" and refusal.limit == 4
    assert 14 < refusal.retry_after <= 15  # GCRA: one request every 60/4 s
    assert refusal.requests.limit == 4 and refusal.requests.remaining == 0
    assert results[0].requests.remaining == 3


def test_fifty_concurrent_requests_against_a_budget_worth_five(redis_server):
    async def body(one, two):
        async def reserve(i):
            return await (one if i % 2 else two).reserve(Ask("k2", tokens=100, token_budget=500), 0.0)

        results = await asyncio.gather(*[reserve(i) for i in range(50)])
        granted = [r for r in results if isinstance(r, Grant)]
        refused = [r for r in results if isinstance(r, Refusal)]
        for grant in granted:
            await one.settle(grant, 100, 0.0, 0.0)
        usage = await two.usage("k2", 0.0)
        after = await one.reserve(Ask("k2", tokens=1, token_budget=500), 0.0)
        return granted, refused, usage, after

    granted, refused, usage, after = _run(redis_server, body, stores=2)
    assert len(granted) == 5
    assert {r.reason for r in refused} == {"tokens"} and all(r.quota and r.retry_after is None for r in refused)
    assert usage.tokens == 500 and usage.requests == 5 and usage.in_flight == 0 and usage.reserved_tokens == 0
    assert isinstance(after, Refusal) and after.reason == "tokens"


def test_parallel_slots_and_settlement_refund_tokens(redis_server):
    async def body(store):
        a = await store.reserve(Ask("k3", tokens=600, max_parallel=1, tpm_limit=1000), 0.0)
        b = await store.reserve(Ask("k3", tokens=10, max_parallel=1, tpm_limit=1000), 0.0)
        await store.settle(a, 100, 0.25, 0.0)  # used far less than reserved: refunded
        await store.settle(a, 100, 0.25, 0.0)  # settling twice changes nothing
        c = await store.reserve(Ask("k3", tokens=800, max_parallel=1, tpm_limit=1000), 0.0)
        usage = await store.usage("k3", 0.0)
        return a, b, c, usage

    a, b, c, usage = _run(redis_server, body)
    assert isinstance(a, Grant)
    assert isinstance(b, Refusal) and b.reason == "parallel"
    assert isinstance(c, Grant) and c.tokens.remaining < 200
    assert usage.requests == 1 and usage.tokens == 100 and usage.cost_usd == pytest.approx(0.25) and usage.in_flight == 1


def test_seed_happens_once_for_all_replicas(redis_server):
    async def body(one, two):
        await one.seed("k4", 100.0, 1000, 2.5, requests=3)
        await two.seed("k4", 100.0, 1000, 2.5, requests=3)
        return await two.usage("k4", 100.0)

    usage = _run(redis_server, body, stores=2)
    assert usage.tokens == 1000 and usage.cost_usd == pytest.approx(2.5) and usage.requests == 3


@pytest.mark.parametrize("policy", ["local", "closed"])
def test_frozen_redis_local_keeps_serving_closed_refuses(redis_server, policy):
    async def body(store):
        redis_server.freeze()
        try:
            if policy == "closed":
                with pytest.raises(GatewayError) as info:
                    await store.reserve(Ask("k5", tokens=1, rpm_limit=2), 0.0)
                return info.value
            grants = [await store.reserve(Ask("k5", tokens=1, rpm_limit=2), 0.0) for _ in range(3)]
            for g in grants:
                if isinstance(g, Grant):
                    await store.settle(g, 1, 0.0, 0.0)
            return grants, store.health(), store.fallbacks
        finally:
            redis_server.thaw()

    result = _run(redis_server, body, on_store_error=policy, timeout=0.2)
    if policy == "closed":
        assert result.status == 503 and result.code == "store_unavailable"
    else:
        grants, health, fallbacks = result
        assert [isinstance(g, Grant) for g in grants] == [True, True, False]  # per-process counters hold the limit
        assert health == ["redis unreachable"] and fallbacks == 3
