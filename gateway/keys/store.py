"""The counters behind §6's limits, behind one interface (`CounterStore`) so that a shared
backend (Redis with Lua scripts, the scale-out issue) replaces the in-memory one without
touching the callers.

Two operations carry the guarantees:

- `reserve(ask, now)`: atomically check **every** counter of one token (requests per minute,
  tokens per minute, requests in flight, the period's spend and tokens) and, only when all of
  them allow it, take the reservation from all of them. A refused request changes nothing.
- `settle(grant, tokens, cost_usd, now)`: replace the reservation with what the request really
  used (refund the difference, or charge the excess), release its in-flight slot, and add it to
  the period's totals. Idempotent: a grant is settled once.

Per-minute limits use GCRA (the generic cell rate algorithm) with a burst equal to the limit and
a refill over 60 s: a limit L admits L units at once, then one unit every 60/L s. It gives the
exact wait (`retry_after`) and OpenAI's `x-ratelimit-reset-*` ("time until the limit is back to
its initial state"), and, unlike fixed windows, takes weighted and refundable costs (the
theoretical arrival time moves by cost × 60/L). Budgets are counters per calendar period
(`Ask.period_start`; a new period starts from zero); in-flight reservations count against them.

Times are UNIX seconds passed in by the caller (`now`), so tests drive a fake clock and a Redis
backend can use the server's `TIME` instead. The memory store is for one event loop (no locks:
nothing awaits between check and take).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WINDOW = 60.0  # seconds: rpm and tpm are per minute

# Refusal reasons (also the `reason` label of `gateway_limit_rejections_total`).
RPM, TPM, PARALLEL, BUDGET, TOKENS = "rpm", "tpm", "parallel", "budget", "tokens"
QUOTA_REASONS = frozenset({BUDGET, TOKENS})


@dataclass(slots=True)
class Ask:
    """What one request asks to reserve for the token counted under `key` (a token digest).

    Limits are None when not set. `tokens` is the prompt estimate plus the output reserve;
    `cost_usd` the price of those tokens. `period_start` is the UNIX time the current budget
    period began (0.0: a lifetime budget).
    """

    key: str
    tokens: int = 0
    cost_usd: float = 0.0
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel: int | None = None
    max_budget: float | None = None
    token_budget: int | None = None
    period_start: float = 0.0


@dataclass(slots=True)
class Window:
    """One per-minute limit's state as OpenAI's headers report it: `limit`, `remaining` units
    now, `reset` seconds until it is back to full."""

    limit: int
    remaining: int
    reset: float


@dataclass(slots=True)
class Grant:
    """An admitted reservation: what it took (`tokens`, `cost_usd`, whether it holds an
    in-flight slot) and the rpm/tpm windows after taking it (for the response headers)."""

    ask: Ask
    requests: Window | None = None
    tokens: Window | None = None
    settled: bool = False


@dataclass(slots=True)
class Refusal:
    """A refused request: `reason` (rpm, tpm, parallel, budget, tokens), the `limit`, what was
    `used` and `requested`, `retry_after` seconds (None: waiting will not help in this period,
    or the request can never fit), and the windows for the headers."""

    reason: str
    limit: float
    used: float
    requested: float
    retry_after: float | None
    requests: Window | None = None
    tokens: Window | None = None

    @property
    def quota(self) -> bool:
        """True for a spent budget (`insufficient_quota`), False for a rate limit."""
        return self.reason in QUOTA_REASONS


@dataclass(slots=True)
class PeriodUsage:
    """A token's totals in one budget period: settled `requests`, `tokens`, `cost_usd`, and
    what in-flight requests hold (`reserved_tokens`, `reserved_cost_usd`, `in_flight`)."""

    period_start: float = 0.0
    requests: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    reserved_tokens: int = 0
    reserved_cost_usd: float = 0.0
    in_flight: int = 0


class CounterStore:
    """The interface every counter backend implements (see the module docstring).

    A backend's methods may be plain (the memory store) or coroutines (a shared store such as
    Redis, where each is one round trip): `gateway.keys.guard` awaits what is awaitable."""

    def reserve(self, ask: Ask, now: float) -> Grant | Refusal:
        """Take `ask` from every counter at once, or nothing (returning why)."""
        raise NotImplementedError

    def settle(self, grant: Grant, tokens: int, cost_usd: float, now: float) -> None:
        """End `grant` with the real `tokens` (prompt + completion) and `cost_usd`."""
        raise NotImplementedError

    def record(self, key: str, period_start: float, tokens: int, cost_usd: float) -> None:
        """Add a request that needed no reservation (a token without counter limits) to its totals."""
        raise NotImplementedError

    def seed(self, key: str, period_start: float, tokens: int, cost_usd: float, requests: int = 0) -> None:
        """Start the period's totals from what the usage ledger says was spent (at start-up)."""
        raise NotImplementedError

    def usage(self, key: str, period_start: float) -> PeriodUsage:
        """The token's totals in the period starting at `period_start` (zeros when none)."""
        raise NotImplementedError

    def health(self) -> list[str]:
        """Reasons the store is degraded (empty: fine). The memory store never is."""
        return []


@dataclass(slots=True)
class _Counters:
    requests_tat: float = 0.0  # GCRA theoretical arrival times
    tokens_tat: float = 0.0
    in_flight: int = 0
    period: PeriodUsage = field(default_factory=PeriodUsage)


def _window(tat: float, limit: int, now: float) -> Window:
    interval = WINDOW / limit
    backlog = max(0.0, tat - now)
    return Window(limit, max(0, math.floor((WINDOW - backlog) / interval + 1e-9)), backlog)


def _gcra(tat: float, limit: int, cost: int, now: float) -> tuple[float, float]:
    """(new theoretical arrival time, seconds to wait: 0 when allowed now)."""
    new_tat = max(tat, now) + cost * WINDOW / limit
    return new_tat, max(0.0, new_tat - WINDOW - now)


class MemoryCounterStore(CounterStore):
    """Counters in this process's memory (one event loop; the default, and the per-process
    fallback of a shared store)."""

    def __init__(self) -> None:
        self._keys: dict[str, _Counters] = {}

    def _get(self, key: str, period_start: float) -> _Counters:
        counters = self._keys.get(key)
        if counters is None:
            counters = self._keys[key] = _Counters()
        period = counters.period
        if period.period_start != period_start and period_start > period.period_start:
            # A new period: spend starts from zero; reservations in flight carry over.
            counters.period = PeriodUsage(
                period_start, reserved_tokens=period.reserved_tokens, reserved_cost_usd=period.reserved_cost_usd
            )
        return counters

    def reserve(self, ask: Ask, now: float) -> Grant | Refusal:
        c = self._get(ask.key, ask.period_start)
        period = c.period
        refusals: list[Refusal] = []
        if ask.max_budget is not None:
            held = period.cost_usd + period.reserved_cost_usd
            # Over budget, or this reservation does not fit beside others in flight (alone, a
            # request may use what is left: the overshoot is bounded by one request).
            if period.cost_usd >= ask.max_budget or (held + ask.cost_usd > ask.max_budget and period.in_flight > 0):
                refusals.append(Refusal(BUDGET, ask.max_budget, held, ask.cost_usd, None))
        if ask.token_budget is not None:
            held = period.tokens + period.reserved_tokens
            if period.tokens >= ask.token_budget or (held + ask.tokens > ask.token_budget and period.in_flight > 0):
                refusals.append(Refusal(TOKENS, ask.token_budget, held, ask.tokens, None))
        new_rtat = new_ttat = None
        if ask.rpm_limit is not None:
            new_rtat, wait = _gcra(c.requests_tat, ask.rpm_limit, 1, now)
            if wait > 0:
                used = ask.rpm_limit - _window(c.requests_tat, ask.rpm_limit, now).remaining
                refusals.append(Refusal(RPM, ask.rpm_limit, used, 1, wait))
        if ask.tpm_limit is not None:
            if ask.tokens > ask.tpm_limit:
                refusals.append(Refusal(TPM, ask.tpm_limit, 0, ask.tokens, None))
            else:
                new_ttat, wait = _gcra(c.tokens_tat, ask.tpm_limit, ask.tokens, now)
                if wait > 0:
                    used = ask.tpm_limit - _window(c.tokens_tat, ask.tpm_limit, now).remaining
                    refusals.append(Refusal(TPM, ask.tpm_limit, used, ask.tokens, wait))
        if ask.max_parallel is not None and c.in_flight >= ask.max_parallel:
            # No clock says when a slot frees up; one second is the suggested wait.
            refusals.append(Refusal(PARALLEL, ask.max_parallel, c.in_flight, 1, 1.0))
        if refusals:
            # A spent budget wins (waiting does not help), then the longest wait.
            refusal = max(refusals, key=lambda r: (r.quota, r.retry_after is None, r.retry_after or 0.0))
            if ask.rpm_limit is not None:
                refusal.requests = _window(c.requests_tat, ask.rpm_limit, now)
            if ask.tpm_limit is not None:
                refusal.tokens = _window(c.tokens_tat, ask.tpm_limit, now)
            return refusal
        requests = tokens = None
        if new_rtat is not None:
            c.requests_tat = new_rtat
            requests = _window(new_rtat, ask.rpm_limit, now)
        if new_ttat is not None:
            c.tokens_tat = new_ttat
            tokens = _window(new_ttat, ask.tpm_limit, now)
        c.in_flight += 1
        period.in_flight += 1
        period.reserved_tokens += ask.tokens
        period.reserved_cost_usd += ask.cost_usd
        return Grant(ask, requests, tokens)

    def settle(self, grant: Grant, tokens: int, cost_usd: float, now: float) -> None:
        if grant.settled:
            return
        grant.settled = True
        ask = grant.ask
        c = self._get(ask.key, max(ask.period_start, self._keys[ask.key].period.period_start))
        c.in_flight = max(0, c.in_flight - 1)
        period = c.period
        period.in_flight = max(0, period.in_flight - 1)
        period.reserved_tokens = max(0, period.reserved_tokens - ask.tokens)
        period.reserved_cost_usd = max(0.0, period.reserved_cost_usd - ask.cost_usd)
        period.requests += 1
        period.tokens += tokens
        period.cost_usd += cost_usd
        if ask.tpm_limit is not None and tokens != ask.tokens:
            # Refund (or charge) the difference: the arrival time moves by it, never before now.
            c.tokens_tat = max(now, c.tokens_tat + (tokens - ask.tokens) * WINDOW / ask.tpm_limit)

    def record(self, key: str, period_start: float, tokens: int, cost_usd: float) -> None:
        period = self._get(key, period_start).period
        period.requests += 1
        period.tokens += tokens
        period.cost_usd += cost_usd

    def seed(self, key: str, period_start: float, tokens: int, cost_usd: float, requests: int = 0) -> None:
        period = self._get(key, period_start).period
        if period.period_start == period_start:
            period.tokens += tokens
            period.cost_usd += cost_usd
            period.requests += requests

    def usage(self, key: str, period_start: float) -> PeriodUsage:
        counters = self._keys.get(key)
        if counters is None or counters.period.period_start != period_start:
            return PeriodUsage(period_start)
        return counters.period
