"""What a client sees of its key's limits (CONTRACT.md §6): the errors of a refusal, worded as
OpenAI's (https://platform.openai.com/docs/guides/error-codes, rate-limit and quota messages),
and OpenAI's rate-limit headers (https://platform.openai.com/docs/guides/rate-limits).
"""

from __future__ import annotations

import math

from gateway.errors import RATE_LIMIT, GatewayError
from gateway.keys.limits import iso
from gateway.keys.store import Refusal, Window


def go_duration(seconds: float) -> str:
    """OpenAI's (Go's) duration format for `x-ratelimit-reset-*`: `12ms`, `1s`, `17.5s`, `6m0s`."""
    ms = max(0, math.ceil(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


_HEADER_NAMES = {
    kind: (f"x-ratelimit-limit-{kind}".encode(), f"x-ratelimit-remaining-{kind}".encode(), f"x-ratelimit-reset-{kind}".encode())
    for kind in ("requests", "tokens")
}


def window_headers(requests: Window | None, tokens: Window | None) -> list[tuple[bytes, bytes]]:
    """OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the windows given."""
    out = []
    for kind, window in (("requests", requests), ("tokens", tokens)):
        if window is not None:
            limit, remaining, reset = _HEADER_NAMES[kind]
            out += [(limit, b"%d" % window.limit), (remaining, b"%d" % window.remaining),
                    (reset, go_duration(window.reset).encode())]
    return out


def expired(expires: float) -> GatewayError:
    """401 `invalid_api_key` for a key past `expires`, not to be retried."""
    error = GatewayError(401, f"This API key expired at {iso(expires)}; ask the gateway's admin for a new one.",
                         code="invalid_api_key")
    error.headers = {"x-should-retry": "false"}
    return error


def refusal_error(refusal: Refusal, model: str | None) -> GatewayError:
    """The §6 error for a refusal: 429 `insufficient_quota` (x-should-retry: false) for a spent
    budget; 429 `rate_limit_exceeded` with `retry-after`/`retry-after-ms` for a rate limit (or
    x-should-retry: false when the request can never fit), worded as OpenAI words them."""
    if refusal.quota:
        what = "spend budget (USD)" if refusal.reason == "budget" else "token budget"
        error = GatewayError(429, f"You exceeded your current quota: this key's {what} for the period is spent "
                                  f"(limit {refusal.limit:g}, used {refusal.used:g}). Ask the gateway's admin for more.",
                             type="insufficient_quota", code="insufficient_quota")
        error.headers = {"x-should-retry": "false"}
        return error
    names = {"rpm": "requests per min (RPM)", "tpm": "tokens per min (TPM)", "parallel": "requests in flight"}
    on = f" for {model}" if model else ""
    if refusal.retry_after is None:
        error = GatewayError(429, f"Request too large{on} on {names[refusal.reason]}: Limit {refusal.limit:g}, "
                                  f"Requested {refusal.requested:g}. Send a shorter prompt or a smaller max_tokens.",
                             type=RATE_LIMIT, code="rate_limit_exceeded")
        error.headers = {"x-should-retry": "false"}
        return error
    wait = refusal.retry_after
    error = GatewayError(429, f"Rate limit reached{on} on {names[refusal.reason]}: Limit {refusal.limit:g}, "
                              f"Used {refusal.used:g}, Requested {refusal.requested:g}. Please try again in "
                              f"{go_duration(wait)}.", type=RATE_LIMIT, code="rate_limit_exceeded", retry_after=wait)
    error.headers = {"retry-after": str(max(1, math.ceil(wait))), "retry-after-ms": str(max(1, math.ceil(wait * 1000)))}
    return error
