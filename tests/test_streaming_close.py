"""A stream whose upstream clean-up fails still ends with [DONE] (the hardening review's note)."""

from __future__ import annotations

import asyncio

from gateway.errors import Scrubber
from gateway.streaming import sse_body


def test_a_failing_upstream_close_does_not_cut_the_stream():
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}

    class Rest:
        """An adapter stream that ends normally but whose clean-up (closing the upstream
        response) raises."""

        def __aiter__(self):
            return self

        async def __anext__(self):
            raise StopAsyncIteration

        async def aclose(self):
            raise RuntimeError("connection pool clean-up failed")

    rest = Rest

    async def collect():
        return [part async for part in sse_body(chunk, rest(), False, Scrubber([]))]

    parts = asyncio.run(collect())
    assert parts[-1].strip() == b"data: [DONE]"
    assert b'"content":"hi"' in b"".join(parts)
