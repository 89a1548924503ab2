"""Upstream HTTP: one pooled client per distinct outbound proxy setting, errors mapped to §3.

Every adapter reaches its provider through `UpstreamHTTP`, so one pool, one timeout policy and
one error mapping serve them all. Transport failures never escape as httpx exceptions: they
become `GatewayError` (502 `upstream_error` or 504 `upstream_timeout`).

Timeouts (seconds, from `Settings`): `connect_timeout` for connection set-up; reads wait at most
`request_timeout` for a non-streamed answer and `stream_idle_timeout` between two reads of a
stream. The wait for a stream's first chunk is bounded by the caller (`gateway.dispatch`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from httpx_sse import EventSource, ServerSentEvent

from gateway.config import Settings
from gateway.errors import GatewayError, upstream_timeout, upstream_unreachable

Proxies = Mapping[str, str] | str | None


@dataclass(slots=True)
class UpstreamResponse:
    """A complete upstream answer: status, headers and body bytes."""

    status: int
    headers: httpx.Headers
    content: bytes


class UpstreamStream:
    """An open streamed upstream answer. Iterate `aiter_bytes()` or `aiter_sse()` once."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = response.headers

    async def aread(self) -> bytes:
        """The whole (error) body."""
        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise _map_error(exc, streaming=True) from None

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives, chunk by chunk (no re-framing)."""
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise _map_error(exc, streaming=True) from None

    async def aiter_sse(self) -> AsyncIterator[ServerSentEvent]:
        """The body parsed as Server-Sent Events (`event`, `data`, `id`, `retry`)."""
        try:
            async for event in EventSource(self._response).aiter_sse():
                yield event
        except httpx.HTTPError as exc:
            raise _map_error(exc, streaming=True) from None


def _map_error(exc: httpx.HTTPError, streaming: bool = False) -> GatewayError:
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return upstream_timeout("connect")
    if isinstance(exc, httpx.TimeoutException):
        return upstream_timeout("stream idle" if streaming else "waiting for the answer")
    return upstream_unreachable(type(exc).__name__)


def _mounts(proxies: Proxies) -> dict[str, httpx.AsyncHTTPTransport] | None:
    """httpx mounts for the seed's `proxies` setting (`{"https": URL, "http": URL, "all": URL}` or one URL)."""
    if not proxies:
        return None
    if isinstance(proxies, str):
        proxies = {"all": proxies}
    mounts = {}
    for scheme, url in proxies.items():
        key = scheme if scheme.endswith("://") else f"{scheme}://"
        mounts[key] = httpx.AsyncHTTPTransport(proxy=url, limits=_LIMITS)
    return mounts


_LIMITS = httpx.Limits(max_connections=2000, max_keepalive_connections=512, keepalive_expiry=30)


class UpstreamHTTP:
    """The shared pooled clients. One per distinct `proxies` value; created on first use."""

    def __init__(self, settings: Settings) -> None:
        self._clients: dict[str, httpx.AsyncClient] = {}
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        """Apply (new) timeout settings; pooled connections are kept."""
        connect = settings.connect_timeout
        self._timeout = httpx.Timeout(settings.request_timeout, connect=connect, pool=connect)
        self._stream_timeout = httpx.Timeout(settings.stream_idle_timeout, connect=connect, pool=connect)

    def client(self, proxies: Proxies = None) -> httpx.AsyncClient:
        """The pooled client for this proxy setting."""
        key = repr(sorted(proxies.items())) if isinstance(proxies, Mapping) else repr(proxies)
        client = self._clients.get(key)
        if client is None:
            client = httpx.AsyncClient(limits=_LIMITS, mounts=_mounts(proxies), trust_env=False, follow_redirects=False)
            self._clients[key] = client
        return client

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
        try:
            response = await self.client(proxies).request(
                method, url, headers=headers, content=content, params=params, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise _map_error(exc) from None
        return UpstreamResponse(response.status_code, response.headers, response.content)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        proxies: Proxies = None,
    ) -> AsyncIterator[UpstreamStream]:
        """Open a streamed request; the connection is released (or closed) when the block exits,
        including when the consumer is cancelled (client disconnect). Raises GatewayError."""
        client = self.client(proxies)
        request = client.build_request(method, url, headers=headers, content=content, params=params, timeout=self._stream_timeout)
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _map_error(exc) from None
        try:
            yield UpstreamStream(response)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """Close every pooled client (app shutdown)."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


__all__ = ["UpstreamHTTP", "UpstreamResponse", "UpstreamStream", "GatewayError"]
