"""Upstream HTTP: one pooled aiohttp session per distinct outbound proxy setting, errors mapped to §3.

Every HTTP adapter reaches its provider through `UpstreamHTTP`, so one pool, one timeout policy
and one error mapping serve them all. Transport failures never escape as aiohttp exceptions: they
become `GatewayError` (502 `upstream_error` or 504 `upstream_timeout`).

The transport is aiohttp's client, chosen by measurement (bench/RESULTS.md): httpx's connection
pool scans every pooled connection on each request, which under a few hundred concurrent
connections cost ~4 ms of CPU per request; aiohttp's pool is keyed by host and its HTTP parser is
in C. SSE is still parsed by httpx-sse (`aiter_sse`).

Timeouts (seconds, from `Settings`): `connect_timeout` for connection set-up; a read waits at
most `request_timeout` for a non-streamed answer and `stream_idle_timeout` between two reads of
a stream. The wait for a stream's first chunk is bounded by the caller (`gateway.dispatch`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import httpx
from httpx_sse import EventSource, ServerSentEvent
from multidict import CIMultiDictProxy

from gateway.config import Settings
from gateway.errors import GatewayError, from_upstream_status, parse_retry_after, upstream_timeout, upstream_unreachable

Proxies = Mapping[str, str] | str | None


@dataclass(slots=True)
class UpstreamResponse:
    """A complete upstream answer: status, headers (case-insensitive) and body bytes."""

    status: int
    headers: CIMultiDictProxy[str]
    content: bytes


def _map_error(exc: BaseException, streaming: bool = False) -> GatewayError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return upstream_timeout("connect")
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return upstream_timeout("stream idle" if streaming else "waiting for the answer")
    return upstream_unreachable(type(exc).__name__)


_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)

# Idle pooled connections are dropped after this many seconds: below the 5 s keep-alive of
# common servers (uvicorn, Node), so we rarely reuse a connection the server is closing.
KEEPALIVE_SECONDS = 4.0
# Attempts for one request when the server drops the connection without answering (closed or
# reset): typically a pooled keep-alive connection it closed just as we reused it.
ATTEMPTS = 2


def _dropped(exc: BaseException) -> bool:
    """The server dropped an established connection before answering (not a failed connect)."""
    return isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError) and not isinstance(
        exc, aiohttp.ClientConnectorError
    )


class _BodyStream(httpx.AsyncByteStream):
    """An aiohttp body as an httpx byte stream, so httpx-sse can parse it."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_any():
            yield chunk


class UpstreamStream:
    """An open streamed upstream answer. Iterate `aiter_bytes()` or `aiter_sse()` once."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.headers

    async def aread(self) -> bytes:
        """The whole (error) body."""
        try:
            return await self._response.read()
        except _ERRORS as exc:
            raise _map_error(exc, streaming=True) from None

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The (decompressed) body as it arrives, chunk by chunk, with no re-framing."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _ERRORS as exc:
            raise _map_error(exc, streaming=True) from None

    async def aiter_sse(self) -> AsyncIterator[ServerSentEvent]:
        """The body parsed as Server-Sent Events (`event`, `data`, `id`, `retry`)."""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() != "content-encoding"]
        response = httpx.Response(self.status, headers=headers, stream=_BodyStream(self._response))
        try:
            async for event in EventSource(response).aiter_sse():
                yield event
        except _ERRORS as exc:
            raise _map_error(exc, streaming=True) from None


def _proxy_for(proxies: Proxies, url: str) -> str | None:
    """The proxy URL for `url` from the seed's `proxies` (`{https: URL, http: URL, all: URL}` or one URL)."""
    if not proxies:
        return None
    if isinstance(proxies, str):
        return proxies
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("ws", "wss"):
        scheme = "http" if scheme == "ws" else "https"
    for key in (scheme, f"{scheme}://", "all", "all://"):
        if key in proxies:
            return proxies[key]
    return None


class UpstreamHTTP:
    """The shared pooled sessions: one per distinct `proxies` value, created on first use (inside
    the event loop)."""

    def __init__(self, settings: Settings) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        """Apply (new) timeout settings; pooled connections are kept."""
        connect = settings.connect_timeout
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_read=settings.request_timeout)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_read=settings.stream_idle_timeout)

    def client(self, proxies: Proxies = None) -> aiohttp.ClientSession:
        """The pooled session for this proxy setting."""
        key = repr(sorted(proxies.items())) if isinstance(proxies, Mapping) else repr(proxies)
        session = self._sessions.get(key)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS, ttl_dns_cache=300)
            session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True)
            self._sessions[key] = session
        return session

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        proxies: Proxies = None,
    ) -> UpstreamResponse:
        """Send a request and read the whole answer. Raises GatewayError on transport failure."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self.client(proxies).request(
                    method, url, headers=headers, data=content, params=params, proxy=_proxy_for(proxies, url),
                    timeout=self._timeout, allow_redirects=False,
                ) as response:
                    return UpstreamResponse(response.status, response.headers, await response.read())
            except _ERRORS as exc:
                if attempt == ATTEMPTS or not _dropped(exc):
                    raise _map_error(exc) from None
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        params: Mapping[str, str] | None = None,
        proxies: Proxies = None,
    ) -> AsyncIterator[UpstreamStream]:
        """Open a streamed request. The connection goes back to the pool when the body was read
        to its end, and is closed otherwise (an error, or the consumer cancelled because the
        client went away). `content` may be a stream of chunks (an upload relayed as it
        arrives); such a request is not retried, since its body cannot be sent twice. Raises
        GatewayError."""
        attempts = 1 if content is not None and not isinstance(content, bytes) else ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                response = await self.client(proxies).request(
                    method, url, headers=headers, data=content, params=params, proxy=_proxy_for(proxies, url),
                    timeout=self._stream_timeout, allow_redirects=False,
                )
                break
            except _ERRORS as exc:
                if attempt == attempts or not _dropped(exc):
                    raise _map_error(exc) from None
        try:
            yield UpstreamStream(response)
        except BaseException:
            response.close()
            raise
        finally:
            response.release()

    async def websocket(
        self, url: str, *, proxies: Proxies = None, max_msg_size: int = 2**24, close_timeout: float | None = None
    ) -> aiohttp.ClientWebSocketResponse:
        """Open a WebSocket (`ws://` or `wss://`) with aiohttp's client, through the proxy that
        `proxies` names for its scheme (`ws` → the `http` entry, `wss` → `https`, tunnelled with
        CONNECT), as for HTTP requests. The handshake is bounded by `connect_timeout`; the caller
        bounds each receive and closes the socket. Raises GatewayError: a refused handshake →
        its status mapped (`from_upstream_status`), time out → 504, anything else → 502."""
        try:
            async with asyncio.timeout(self._timeout.connect):
                return await self.client(proxies).ws_connect(
                    url, proxy=_proxy_for(proxies, url), max_msg_size=max_msg_size, autoping=True,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=close_timeout or self._timeout.connect),
                )
        except aiohttp.WSServerHandshakeError as exc:
            retry_after = parse_retry_after(exc.headers.get("retry-after")) if exc.headers else None
            raise from_upstream_status(exc.status, f"the WebSocket handshake was refused ({exc.status})", retry_after) from None
        except aiohttp.ClientHttpProxyError as exc:
            raise upstream_unreachable(f"the proxy refused the connection ({exc.status})") from None
        except (TimeoutError, aiohttp.ConnectionTimeoutError):
            raise upstream_timeout("connect") from None
        except _ERRORS as exc:
            raise _map_error(exc) from None

    async def aclose(self) -> None:
        """Close every pooled session (app shutdown)."""
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


__all__ = ["UpstreamHTTP", "UpstreamResponse", "UpstreamStream", "GatewayError"]
