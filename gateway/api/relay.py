"""Relaying a client's request to an entry's own API and its answer back, unchanged (CONTRACT.md §10).

Used by the native pass-through routes and by `/v1/messages` for `claude` tokens. What is
forwarded, after RFC 9110 §7.6.1 (hop-by-hop fields) and the pass-through rules of §10:

- request headers: all the client's, except hop-by-hop ones (`Connection` and the fields it
  names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`, `Trailer`),
  `Host`, `Accept-Encoding` (the transport negotiates its own), `Expect`, every client credential
  (`Authorization`, `x-api-key`, `api-key`, `x-goog-api-key`, `Cookie`, `Proxy-Authorization`),
  the headers that scope a key (`OpenAI-Organization`, `OpenAI-Project`, `X-Goog-User-Project`)
  and `Forwarded` / `X-Forwarded-*` / `X-Real-IP`; the entry then adds its own key;
- the request body: read whole up to `BUFFERED_BODY_LIMIT` bytes, streamed as it arrives above
  that (large uploads), with its `Content-Type` (multipart boundary included) untouched;
- response headers: the upstream's, except hop-by-hop ones and `Set-Cookie`; `Content-Encoding`
  (and then `Content-Length`) are dropped because the transport hands over decoded bytes;
- the response body: relayed chunk by chunk as it comes; error bodies (status >= 400) are read
  whole and scrubbed of secrets;
- redirects: never followed (the transport has `allow_redirects=False`); a 3xx answer becomes
  a 502 `upstream_error` so that the client cannot follow it with its credentials either.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack

from gateway.adapter import Adapter
from gateway.api.asgi import iter_body, read_body, send_bytes
from gateway.errors import API_ERROR, GatewayError
from gateway.streaming import send_sse

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "trailer"})
CREDENTIALS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie", "proxy-authorization"})
# Headers that pick which account or project the entry's key acts for: the entry decides.
CREDENTIAL_SCOPES = frozenset({"openai-organization", "openai-project", "x-goog-user-project"})
# `Expect: 100-continue` is answered by the gateway's own server (uvicorn), not passed on.
REQUEST_DROPPED = HOP_BY_HOP | CREDENTIALS | CREDENTIAL_SCOPES | {"host", "accept-encoding", "expect", "forwarded", "x-real-ip"}
RESPONSE_DROPPED = HOP_BY_HOP | {"set-cookie", "content-encoding"}
# Request bodies up to this size are read whole (retry-safe); larger ones are streamed.
BUFFERED_BODY_LIMIT = 1 << 20


def _listed_in_connection(headers: list[tuple[str, str]]) -> set[str]:
    names: set[str] = set()
    for name, value in headers:
        if name == "connection":
            names.update(token.strip().lower() for token in value.split(","))
    return names


def forward_headers(raw_headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The client's request headers that may go upstream (see the module's rules), lower-case."""
    headers = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw_headers]
    dropped = REQUEST_DROPPED | _listed_in_connection(headers)
    out: dict[str, str] = {}
    for name, value in headers:
        if name in dropped or name.startswith("x-forwarded-"):
            continue
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def response_headers(upstream: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers that may go to the client, as ASGI pairs."""
    decoded = "content-encoding" in upstream
    dropped = RESPONSE_DROPPED | _listed_in_connection([(k.lower(), v) for k, v in upstream.items()])
    out = []
    for name, value in upstream.items():
        lower = name.lower()
        if lower in dropped or (decoded and lower == "content-length"):
            continue
        out.append((lower.encode("latin-1"), value.encode("latin-1")))
    return out


async def request_body(scope, receive, headers: dict[str, str]) -> bytes | AsyncIterator[bytes] | None:
    """The body to send upstream: bytes when small and of known length, a stream of its chunks
    when larger or chunked (`content-length` kept in `headers`, so the upload is not
    re-chunked), None when the request has no body."""
    length = headers.get("content-length")
    chunked = any(name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in scope["headers"])
    if length is not None and length.isdigit() and int(length) <= BUFFERED_BODY_LIMIT:
        body = await read_body(receive)
        headers["content-length"] = str(len(body))
        return body
    if chunked or (length is not None and length.isdigit()):
        return iter_body(receive)
    headers.pop("content-length", None)
    return None


def redirect_refused(status: int) -> GatewayError:
    """502 for an upstream redirect, which the gateway does not follow."""
    return GatewayError(
        502, f"The upstream answered with a redirect (HTTP {status}); the gateway does not follow redirects.",
        type=API_ERROR, code="upstream_error", failover=True,
    )


async def relay(
    adapter: Adapter,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | AsyncIterator[bytes] | None,
    send,
    receive,
    extra_headers: list[tuple[bytes, bytes]] = (),
) -> None:
    """The one upstream call of a native request: send it to `url` through the entry's transport
    (proxies, pool, timeouts: the first byte within `request_timeout`), then relay the answer to
    the client. Raises GatewayError before anything was sent to the client (unreachable,
    timed out, a redirect)."""
    runtime = adapter.runtime
    async with AsyncExitStack() as stack:
        try:
            async with asyncio.timeout(runtime.settings.request_timeout):
                upstream = await stack.enter_async_context(runtime.http.stream(
                    method, url, headers=headers, content=body, proxies=getattr(adapter.config, "proxies", None)))
        except TimeoutError:
            raise GatewayError(504, "Upstream timed out (waiting for the answer).", type=API_ERROR, code="upstream_timeout") from None
        if 300 <= upstream.status < 400:
            raise redirect_refused(upstream.status)
        out_headers = response_headers(upstream.headers) + list(extra_headers)
        if upstream.status >= 400:
            text = (await upstream.aread()).decode("utf-8", "replace")
            await send_bytes(send, upstream.status, runtime.scrub(text).encode(), [h for h in out_headers if h[0] != b"content-length"])
            return
        await send_sse(send, receive, out_headers, upstream.aiter_bytes(), status=upstream.status)
