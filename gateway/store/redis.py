"""The shared Redis of CONTRACT.md §8 (`settings.redis_url`), through `redis.asyncio`.

Every call goes through `SharedRedis.run`, which bounds it with a short timeout (a frozen Redis
must not freeze requests) and keeps a small circuit breaker: after a failure the store is marked
down, calls fail at once (`StoreUnavailable`) instead of each waiting out the timeout, and a
background probe (`PING` every `probe_seconds`) marks it up again when Redis answers. While it
is down `status.reasons` names it (`/healthz` is `degraded`) and `failures` counts the calls
refused (exported as a metric). What the caller does with `StoreUnavailable` is its policy
(`settings.limits.on_store_error`: `local` or `closed`).

Keys never carry a client token: `key(kind, token)` uses a SHA-256 prefix of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger("gateway.store.redis")

T = TypeVar("T")
KEY_PREFIX = "gw:"
# Where the process's SharedRedis is kept in `Runtime.state` (routers read it from there).
SHARED_REDIS_KEY = "gateway.shared_redis"


class StoreUnavailable(Exception):
    """A shared store (Redis, the database) did not answer in time or refused the call."""


def token_hash(token: str) -> str:
    """A stable, non-reversible label for a token in shared keys: 16 hex chars of SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def key(kind: str, token: str, *parts: str) -> str:
    """The Redis key of one piece of shared state, e.g. `gw:rpm:<hash>`; `parts` are config names."""
    return ":".join([KEY_PREFIX + kind, token_hash(token), *parts])


class SharedRedis:
    """One `redis.asyncio` client for the process, with bounded calls and a circuit breaker.

    `url`: `redis://HOST:PORT/DB`; `timeout`: seconds each call may take (connect included);
    `probe_seconds`: how often a down store is probed. `up` is False while marked down.
    """

    def __init__(self, url: str, timeout: float = 1.0, probe_seconds: float = 1.0) -> None:
        import redis.asyncio as aioredis  # only processes with settings.redis_url load the client
        from redis.exceptions import RedisError

        self._errors = (RedisError, OSError, TimeoutError)
        self.url = url
        self.timeout = timeout
        self.probe_seconds = probe_seconds
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False, health_check_interval=0
        )
        # Subscriptions wait for messages as long as it takes: a client of their own, no read timeout.
        self.subscriber = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, health_check_interval=30)
        self.up = True
        self.failures = 0
        self._probe: asyncio.Task | None = None

    async def run(self, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """`await call(client)` within `timeout`. Raises StoreUnavailable when the store is down,
        slow or refuses (the original error is logged once per outage, never with a token)."""
        if not self.up:
            self.failures += 1
            raise StoreUnavailable("redis is unavailable")
        try:
            async with asyncio.timeout(self.timeout):
                return await call(self.client)
        except self._errors as exc:
            self._mark_down(exc)
            self.failures += 1
            raise StoreUnavailable("redis is unavailable") from None

    def script(self, lua: str) -> Callable[..., Awaitable[Any]]:
        """A Lua script registered once (EVALSHA, loaded on first use); call it as
        `await self.run(lambda r: script(keys=[...], args=[...], client=r))`."""
        return self.client.register_script(lua)

    async def now(self, client: aioredis.Redis) -> float:
        """Redis's own clock (`TIME`) in UNIX seconds: one clock for every replica."""
        seconds, micros = await client.time()
        return seconds + micros / 1_000_000

    def _mark_down(self, exc: BaseException) -> None:
        if self.up:
            log.warning("redis unreachable (%s); shared counters fall back per on_store_error", type(exc).__name__)
        self.up = False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        while not self.up:
            await asyncio.sleep(self.probe_seconds)
            try:
                async with asyncio.timeout(self.timeout):
                    await self.client.ping()
            except self._errors:
                continue
            self.up = True
            log.warning("redis reachable again")

    def reasons(self) -> list[str]:
        """`/healthz` reasons: `["redis unreachable"]` while down, else none."""
        return [] if self.up else ["redis unreachable"]

    async def aclose(self) -> None:
        """Stop probing and close the connection pool."""
        if self._probe is not None:
            self._probe.cancel()
        await self.client.aclose()
        await self.subscriber.aclose()
