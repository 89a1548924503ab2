"""`mock`: answers locally and deterministically, for trying the gateway without any account.

Produces OpenAI chat completions and streams (https://platform.openai.com/docs/api-reference/chat)
from the config's `reply`; `{prompt}` in the reply is replaced by the last user message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pydantic import Field

from gateway import openai_format as oai
from gateway.adapter import Adapter, AdapterConfig, Completion, StreamItem
from gateway.registry import register
from gateway.request import ChatRequest


class MockConfig(AdapterConfig):
    """`reply`: the answer text; `latency_ms`: delay before the answer (and split across the
    chunks of a stream); `chunk_count`: how many content chunks a stream has."""

    reply: str = "Hello! I am the gateway's mock model. You said: {prompt}"
    latency_ms: float = Field(0, ge=0)
    chunk_count: int = Field(4, ge=1)


def _count_tokens(text: str) -> int:
    return len(text.split())


@register("mock")
class MockAdapter(Adapter):
    """A deterministic local model named `mock` (or the config's `model`)."""

    Config = MockConfig
    default_model = "mock"
    secret_fields = ()

    def _reply(self, request: ChatRequest) -> str:
        return self.config.reply.replace("{prompt}", oai.last_user_text(request.body["messages"]))

    def _prompt_tokens(self, request: ChatRequest) -> int:
        return sum(_count_tokens(oai.text_of(m.get("content"))) for m in request.body["messages"])

    async def complete(self, request: ChatRequest) -> Completion:
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        text = self._reply(request)
        return oai.chat_completion(
            self.model_for(request),
            [oai.choice(0, oai.message(text), "stop")],
            oai.usage(self._prompt_tokens(request), _count_tokens(text)),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        text = self._reply(request)
        count = self.config.chunk_count
        step = max(1, -(-len(text) // count))
        pieces = [text[i : i + step] for i in range(0, len(text), step)] or [""]
        delay = self.config.latency_ms / 1000 / len(pieces)
        chunks = oai.ChunkBuilder(self.model_for(request))
        yield chunks.chunk({"role": "assistant", "content": ""})
        for piece in pieces:
            if delay:
                await asyncio.sleep(delay)
            yield chunks.chunk({"content": piece})
        yield chunks.chunk({}, "stop")
        yield chunks.usage_chunk(oai.usage(self._prompt_tokens(request), _count_tokens(text)))
