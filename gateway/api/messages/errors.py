"""Errors on the Anthropic routes, in Anthropic's shape (https://docs.anthropic.com/en/api/errors)::

    {"type": "error", "error": {"type": "invalid_request_error", "message": "..."}}

The gateway's own errors (`GatewayError`, OpenAI's categories) keep their HTTP status; the
Anthropic error `type` follows from that status, as the Anthropic API pairs them.
"""

from __future__ import annotations

import orjson

from gateway.errors import GatewayError, Scrubber

# HTTP status → Anthropic error `type` (the table of the errors page; 502/503 have no own type).
STATUS_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """The Anthropic error `type` for an HTTP status (`invalid_request_error` for other 4xx,
    `api_error` for other 5xx)."""
    return STATUS_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


def error_object(error: GatewayError, scrub: Scrubber | None = None) -> dict:
    """`{"type": "error", "error": {"type", "message"}}` for `error`, its message scrubbed."""
    message = scrub(error.message) if scrub is not None else error.message
    return {"type": "error", "error": {"type": error_type(error.status), "message": message}}


def error_json(error: GatewayError, scrub: Scrubber | None = None) -> bytes:
    """`error_object` as JSON bytes."""
    return orjson.dumps(error_object(error, scrub))


def not_found(message: str) -> GatewayError:
    """404 `not_found_error`."""
    return GatewayError(404, message, code="not_found")


def invalid(message: str) -> GatewayError:
    """400 `invalid_request_error` (Anthropic names no `param`; the message says which field)."""
    return GatewayError(400, message)
