#!/usr/bin/env python3
"""A fast fake LLM upstream for the benchmark: OpenAI Chat Completions and Anthropic Messages.

Raw asyncio protocol + httptools (+ uvloop when installed), precomputed answers, HTTP/1.1
keep-alive, so it costs far less per request than anything it is compared with.

Routes (an optional first path segment sets the pacing of streams, so one process serves every
scenario and a gateway token's `api_base` can carry it):

    POST [/<knobs>]/v1/chat/completions   OpenAI: JSON, or SSE when the body has "stream": true
    POST [/<knobs>]/v1/messages           Anthropic: JSON, or SSE when the body has "stream": true
    GET  [/<knobs>]/v1/models             OpenAI model list
    GET  /healthz

`<knobs>` is `c<chunks>i<interval_ms>` (e.g. `/c50i100/v1/chat/completions`: 50 content chunks,
one every 100 ms, the first at once); any other segment (e.g. `/m1`) is accepted and ignored.
Stream bodies use chunked transfer encoding, one SSE event per HTTP chunk, so connections are
reused as they would be against a real provider.

    python bench/fake_upstream.py --port 9100 [--chunks 20] [--interval-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
from typing import ClassVar

import httptools
import orjson

KNOBS = re.compile(rb"^/c(\d+)i(\d+)$")
TOKEN = "tok "

OPENAI_COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the fake upstream. " * 4},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 24, "total_tokens": 36},
    }
)
ANTHROPIC_MESSAGE = orjson.dumps(
    {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-bench",
        "content": [{"type": "text", "text": "Hello from the fake upstream. " * 4}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 24},
    }
)
MODELS = orjson.dumps({"object": "list", "data": [{"id": "bench-model", "object": "model", "created": 0, "owned_by": "bench"}]})
HEALTH = b'{"status":"ok"}'


def _sse(data: dict, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def openai_events(n: int, include_usage: bool) -> list[bytes]:
    """`n` content chunks (the first also carries the role), a finish chunk, usage?, [DONE]."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "bench-model"}
    events = []
    for i in range(n):
        delta = {"role": "assistant", "content": TOKEN} if i == 0 else {"content": TOKEN}
        events.append(_sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
    events.append(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}}))
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_events(n: int) -> list[bytes]:
    """Anthropic's stream: message_start, content_block_start, `n` text deltas, stop events.
    The first text delta is sent together with the start events (the first token)."""
    start = _sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench", "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1},
            },
        },
        "message_start",
    ) + _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "content_block_start")
    delta = _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TOKEN}}, "content_block_delta")
    events = [start + delta] + [delta] * (n - 1)
    events.append(
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        + _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": n}}, "message_delta")
        + _sse({"type": "message_stop"}, "message_stop")
    )
    return events


def response(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 %d OK\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: keep-alive\r\n\r\n%s"
        % (status, content_type, len(body), body)
    )


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)
FIXED = {
    b"chat": response(200, OPENAI_COMPLETION),
    b"messages": response(200, ANTHROPIC_MESSAGE),
    b"models": response(200, MODELS),
    b"health": response(200, HEALTH),
    b"404": response(404, b'{"error":{"message":"not found","type":"invalid_request_error"}}'),
}


class FakeProtocol(asyncio.Protocol):
    """One connection. Requests are answered in order; a paced stream holds the connection."""

    defaults = (20, 0)
    _cache: ClassVar[dict[tuple, list[bytes]]] = {}

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.url = b""
        self.body = []
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(response(400, b'{"error":"bad request"}'))
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        chunks, interval = self.defaults
        prefix, sep, rest = path.partition(b"/v1/")
        if not sep:
            self.transport.write(FIXED[b"health"] if path == b"/healthz" else FIXED[b"404"])
            return
        match = KNOBS.match(prefix)
        if match:
            chunks, interval = int(match.group(1)), int(match.group(2))
        if rest == b"models":
            self.transport.write(FIXED[b"models"])
            return
        if rest not in (b"chat/completions", b"messages"):
            self.transport.write(FIXED[b"404"])
            return
        raw = b"".join(self.body)
        stream = b'"stream"' in raw and _is_stream(raw)
        kind = b"chat" if rest == b"chat/completions" else b"messages"
        if not stream:
            self.transport.write(FIXED[kind])
            return
        usage = kind == b"chat" and b"include_usage" in raw and _include_usage(raw)
        key = (kind, chunks, usage)
        events = self._cache.get(key)
        if events is None:
            events = openai_events(chunks, usage) if kind == b"chat" else anthropic_events(chunks)
            events = [_chunked(e) for e in events]
            self._cache[key] = events
        if interval <= 0:
            self.transport.write(STREAM_HEAD + b"".join(events) + b"0\r\n\r\n")
            return
        if chunks <= 1:
            self.transport.write(STREAM_HEAD + b"".join(events) + b"0\r\n\r\n")
            return
        self.transport.write(STREAM_HEAD + events[0])
        loop = asyncio.get_running_loop()
        loop.call_later(interval / 1000, self._paced, events, 1, chunks - 1, interval / 1000, loop)

    def _paced(self, events: list[bytes], i: int, last: int, delay: float, loop) -> None:
        """Send content event `i`; the closing events go with the last content event (`last`)."""
        if self.closed:
            return
        if i >= last:
            self.transport.write(b"".join(events[i:]) + b"0\r\n\r\n")
            return
        self.transport.write(events[i])
        loop.call_later(delay, self._paced, events, i + 1, last, delay, loop)


def _is_stream(raw: bytes) -> bool:
    try:
        return orjson.loads(raw).get("stream") is True
    except (orjson.JSONDecodeError, AttributeError):
        return False


def _include_usage(raw: bytes) -> bool:
    try:
        return bool((orjson.loads(raw).get("stream_options") or {}).get("include_usage"))
    except (orjson.JSONDecodeError, AttributeError):
        return False


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeProtocol, host, port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream (default %(default)s)")
    parser.add_argument("--interval-ms", type=int, default=0, help="pause between chunks, ms (default %(default)s)")
    args = parser.parse_args()
    FakeProtocol.defaults = (args.chunks, args.interval_ms)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
