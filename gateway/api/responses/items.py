"""Responses API items (CONTRACT.md §9): ids, and the client's input items in their stored form.

Item shapes follow openai-python `types/responses/` (`response_input_item_param.py`,
`response_output_message.py`, `response_function_tool_call.py`, `response_reasoning_item.py`,
`response_custom_tool_call.py`). Every item the gateway stores or returns has an `id` with
OpenAI's prefix (`msg_`, `fc_`, `rs_`, ...): clients dedupe and page by it. A `function_call`'s
`call_id` is a separate id, the one its `function_call_output` pairs with.
"""

from __future__ import annotations

import secrets
from typing import Any

from gateway.errors import GatewayError, invalid_request

PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
}
INPUT_ROLES = frozenset({"user", "system", "developer", "assistant"})
# Item types a client may send that the gateway keeps in history as they are but cannot replay
# to a chat completion upstream (built-in tool calls it did not run): dropped from the messages.
OPAQUE_TYPES = frozenset(
    {"web_search_call", "file_search_call", "computer_call", "computer_call_output", "code_interpreter_call",
     "image_generation_call", "local_shell_call", "local_shell_call_output", "mcp_call", "mcp_list_tools",
     "mcp_approval_request", "mcp_approval_response", "shell_call", "shell_call_output", "apply_patch_call",
     "apply_patch_call_output", "compaction", "tool_search_call", "tool_search_output"}
)


def new_id(prefix: str) -> str:
    """A fresh id `PREFIX_<48 hex>` (OpenAI's ids are prefix + opaque text)."""
    return f"{prefix}_{secrets.token_hex(24)}"


def not_found(kind: str, object_id: str, param: str | None = None) -> GatewayError:
    """404 `invalid_request_error` / `not_found` for an unknown (or another token's) object."""
    return GatewayError(404, f"No {kind} found with id '{object_id}'.", param=param, code="not_found")


def _text_parts(content: Any, part_type: str, param: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": part_type, "text": content}]
    if not isinstance(content, list):
        raise invalid_request(f"Invalid type for '{param}': expected a string or an array of content parts.", param=param)
    parts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid_request(f"Invalid content part '{param}[{j}]': expected an object with a 'type'.", param=f"{param}[{j}]")
        parts.append(part)
    return parts


def normalize_input(value: Any, param: str = "input") -> list[dict]:
    """The client's `input` (a string, or a list of items) as stored items, each with an `id`.

    A string is one user message; an item without `type` but with a `role` is a message (the
    SDK's `EasyInputMessage`); message `content` strings become one `input_text` (`output_text`
    for the assistant) part. `item_reference` items are kept as they are, resolved later.
    Raises GatewayError 400 for malformed items.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "id": new_id("msg"), "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": value}]}]
    if not isinstance(value, list):
        raise invalid_request(f"Invalid type for '{param}': expected a string or an array of input items.", param=param)
    return [_normalize_item(item, f"{param}[{i}]") for i, item in enumerate(value)]


def _own_id(item: dict, kind: str) -> str:
    """The item's id as the client sent it (kept: clients dedupe by it), or a fresh one when it
    has none or one the store cannot hold (over 80 characters)."""
    given = item.get("id")
    return given if isinstance(given, str) and 0 < len(given) <= 80 else new_id(PREFIXES.get(kind, "item"))


def _normalize_item(item: Any, param: str) -> dict:
    if not isinstance(item, dict):
        raise invalid_request(f"Invalid type for '{param}': expected an object.", param=param)
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        role = item.get("role")
        if role not in INPUT_ROLES:
            raise invalid_request(f"Invalid value for '{param}.role': expected one of assistant, developer, system, user.", param=f"{param}.role")
        part_type = "output_text" if role == "assistant" else "input_text"
        out = {"type": "message", "id": _own_id(item, "message"), "role": role, "status": item.get("status") or "completed",
               "content": _text_parts(item.get("content"), part_type, f"{param}.content")}
        if item.get("phase"):
            out["phase"] = item["phase"]
        return out
    if kind in ("function_call", "custom_tool_call"):
        if not isinstance(item.get("call_id"), str) or not isinstance(item.get("name"), str):
            raise invalid_request(f"Missing required parameter: '{param}.call_id' and '{param}.name'.", param=param)
        field = "arguments" if kind == "function_call" else "input"
        if not isinstance(item.get(field), str):
            raise invalid_request(f"Invalid type for '{param}.{field}': expected a string.", param=f"{param}.{field}")
    elif kind in ("function_call_output", "custom_tool_call_output"):
        if not isinstance(item.get("call_id"), str) or "output" not in item:
            raise invalid_request(f"Missing required parameter: '{param}.call_id' and '{param}.output'.", param=param)
    elif kind == "item_reference":
        if not isinstance(item.get("id"), str):
            raise invalid_request(f"Missing required parameter: '{param}.id'.", param=f"{param}.id")
        return {"type": "item_reference", "id": item["id"]}
    elif kind == "reasoning":
        pass
    elif kind not in OPAQUE_TYPES:
        raise invalid_request(f"Invalid value for '{param}.type': '{kind}' is not a supported input item type.", param=f"{param}.type")
    out = {k: v for k, v in item.items() if v is not None}
    out["type"] = kind
    out["id"] = _own_id(item, kind)
    if kind in PREFIXES and kind != "reasoning":
        out.setdefault("status", "completed")
    if kind == "reasoning":
        out.setdefault("summary", [])
    return out


def public(item: dict, include_encrypted: bool = False) -> dict:
    """An item as clients see it: a reasoning item's `encrypted_content` only when asked for
    (`include: ["reasoning.encrypted_content"]`)."""
    if item.get("type") == "reasoning" and "encrypted_content" in item and not include_encrypted:
        return {k: v for k, v in item.items() if k != "encrypted_content"}
    return item


def page(items: list[dict], after: str | None, limit: int, order: str) -> dict:
    """An OpenAI list page (`{object: "list", data, first_id, last_id, has_more}`) of `items`
    (oldest first) in `order` (`asc` / `desc`), starting after the item with id `after`."""
    ordered = items if order == "asc" else list(reversed(items))
    if after is not None:
        for i, item in enumerate(ordered):
            if item.get("id") == after:
                ordered = ordered[i + 1 :]
                break
        else:
            ordered = []
    data = ordered[:limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(ordered) > limit}


def list_params(query: Any) -> tuple[str | None, int, str]:
    """`after`, `limit` (1–100, default 20) and `order` (`asc` / `desc`, default `desc`) of a
    list request's query. Raises GatewayError 400 on bad values."""
    try:
        limit = int(query.get("limit") or 20)
    except ValueError:
        raise invalid_request("Invalid 'limit': expected an integer between 1 and 100.", param="limit") from None
    if not 1 <= limit <= 100:
        raise invalid_request("Invalid 'limit': expected an integer between 1 and 100.", param="limit")
    order = query.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise invalid_request("Invalid 'order': expected 'asc' or 'desc'.", param="order")
    return query.get("after") or None, limit, order
