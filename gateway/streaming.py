"""Writing the client's SSE stream (CONTRACT.md §3, Streaming).

Items from an adapter are either `chat.completion.chunk` dicts, encoded here as
`data: {json}\n\n`, or raw OpenAI SSE bytes from an OpenAI-compatible upstream, passed through
as they are (that upstream sends its own `data: [DONE]`). A usage-only chunk (`choices: []`) is
dropped unless the client set `stream_options.include_usage`. An error after the stream started
becomes one `data: {"error": ...}` event followed by `data: [DONE]`.

`PassThrough` screens raw OpenAI SSE bytes on their way through (an upstream's own error
events, Azure's annotation-only chunks, the entry's credentials) with a few bytes `in` tests per
chunk, so normal chunks are never parsed or re-encoded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import orjson

from gateway.adapter import StreamItem
from gateway.errors import GatewayError, Scrubber, SecretBytes, error_json, from_openai_error, openai_error_of
from gateway.keys.meter import SSEUsageTap, UsageMeter

log = logging.getLogger("gateway.stream")

DONE = b"data: [DONE]\n\n"


def encode_chunk(chunk: dict) -> bytes:
    """One SSE event for a chunk."""
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def encode_error(error: GatewayError, scrub: Scrubber) -> bytes:
    """The SSE event for an error that happened after the stream started."""
    return b"data: " + error_json(error, scrub) + b"\n\n"


# Bytes that a line needing a closer look must contain. `"error"` with its quotes can only be a
# JSON key or the exact string "error" (quotes inside strings are escaped), so model text that
# talks about errors never matches. `"object":""` is Azure's annotation-only chunk (compact JSON).
ERROR_MARK = b'"error"'
ANNOTATION_MARK = b'"object":""'
# A line longer than this is passed on without waiting for its end (bounds the held bytes).
MAX_HELD = 1 << 20


class PassThrough:
    """Screens one OpenAI-wire upstream's SSE bytes on their way to the client.

    `feed(chunk)` returns the bytes to send now: whole lines only (a partial line waits for its
    end, which no SSE client could use before anyway), the entry's credentials replaced by `***`,
    and, where a line holds `ERROR_MARK` or `ANNOTATION_MARK`, that line parsed:

    - `data: {"error": ...}` (or vLLM's `{"object": "error", ...}`): the lines before it are
      returned and `error` is set to the §3 error it maps to (`from_openai_error`); the caller
      sends what it got, then raises `error`, which ends the stream with a §3 error event;
    - Azure's annotation-only chunk (`"object": ""`, empty `id` and `model`: the
      `prompt_filter_results` chunk that opens every Azure stream, and the content-filter
      annotations of its asynchronous filter; not a valid `chat.completion.chunk`): dropped with
      its blank line.

    Annotation chunks are looked for throughout an Azure stream (`annotations=True`), and
    elsewhere (a proxy in front of Azure) only until the first bytes went out, where Azure puts
    its `prompt_filter_results` chunk. Everything else is returned byte for byte. `finish()`
    returns what is still held at the end.
    """

    __slots__ = ("_held", "_leaks", "_needles", "_annotations", "_always", "error")

    def __init__(self, leaks: SecretBytes, annotations: bool = False) -> None:
        self._held = b""
        self._leaks = leaks
        self._needles = leaks.needles
        self._annotations = True
        self._always = annotations
        self.error: GatewayError | None = None

    def feed(self, chunk: bytes) -> bytes:
        # The hot path of every passed-through stream: kept to a few C-level byte scans.
        if self._held:
            chunk = self._held + chunk
            self._held = b""
        if chunk and chunk[-1] != 10:  # not ending in "\n": hold the partial line
            end = chunk.rfind(b"\n") + 1
            if len(chunk) < MAX_HELD:
                self._held = chunk[end:]
                chunk = chunk[:end]
        if ERROR_MARK in chunk or (self._annotations and ANNOTATION_MARK in chunk):
            chunk = self._screen(chunk)
        if self._annotations and chunk and not self._always:
            self._annotations = False
        for needle in self._needles:
            if needle in chunk:
                chunk = chunk.replace(needle, b"***")
        return chunk

    def finish(self) -> bytes:
        held, self._held = self._held, b""
        if held and (ERROR_MARK in held or (self._annotations and ANNOTATION_MARK in held)):
            held = self._screen(held)
        return self._leaks(held)

    def _screen(self, data: bytes) -> bytes:
        out: list[bytes] = []
        drop_blank = False
        for line in data.splitlines(keepends=True):
            if drop_blank:
                drop_blank = False
                if not line.strip():
                    continue
            if line.startswith(b"data:") and (ERROR_MARK in line or ANNOTATION_MARK in line):
                try:
                    event = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    event = None
                error = openai_error_of(event)
                if error is not None:
                    self.error = from_openai_error(error)
                    return b"".join(out)
                if isinstance(event, dict) and event.get("object") == "":
                    drop_blank = True
                    continue
            out.append(line)
        return b"".join(out)


def completion_chunks(completion: dict) -> list[dict]:
    """A whole `chat.completion` as the chunks a stream of it would have been: one chunk with
    each choice's `message` as its `delta` (tool calls numbered with `index`) and its
    `finish_reason`, then a usage chunk (`choices: []`) when the completion has usage. Used
    when an OpenAI-compatible server answers a streamed request with a JSON completion."""
    base = {
        "id": completion.get("id") or "chatcmpl-gateway",
        "object": "chat.completion.chunk",
        "created": completion.get("created") or 0,
        "model": completion.get("model") or "",
    }
    if completion.get("system_fingerprint"):
        base["system_fingerprint"] = completion["system_fingerprint"]
    choices = []
    for i, choice in enumerate(completion.get("choices") or []):
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        delta = {k: v for k, v in message.items() if v is not None}
        if isinstance(delta.get("tool_calls"), list):
            delta["tool_calls"] = [
                {"index": n, **call} if isinstance(call, dict) else call for n, call in enumerate(delta["tool_calls"])
            ]
        choices.append({"index": choice.get("index", i), "delta": delta, "logprobs": choice.get("logprobs"),
                        "finish_reason": choice.get("finish_reason") or "stop"})
    chunks = [{**base, "choices": choices}]
    if completion.get("usage"):
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
    return chunks


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
        if tap is not None and (tail := tap.flush()):
            yield tail  # what the upstream sent before its error
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


async def send_sse(send, receive, headers: list[tuple[bytes, bytes]], body: AsyncIterator[bytes], status: int = 200) -> bool:
    """Send `body` as a streamed response over ASGI (an event stream, or any body relayed as it
    comes), each item as soon as it comes.

    One watcher task waits for the client's `http.disconnect`; it cancels the sending task, which
    closes `body` (and with it the upstream request). Ends quietly when the client went away.
    Returns True when the whole body was sent, False when the client went away first.
    """
    await send({"type": "http.response.start", "status": status, "headers": headers})
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
