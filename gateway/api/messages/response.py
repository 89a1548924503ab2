"""OpenAI chat completion → Anthropic Messages `message` (non-streamed answers).

Follows the Chat Completions object (https://platform.openai.com/docs/api-reference/chat/object)
on the left and the Messages API response (https://docs.anthropic.com/en/api/messages) on the
right; the first choice is the message.

    chat.completion                              Anthropic message
    -------------------------------------------  ------------------------------------------------
    choices[0].message.reasoning_content          content[]: a `thinking` block (first)
      (or `reasoning`)
    choices[0].message.content                   content[]: a `text` block
    choices[0].message.tool_calls                content[]: `tool_use` blocks (arguments JSON →
                                                   input; unparsable arguments → {})
    choices[0].finish_reason                     stop_reason (STOP_REASONS); stop_sequence null
    usage.prompt_tokens (− cached)               usage.input_tokens
    usage.prompt_tokens_details.cached_tokens    usage.cache_read_input_tokens
    usage.completion_tokens                      usage.output_tokens
    model                                        model
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from gateway.errors import from_upstream_status

# OpenAI `finish_reason` → Anthropic `stop_reason`.
STOP_REASONS: dict[str | None, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id() -> str:
    """A fresh `msg_...` id."""
    return f"msg_{uuid.uuid4().hex[:24]}"


def tool_use_id() -> str:
    """A fresh `toolu_...` id, for tool calls an upstream sent without one."""
    return f"toolu_{uuid.uuid4().hex[:24]}"


def stop_reason(finish_reason: str | None, called_tools: bool) -> str:
    """Anthropic `stop_reason` for an OpenAI `finish_reason` (`tool_use` whenever tools were
    called, whatever the upstream said; unknown reasons → `end_turn`)."""
    if called_tools and finish_reason in (None, "stop", "tool_calls", "function_call"):
        return "tool_use"
    return STOP_REASONS.get(finish_reason, "end_turn")


def translate_usage(usage: dict | None) -> dict[str, int]:
    """Anthropic `usage` for OpenAI `usage` (missing counts as 0)."""
    usage = usage or {}
    cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
    return {
        "input_tokens": max(0, int(usage.get("prompt_tokens") or 0) - cached),
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def tool_input(arguments: Any) -> dict:
    """A tool call's JSON `arguments` as an Anthropic `input` object ({} when not an object)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def reasoning_of(message: dict) -> str | None:
    """The reasoning text of a chat message or delta (`reasoning_content`, else `reasoning`)."""
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) and value else None


def translate_completion(completion: dict | bytes, model: str) -> dict[str, Any]:
    """The Anthropic `message` for a chat completion (dict or the upstream's JSON bytes).
    Raises GatewayError 502 when it is not a chat completion."""
    if isinstance(completion, bytes):
        try:
            completion = orjson.loads(completion)
        except orjson.JSONDecodeError:
            raise from_upstream_status(502, "the upstream's answer is not JSON") from None
    choices = completion.get("choices") if isinstance(completion, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise from_upstream_status(502, "the upstream's answer is not a chat completion")
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if thinking := reasoning_of(message):
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls") or []
    for call in calls:
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or tool_use_id(), "name": function.get("name", ""),
                        "input": tool_input(function.get("arguments"))})
    return {
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model") or model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), bool(calls)),
        "stop_sequence": None,
        "usage": translate_usage(completion.get("usage")),
    }
