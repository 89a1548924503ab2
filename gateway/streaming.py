"""Writing the client's SSE stream (CONTRACT.md §3, Streaming).

Items from an adapter are either `chat.completion.chunk` dicts, encoded here as
`data: {json}\n\n`, or raw OpenAI SSE bytes from an OpenAI-compatible upstream, passed through
as they are (that upstream sends its own `data: [DONE]`). A usage-only chunk (`choices: []`) is
dropped unless the client set `stream_options.include_usage`. An error after the stream started
becomes one `data: {"error": ...}` event followed by `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import orjson

from gateway.adapter import StreamItem
from gateway.errors import GatewayError, Scrubber, error_json
from gateway.keys.meter import SSEUsageTap, UsageMeter

log = logging.getLogger("gateway.stream")

DONE = b"data: [DONE]\n\n"


def encode_chunk(chunk: dict) -> bytes:
    """One SSE event for a chunk."""
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def encode_error(error: GatewayError, scrub: Scrubber) -> bytes:
    """The SSE event for an error that happened after the stream started."""
    return b"data: " + error_json(error, scrub) + b"\n\n"


async def sse_body(
    first: StreamItem | None,
    rest: AsyncIterator[StreamItem],
    include_usage: bool,
    scrub: Scrubber,
    meter: UsageMeter | None = None,
) -> AsyncIterator[bytes]:
    """The response body: `first`, then the rest of the adapter's stream, then `[DONE]` for
    translated streams. Closing this generator (client gone) closes the adapter's stream, and
    with it the upstream request.

    With a `meter` (§6 usage): translated chunks are counted into it, and raw OpenAI SSE bytes
    go through an `SSEUsageTap`, which reads the upstream's usage chunk and removes it when the
    client did not ask for it (the gateway asks OpenAI-wire upstreams for it regardless);
    `meter.first_at` is when the first bytes left."""
    translated = first is None or isinstance(first, dict)
    tap = SSEUsageTap(meter, not include_usage) if meter is not None and not translated else None
    try:
        item = first
        while True:
            if item is not None:
                if isinstance(item, dict):
                    if meter is not None:
                        meter.see_chunk(item)
                    if include_usage or item.get("choices") or "usage" not in item:
                        if meter is not None and meter.first_at is None:
                            meter.first_at = time.perf_counter()
                        yield encode_chunk(item)
                else:
                    if tap is not None:
                        item = tap.feed(item)
                        if meter.first_at is None and item:
                            meter.first_at = time.perf_counter()
                    if item:
                        yield item
            try:
                item = await anext(rest)
            except StopAsyncIteration:
                break
        if tap is not None and (tail := tap.flush()):
            yield tail
    except GatewayError as error:
        if meter is not None:
            meter.error_code = error.code
        log.warning("stream ended by upstream error: %s", scrub(error.message))
        yield encode_error(error, scrub)
        yield DONE
        return
    except Exception as exc:  # a translation bug must end the stream cleanly, not hang it
        if meter is not None:
            meter.error_code = "upstream_error"
        log.exception("stream failed: %s", type(exc).__name__)
        yield encode_error(GatewayError(502, "The upstream stream failed.", type="api_error", code="upstream_error"), scrub)
        yield DONE
        return
    finally:
        await rest.aclose()
    if translated:
        yield DONE


async def _wait_for_disconnect(receive, task: asyncio.Task) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    task.cancel()


async def send_sse(send, receive, headers: list[tuple[bytes, bytes]], body: AsyncIterator[bytes]) -> bool:
    """Send `body` as a `text/event-stream` response over ASGI, each item as soon as it comes.

    One watcher task waits for the client's `http.disconnect`; it cancels the sending task, which
    closes `body` (and with it the upstream request). Ends quietly when the client went away.
    Returns True when the whole body was sent, False when the client went away first.
    """
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    task = asyncio.current_task()
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive, task))
    try:
        async for chunk in body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True
    except asyncio.CancelledError:
        if not watcher.done() or task.uncancel() > 0:
            raise  # cancelled by someone else (server shutdown): not a client disconnect
        return False
    except OSError:
        return False  # the connection broke under us: the client is gone
    finally:
        watcher.cancel()
        await body.aclose()
