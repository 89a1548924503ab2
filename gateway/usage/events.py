"""The usage event of CONTRACT.md §6: one per request made with a configured token.

Never holds the token, a key or message content: `token_name` is the entry's `name` (else a
label derived from the config, never the token itself).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass(slots=True)
class UsageEvent:
    """One request, answered or refused.

    `time` is a UNIX timestamp (s, UTC). `model` is the model the client requested (or the one
    the gateway chose when it sent none); `served_by` the entry that answered
    (`x-gateway-served-by`, the presented entry itself when not a router) and `provider` its
    adapter type. `status` is the HTTP status the client got, `error_code` the §3/§6 `code` or
    None. Token counts are integers; `estimated` is true when the counts were derived from the
    text sent (a stream that ended without usage). `cost_usd` in US dollars. `ttft_ms` (time to
    first token; None when not streamed or no token came) and `duration_ms` in milliseconds.
    `surface`: `chat`, `responses`, `messages`, `embeddings` or `passthrough`.
    """

    time: float
    token_name: str
    model: str | None
    served_by: str | None
    provider: str | None
    status: int
    error_code: str | None = None
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    request_id: str = ""
    estimated: bool = False
    surface: str = "chat"
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The event as a JSON-ready dict (the access log's and the CSV export's fields)."""
        return asdict(self)


class UsageSink(Protocol):
    """Where usage events go. `record` must never block or raise on the request path: it queues
    (bounded; what overflows is counted in `gateway_usage_dropped_total`)."""

    def record(self, event: UsageEvent) -> None: ...
