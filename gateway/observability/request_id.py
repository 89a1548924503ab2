"""`x-request-id` (CONTRACT.md §7): every response carries one, the client's own when it sent a
sane one (1–128 characters of letters, digits and `-_.:`), else a fresh one.

Fresh ids are `req_` + a random per-process prefix + a counter: unique across workers and
restarts, and cheaper than a UUID per request. `RequestIdMiddleware` adds the header to every
response that does not already have one (the chat completions hot path sets its own).
"""

from __future__ import annotations

import itertools
import re
import secrets

HEADER = b"x-request-id"
_SANE = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_PREFIX = "req_" + secrets.token_hex(6)
_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A fresh request id."""
    return f"{_PREFIX}{next(_COUNTER):x}"


def request_id_of(raw_headers) -> str:
    """The client's `x-request-id` when sane, else a fresh id (`raw_headers`: ASGI's list)."""
    for name, value in raw_headers:
        if name == HEADER:
            if _SANE.match(value):
                return value.decode()
            break
    return new_request_id()


class RequestIdMiddleware:
    """Pure ASGI middleware: sets `scope["state"]["request_id"]` and the response header."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope["headers"])
        scope.setdefault("state", {})["request_id"] = rid
        header = (HEADER, rid.encode())

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                if not any(name.lower() == HEADER for name, _ in headers):
                    headers.append(header)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
