"""Calling an adapter under the §3 timeout policy; used by the app and by routers for each member.

`request_timeout` bounds a whole non-streamed answer and the wait for a stream's first item;
after that, `stream_idle_timeout` (enforced by the transport) bounds the gap between chunks.
Routers are not bounded here as a whole: each of their members is, as it is tried.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextvars import ContextVar

from gateway.adapter import Adapter, Completion, StreamItem
from gateway.errors import upstream_timeout
from gateway.request import ChatRequest

# The name of the entry that actually answered (set by routers; read by the app for its header).
served_by: ContextVar[str | None] = ContextVar("served_by", default=None)


async def complete(adapter: Adapter, request: ChatRequest) -> Completion:
    """`adapter.complete(request)` within `request_timeout`. Raises GatewayError (504 on timeout)."""
    if adapter.is_router:
        return await adapter.complete(request)
    try:
        async with asyncio.timeout(adapter.runtime.settings.request_timeout):
            return await adapter.complete(request)
    except TimeoutError:
        raise upstream_timeout("no answer within request_timeout") from None


async def embed(adapter: Adapter, request) -> dict:
    """`adapter.embed(request)` (an `EmbeddingRequest`) within `request_timeout`. Raises
    GatewayError (504 on timeout)."""
    if adapter.is_router:
        return await adapter.embed(request)
    try:
        async with asyncio.timeout(adapter.runtime.settings.request_timeout):
            return await adapter.embed(request)
    except TimeoutError:
        raise upstream_timeout("no answer within request_timeout") from None


async def open_stream(adapter: Adapter, request: ChatRequest) -> tuple[StreamItem | None, AsyncIterator[StreamItem]]:
    """Start `adapter.stream(request)` and wait for its first item within `request_timeout`.

    Returns `(first_item, rest)`; `first_item` is None for a stream that ended empty. Nothing
    has reached the client yet, so a GatewayError raised here can still become a plain error
    response or a router's failover.
    """
    stream = adapter.stream(request)
    try:
        if adapter.is_router:
            first = await anext(stream)
        else:
            async with asyncio.timeout(adapter.runtime.settings.request_timeout):
                first = await anext(stream)
    except StopAsyncIteration:
        return None, stream
    except TimeoutError:
        await stream.aclose()
        raise upstream_timeout("no first chunk within request_timeout") from None
    except BaseException:
        await stream.aclose()
        raise
    return first, stream
