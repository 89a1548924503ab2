"""Small ASGI helpers shared by the `gateway.api` endpoints (plain ASGI apps, like the chat path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

from gateway.auth import auth_headers, presented_token


async def read_body(receive) -> bytes:
    """The whole request body."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def iter_body(receive) -> AsyncIterator[bytes]:
    """The request body as it arrives, chunk by chunk (for relaying uploads without buffering).
    Raises ConnectionResetError when the client goes away mid-body."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected")
        if chunk := message.get("body", b""):
            yield chunk
        if not message.get("more_body"):
            return


async def send_bytes(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A complete response: `headers` plus `content-length`."""
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def header(scope, name: bytes) -> str | None:
    """One request header's value (latin-1), or None. `name` is lower-case."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def query_params(scope) -> list[tuple[str, str]]:
    """The query string as `(name, value)` pairs, in order."""
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


def client_token(scope) -> str | None:
    """The gateway token the client presented (`Authorization: Bearer`, `api-key`, `x-api-key`)."""
    return presented_token(auth_headers(scope["headers"]))
