"""Admission and settlement of one request made with a client's token (CONTRACT.md §6, §7).

Every surface (chat completions, Responses, Anthropic Messages, embeddings, pass-through) calls
the same two steps around its upstream call::

    guard = runtime.guard
    ticket = await guard.admit(adapter, model=model, body=body, stream=stream, surface="chat",
                               request_id=request_id, path=path, client=client_addr)
    # raises GatewayError: 401 expired (x-should-retry: false), 404 model_not_found,
    # 429 rate_limit_exceeded (retry-after, retry-after-ms) or insufficient_quota
    # (x-should-retry: false); `error.headers` holds the headers to answer with.
    with ticket:                        # settles in __exit__: success, error, cancellation
        send headers + ticket.headers   # x-ratelimit-* (OpenAI's), computed at admission
        ... call the upstream ...
        ticket.meter.take(usage)        # an OpenAI `usage` dict, when the answer has one
        # or ticket.meter.take_json(bytes) / .see_chunk(chunk) / SSEUsageTap(ticket.meter, ...)
        ticket.status = 200             # default 200; an exception sets it (GatewayError's
                                        # status, 499 for a client gone, else 500)

`admit(...)` arguments: `adapter` (the presented token's), `model` (requested, else the one the
entry will use), `body` (the request as a dict: its prompt is estimated from `messages` and
`max_tokens`/`max_completion_tokens`), or `prompt_tokens` / `max_output` given directly by
surfaces with other shapes. A request that failed before it could be admitted (bad JSON, say) is
recorded with `guard.failed(adapter, error, ...)`.

What `settle` does, once: turns the meter's usage into tokens (an estimate marked `estimated`
when the upstream reported none but something was sent), prices it (`pricing.cost_usd`),
settles the counter reservation with it, builds the §6 `UsageEvent` and hands it to the usage
sink, counts the §7 metrics and writes the `gateway.access` log line.

Tokens without counter limits (no rpm/tpm/parallel/budget field) skip the counter store: their
admission is the expiry and allowlist checks only, and their usage is added to the period
totals in memory. A refused request reserves nothing and counts against nothing.

The counter store may be synchronous (`MemoryCounterStore`) or asynchronous (a shared backend
such as Redis): `admit` awaits a reservation that is awaitable; a settlement that is awaitable
runs as a task of its own (shielded from the request's cancellation), so it never delays the
answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from gateway import dispatch
from gateway.errors import INVALID_REQUEST, GatewayError, model_not_found
from gateway.keys import pricing
from gateway.keys.answers import expired, go_duration, refusal_error, window_headers
from gateway.keys.limits import KeyLimits, iso, period_end, period_start, zone
from gateway.keys.meter import UsageMeter, estimate_prompt, output_limit
from gateway.keys.store import Ask, CounterStore, Grant, MemoryCounterStore, Refusal
from gateway.observability.metrics import NONE, Metrics, new_metrics
from gateway.usage.events import UsageEvent, UsageSink

if TYPE_CHECKING:
    from gateway.adapter import Adapter
    from gateway.runtime import Runtime

access_log = logging.getLogger("gateway.access")
log = logging.getLogger("gateway.keys")

STORE_KEY, METRICS_KEY, SINK_KEY, CLOCK_KEY = "gateway.keys.store", "gateway.metrics", "gateway.usage.sink", "gateway.keys.clock"
OTHER = "other"
CLIENT_GONE = 499  # nginx's "client closed request": the status a usage event gets when the client left


class NullSink:
    """The usage sink until the ledger is plugged in: keeps the last `keep` events in memory."""

    def __init__(self, keep: int = 1000) -> None:
        from collections import deque

        self.events: deque[UsageEvent] = deque(maxlen=keep)

    def record(self, event: UsageEvent) -> None:
        self.events.append(event)


def token_key(token: str) -> str:
    """The counters' key for a token: a digest, so neither the store nor its keys hold the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


class EntryGuard:
    """What admission needs of one entry, computed once per config generation."""

    __slots__ = ("name", "key", "limits", "counters", "budgeted")

    def __init__(self, name: str, token: str, limits: KeyLimits | None) -> None:
        self.name = name
        self.key = token_key(token)
        self.limits = limits
        self.counters = limits is not None and limits.counters
        self.budgeted = limits is not None and limits.budgeted


class Guard:
    """Admission and settlement for one `Runtime` (see the module docstring). The counter store,
    metrics, usage sink and clock live in `runtime.state`, so they outlive config reloads."""

    def __init__(self, runtime: Runtime) -> None:
        state = runtime.state
        self.runtime = runtime
        self.settings = runtime.settings
        self.store: CounterStore = state.setdefault(STORE_KEY, MemoryCounterStore())
        self.metrics: Metrics = state.get(METRICS_KEY) or state.setdefault(METRICS_KEY, new_metrics())
        state.setdefault(SINK_KEY, NullSink())
        self.state = state
        self.tz = zone(runtime.settings.timezone)
        self.reserve_default = runtime.settings.limits.default_output_reserve
        self.entries: dict[str, EntryGuard] = {}
        self._periods: dict = {}
        self._pending: set[asyncio.Future] = set()
        self.types: dict[str, str] = {}
        self.models: set[str] = set()
        for token, adapter in runtime.adapters.items():
            entry = adapter.entry
            self.entries[token] = EntryGuard(entry.name, token, entry.limits)
            self.types.setdefault(entry.name, entry.type)
            for model in (getattr(adapter.config, "model", None), type(adapter).default_model):
                if isinstance(model, str):
                    self.models.add(model)
            if entry.limits and entry.limits.models:
                self.models.update(entry.limits.models)
            self.models.update(getattr(adapter.config, "model_2_token", None) or ())
        self.members = {ref for adapter in runtime.adapters.values() for ref in type(adapter).references(adapter.config)}
        self.metrics.before_render[:] = [self._export_state]

    def _export_state(self, metrics: Metrics) -> None:
        """At scrape time: router members' cooldowns, and the usage sink's count of dropped
        events (a sink that keeps one as `dropped`, as the ledger writer does)."""
        from gateway import health

        dropped = getattr(self.sink, "dropped", None)
        if isinstance(dropped, int):
            metrics.set_dropped(dropped)

        book, policy = health.book(self.state), self.settings.cooldown
        metrics.set_cooling((self.runtime.adapters[t].name, book.is_cooling(t, policy)) for t in self.members
                            if t in self.runtime.adapters)

    @property
    def clock(self) -> Callable[[], float]:
        """UNIX time source (tests install a fake under `runtime.state["gateway.keys.clock"]`)."""
        return self.state.get(CLOCK_KEY) or time.time

    @property
    def sink(self) -> UsageSink:
        return self.state[SINK_KEY]

    def entry(self, adapter: Adapter) -> EntryGuard:
        found = self.entries.get(adapter.entry.token)
        if found is None:
            found = self.entries[adapter.entry.token] = EntryGuard(adapter.entry.name, adapter.entry.token, adapter.entry.limits)
        return found

    def model_label(self, entry: EntryGuard, model: str | None) -> str:
        """`model` if the config names it (or the allowlist pattern it matched), else `other`."""
        if model is None:
            return OTHER
        if model in self.models:
            return model
        if entry.limits is not None:
            return entry.limits.model_label(model) or OTHER
        return OTHER

    def period(self, entry: EntryGuard, now: float) -> tuple[float, float | None]:
        """The entry's current budget period `(start, end)` (lifetime: `(0.0, None)`); cached
        per duration until the period ends."""
        duration = entry.limits.budget_duration if entry.limits is not None else None
        if duration is None:
            return 0.0, None
        cached = self._periods.get(duration)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached
        start = period_start(duration, now, self.tz)
        found = self._periods[duration] = (start, period_end(duration, start, self.tz))
        return found

    async def report(self, adapter: Adapter, now: float | None = None) -> dict[str, Any]:
        """An entry's name, limits, expiry, this period's usage and what is left of its budgets
        (`/key/info`, `/admin/api/keys`). Never the token."""
        entry = self.entry(adapter)
        now = self.clock() if now is None else now
        start, end = self.period(entry, now)
        usage = self.store.usage(entry.key, start)
        if inspect.isawaitable(usage):
            usage = await usage
        limits = entry.limits or KeyLimits()
        out = {"name": entry.name, **limits.as_dict()}
        out["expired"] = limits.expires is not None and now >= limits.expires
        out["period"] = {"start": iso(start) if start else None, "end": iso(end)}
        out["usage"] = {"requests": usage.requests, "tokens": usage.tokens, "cost_usd": round(usage.cost_usd, 6),
                        "in_flight": usage.in_flight}
        out["remaining"] = {
            "budget_usd": round(max(0.0, limits.max_budget - usage.cost_usd), 6) if limits.max_budget is not None else None,
            "tokens": max(0, limits.token_budget - usage.tokens) if limits.token_budget is not None else None,
        }
        return out

    def check_expiry(self, adapter: Adapter) -> None:
        """Raise the §6 401 (with `x-should-retry: false`) when the entry is past `expires`."""
        limits = adapter.entry.limits
        if limits is not None and limits.expires is not None and self.clock() >= limits.expires:
            raise expired(limits.expires)

    # -- admission ---------------------------------------------------------------------------

    async def admit(self, adapter: Adapter, *, model: str | None, body: dict | None = None, prompt_tokens: int | None = None,
              max_output: int | None = None, stream: bool = False, surface: str = "chat", request_id: str = "",
              path: str | None = None, client: str | None = None) -> Ticket:
        """Check expiry and the allowlist, reserve against every counter; a `Ticket` to settle.
        Raises GatewayError (see the module docstring); the refusal is recorded and counted."""
        entry = self.entry(adapter)
        ticket = Ticket(self, adapter, entry, model, body, stream, surface, request_id, path, client)
        limits = entry.limits
        if limits is None:
            ticket.start()
            return ticket
        now = ticket.now
        if limits.expires is not None and now >= limits.expires:
            raise ticket.refuse(expired(limits.expires), "expired")
        if not limits.allows(model):
            raise ticket.refuse(model_not_found(model or ""), "model")
        if not entry.counters:
            ticket.start()
            return ticket
        if prompt_tokens is None:
            prompt_tokens = estimate_prompt(body) if body is not None else 0
        ticket.meter.prompt_estimate = prompt_tokens
        if max_output is None and body is not None:
            max_output = output_limit(body)
        output = self.reserve_default if max_output is None else max_output
        if limits.tpm_limit is not None and prompt_tokens <= limits.tpm_limit:
            output = min(output, limits.tpm_limit - prompt_tokens)  # what a minute could ever hold
        cost = 0.0
        if limits.max_budget is not None:
            cost = pricing.cost_usd(model, adapter.type_name, prompt_tokens, output, 0)
        start, _ = self.period(entry, now)
        ask = Ask(entry.key, prompt_tokens + output, cost, limits.rpm_limit, limits.tpm_limit,
                  limits.max_parallel_requests, limits.max_budget, limits.token_budget, start)
        result = self.store.reserve(ask, now)
        if not isinstance(result, (Grant, Refusal)):  # a shared store's coroutine
            result = await result
        if isinstance(result, Refusal):
            raise ticket.refuse(refusal_error(result, model), result.reason,
                                window_headers(result.requests, result.tokens))
        ticket.grant = result
        ticket.headers = window_headers(result.requests, result.tokens)
        ticket.start()
        return ticket

    def background(self, work) -> None:
        """Run a shared store's settlement as its own task (kept referenced until done)."""
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def failed(self, adapter: Adapter, error: GatewayError, *, model: str | None = None, stream: bool = False,
               surface: str = "chat", request_id: str = "", path: str | None = None, client: str | None = None) -> None:
        """Record a request of a known token that failed before admission (e.g. a malformed body)."""
        ticket = Ticket(self, adapter, self.entry(adapter), model, None, stream, surface, request_id, path, client)
        ticket.status, ticket.error_code = error.status, error.code
        ticket.settle()


class Ticket:
    """One admitted request until it is settled (see the module docstring). Attributes:
    `headers` (x-ratelimit-* to send), `meter` (usage), `status`, `error_code`, `grant`."""

    __slots__ = ("guard", "adapter", "entry", "model", "body", "stream", "surface", "request_id", "path", "client",
                 "now", "started", "headers", "meter", "grant", "status", "error_code", "settled", "in_flight")

    def __init__(self, guard: Guard, adapter: Adapter, entry: EntryGuard, model: str | None, body: dict | None,
                 stream: bool, surface: str, request_id: str, path: str | None, client: str | None) -> None:
        self.guard, self.adapter, self.entry, self.model, self.body = guard, adapter, entry, model, body
        self.stream, self.surface, self.request_id, self.path, self.client = stream, surface, request_id, path, client
        self.now = guard.clock()
        self.started = time.perf_counter()
        self.headers: list[tuple[bytes, bytes]] = []
        self.meter = UsageMeter()
        self.grant: Grant | None = None
        self.status = 200
        self.error_code: str | None = None
        self.settled = False
        self.in_flight = None

    def start(self) -> None:
        self.in_flight = self.guard.metrics.in_flight_of(self.entry.name)
        self.in_flight.inc()

    def refuse(self, error: GatewayError, reason: str, headers: list | None = None) -> GatewayError:
        """Record and count this request as refused with `error`; returns the error to raise."""
        if headers:
            error.headers = {**dict((k.decode(), v.decode()) for k, v in headers), **(error.headers or {})}
        self.status, self.error_code = error.status, error.code
        self.guard.metrics.rejected(self.entry.name, reason)
        self.settle(refused=True)
        return error

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None:
            if isinstance(exc, GatewayError):
                self.status, self.error_code = exc.status, exc.code
            elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
                self.status, self.error_code = CLIENT_GONE, "client_closed_request"
            else:
                self.status, self.error_code = 500, "internal_error"
        self.settle()

    def settle(self, refused: bool = False) -> UsageEvent | None:
        """Settle once: counters, usage event, metrics, access log (never raises)."""
        if self.settled:
            return None
        self.settled = True
        try:
            return self._settle(refused)
        except Exception:  # accounting must never break an answer
            log.exception("settling a request failed")
            return None

    def _settle(self, refused: bool) -> UsageEvent:
        guard, meter, entry = self.guard, self.meter, self.entry
        if self.in_flight is not None:
            self.in_flight.dec()
        if meter.reported or meter.events or meter.completion_chars or meter.unread:
            if meter.prompt_estimate is None and not meter.reported and self.body is not None:
                meter.prompt_estimate = estimate_prompt(self.body)
            prompt, completion, cached, reasoning, estimated = meter.final()
        else:
            prompt = completion = cached = reasoning = 0
            estimated = False
        served = dispatch.served_by.get() or (None if refused else self.adapter.name)
        provider = guard.types.get(served) if served else None
        model = self.model
        cost = pricing.cost_usd(model, provider, prompt, completion, cached) if (prompt or completion) else 0.0
        now = guard.clock()
        done = None
        if self.grant is not None:
            done = guard.store.settle(self.grant, prompt + completion, cost, now)
        elif not refused:
            start = guard.period(entry, self.now)[0] if entry.limits is not None else 0.0
            done = guard.store.record(entry.key, start, prompt + completion, cost)
        if done is not None and inspect.isawaitable(done):
            guard.background(done)
        duration = time.perf_counter() - self.started
        ttft = (meter.first_at - self.started) if meter.first_at else None
        event = UsageEvent(
            time=self.now, token_name=entry.name, model=model, served_by=served, provider=provider,
            status=self.status, error_code=self.error_code or meter.error_code, stream=self.stream, prompt_tokens=prompt,
            completion_tokens=completion, cached_tokens=cached, reasoning_tokens=reasoning, cost_usd=cost,
            ttft_ms=ttft * 1000 if ttft is not None else None, duration_ms=duration * 1000,
            request_id=self.request_id, estimated=estimated, surface=self.surface,
        )
        guard.sink.record(event)
        guard.metrics.observe(entry.name, guard.model_label(entry, model), served or NONE, provider or NONE, self.status,
                              duration, ttft, prompt, completion, cached, cost)
        if guard.settings.access_log and access_log.isEnabledFor(logging.INFO):
            line = event.as_dict()
            del line["extra"]
            line["client"] = self.client
            line["path"] = self.path
            access_log.info(orjson.dumps(line).decode())
        return event


def request_context(scope) -> dict[str, Any]:
    """`request_id`, `path` and `client` of an ASGI scope, as `admit` / `failed` take them (the
    request id set by `RequestIdMiddleware` on the Starlette path, else the client's or a new one)."""
    from gateway.observability.request_id import request_id_of

    state = scope.get("state") or {}
    client = scope.get("client")
    return {"request_id": state.get("request_id") or request_id_of(scope["headers"]), "path": scope.get("path"),
            "client": client[0] if client else None}


def limit_headers(error: GatewayError, ticket: Ticket | None = None) -> list[tuple[bytes, bytes]]:
    """The headers an error answer carries: a refusal's own (`retry-after`, `x-should-retry`,
    `x-ratelimit-*`), else the admitted request's `x-ratelimit-*`."""
    if error.headers:
        return [(k.encode(), v.encode()) for k, v in error.headers.items()]
    return list(ticket.headers) if ticket is not None else []


def guard_of(runtime: Runtime) -> Guard:
    """The runtime's guard (built on first use)."""
    guard = runtime.__dict__.get("_guard")
    if guard is None:
        guard = runtime.__dict__["_guard"] = Guard(runtime)
    return guard


__all__ = ["CLIENT_GONE", "Guard", "NullSink", "Ticket", "guard_of", "go_duration", "token_key", "INVALID_REQUEST"]
