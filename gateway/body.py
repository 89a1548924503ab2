"""Reading request bodies within `settings.max_request_bytes` (README "Limits and hardening").

A body is refused with 413 `request_too_large` (OpenAI's error shape) as soon as it is known to
be too large: from its `Content-Length` before a byte of it is read, or, for a chunked body,
the moment the bytes received pass the limit. The config page's API has its own, smaller limit
(`ADMIN_MAX_BYTES`). A client that goes away while sending raises `ClientGone`, which callers
end quietly (there is nobody to answer).

`BodyGuard` applies this to every route that is not the chat hot path (which reads its body with
`read_body` itself): it reads the body before the app sees the request, so no handler ever
buffers more than the limit, and replays it.
"""

from __future__ import annotations

import orjson

from gateway.errors import GatewayError

ADMIN_PREFIX = "/admin/"
ADMIN_MAX_BYTES = 2 * 1024 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


def too_large(limit: int) -> GatewayError:
    """413 `request_too_large` naming the limit."""
    return GatewayError(
        413,
        f"The request body is larger than this gateway accepts ({limit} bytes; settings.max_request_bytes).",
        code="request_too_large",
    )


def declared_length(headers) -> int | None:
    """The `Content-Length` of raw ASGI headers (None when absent or not a number)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_body(receive, limit: int) -> bytes:
    """The whole request body, at most `limit` bytes. Raises GatewayError 413 past the limit,
    ClientGone when the client disconnects first."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        if message["type"] == "http.disconnect":
            raise ClientGone
        if len(body) > limit:
            raise too_large(limit)
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise too_large(limit)
        chunks.append(body)
        if not message.get("more_body"):
            return b"".join(chunks)


class BodyGuard:
    """ASGI middleware: bodies of every non-hot-path request read up front within the limit.

    `limit()` returns the current `settings.max_request_bytes` (so a reload applies at once);
    routes under `/admin/` get `ADMIN_MAX_BYTES` at most. Too large: 413 in OpenAI's shape;
    client gone: nothing (no traceback)."""

    def __init__(self, app, limit) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        if scope["path"].startswith(ADMIN_PREFIX):
            limit = min(limit, ADMIN_MAX_BYTES)
        try:
            declared = declared_length(scope["headers"])
            if declared is not None and declared > limit:
                raise too_large(limit)
            body = await read_body(receive, limit)
        except GatewayError as error:
            await send_error(send, error)
            return
        except ClientGone:
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def send_error(send, error: GatewayError) -> None:
    """Answer `error` as an OpenAI-shaped JSON response over ASGI (closing the connection)."""
    body = orjson.dumps(error.body())
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
