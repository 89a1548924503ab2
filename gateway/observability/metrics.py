"""The Prometheus metrics of CONTRACT.md §7, with `prometheus_client`.

| metric | type | labels |
|---|---|---|
| `gateway_requests_total` | counter | `token_name, model, upstream, provider, status_code` |
| `gateway_request_duration_seconds` | histogram | `model, upstream, provider` |
| `gateway_time_to_first_token_seconds` | histogram | `model, upstream, provider` |
| `gateway_tokens_total` | counter | `token_name, model, upstream, type` (`prompt`, `completion`, `cached`) |
| `gateway_spend_usd_total` | counter | `token_name, model` |
| `gateway_limit_rejections_total` | counter | `token_name, reason` (rpm, tpm, parallel, budget, tokens, expired, model) |
| `gateway_in_flight_requests` | gauge | `token_name` |
| `gateway_upstream_cooling` | gauge (0/1) | `upstream` |
| `gateway_usage_dropped_total` | counter | — |

Label values come from the config only (entry names, provider types, configured model names;
any other model is `other`), never from a token or a client's free text. Histogram buckets are
OpenTelemetry GenAI's `gen_ai.client.operation.duration` buckets (0.01 s … 81.92 s).

With `PROMETHEUS_MULTIPROC_DIR` set (the CLI sets it for `--workers N > 1`, before the workers
start) values live in per-process files and `render()` merges every worker's
(prometheus_client's multiprocess mode); otherwise each `Metrics` has its own registry.

Label children are cached in plain dicts so the request path does one dict lookup per metric.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # no `_created` series: they double the output and nobody graphs them

BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
CONTENT_TYPE = CONTENT_TYPE_LATEST
NONE = "none"  # upstream/provider label of a request that reached no upstream


def multiprocess_dir() -> str | None:
    """The multiprocess directory, when metrics are shared between worker processes."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The gateway's metrics, registered on a private registry (or in multiprocess files)."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self.registry = None if self.multiprocess else CollectorRegistry()
        r = self.registry
        self.requests = Counter("gateway_requests_total", "Requests by token name, model, upstream, provider and status.",
                                ("token_name", "model", "upstream", "provider", "status_code"), registry=r)
        self.duration = Histogram("gateway_request_duration_seconds", "Request duration in seconds.",
                                  ("model", "upstream", "provider"), buckets=BUCKETS, registry=r)
        self.ttft = Histogram("gateway_time_to_first_token_seconds", "Time to the first streamed token in seconds.",
                              ("model", "upstream", "provider"), buckets=BUCKETS, registry=r)
        self.tokens = Counter("gateway_tokens_total", "Tokens by token name, model, upstream and type (prompt, completion, cached).",
                              ("token_name", "model", "upstream", "type"), registry=r)
        self.spend = Counter("gateway_spend_usd_total", "Spend in US dollars by token name and model.",
                             ("token_name", "model"), registry=r)
        self.rejections = Counter("gateway_limit_rejections_total", "Requests refused by a token's limits, by reason.",
                                  ("token_name", "reason"), registry=r)
        self.in_flight = Gauge("gateway_in_flight_requests", "Requests in flight by token name.", ("token_name",),
                               registry=r, multiprocess_mode="livesum")
        self.cooling = Gauge("gateway_upstream_cooling", "1 while a router member is cooling down, else 0.", ("upstream",),
                             registry=r, multiprocess_mode="livemax")
        self.usage_dropped = Counter("gateway_usage_dropped_total", "Usage events dropped because the ledger queue was full.",
                                     registry=r)
        self._children: dict[tuple, object] = {}
        self.before_render: list[Callable[[Metrics], None]] = []

    def _child(self, metric, values: tuple[str, ...]):
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def in_flight_of(self, token_name: str):
        """The in-flight gauge child of a token name (`inc()` / `dec()`)."""
        return self._child(self.in_flight, (token_name,))

    def observe(self, token_name: str, model: str, upstream: str, provider: str, status: int, duration_s: float,
                ttft_s: float | None, prompt: int, completion: int, cached: int, cost_usd: float) -> None:
        """Count one finished request (every label a config value)."""
        child = self._child
        child(self.requests, (token_name, model, upstream, provider, str(status))).inc()
        child(self.duration, (model, upstream, provider)).observe(duration_s)
        if ttft_s is not None:
            child(self.ttft, (model, upstream, provider)).observe(ttft_s)
        if prompt:
            child(self.tokens, (token_name, model, upstream, "prompt")).inc(prompt)
        if completion:
            child(self.tokens, (token_name, model, upstream, "completion")).inc(completion)
        if cached:
            child(self.tokens, (token_name, model, upstream, "cached")).inc(cached)
        if cost_usd:
            child(self.spend, (token_name, model)).inc(cost_usd)

    def rejected(self, token_name: str, reason: str) -> None:
        """Count a request refused by a limit (`reason`: rpm, tpm, parallel, budget, tokens, expired, model)."""
        self._child(self.rejections, (token_name, reason)).inc()

    def set_cooling(self, states: Iterable[tuple[str, bool]]) -> None:
        """Set `gateway_upstream_cooling` for each `(member name, cooling)`."""
        for name, cooling in states:
            self._child(self.cooling, (name,)).set(1 if cooling else 0)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (all workers' in multiprocess mode)."""
        for hook in self.before_render:
            hook(self)
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
