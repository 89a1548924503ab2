"""A chat completion → Responses output items and the Response object (CONTRACT.md §9).

Follows openai-python `types/responses/response.py`, `response_output_message.py`,
`response_function_tool_call.py`, `response_reasoning_item.py`, `response_custom_tool_call.py`
and `response_usage.py`:

    chat completion                               Response
    --------------------------------------------  --------------------------------------------
    message.reasoning_content (or .reasoning)     a `reasoning` item first, the text as its
      and any other non-standard message fields     summary; the message's own chat fields
      (the provider's thinking signatures)          sealed into its `encrypted_content`
    message.content / .refusal                    a `message` item: output_text / refusal part
    message.tool_calls[]                          `function_call` items (`fc_` id, `call_id` =
                                                    the tool call's id), or `custom_tool_call`
                                                    / `namespace` for tools that were such
    finish_reason stop | tool_calls               status completed
    finish_reason length | content_filter         status incomplete, incomplete_details.reason
                                                    max_output_tokens | content_filter
    usage prompt_tokens (+ cached), completion_   usage input_tokens (+ input_tokens_details),
      tokens (+ reasoning), total_tokens            output_tokens (+ details), total_tokens

The upstream's `chatcmpl-` id is never used: every id here is the gateway's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway.api.responses.items import new_id
from gateway.api.responses.tools import ToolMap

Seal = Callable[[dict], str]

# Chat message fields of OpenAI's own; any other field an adapter sets is the provider's state.
STANDARD_MESSAGE_FIELDS = frozenset({"role", "content", "tool_calls", "refusal", "function_call", "audio", "annotations", "name"})
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def status_of(finish_reason: str | None) -> tuple[str, dict | None]:
    """`(status, incomplete_details)` for a chat `finish_reason`."""
    reason = INCOMPLETE_REASONS.get(finish_reason or "")
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def usage(chat_usage: dict | None) -> dict | None:
    """Responses `usage` for a chat `usage` (None when the upstream reported none)."""
    if not chat_usage:
        return None
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    prompt_details = chat_usage.get("prompt_tokens_details") or {}
    completion_details = chat_usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(prompt_details.get("cached_tokens") or 0)},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(completion_details.get("reasoning_tokens") or 0)},
        "total_tokens": int(chat_usage.get("total_tokens") or prompt + completion),
    }


def reasoning_item(text: str, extras: dict, seal: Seal, item_id: str | None = None) -> dict:
    """A `reasoning` item: `text` as its summary, the provider's chat fields sealed."""
    item: dict[str, Any] = {"type": "reasoning", "id": item_id or new_id("rs"),
                            "summary": [{"type": "summary_text", "text": text}] if text else []}
    if extras:
        item["encrypted_content"] = seal(extras)
    return item


def message_item(text: str, refusal: str, status: str, item_id: str | None = None) -> dict:
    """An assistant `message` item with its output_text (and refusal) parts."""
    content: list[dict] = []
    if text:
        content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"type": "message", "id": item_id or new_id("msg"), "role": "assistant", "status": status, "content": content}


def call_item(call_id: str, chat_name: str, arguments: str, tools: ToolMap, status: str = "completed", item_id: str | None = None) -> dict:
    """A `function_call` (or `custom_tool_call`) item for one chat tool call."""
    tool = tools.lookup(chat_name)
    if tool.kind == "custom":
        try:
            value = orjson.loads(arguments).get("input")
        except (orjson.JSONDecodeError, AttributeError):
            value = None
        item = {"type": "custom_tool_call", "id": item_id or new_id("ctc"), "call_id": call_id, "name": tool.name,
                "input": value if isinstance(value, str) else arguments, "status": status}
    else:
        item = {"type": "function_call", "id": item_id or new_id("fc"), "call_id": call_id, "name": tool.name,
                "arguments": arguments, "status": status}
    if tool.namespace:
        item["namespace"] = tool.namespace
    return item


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def output_items(message: dict, finish_reason: str | None, tools: ToolMap, seal: Seal) -> list[dict]:
    """The output items for a chat completion's first choice `message`."""
    items: list[dict] = []
    extras = {k: v for k, v in message.items() if k not in STANDARD_MESSAGE_FIELDS and v not in (None, "", [], {})}
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if extras:
        items.append(reasoning_item(reasoning if isinstance(reasoning, str) else "", extras, seal))
    status, _ = status_of(finish_reason)
    text, refusal = _text(message.get("content")), message.get("refusal") or ""
    if text or refusal:
        items.append(message_item(text, refusal, status))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        items.append(call_item(call.get("id") or new_id("call"), function.get("name") or "", function.get("arguments") or "{}", tools))
    return items


def response_object(
    response_id: str,
    request: dict,
    *,
    model: str | None,
    status: str,
    created_at: int,
    output: list[dict] | None = None,
    usage_: dict | None = None,
    error: dict | None = None,
    incomplete_details: dict | None = None,
    conversation_id: str | None = None,
) -> dict:
    """The Response object, echoing the request's settings (`request` is the client's body)."""
    done = status in ("completed", "incomplete", "failed", "cancelled")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "completed_at": int(time.time()) if done and status != "cancelled" else None,
        "status": status,
        "background": bool(request.get("background")),
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "metadata": request.get("metadata") or {},
        "model": model or "",
        "output": output or [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
        "previous_response_id": request.get("previous_response_id"),
        "conversation": {"id": conversation_id} if conversation_id else None,
        "reasoning": request.get("reasoning"),
        "store": request.get("store") is not False,
        "temperature": request.get("temperature"),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p"),
        "truncation": request.get("truncation") or "disabled",
        "usage": usage_,
        "user": request.get("user"),
    }
