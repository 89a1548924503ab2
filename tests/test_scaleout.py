"""Several gateway processes on one Redis behave as one gateway (CONTRACT.md §8)."""

from __future__ import annotations

import httpx
import pytest
import redis

from tests.fakes.members import MemberFake
from tests.routing_harness import member, router
from tests.support.servers import serve_app, wait_until

HI = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def upstream():
    fake = MemberFake()
    with serve_app(fake) as url:
        yield fake, url


def _config(url: str, redis_url: str) -> dict:
    return {
        "settings": {"redis_url": redis_url, "cooldown": {"failures": 1, "window": 60, "seconds": 60, "max_seconds": 60}},
        "tokens": [
            member("m-flaky", "flaky", "flaky-a", url),
            member("m-ok", "steady", "ok-b", url),
            router("gw-pool", "pool", "fallback", ["m-flaky", "m-ok"]),
        ],
    }


def _chat(gateway) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", json=HI, headers={"Authorization": "Bearer gw-pool"}, timeout=10)


def test_a_member_cooled_by_one_replica_is_skipped_by_the_other(upstream, redis_server, gateway_process):
    fake, url = upstream
    fake.reset()
    redis_server.flush()
    one = gateway_process(_config(url, redis_server.url), name="one.yaml")
    two = gateway_process(_config(url, redis_server.url), name="two.yaml")
    fake.failing.add("a")

    answer = _chat(one)
    assert answer.status_code == 200 and answer.headers["x-gateway-served-by"] == "steady"
    assert fake.hits("flaky-a") == 1
    # The cooldown is in Redis under the member token's hash (never the token)...
    keys = wait_until(lambda: redis.Redis.from_url(redis_server.url).keys("gw:cool:*"), what="shared cooldown")
    assert all(b"m-flaky" not in k for k in keys)

    # ...and the other replica skips the member without trying it.
    for _ in range(3):
        answer = _chat(two)
        assert answer.status_code == 200 and answer.headers["x-gateway-served-by"] == "steady"
    assert fake.hits("flaky-a") == 1


def test_healthz_is_degraded_while_redis_is_frozen(upstream, redis_server, gateway_process):
    fake, url = upstream
    fake.reset()
    redis_server.flush()
    gateway = gateway_process(_config(url, redis_server.url))
    assert httpx.get(f"{gateway.base_url}/healthz").json() == {"status": "ok"}
    redis_server.freeze()
    try:
        # A member failure makes the gateway talk to Redis; the frozen store is noticed within its timeout.
        fake.failing.add("a")
        assert _chat(gateway).status_code == 200
        body = wait_until(lambda: (b := httpx.get(f"{gateway.base_url}/healthz", timeout=2).json())["status"] == "degraded" and b, what="degraded")
        assert body == {"status": "degraded", "reasons": ["redis unreachable"]}
    finally:
        redis_server.thaw()
    wait_until(lambda: httpx.get(f"{gateway.base_url}/healthz", timeout=2).json() == {"status": "ok"}, what="recovery")
