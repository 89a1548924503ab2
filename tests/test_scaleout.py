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


def test_round_robin_alternates_across_two_replicas(upstream, redis_server, gateway_process):
    """One rotation in Redis: requests alternating between two processes still alternate
    members (each process alone would start its own rotation at the first member)."""
    fake, url = upstream
    fake.reset()
    redis_server.flush()
    tokens = [member("rr-a", "a", "ok-a", url), member("rr-b", "b", "ok-b", url),
              router("gw-rr", "rr", "round-robin", ["rr-a", "rr-b"])]
    config = {"settings": {"redis_url": redis_server.url}, "tokens": tokens}
    one = gateway_process(config, name="one.yaml")
    two = gateway_process(config, name="two.yaml")
    served = []
    for gateway in (one, two, one, two, one, two):
        answer = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=HI, headers={"Authorization": "Bearer gw-rr"}, timeout=10)
        assert answer.status_code == 200
        served.append(answer.headers["x-gateway-served-by"])
    assert served == ["a", "b", "a", "b", "a", "b"]
    assert all(b"gw-rr" not in k for k in redis.Redis.from_url(redis_server.url).keys("gw:rr:*"))


def _limited(redis_url: str, on_store_error: str = "local", rpm: int = 4) -> dict:
    return {
        "settings": {"redis_url": redis_url, "limits": {"on_store_error": on_store_error}},
        "tokens": [{"token": "sk-team-dana", "name": "dana", "type": "mock", "rpm_limit": rpm, "config": {"reply": "hi"}}],
    }


def _ask(gateway, timeout: float = 10) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", json=HI, headers={"Authorization": "Bearer sk-team-dana"}, timeout=timeout)


def test_two_replicas_hold_one_rpm_limit(redis_server, gateway_process):
    redis_server.flush()
    one = gateway_process(_limited(redis_server.url), name="one.yaml")
    two = gateway_process(_limited(redis_server.url), name="two.yaml")
    answers = [_ask(gateway) for gateway in (one, two, one, two, one, two)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
    refused = answers[4]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 15  # GCRA: one request every 15 s at rpm 4
    assert answers[3].headers["x-ratelimit-remaining-requests"] == "0"
    # The counters live under the token's hash, never the token.
    keys = redis.Redis.from_url(redis_server.url).keys("gw:*")
    assert keys and all(b"sk-team-dana" not in k for k in keys)


@pytest.mark.parametrize("policy", ["local", "closed"])
def test_frozen_redis_answers_within_the_timeout(redis_server, gateway_process, policy):
    """SIGSTOP: requests never hang on Redis; `local` keeps serving on per-process counters and
    says so on /healthz, `closed` answers 503 store_unavailable; both recover on SIGCONT."""
    redis_server.flush()
    gateway = gateway_process(_limited(redis_server.url, policy, rpm=1000))
    assert _ask(gateway).status_code == 200
    redis_server.freeze()
    try:
        answers = [_ask(gateway, timeout=5) for _ in range(3)]  # would hang for good without the store timeout
        health = httpx.get(f"{gateway.base_url}/healthz", timeout=5).json()
    finally:
        redis_server.thaw()
    if policy == "local":
        assert [a.status_code for a in answers] == [200, 200, 200]
    else:
        assert [a.status_code for a in answers] == [503, 503, 503]
        assert answers[0].json()["error"] == {**answers[0].json()["error"], "type": "api_error", "code": "store_unavailable"}
    assert health == {"status": "degraded", "reasons": ["redis unreachable"]}
    wait_until(lambda: httpx.get(f"{gateway.base_url}/healthz", timeout=2).json() == {"status": "ok"}, what="recovery")
    assert _ask(gateway).status_code == 200


def test_workers_2_with_limits_on_redis_start_and_count_once(redis_server, write_config):
    """`--workers 2` with limits is refused without redis_url (tests/test_keys_sdk.py); with it,
    the workers start and share the counters: 10 requests on fresh connections (spread over both
    workers by the kernel) against rpm 6 admit exactly 6."""
    from tests.support.servers import GatewayProcess

    redis_server.flush()
    path = write_config(_limited(redis_server.url, rpm=6))
    with GatewayProcess(path, args=["--workers", "2"]) as gateway:
        statuses = [_ask(gateway).status_code for _ in range(10)]  # httpx.post: a new connection each
    assert statuses.count(200) == 6 and statuses.count(429) == 4


def test_shipped_replicas_config_loads():
    """configs/replicas.yaml (the compose profile's) is a valid config naming both stores."""
    from gateway.config import load_config
    from tests.support.servers import ROOT

    config = load_config(ROOT / "configs" / "replicas.yaml", environ={"GATEWAY_REDIS_URL": "redis://redis:6379/0",
                                                                      "GATEWAY_DATABASE": "postgresql://g:p@postgres/g"})
    assert config.settings.redis_url == "redis://redis:6379/0"
    assert config.settings.database == "postgresql://g:p@postgres/g"
    assert config.settings.limits.on_store_error == "local"


def test_usage_of_two_replicas_lands_in_one_postgresql(postgres_server, redis_server, gateway_process):
    """settings.database: postgresql://: both replicas write their usage events to one database
    (schema created once), and either one's admin API reads them all."""
    postgres_server.reset()
    redis_server.flush()
    config = _limited(redis_server.url, rpm=100)
    config["settings"].update({"database": postgres_server.url, "admin_token": "admin-token-for-pg-1234",
                               "usage": {"flush_seconds": 0.05}})
    one = gateway_process(config, name="one.yaml")
    two = gateway_process(config, name="two.yaml")
    for gateway in (one, two, two):
        assert _ask(gateway).status_code == 200
    admin = {"Authorization": "Bearer admin-token-for-pg-1234"}

    def totals():
        data = httpx.get(f"{one.base_url}/admin/api/usage?group_by=token", headers=admin, timeout=10).json()["data"]
        return data[0]["requests"] if data else 0

    wait_until(lambda: totals() == 3, what="three usage events in PostgreSQL")
    import asyncio

    import asyncpg

    async def rows():
        conn = await asyncpg.connect(postgres_server.url)
        try:
            return await conn.fetch("SELECT token_name, status FROM usage_events")
        finally:
            await conn.close()

    found = asyncio.run(rows())
    assert [(r["token_name"], r["status"]) for r in found] == [("dana", 200)] * 3
