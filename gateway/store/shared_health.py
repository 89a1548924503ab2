"""Router member cooldowns shared through Redis (CONTRACT.md §8): one cooldown for all replicas.

Each process keeps its own `HealthBook` (§4 rules, sync, on the request path); this module is
its `listener`. A cooldown the book starts is written as `gw:cool:<token hash>` = end time (UNIX
seconds, Redis `TIME`-free: the writer's wall clock, expiring with the cooldown) and announced on
the `gw:cool` channel; a success that ends one deletes it and announces `0`. Every process
subscribes and applies what it hears (`HealthBook.apply_remote`), and loads the keys present at
start, so a member found failing by one worker is skipped by all. Publishing never waits on the
request: it is a background task, and a Redis that is down only costs the sharing (the local
book keeps working).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from gateway.health import HealthBook
from gateway.store.redis import SharedRedis, StoreUnavailable, key, token_hash

log = logging.getLogger("gateway.store.shared_health")

CHANNEL = "gw:cool"


class SharedHealth:
    """Shares `book`'s cooldowns over `redis`. `tokens()` gives the configured member tokens
    (to map a hash heard on the channel back to a token; unknown hashes are ignored).

    `start()` loads the current cooldowns and subscribes; `aclose()` stops listening."""

    def __init__(self, redis: SharedRedis, book: HealthBook, tokens: Callable[[], Iterable[str]]) -> None:
        self.redis = redis
        self.book = book
        self.tokens = tokens
        self._listen: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()
        book.listener = self

    # -- the book's listener (sync, on the request path: schedule and return) -----------------

    def cooled(self, token: str, seconds: float) -> None:
        self._spawn(self._publish(token, time.time() + seconds, seconds))

    def cleared(self, token: str) -> None:
        self._spawn(self._publish(token, 0.0, 0.0))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, token: str, until: float, seconds: float) -> None:
        name = key("cool", token)
        message = f"{token_hash(token)}:{until:.6f}"

        async def write(r):
            async with r.pipeline(transaction=False) as pipe:
                if until > 0:
                    pipe.set(name, f"{until:.6f}", px=max(1, int(seconds * 1000)))
                else:
                    pipe.delete(name)
                pipe.publish(CHANNEL, message)
                await pipe.execute()

        try:
            await self.redis.run(write)
        except StoreUnavailable:
            pass  # the local book still holds the cooldown; sharing resumes when Redis is back

    # -- hearing other processes --------------------------------------------------------------

    def _by_hash(self) -> dict[str, str]:
        return {token_hash(t): t for t in self.tokens()}

    def _apply(self, hashed: str, until: float) -> None:
        token = self._by_hash().get(hashed)
        if token is None:
            return
        if until <= 0:
            self.book.apply_remote(token, 0.0)
        else:
            remaining = until - time.time()
            if remaining > 0:
                self.book.apply_remote(token, self.book.clock() + remaining)

    async def start(self) -> None:
        """Load the cooldowns in force and start listening. A Redis that is down is not an
        error here: the listener retries in the background."""
        self._listen = asyncio.get_running_loop().create_task(self._listen_forever())

    async def _load(self) -> None:
        for hashed, token in self._by_hash().items():
            value = await self.redis.run(lambda r, t=token: r.get(key("cool", t)))
            if value:
                self._apply(hashed, float(value))

    async def _listen_forever(self) -> None:
        while True:
            pubsub = self.redis.subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                await self._load()
                async for message in pubsub.listen():
                    hashed, _, until = message["data"].decode().partition(":")
                    self._apply(hashed, float(until or 0))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone: retry, without flooding the log
                log.debug("cooldown channel lost: %s", type(exc).__name__)
                await asyncio.sleep(self.redis.probe_seconds)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def aclose(self) -> None:
        """Stop listening; publications already scheduled are let finish."""
        if self._listen is not None:
            self._listen.cancel()
            try:
                await self._listen
            except (asyncio.CancelledError, Exception):
                pass
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
