"""Builders for the OpenAI objects a translation produces.

Shapes follow the OpenAI Chat Completions reference: the `chat.completion` object and the
`chat.completion.chunk` stream object (https://platform.openai.com/docs/api-reference/chat/object,
https://platform.openai.com/docs/api-reference/chat/streaming).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


def completion_id() -> str:
    """A fresh `chatcmpl-...` id."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, int]:
    """OpenAI `usage`: `prompt_tokens`, `completion_tokens`, `total_tokens` (missing counts as 0)."""
    p, c = int(prompt_tokens or 0), int(completion_tokens or 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def message(content: str | None, tool_calls: list[dict] | None = None) -> dict[str, Any]:
    """An assistant `message`; `tool_calls` items are `{id, type: "function", function: {name, arguments}}`."""
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return msg


def tool_call(call_id: str, name: str, arguments: str, index: int | None = None) -> dict[str, Any]:
    """One `tool_calls` item; `arguments` is a JSON string. `index` is set for stream deltas."""
    call: dict[str, Any] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    if index is not None:
        call = {"index": index, **call}
    return call


def chat_completion(
    model: str,
    choices: list[dict[str, Any]],
    usage_: dict[str, int] | None = None,
    id_: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A `chat.completion`; `choices` items come from `choice()`."""
    out: dict[str, Any] = {
        "id": id_ or completion_id(),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage_ is not None:
        out["usage"] = usage_
    return out


def choice(index: int, message_: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    """One non-stream choice."""
    return {"index": index, "message": message_, "logprobs": None, "finish_reason": finish_reason}


class ChunkBuilder:
    """Makes the `chat.completion.chunk` objects of one stream (shared id, created and model)."""

    __slots__ = ("id", "created", "model")

    def __init__(self, model: str, id_: str | None = None) -> None:
        self.id = id_ or completion_id()
        self.created = int(time.time())
        self.model = model

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> dict[str, Any]:
        """A chunk with one choice carrying `delta` (`role`, `content`, `tool_calls`)."""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def usage_chunk(self, usage_: dict[str, int]) -> dict[str, Any]:
        """The final usage chunk (`choices: []`), sent when `stream_options.include_usage` is set."""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_,
        }


def text_of(content: Any) -> str:
    """The text of an OpenAI message `content` (a string, or the `text` parts of a part list)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last `user` message ("" when there is none)."""
    for msg in reversed(messages):
        if msg.get("role") == "user":
            return text_of(msg.get("content"))
    return ""
