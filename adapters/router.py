"""`router`: one token in front of a pool of other tokens (CONTRACT.md §4, Routers).

Config (the seed's, 002)::

    {router_strategy: round-robin | random | weighted | fallback | parallel,
     token_pool: [TOKEN, ...],
     weights: [NUMBER, ...]}        # weighted only: parallel to token_pool, each > 0

Strategies decide the order members are tried in; failover is the same for all of them:

- `round-robin`: one counter per router (kept across config reloads) advances once per request;
  the request starts at the member it points at and fails over to the next ones in rotation.
- `random`: the members in a uniformly shuffled order.
- `weighted`: a weighted draw without replacement (member i first with probability
  weights[i] / sum(weights), then the next draw among the rest, ...).
- `fallback`: the members in pool order.
- `parallel`: every member at once; the first successful answer wins (for a stream: the first
  member to produce its first chunk) and the other attempts are cancelled, which closes their
  upstream connections.

A member failing with a failover-type `GatewayError` (`.failover`: connection error, connect or
first-byte timeout, 429, 5xx, 401/403 of its own credentials) before anything reached the
client is passed over for the next member and counted towards its cooldown (`gateway.health`);
a request error (`.failover` False, e.g. 400) is returned at once. An unexpected exception in a
member (a translation bug on an odd upstream answer) fails over too but is not counted towards
the member's cooldown: the client's input was validated up front (`gateway.request`), so it is
not the client's fault, and not provably the member's. Cooldown orders, it never excludes
(CONTRACT.md §4): members in cooldown are tried after the others, the one whose cooldown ends
first first, until one answers.
When no member is left the client gets the most telling error: 429 `rate_limit_exceeded` over
504 `upstream_timeout` over 502 `upstream_auth_error` over 502 `upstream_error` (the first
member's error on a tie). After a stream's first chunk the router is committed to that member:
later errors reach the client as the stream's error event.

Each member attempt goes through `gateway.dispatch`, so it is bounded by `request_timeout`;
the router itself is not (`is_router`). The member that answered is published in
`gateway.dispatch.served_by` (its entry `name`, never its token): the app's
`x-gateway-served-by` header. With nested routers it is the innermost member that answered.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from gateway import dispatch, health
from gateway.adapter import Adapter, Completion, StreamItem
from gateway.errors import API_ERROR, GatewayError
from gateway.registry import register
from gateway.request import ChatRequest

log = logging.getLogger("gateway.router")

Strategy = Literal["round-robin", "random", "weighted", "fallback", "parallel"]
Opened = tuple[StreamItem | None, AsyncIterator[StreamItem]]
T = TypeVar("T")

# "Most telling" error when every member failed: higher wins (CONTRACT.md §3's table).
ERROR_RANK = {"rate_limit_exceeded": 4, "upstream_timeout": 3, "upstream_auth_error": 2, "upstream_error": 1}

_RR_STATE_KEY = "gateway.router.round_robin"


class RoutingConfig(BaseModel):
    """Base of the routers' `config` blocks: no upstream of their own, so no sampling defaults."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    def sampling_defaults(self) -> dict[str, Any]:
        """Routers add nothing to a request; members apply their own defaults."""
        return {}


class RouterConfig(RoutingConfig):
    """`router_strategy` (default `round-robin`), `token_pool` (member tokens, at least one),
    `weights` (required for `weighted`: one positive number per pool entry; ignored otherwise)."""

    router_strategy: Strategy = "round-robin"
    token_pool: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    weights: list[Annotated[float, Field(gt=0)]] | None = Field(None, validate_default=True)

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, weights: list[float] | None, info: ValidationInfo) -> list[float] | None:
        pool = info.data.get("token_pool")
        if weights is None:
            if info.data.get("router_strategy") == "weighted":
                raise PydanticCustomError("weights_missing", "router_strategy 'weighted' needs 'weights': one positive number per token_pool entry")
            return None
        if pool is not None and len(weights) != len(pool):
            raise PydanticCustomError(
                "weights_length",
                "weights has {weights} value(s) but token_pool has {pool} token(s); they must be parallel",
                {"weights": len(weights), "pool": len(pool)},
            )
        return weights


# -- calling one member ---------------------------------------------------------------------


def answered_by(member: Adapter) -> str:
    """The name to publish for a member that answered: the innermost answering entry."""
    inner = dispatch.served_by.get() if member.is_router else None
    return inner or member.name


def _unexpected(member: Adapter, exc: Exception) -> GatewayError:
    log.error("member %r failed unexpectedly: %s", member.name, type(exc).__name__, exc_info=exc)
    error = GatewayError(502, "The upstream answer could not be handled.", type=API_ERROR, code="upstream_error", failover=True)
    error.unexpected = True  # fails over, but is not counted towards the member's cooldown
    return error


async def _call_member(member: Adapter, call: Callable[[Adapter, ChatRequest], Awaitable[T]], request: ChatRequest) -> tuple[T, str]:
    """`call(member, request)` under the §3 timeout policy: `(result, served_by name)`.
    Raises GatewayError (an unexpected exception in the member becomes 502 `upstream_error`)."""
    dispatch.served_by.set(None)
    try:
        result = await call(member, request)
    except GatewayError:
        raise
    except Exception as exc:
        raise _unexpected(member, exc) from None
    return result, answered_by(member)


async def complete_member(member: Adapter, request: ChatRequest) -> tuple[Completion, str]:
    """One member's non-streamed answer: `(completion, served_by name)`. Raises GatewayError."""
    return await _call_member(member, dispatch.complete, request)


async def embed_member(member: Adapter, request) -> tuple[dict, str]:
    """One member's embeddings answer: `(result, served_by name)`. Raises GatewayError."""
    return await _call_member(member, dispatch.embed, request)


async def open_member(member: Adapter, request: ChatRequest) -> tuple[Opened, str]:
    """One member's stream, opened up to its first item: `((first_item, rest), served_by name)`.
    Raises GatewayError."""
    return await _call_member(member, dispatch.open_stream, request)


# -- the router -----------------------------------------------------------------------------


@register("router")
class RouterAdapter(Adapter):
    """A pool of tokens behind one token, with a strategy, failover and member cooldown."""

    Config = RouterConfig
    secret_fields = ()
    is_router = True

    @classmethod
    def labelled_references(cls, config: RouterConfig) -> list[tuple[str, str]]:
        return [(f"config.token_pool[{i}]", token) for i, token in enumerate(config.token_pool)]

    @property
    def _health(self) -> health.HealthBook:
        return health.book(self.runtime.state)

    # strategy order ---------------------------------------------------------------------------

    def _rotation(self) -> itertools.count:
        counters = self.runtime.state.setdefault(_RR_STATE_KEY, {})
        counter = counters.get(self.entry.token)
        if counter is None:
            counter = counters[self.entry.token] = itertools.count()
        return counter

    def strategy_order(self) -> list[str]:
        """Every pool token, in the order this request should try them (before cooldown)."""
        pool = self.config.token_pool
        strategy = self.config.router_strategy
        if strategy == "round-robin":
            start = next(self._rotation()) % len(pool)
            return pool[start:] + pool[:start]
        if strategy == "random":
            return random.sample(pool, len(pool))
        if strategy == "weighted":
            # Efraimidis–Spirakis: sorting by u**(1/w) is a weighted draw without replacement.
            keys = [random.random() ** (1.0 / w) for w in self.config.weights]
            return [token for _, token in sorted(zip(keys, pool), key=lambda kv: kv[0], reverse=True)]
        return list(pool)  # fallback, parallel

    def plan(self) -> list[Adapter]:
        """The members to try for one request: strategy order, cooling members last (soonest
        cooldown end first)."""
        tokens = self._health.plan(self.strategy_order(), self.runtime.settings.cooldown)
        return [self.runtime.adapter(token) for token in tokens]

    # health and errors ------------------------------------------------------------------------

    def _succeeded(self, member: Adapter, name: str) -> None:
        if not member.is_router:
            self._health.record_success(member.entry.token)
        dispatch.served_by.set(name)

    def _failed(self, member: Adapter, error: GatewayError, failures: list, left: int | None) -> None:
        """Log a failover, count it towards the member's cooldown, remember it for the final error.
        `left`: members still to try (None for `parallel`: those still running)."""
        failures.append((member.name, error))
        then = "trying the next member" if left else ("waiting for the others" if left is None else "no member left")
        log.warning("router %r: member %r failed: %s %s; %s", self.name, member.name, error.status, error.code, then)
        if member.is_router or getattr(error, "unexpected", False):
            return  # a router: its own members' health is what counts; unexpected: see module doc
        cooldown = self._health.record_failure(member.entry.token, error, self.runtime.settings.cooldown)
        if cooldown is not None:
            log.warning("router %r: member %r cools down for %.3g s", self.name, member.name, cooldown)

    def _exhausted(self, failures: list[tuple[str, GatewayError]]) -> GatewayError:
        """The error for the client when every member failed: the most telling one (see module doc)."""
        if not failures:
            return GatewayError(502, f"Router '{self.name}' has no member to try.", type=API_ERROR, code="upstream_error", failover=True)
        name, chosen = max(failures, key=lambda f: _rank(f[1]))  # max() keeps the first on a tie
        waits = [e.retry_after for _, e in failures if e.retry_after is not None and e.code == chosen.code]
        return GatewayError(
            chosen.status,
            f"Every member of router '{self.name}' failed ({len(failures)} tried); '{name}': {chosen.message}",
            type=chosen.type,
            code=chosen.code,
            param=chosen.param,
            failover=True,
            retry_after=min(waits) if waits else None,
        )

    # answering --------------------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        """The first member's answer that succeeds, in strategy order (or the fastest, `parallel`)."""
        completion, _ = await self._answer(lambda m: complete_member(m, request))
        return completion

    async def embed(self, request) -> dict:
        """The first member's embeddings that succeed, failing over as `complete` does."""
        result, _ = await self._answer(lambda m: embed_member(m, request))
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """The stream of the first member that produces a first chunk; then that member's stream
        to its end (a later error propagates: no failover after the first byte)."""
        (first, rest), _ = await self._answer(lambda m: open_member(m, request), discard=_close_opened)
        async with aclosing(rest):
            if first is not None:
                yield first
            async for item in rest:
                yield item

    async def _answer(
        self,
        attempt: Callable[[Adapter], Awaitable[tuple[T, str]]],
        discard: Callable[[T], Awaitable[None]] | None = None,
    ) -> tuple[T, str]:
        """Try the members (see `plan`) until one succeeds. `parallel` races the members that are
        not cooling down; when they all failed (or every member is cooling), the cooling ones
        are tried one after the other, soonest cooldown end first."""
        members = self.plan()
        failures: list[tuple[str, GatewayError]] = []
        if self.config.router_strategy == "parallel":
            policy = self.runtime.settings.cooldown
            ready = [m for m in members if not self._health.is_cooling(m.entry.token, policy)]
            if ready:
                won = await self._race(ready, attempt, failures, discard)
                if won is not None:
                    return won
                members = [m for m in members if m not in ready]
        won = await self._first_success(members, attempt, failures)
        if won is None:
            raise self._exhausted(failures)
        return won

    async def _first_success(
        self, members: list[Adapter], attempt: Callable[[Adapter], Awaitable[tuple[T, str]]], failures: list
    ) -> tuple[T, str] | None:
        """Try `attempt` on each member in order: the first success wins; a failover-type error
        is added to `failures` and passes to the next member, a request error is raised at once;
        None when every member failed."""
        for i, member in enumerate(members):
            try:
                result, name = await attempt(member)
            except GatewayError as error:
                if not error.failover:
                    raise
                self._failed(member, error, failures, len(members) - i - 1)
                continue
            self._succeeded(member, name)
            return result, name
        return None

    async def _race(
        self,
        members: list[Adapter],
        attempt: Callable[[Adapter], Awaitable[tuple[T, str]]],
        failures: list,
        discard: Callable[[T], Awaitable[None]] | None = None,
    ) -> tuple[T, str] | None:
        """`parallel`: run `attempt` on every member at once; the first success wins and every
        other attempt is cancelled (closing its upstream connection); a success that arrives too
        late is handed to `discard`. A request error (not failover) is returned at once; None
        when every member failed (their errors added to `failures`)."""
        tasks = {asyncio.create_task(attempt(member)): member for member in members}
        pending = set(tasks)
        winner: tuple[T, str] | None = None
        try:
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                # Successes first, so a success and a request error finishing together is a success.
                for task in sorted(done, key=_not_a_success):
                    member = tasks[task]
                    if task.cancelled():
                        continue
                    error = task.exception()
                    if error is None:
                        if winner is None:
                            winner = task.result()
                            self._succeeded(member, winner[1])
                        elif discard is not None:
                            await discard(task.result()[0])
                    elif isinstance(error, GatewayError) and error.failover:
                        self._failed(member, error, failures, None if pending else 0)
                    elif winner is None:
                        raise error
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                for task in pending:  # finished before the cancel landed
                    if not task.cancelled() and task.exception() is None and discard is not None:
                        await discard(task.result()[0])
        return winner

    # models -----------------------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        """The union of the members' models, in pool order; members that fail are left out."""
        members = [self.runtime.adapter(token) for token in dict.fromkeys(self.config.token_pool)]
        return await union_of_models(members)


async def union_of_models(members: list[Adapter]) -> list[str]:
    """Every model id the members list (asked concurrently), first occurrence first; a member
    whose listing fails is skipped."""
    results = await asyncio.gather(*(m.list_models() for m in members), return_exceptions=True)
    models: dict[str, None] = {}
    for member, result in zip(members, results):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            log.info("member %r could not list its models: %s", member.name, getattr(result, "code", type(result).__name__))
            continue
        models.update(dict.fromkeys(result))
    return list(models)


async def _close_opened(opened: Opened) -> None:
    await opened[1].aclose()


def _not_a_success(task: asyncio.Task) -> bool:
    return task.cancelled() or task.exception() is not None


def _rank(error: GatewayError) -> int:
    if error.code in ERROR_RANK:
        return ERROR_RANK[error.code]
    return {429: 4, 504: 3}.get(error.status, 0)
