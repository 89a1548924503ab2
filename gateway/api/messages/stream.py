"""OpenAI chat completion chunks → the Anthropic Messages event stream.

Produces the sequence the Messages streaming reference defines
(https://docs.anthropic.com/en/api/messages-streaming) and the anthropic SDK's accumulator
enforces (`lib/streaming/_messages.py`): `message_start` first; each content block opened by
`content_block_start` before its deltas, indices 0, 1, 2, ...; `content_block_stop`; one
`message_delta` (stop_reason, cumulative usage); `message_stop`. Every frame carries its
`event:` line (the SDK drops frames without one).

    chat.completion.chunk (choice 0)             Anthropic events
    -------------------------------------------  ------------------------------------------------
    (stream opened)                              message_start (usage.input_tokens estimated
                                                   from the request), ping
    delta.reasoning_content (or .reasoning)      a `thinking` block: thinking_delta
    delta.content                                a `text` block: text_delta
    delta.tool_calls[i] (id, name)               a `tool_use` block per call (id, name, input {})
    delta.tool_calls[i].function.arguments       input_json_delta (partial_json)
    a delta of another kind than the open block  content_block_stop of the open block
    finish_reason                                message_delta.delta.stop_reason (held until the
                                                   usage chunk, which follows it)
    usage chunk                                  message_delta.usage (input, output, cache reads)
    end of stream                                content_block_stop, message_delta, message_stop
    end of stream without any finish_reason      `error` event (the upstream stream was cut)
    GatewayError mid-stream                      `error` event, Anthropic-shaped
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource

from gateway.adapter import StreamItem
from gateway.api.messages.errors import error_object
from gateway.api.messages.response import message_id, reasoning_of, stop_reason, tool_use_id, translate_usage
from gateway.errors import GatewayError, Scrubber, error_message_from_body, from_upstream_status

log = logging.getLogger("gateway.messages")


def event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE frame: `event: NAME` and its JSON `data`."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class _Bytes(httpx.AsyncByteStream):
    def __init__(self, first: bytes, rest: AsyncIterator[StreamItem]) -> None:
        self._first, self._rest = first, rest

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._first
        async for item in self._rest:
            yield item if isinstance(item, bytes) else b"data: " + orjson.dumps(item) + b"\n\n"


async def chat_chunks(first: StreamItem | None, rest: AsyncIterator[StreamItem]) -> AsyncIterator[dict[str, Any]]:
    """An adapter's stream as chunk dicts: translated adapters yield dicts; OpenAI-wire ones
    yield the upstream's SSE bytes, parsed here (httpx-sse; lines split across reads are
    buffered), `[DONE]` ending it and an in-band `{"error": ...}` raising GatewayError."""
    if first is None:
        return
    if isinstance(first, dict):
        yield first
        async for item in rest:
            if isinstance(item, dict):
                yield item
        return
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Bytes(first, rest))
    async for sse in EventSource(response).aiter_sse():
        data = sse.data.strip()
        if not data:
            continue
        if data == "[DONE]":
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise from_upstream_status(502, "the upstream sent a stream event that is not JSON") from None
        if isinstance(chunk, dict) and "error" in chunk and not chunk.get("choices"):
            raise from_upstream_status(502, error_message_from_body(data.encode()))
        if isinstance(chunk, dict):
            yield chunk


class MessageStream:
    """The state of one translated stream: which block is open, the tool calls seen, the
    stop reason and usage waiting for `message_delta`."""

    def __init__(self, model: str, input_tokens: int) -> None:
        self.model = model
        self.input_tokens = input_tokens
        self.open: tuple[str, Any] | None = None  # (block kind, tool call index) of the open block
        self.blocks = 0
        self.tools: dict[int, int] = {}  # OpenAI tool call index → content block index
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.output_chars = 0

    def start(self) -> bytes:
        """`message_start` (usage: the estimated input tokens, output 1, as Anthropic starts) and a `ping`."""
        message = {
            "id": message_id(), "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }
        return event("message_start", {"type": "message_start", "message": message}) + event("ping", {"type": "ping"})

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [event("content_block_stop", {"type": "content_block_stop", "index": self.blocks - 1})]

    def _open(self, kind: str, block: dict, key: Any = None) -> list[bytes]:
        out = self._close()
        self.open = (kind, key)
        self.blocks += 1
        return out + [event("content_block_start", {"type": "content_block_start", "index": self.blocks - 1, "content_block": block})]

    def _delta(self, index: int, delta: dict) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _text(self, kind: str, field: str, text: str) -> list[bytes]:
        out = [] if self.open == (kind, None) else self._open(kind, {"type": kind, field: ""} | ({"signature": ""} if kind == "thinking" else {}))
        self.output_chars += len(text)
        return out + [self._delta(self.blocks - 1, {"type": f"{kind}_delta", field: text})]

    def _tool_call(self, call: dict) -> list[bytes]:
        position = call.get("index", 0)
        function = call.get("function") or {}
        out: list[bytes] = []
        if position not in self.tools:
            block = {"type": "tool_use", "id": call.get("id") or tool_use_id(), "name": function.get("name") or "", "input": {}}
            out += self._open("tool_use", block, position)
            self.tools[position] = self.blocks - 1
        fragment = function.get("arguments")
        if fragment:
            self.output_chars += len(fragment)
            out.append(self._delta(self.tools[position], {"type": "input_json_delta", "partial_json": fragment}))
        return out

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        """The events for one chat completion chunk."""
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        out: list[bytes] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if reasoning := reasoning_of(delta):
                out += self._text("thinking", "thinking", reasoning)
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._text("text", "text", delta["content"])
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    out += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> list[bytes]:
        """The closing events, after the adapter's stream ended."""
        usage = translate_usage(self.usage) if self.usage else {
            "input_tokens": self.input_tokens, "output_tokens": max(1, self.output_chars // 4),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        delta = {"stop_reason": stop_reason(self.finish_reason, bool(self.tools)), "stop_sequence": None}
        return self._close() + [
            event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}),
            event("message_stop", {"type": "message_stop"}),
        ]


async def message_events(
    first: StreamItem | None, rest: AsyncIterator[StreamItem], model: str, input_tokens: int, scrub: Scrubber
) -> AsyncIterator[bytes]:
    """The Anthropic event stream for an adapter's opened chat stream (`dispatch.open_stream`).
    Closing it closes the adapter's stream and with it the upstream request."""
    state = MessageStream(model, input_tokens)
    yield state.start()
    chunks = chat_chunks(first, rest)
    try:
        async for chunk in chunks:
            for frame in state.feed(chunk):
                yield frame
        if state.finish_reason is None:
            raise from_upstream_status(502, "the upstream stream ended before the message was complete")
    except GatewayError as error:
        log.warning("messages stream ended by upstream error: %s", scrub(error.message))
        yield event("error", error_object(error, scrub))
        return
    except Exception as exc:  # a translation bug must end the stream cleanly, not hang it
        log.exception("messages stream failed: %s", type(exc).__name__)
        yield event("error", error_object(GatewayError(502, "The upstream stream failed.", type="api_error"), scrub))
        return
    finally:
        await chunks.aclose()
        await rest.aclose()
    for frame in state.finish():
        yield frame
