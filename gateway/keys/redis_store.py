"""§6's counters in Redis (CONTRACT.md §8): one `rpm_limit`, budget and in-flight count for
every worker and replica on the same Redis.

The same operations and rules as `MemoryCounterStore` (`gateway/keys/store.py`: GCRA for
requests and tokens per minute, in-flight slots, period budgets with reservations), each done by
one Lua script, so a check and its take are atomic across processes; `now` is Redis's own
`TIME` (one clock for all replicas). Per token digest (`Ask.key`, never the token):

- `gw:lim:<key>` hash: `rtat`, `ttat` (GCRA theoretical arrival times), `inflight`;
- `gw:per:<key>:<period_start>` hash: `requests`, `tokens`, `cost`, `rtokens`, `rcost`,
  `inflight` (expires 40 days after its last write: periods are at most a month).

Every call is bounded by `SharedRedis`'s short timeout; when Redis is unavailable the store
falls back by `on_store_error`: `local` serves from a per-process `MemoryCounterStore` (and
`health()` says so), `closed` raises `GatewayError` 503 `api_error` / `store_unavailable`.
A grant is settled by the backend that issued it.
"""

from __future__ import annotations

import logging
import time

from gateway.errors import API_ERROR, GatewayError
from gateway.keys.store import Ask, CounterStore, Grant, MemoryCounterStore, PeriodUsage, Refusal, Window
from gateway.store.redis import SharedRedis, StoreUnavailable

log = logging.getLogger("gateway.keys.redis")

PERIOD_TTL = 40 * 86400

# KEYS: lim, per. ARGV: tokens, cost, rpm, tpm, parallel, max_budget, token_budget (-1: unset), ttl,
# now (0: Redis TIME; tests pass their fake clock's). Returns {admitted, reason, limit, used, requested, retry_after, rl, rrem, rreset, tl, trem, treset}
# as strings (Lua numbers would be truncated to integers on the way out).
RESERVE = """
local now = tonumber(ARGV[9])
if now <= 0 then local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1000000 end
local W = 60.0
local tokens, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm, par = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local budget, tbudget, ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local lim = redis.call('HMGET', KEYS[1], 'rtat', 'ttat', 'inflight')
local rtat, ttat, inflight = tonumber(lim[1]) or 0, tonumber(lim[2]) or 0, tonumber(lim[3]) or 0
local per = redis.call('HMGET', KEYS[2], 'tokens', 'cost', 'rtokens', 'rcost', 'inflight')
local ptokens, pcost = tonumber(per[1]) or 0, tonumber(per[2]) or 0
local rtokens, rcost, pinflight = tonumber(per[3]) or 0, tonumber(per[4]) or 0, tonumber(per[5]) or 0

local function window(tat, limit)
  local interval = W / limit
  local backlog = math.max(0, tat - now)
  return math.max(0, math.floor((W - backlog) / interval + 1e-9)), backlog
end
local function gcra(tat, limit, c)
  local new = math.max(tat, now) + c * W / limit
  return new, math.max(0, new - W - now)
end

-- the best refusal: a spent budget first, then a wait that cannot help (-1), then the longest wait
local best, best_rank = nil, nil
local function refuse(reason, limit, used, requested, wait, quota)
  local rank = (quota and 2000000000 or 0) + (wait < 0 and 1000000000 or wait)
  if best == nil or rank > best_rank then
    best, best_rank = {reason, limit, used, requested, wait}, rank
  end
end

if budget >= 0 then
  local held = pcost + rcost
  if pcost >= budget or (held + cost > budget and pinflight > 0) then refuse('budget', budget, held, cost, -1, true) end
end
if tbudget >= 0 then
  local held = ptokens + rtokens
  if ptokens >= tbudget or (held + tokens > tbudget and pinflight > 0) then refuse('tokens', tbudget, held, tokens, -1, true) end
end
local new_rtat, new_ttat = nil, nil
if rpm > 0 then
  local wait
  new_rtat, wait = gcra(rtat, rpm, 1)
  if wait > 0 then local rem = window(rtat, rpm); refuse('rpm', rpm, rpm - rem, 1, wait, false) end
end
if tpm > 0 then
  if tokens > tpm then refuse('tpm', tpm, 0, tokens, -1, false)
  else
    local wait
    new_ttat, wait = gcra(ttat, tpm, tokens)
    if wait > 0 then local rem = window(ttat, tpm); refuse('tpm', tpm, tpm - rem, tokens, wait, false) end
  end
end
if par >= 0 and inflight >= par then refuse('parallel', par, inflight, 1, 1.0, false) end

local admitted = 1
if best ~= nil then admitted = 0
else
  if new_rtat ~= nil then rtat = new_rtat; redis.call('HSET', KEYS[1], 'rtat', tostring(rtat)) end
  if new_ttat ~= nil then ttat = new_ttat; redis.call('HSET', KEYS[1], 'ttat', tostring(ttat)) end
  redis.call('HINCRBY', KEYS[1], 'inflight', 1)
  redis.call('HINCRBY', KEYS[2], 'inflight', 1)
  redis.call('HINCRBY', KEYS[2], 'rtokens', tokens)
  redis.call('HINCRBYFLOAT', KEYS[2], 'rcost', cost)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[1], 86400)
  best = {'', 0, 0, 0, -1}
end
local out = {tostring(admitted), best[1], tostring(best[2]), tostring(best[3]), tostring(best[4]), tostring(best[5])}
for _, spec in ipairs({{rpm, rtat}, {tpm, ttat}}) do
  if spec[1] > 0 then
    local rem, reset = window(spec[2], spec[1])
    table.insert(out, tostring(spec[1])); table.insert(out, tostring(rem)); table.insert(out, tostring(reset))
  else
    table.insert(out, '-1'); table.insert(out, '0'); table.insert(out, '0')
  end
end
return out
"""

# KEYS: lim, per. ARGV: reserved tokens, reserved cost, real tokens, real cost, tpm (-1), ttl, now (0: TIME).
SETTLE = """
local now = tonumber(ARGV[7])
if now <= 0 then local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1000000 end
local rtokens, rcost, tokens, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tpm, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
if tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0') > 0 then redis.call('HINCRBY', KEYS[1], 'inflight', -1) end
if tonumber(redis.call('HGET', KEYS[2], 'inflight') or '0') > 0 then redis.call('HINCRBY', KEYS[2], 'inflight', -1) end
redis.call('HINCRBY', KEYS[2], 'rtokens', -rtokens)
redis.call('HINCRBYFLOAT', KEYS[2], 'rcost', -rcost)
redis.call('HINCRBY', KEYS[2], 'requests', 1)
redis.call('HINCRBY', KEYS[2], 'tokens', tokens)
redis.call('HINCRBYFLOAT', KEYS[2], 'cost', cost)
redis.call('EXPIRE', KEYS[2], ttl)
if tpm > 0 and tokens ~= rtokens then
  local ttat = tonumber(redis.call('HGET', KEYS[1], 'ttat') or '0')
  redis.call('HSET', KEYS[1], 'ttat', tostring(math.max(now, ttat + (tokens - rtokens) * 60.0 / tpm)))
end
return 1
"""

# KEYS: per. ARGV: requests, tokens, cost, ttl. (`record` and `seed`: totals without a reservation.)
ADD = """
redis.call('HINCRBY', KEYS[1], 'requests', tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'tokens', tonumber(ARGV[2]))
redis.call('HINCRBYFLOAT', KEYS[1], 'cost', tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""


def _opt(value) -> str:
    return "-1" if value is None else repr(value)


def _window(limit: str, remaining: str, reset: str) -> Window | None:
    if float(limit) < 0:
        return None
    return Window(int(float(limit)), int(float(remaining)), float(reset))


class RedisCounterStore(CounterStore):
    """`CounterStore` on a `SharedRedis`; async like every shared backend (`await reserve(...)`).

    `on_store_error`: `local` (fall back to per-process counters) or `closed` (503).
    `caller_clock`: use the `now` callers pass instead of Redis `TIME` (tests on a fake clock)."""

    def __init__(self, redis: SharedRedis, on_store_error: str = "local", caller_clock: bool = False) -> None:
        self.redis = redis
        self.on_store_error = on_store_error
        self.caller_clock = caller_clock
        self.local = MemoryCounterStore()
        self._reserve = redis.script(RESERVE)
        self._settle = redis.script(SETTLE)
        self._add = redis.script(ADD)
        self._local_grants: set[int] = set()
        self.fallbacks = 0  # requests served from local counters while Redis was unavailable

    @staticmethod
    def _keys(ask_key: str, period_start: float) -> list[str]:
        return [f"gw:lim:{ask_key}", f"gw:per:{ask_key}:{period_start:.0f}"]

    def _unavailable(self) -> None:
        if self.on_store_error == "closed":
            raise GatewayError(503, "The gateway's shared limit store is unavailable; try again shortly.", type=API_ERROR, code="store_unavailable")
        self.fallbacks += 1

    async def reserve(self, ask: Ask, now: float) -> Grant | Refusal:
        """Atomically take `ask` from every counter in Redis (see the module docstring).
        Raises GatewayError 503 when Redis is unavailable and `on_store_error` is `closed`."""
        args = [ask.tokens, repr(ask.cost_usd), _opt(ask.rpm_limit), _opt(ask.tpm_limit), _opt(ask.max_parallel),
                _opt(ask.max_budget), _opt(ask.token_budget), PERIOD_TTL, repr(now) if self.caller_clock else "0"]
        try:
            out = await self.redis.run(lambda r: self._reserve(keys=self._keys(ask.key, ask.period_start), args=args, client=r))
        except StoreUnavailable:
            self._unavailable()
            result = self.local.reserve(ask, now)
            if isinstance(result, Grant):
                self._local_grants.add(id(result))
            return result
        out = [v.decode() if isinstance(v, bytes) else str(v) for v in out]
        requests, tokens = _window(*out[6:9]), _window(*out[9:12])
        if out[0] == "1":
            return Grant(ask, requests, tokens)
        wait = float(out[5])
        return Refusal(out[1], float(out[2]), float(out[3]), float(out[4]), None if wait < 0 else wait, requests, tokens)

    async def settle(self, grant: Grant, tokens: int, cost_usd: float, now: float) -> None:
        """End `grant` with the real usage (once). A Redis failure here is logged, not raised:
        the reservation then expires with its period (the request already happened)."""
        if grant.settled:
            return
        if id(grant) in self._local_grants:
            self._local_grants.discard(id(grant))
            self.local.settle(grant, tokens, cost_usd, now)
            return
        grant.settled = True
        ask = grant.ask
        args = [ask.tokens, repr(ask.cost_usd), tokens, repr(cost_usd), _opt(ask.tpm_limit), PERIOD_TTL,
                repr(now) if self.caller_clock else "0"]
        try:
            await self.redis.run(lambda r: self._settle(keys=self._keys(ask.key, ask.period_start), args=args, client=r))
        except StoreUnavailable:
            log.warning("could not settle a request's usage in redis (unavailable); counted locally")
            self.local.record(ask.key, ask.period_start, tokens, cost_usd)

    async def _add_totals(self, key: str, period_start: float, requests: int, tokens: int, cost_usd: float) -> None:
        keys = [self._keys(key, period_start)[1]]
        await self.redis.run(lambda r: self._add(keys=keys, args=[requests, tokens, repr(cost_usd), PERIOD_TTL], client=r))

    async def record(self, key: str, period_start: float, tokens: int, cost_usd: float) -> None:
        """Add a request that needed no reservation to the period's totals."""
        try:
            await self._add_totals(key, period_start, 1, tokens, cost_usd)
        except StoreUnavailable:
            self.local.record(key, period_start, tokens, cost_usd)

    async def seed(self, key: str, period_start: float, tokens: int, cost_usd: float, requests: int = 0) -> None:
        """Start a period's totals from the ledger, once for all replicas (only when Redis holds
        none for that period yet: the first replica to start seeds it)."""
        name = self._keys(key, period_start)[1]
        try:
            fresh = await self.redis.run(lambda r: r.hsetnx(name, "seeded", str(time.time())))
            if fresh:
                await self._add_totals(key, period_start, requests, tokens, cost_usd)
        except StoreUnavailable:
            self.local.seed(key, period_start, tokens, cost_usd, requests)

    async def usage(self, key: str, period_start: float) -> PeriodUsage:
        """The period's totals as Redis holds them (local ones while it is unavailable)."""
        name = self._keys(key, period_start)[1]
        try:
            values = await self.redis.run(lambda r: r.hmget(name, "requests", "tokens", "cost", "rtokens", "rcost", "inflight"))
        except StoreUnavailable:
            return self.local.usage(key, period_start)
        n = [float(v) if v is not None else 0.0 for v in values]
        return PeriodUsage(period_start, int(n[0]), int(n[1]), n[2], int(n[3]), n[4], int(n[5]))

    def health(self) -> list[str]:
        """`/healthz` reasons while Redis is unavailable."""
        return self.redis.reasons()
