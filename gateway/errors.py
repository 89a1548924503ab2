"""OpenAI-shaped errors and the mapping of upstream failures onto them.

Every error the gateway returns is OpenAI's shape (CONTRACT.md §3)::

    {"error": {"message": str, "type": str, "param": str | None, "code": str | None}}

`GatewayError` carries one such error plus its HTTP status. Adapters raise it (usually through
`from_upstream_status`, `upstream_unreachable` or `upstream_timeout`); routers read
`GatewayError.failover` to decide whether another member may be tried; the app renders it with
`error_response` after scrubbing secrets out of the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson
from starlette.responses import Response

INVALID_REQUEST = "invalid_request_error"
API_ERROR = "api_error"
RATE_LIMIT = "rate_limit_error"

# Statuses an upstream uses to reject the request itself; they reach the client as they are.
REQUEST_REJECTED_STATUSES = frozenset({400, 404, 409, 413, 415, 422})


class GatewayError(Exception):
    """An error to answer with, in OpenAI's shape.

    Attributes:
        status: HTTP status for the client.
        type: OpenAI error category (`invalid_request_error`, `api_error`, `rate_limit_error`).
        code: machine-readable reason (`invalid_api_key`, `upstream_timeout`, ...).
        param: the request field at fault, when there is one.
        failover: True when another router member may succeed where this one failed
            (connection errors, timeouts, 429, 5xx, the upstream refusing our credentials);
            False when the request itself is at fault.
        retry_after: seconds from an upstream `Retry-After`, when it sent one.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        failover: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.failover = failover
        self.retry_after = retry_after
        # Extra response headers (the limits' retry-after, x-should-retry, x-ratelimit-*).
        self.headers: dict[str, str] | None = None

    def body(self) -> dict:
        """The `{"error": {...}}` object for this error."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.code!r}, {self.message!r})"


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    """400 `invalid_request_error`: the client's body is malformed or a field has the wrong type."""
    return GatewayError(400, message, param=param, code=code)


def invalid_api_key() -> GatewayError:
    """401 `invalid_api_key`: no token, or one the config does not know (or marks internal)."""
    return GatewayError(
        401,
        "Incorrect API key provided. Pass a token from the gateway's config as 'Authorization: Bearer TOKEN'.",
        code="invalid_api_key",
    )


def model_not_found(model: str) -> GatewayError:
    """404 `model_not_found`: a model-name-router has no route for `model`."""
    return GatewayError(
        404, f"The model '{model}' does not exist or you do not have access to it.", param="model", code="model_not_found"
    )


def upstream_unreachable(detail: str) -> GatewayError:
    """502 `upstream_error`: the upstream could not be reached (refused, reset, DNS, protocol error)."""
    return GatewayError(502, f"Upstream unreachable: {detail}", type=API_ERROR, code="upstream_error", failover=True)


def upstream_timeout(what: str) -> GatewayError:
    """504 `upstream_timeout`: connect, first byte or stream idle time ran out (`what` says which)."""
    return GatewayError(504, f"Upstream timed out ({what}).", type=API_ERROR, code="upstream_timeout", failover=True)


def upstream_auth_error(message: str = "") -> GatewayError:
    """502 `upstream_auth_error`: the upstream refused the gateway's own credentials (config is wrong)."""
    text = "The upstream provider refused the gateway's credentials; check this token's config."
    if message:
        text = f"{text} Upstream said: {message}"
    return GatewayError(502, text, type=API_ERROR, code="upstream_auth_error", failover=True)


def rate_limited(message: str = "", retry_after: float | None = None) -> GatewayError:
    """429 `rate_limit_exceeded`: the upstream's rate limit or quota was hit."""
    return GatewayError(
        429,
        message or "The upstream provider's rate limit was reached.",
        type=RATE_LIMIT,
        code="rate_limit_exceeded",
        failover=True,
        retry_after=retry_after,
    )


def from_upstream_status(status: int, message: str, retry_after: float | None = None) -> GatewayError:
    """Map an upstream HTTP status and its error message to the §3 error table.

    400/404/409/413/415/422 keep their status (`invalid_request_error`); 401/403 become 502
    `upstream_auth_error`; 429 stays 429; anything else (5xx, odd statuses) becomes 502
    `upstream_error`.
    """
    if status in REQUEST_REJECTED_STATUSES:
        return GatewayError(status, message or f"Upstream rejected the request ({status}).", code=_request_code(status))
    if status in (401, 403):
        return upstream_auth_error(message)
    if status == 429:
        return rate_limited(message, retry_after)
    return GatewayError(
        502,
        f"Upstream error ({status}): {message}" if message else f"Upstream error ({status}).",
        type=API_ERROR,
        code="upstream_error",
        failover=True,
    )


def _request_code(status: int) -> str | None:
    return {404: "not_found", 413: "request_too_large"}.get(status)


@dataclass(frozen=True)
class ProviderCodes:
    """A provider's business error codes (sent in a JSON body or a frame header, often with HTTP
    200), sorted by their §3 outcome. `request` maps a code to the OpenAI `code` to report (None
    for a plain `invalid_request_error`)."""

    auth: frozenset[int] = frozenset()
    rate_limit: frozenset[int] = frozenset()
    content_filter: frozenset[int] = frozenset()
    request: Mapping[int, str | None] = field(default_factory=dict)

    def error(self, code: object, message: str, status: int = 200, retry_after: float | None = None) -> GatewayError:
        """The §3 error for `code`: auth codes → 502 `upstream_auth_error`; rate/quota codes →
        429; moderation codes → 400 `content_filter`; request codes → 400; any other code follows
        the HTTP `status` it came with (a 200 or unknown status → 502 `upstream_error`)."""
        try:
            number = int(code)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = None
        if number in self.auth:
            return upstream_auth_error(message)
        if number in self.rate_limit:
            return rate_limited(message, retry_after)
        if number in self.content_filter:
            return GatewayError(400, message, code="content_filter")
        if number in self.request:
            return GatewayError(400, message, code=self.request[number])
        return from_upstream_status(status if status >= 400 else 502, message, retry_after)


def retry_after_from(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from an upstream's `retry-after-ms` (milliseconds, OpenAI's and Azure's)
    or `retry-after` (seconds) header; None when neither is usable."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def retry_after_headers(error: GatewayError) -> list[tuple[bytes, bytes]]:
    """`retry-after` (whole seconds, rounded up) and `retry-after-ms` for a 429 or 503 whose
    upstream said when to retry (openai-python and openai-node honour both); else none."""
    if error.retry_after is None or error.status not in (429, 503):
        return []
    ms = max(0, round(error.retry_after * 1000))
    return [(b"retry-after", str(-(-ms // 1000)).encode()), (b"retry-after-ms", str(ms).encode())]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header given in seconds; None when absent or a date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_message_from_body(body: bytes) -> str:
    """The human message inside an upstream error body, whatever its provider's shape.

    Understands `{"error": {"message"}}` (OpenAI, Anthropic, Gemini, Zhipu), `{"error": "..."}`,
    `{"message": ...}` / `{"msg": ...}` (Coze) and `{"detail": ...}`; otherwise the body's text, cut
    to 500 characters.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace").strip()
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Gemini sometimes wraps errors in a one-element list
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        for key in ("message", "msg", "detail"):
            if isinstance(data.get(key), str):
                return data[key]
    return body[:500].decode("utf-8", "replace").strip()


# OpenAI error codes an OpenAI-wire upstream may send that keep their meaning for the client.
OPENAI_AUTH_MARKERS = frozenset({"invalid_api_key", "authentication_error", "invalid_authentication", "permission_denied",
                                 "permission_error", "account_deactivated", "unauthorized"})
OPENAI_RATE_MARKERS = frozenset({"rate_limit_exceeded", "rate_limit_error", "insufficient_quota", "tokens", "requests"})
OPENAI_REQUEST_CODES = frozenset({"context_length_exceeded", "content_filter", "model_not_found", "unsupported_parameter",
                                  "unsupported_value", "invalid_value", "string_above_max_length"})


def openai_error_of(data: object) -> object | None:
    """The error an OpenAI-wire JSON value carries, else None: the value of a truthy top-level
    `error` (OpenAI's `{"error": {...}}`, One API's, LiteLLM's; an object or a string), or the
    whole object when it is vLLM's `{"object": "error", "message", "type", "code"}`."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if error:
        return error
    return data if data.get("object") == "error" else None


def from_openai_error(error: object, status: int = 200, retry_after: float | None = None) -> GatewayError:
    """The §3 error for an OpenAI-shaped error object an upstream sent: with an error status, in a
    200 JSON body, or as a `data:` event inside a stream (follows OpenAI's error codes,
    https://platform.openai.com/docs/guides/error-codes, and vLLM's `ErrorResponse`).

    `type`/`code` naming bad credentials → 502 `upstream_auth_error`; a rate limit or quota →
    429; otherwise an error `status` maps as `from_upstream_status`, keeping OpenAI's own request
    codes (`context_length_exceeded`, ...); a 200 with `invalid_request_error` (or a numeric
    4xx `code`, as vLLM sends) is a 400; anything else is 502 `upstream_error` (failover).
    """
    if isinstance(error, dict):
        message = error.get("message") if isinstance(error.get("message"), str) else ""
        kind, code = error.get("type"), error.get("code")
    else:
        message, kind, code = (error if isinstance(error, str) else ""), None, None
    numeric = code if isinstance(code, int) and not isinstance(code, bool) else None
    if numeric is None and isinstance(error, dict) and isinstance(error.get("status"), int):
        numeric = error["status"]
    markers = {m.lower() for m in (kind, code) if isinstance(m, str)}
    if markers & OPENAI_AUTH_MARKERS or numeric in (401, 403) or status in (401, 403):
        return upstream_auth_error(message)
    if markers & OPENAI_RATE_MARKERS or numeric == 429 or status == 429:
        return rate_limited(message, retry_after)
    request_code = code if isinstance(code, str) and code in OPENAI_REQUEST_CODES else None
    if status >= 400:
        mapped = from_upstream_status(status, message, retry_after)
        if mapped.status < 500 and request_code:
            mapped.code = request_code
        return mapped
    if numeric in REQUEST_REJECTED_STATUSES or kind == INVALID_REQUEST or request_code:
        rejected = numeric if numeric in REQUEST_REJECTED_STATUSES else 400
        return GatewayError(rejected, message or "Upstream rejected the request.", code=request_code or _request_code(rejected))
    return GatewayError(502, f"Upstream error: {message}" if message else "Upstream error.", type=API_ERROR,
                        code="upstream_error", failover=True)


class SecretBytes:
    """One entry's own credentials (what the gateway sends that upstream), checked in every byte
    string passed through from it: a bytes `in` test per credential, no decoding, and the same
    object back when none occurs (normal chunks stay byte for byte)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self.needles = tuple({s.encode() for s in secrets if isinstance(s, str) and len(s) >= 4})

    def __call__(self, data: bytes) -> bytes:
        for needle in self.needles:
            if needle in data:
                data = data.replace(needle, b"***")
        return data


class Scrubber:
    """Removes secrets from text before it leaves the gateway (responses and logs).

    Built from every secret value in the loaded config (keys, tokens, secrets); also masks
    bearer tokens and common provider key shapes (`sk-...`, `sk-ant-...`, `AIza...`) that an
    upstream may quote back.
    """

    _PATTERNS = re.compile(
        r"(\bsk-[A-Za-z0-9_\-]{6,}|\bAIza[0-9A-Za-z_\-]{20,}|(?i:bearer)\s+[A-Za-z0-9._\-]{8,})"
    )

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._configured = [s for s in secrets if isinstance(s, str)]
        self._derived: dict[str, list[str]] = {}
        values = sorted({s for s in self._configured if len(s) >= 4}, key=len, reverse=True)
        self._secrets = re.compile("|".join(re.escape(s) for s in values)) if values else None

    def add_derived(self, source: str, value: str, keep: int = 2) -> None:
        """Also scrub `value`, a live credential the gateway derived from a configured secret (a
        signed JWT, a signed URL). `source` names what derives it (e.g. the entry); only its last
        `keep` values are kept, since each replaces an older one that is about to expire."""
        older = [v for v in self._derived.get(source, []) if v != value]
        self._derived[source] = (older[-(keep - 1):] if keep > 1 else []) + [value]
        every = self._configured + [v for vs in self._derived.values() for v in vs]
        ordered = sorted({s for s in every if len(s) >= 4}, key=len, reverse=True)
        self._secrets = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub("***", text)
        return self._PATTERNS.sub("***", text)


def error_json(error: GatewayError, scrub: Scrubber | None = None) -> bytes:
    """`error` as JSON bytes, its message scrubbed of secrets."""
    body = error.body()
    if scrub is not None:
        body["error"]["message"] = scrub(body["error"]["message"])
    return orjson.dumps(body)


def error_response(error: GatewayError, scrub: Scrubber | None = None, headers: dict | None = None) -> Response:
    """An HTTP response for `error`, its message scrubbed of secrets, with `retry-after` headers
    when the upstream said when to retry (`retry_after_headers`)."""
    retry = retry_after_headers(error)
    if retry:
        headers = {**(headers or {}), **{k.decode(): v.decode() for k, v in retry}}
    if error.headers:  # the limits' own (retry-after, x-should-retry, x-ratelimit-*)
        headers = {**(headers or {}), **error.headers}
    return Response(error_json(error, scrub), status_code=error.status, media_type="application/json", headers=headers)
