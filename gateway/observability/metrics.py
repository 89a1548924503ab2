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

Two implementations behind one interface (`new_metrics()` picks):

- `Metrics` (one process): the request path adds to plain dicts keyed by label values (no
  locks, no per-sample objects: a few dict operations per request); a collector on a private
  `CollectorRegistry` turns them into prometheus_client metric families when `/metrics` is
  scraped, and `prometheus_client` writes the exposition.
- `SharedMetrics` (with `PROMETHEUS_MULTIPROC_DIR` set: the CLI sets it for `--workers N > 1`,
  before the workers start): prometheus_client's own counters, gauges and histograms, whose
  values live in per-process files; `render()` merges every worker's (its multiprocess mode).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # no `_created` series: they double the output and nobody graphs them

BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
CONTENT_TYPE = CONTENT_TYPE_LATEST
NONE = "none"  # upstream/provider label of a request that reached no upstream


def multiprocess_dir() -> str | None:
    """The multiprocess directory, when metrics are shared between worker processes."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class SharedMetrics:
    """The metrics as prometheus_client objects (multiprocess mode: values in per-process files)."""

    def __init__(self) -> None:
        self.multiprocess = True
        self.registry = None  # values go to the multiprocess files
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
        self.before_render: list[Callable[[SharedMetrics], None]] = []

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

    def set_dropped(self, total: int) -> None:
        """Bring `gateway_usage_dropped_total` up to the usage sink's own count of dropped events."""
        seen = getattr(self, "_dropped_seen", 0)
        if total > seen:
            self.usage_dropped.inc(total - seen)
            self._dropped_seen = total

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


REQUEST_LABELS = ("token_name", "model", "upstream", "provider", "status_code")
TIMING_LABELS = ("model", "upstream", "provider")
TOKEN_LABELS = ("token_name", "model", "upstream", "type")


class _Count:
    """A label-less counter (`inc`), for `usage_dropped`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _Level:
    """One in-flight gauge value (`inc` / `dec`)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


class Metrics:
    """The gateway's metrics for one process (see the module docstring)."""

    multiprocess = False

    def __init__(self) -> None:
        self._requests: dict[tuple, int] = {}
        self._duration: dict[tuple, list] = {}  # per-bucket counts (not cumulative), then sum
        self._ttft: dict[tuple, list] = {}
        self._tokens: dict[tuple, int] = {}
        self._spend: dict[tuple, float] = {}
        self._rejections: dict[tuple, int] = {}
        self._in_flight: dict[str, _Level] = {}
        self._cooling: dict[str, int] = {}
        self.usage_dropped = _Count()
        self.before_render: list[Callable[[Metrics], None]] = []
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def in_flight_of(self, token_name: str) -> _Level:
        """The in-flight gauge of a token name (`inc()` / `dec()`)."""
        level = self._in_flight.get(token_name)
        if level is None:
            level = self._in_flight[token_name] = _Level()
        return level

    def observe(self, token_name: str, model: str, upstream: str, provider: str, status: int, duration_s: float,
                ttft_s: float | None, prompt: int, completion: int, cached: int, cost_usd: float) -> None:
        """Count one finished request (every label a config value)."""
        key = (token_name, model, upstream, provider, status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        timing = (model, upstream, provider)
        _observe(self._duration, timing, duration_s)
        if ttft_s is not None:
            _observe(self._ttft, timing, ttft_s)
        if prompt or completion or cached:
            tokens = self._tokens
            for kind, n in (("prompt", prompt), ("completion", completion), ("cached", cached)):
                if n:
                    k = (token_name, model, upstream, kind)
                    tokens[k] = tokens.get(k, 0) + n
        if cost_usd:
            k = (token_name, model)
            self._spend[k] = self._spend.get(k, 0.0) + cost_usd

    def rejected(self, token_name: str, reason: str) -> None:
        """Count a request refused by a limit (`reason`: rpm, tpm, parallel, budget, tokens, expired, model)."""
        key = (token_name, reason)
        self._rejections[key] = self._rejections.get(key, 0) + 1

    def set_cooling(self, states: Iterable[tuple[str, bool]]) -> None:
        """Set `gateway_upstream_cooling` for each `(member name, cooling)`."""
        for name, cooling in states:
            self._cooling[name] = 1 if cooling else 0

    def set_dropped(self, total: int) -> None:
        """Bring `gateway_usage_dropped_total` up to the usage sink's own count of dropped events."""
        if total > self.usage_dropped.value:
            self.usage_dropped.value = float(total)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        for hook in self.before_render:
            hook(self)
        return generate_latest(self.registry)

    def collect(self):
        """prometheus_client collector protocol: the metric families, built from the dicts."""
        requests = CounterMetricFamily("gateway_requests", "Requests by token name, model, upstream, provider and status.",
                                       labels=REQUEST_LABELS)
        for (t, m, u, p, status), n in self._requests.items():
            requests.add_metric((t, m, u, p, str(status)), n)
        yield requests
        yield _histogram("gateway_request_duration_seconds", "Request duration in seconds.", self._duration)
        yield _histogram("gateway_time_to_first_token_seconds", "Time to the first streamed token in seconds.", self._ttft)
        tokens = CounterMetricFamily("gateway_tokens", "Tokens by token name, model, upstream and type (prompt, completion, cached).",
                                     labels=TOKEN_LABELS)
        for labels, n in self._tokens.items():
            tokens.add_metric(labels, n)
        yield tokens
        spend = CounterMetricFamily("gateway_spend_usd", "Spend in US dollars by token name and model.", labels=("token_name", "model"))
        for labels, v in self._spend.items():
            spend.add_metric(labels, v)
        yield spend
        rejections = CounterMetricFamily("gateway_limit_rejections", "Requests refused by a token's limits, by reason.",
                                         labels=("token_name", "reason"))
        for labels, n in self._rejections.items():
            rejections.add_metric(labels, n)
        yield rejections
        in_flight = GaugeMetricFamily("gateway_in_flight_requests", "Requests in flight by token name.", labels=("token_name",))
        for name, level in self._in_flight.items():
            in_flight.add_metric((name,), level.value)
        yield in_flight
        cooling = GaugeMetricFamily("gateway_upstream_cooling", "1 while a router member is cooling down, else 0.", labels=("upstream",))
        for name, value in self._cooling.items():
            cooling.add_metric((name,), value)
        yield cooling
        dropped = CounterMetricFamily("gateway_usage_dropped", "Usage events dropped because the ledger queue was full.")
        dropped.add_metric((), self.usage_dropped.value)
        yield dropped


def _observe(series: dict[tuple, list], key: tuple, value: float) -> None:
    counts = series.get(key)
    if counts is None:
        counts = series[key] = [0] * (len(BUCKETS) + 1) + [0.0]
    counts[bisect_left(BUCKETS, value)] += 1  # the first bucket whose bound is >= value (le)
    counts[-1] += value


def _histogram(name: str, documentation: str, series: dict[tuple, list]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=TIMING_LABELS)
    bounds = [*(str(b) for b in BUCKETS), "+Inf"]
    for labels, counts in series.items():
        running, buckets = 0, []
        for bound, n in zip(bounds, counts[:-1]):
            running += n
            buckets.append((bound, running))
        family.add_metric(labels, buckets, counts[-1])
    return family


def new_metrics() -> Metrics | SharedMetrics:
    """`SharedMetrics` when worker processes share metrics (`PROMETHEUS_MULTIPROC_DIR`), else `Metrics`."""
    return SharedMetrics() if multiprocess_dir() is not None else Metrics()
