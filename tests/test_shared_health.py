"""Router cooldowns shared through a real Redis (§8): what one process learns, all skip."""

from __future__ import annotations

import asyncio
import time

from gateway.config import Cooldown
from gateway.errors import GatewayError
from gateway.health import HealthBook
from gateway.store.redis import SharedRedis
from gateway.store.shared_health import SharedHealth

POLICY = Cooldown(failures=1, window=60, seconds=30, max_seconds=300)
TOKENS = ["member-a", "member-b"]


async def _until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def test_a_cooldown_started_in_one_process_is_seen_by_another(redis_server):
    redis_server.flush()

    async def run():
        one, two = SharedRedis(redis_server.url), SharedRedis(redis_server.url)
        book_one, book_two = HealthBook(), HealthBook()
        share_one = SharedHealth(one, book_one, lambda: TOKENS)
        share_two = SharedHealth(two, book_two, lambda: TOKENS)
        await share_one.start()
        await share_two.start()
        try:
            # Both listening before the first publication (PUBSUB NUMSUB, not a sleep).
            deadline = time.monotonic() + 5
            while (await one.client.pubsub_numsub("gw:cool"))[0][1] < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            failure = GatewayError(502, "boom", code="upstream_error", failover=True)
            assert book_one.record_failure("member-a", failure, POLICY) == 30
            seen = await _until(lambda: book_two.is_cooling("member-a", POLICY))
            remaining = (book_two.cooling_until("member-a", POLICY) or 0) - book_two.clock()
            other = book_two.is_cooling("member-b", POLICY)
            book_one.record_success("member-a")
            cleared = await _until(lambda: not book_two.is_cooling("member-a", POLICY))
            # A process that starts later loads the cooldowns in force.
            book_one.record_failure("member-b", failure, POLICY)
            deadline = time.monotonic() + 5
            while not await one.client.keys("gw:cool:*") and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            three = SharedRedis(redis_server.url)
            book_three = HealthBook()
            share_three = SharedHealth(three, book_three, lambda: TOKENS)
            await share_three.start()
            late = await _until(lambda: book_three.is_cooling("member-b", POLICY))
            await share_three.aclose()
            await three.aclose()
            return seen, remaining, other, cleared, late
        finally:
            for share, store in ((share_one, one), (share_two, two)):
                await share.aclose()
                await store.aclose()

    seen, remaining, other, cleared, late = asyncio.run(run())
    assert seen and 25 < remaining <= 30
    assert other is False
    assert cleared
    assert late
