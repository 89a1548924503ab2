"""Anthropic Messages request → OpenAI chat completion request (the inverse of `adapters.claude`).

Follows the Messages API reference (https://docs.anthropic.com/en/api/messages) on the left and
the Chat Completions request (https://platform.openai.com/docs/api-reference/chat/create) on the
right. The result goes through `gateway.dispatch` to whatever adapter the token names.

    Anthropic Messages request                   OpenAI chat completion request
    -------------------------------------------  ------------------------------------------------
    model                                        model (the token's config may force another)
    max_tokens                                   the answering entry's `max_tokens_field`
                                                   (max_completion_tokens for openai and recent
                                                   azure, else max_tokens)
    system (string or text blocks)               a first `system` message (texts "\\n\\n"-joined)
    messages[role=system] (Claude Code's         a `system` message in its place
      mid-conversation system beta)
    user turn: text / image / document blocks    `user` message: text / image_url / file parts
    user turn: tool_result blocks                `tool` messages (tool_use_id → tool_call_id),
                                                   before the turn's other content; images in a
                                                   result follow in a `user` message
    assistant turn: text + tool_use blocks       `assistant` message: content + tool_calls
                                                   (input → JSON arguments)
    assistant turn: thinking blocks              reasoning_content (zhipu-api tokens: GLM wants its
                                                   reasoning back); else left out, as are
                                                   redacted_thinking blocks
    stop_sequences                               stop
    temperature, top_p                           temperature, top_p
    top_k                                        top_k (claude and gemini tokens only: OpenAI refuses it)
    metadata.user_id                             user (when at most 256 characters long)
    tools (custom tools: name, description,      tools [{type: function, function: {name,
      input_schema)                                description, parameters}}]; Anthropic's server
                                                   tools (web_search_..., bash_..., ...) left out
    tool_choice auto | any | tool | none         tool_choice auto | required | {function} | none
    tool_choice.disable_parallel_tool_use        parallel_tool_calls: false
    output_config.format json_schema             response_format json_schema
    thinking {type: disabled}                    reasoning_effort "none"       } claude, gemini and
    thinking {type: enabled, budget_tokens}      reasoning_effort by budget    } zhipu-api tokens
                                                   (REASONING_BUDGETS)         } (their adapters map
    thinking {type: adaptive} + output_config    reasoning_effort = effort     } it); not sent to
      .effort                                      ("max" → "xhigh")           } others
    stream                                       stream, stream_options.include_usage: true
    context_management, cache_control,           not sent (no chat counterpart)
      service_tier, container, mcp_servers, ...

`target_type` is the type of the entry that will answer (a `model-name-router` resolved).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.api.messages.errors import invalid

# Adapters whose upstream has `top_k` (OpenAI's API refuses it; routers may reach OpenAI).
TOP_K_TYPES = frozenset({"claude", "gemini"})

# Blocks of earlier turns with no chat counterpart: left out rather than refused, so a
# conversation that used them can go on.
DROPPED_BLOCKS = frozenset({
    "thinking", "redacted_thinking", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "code_execution_tool_result", "bash_code_execution_tool_result", "text_editor_code_execution_tool_result",
    "mcp_tool_use", "mcp_tool_result", "container_upload",
})

# Adapters that turn `reasoning_effort` into their provider's thinking switch.
REASONING_TYPES = frozenset({"claude", "gemini", "zhipu-api"})
# Adapters that send an assistant's `reasoning_content` back to their provider.
REASONING_HISTORY_TYPES = frozenset({"zhipu-api"})
# `thinking.budget_tokens` below each bound → that `reasoning_effort` (else "high").
REASONING_BUDGETS = ((4096, "low"), (16384, "medium"))
# Anthropic `output_config.effort` → OpenAI `reasoning_effort`.
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "xhigh"}

# OpenAI's limit for `user`; Claude Code's user_id (a JSON object of ids) is longer and left out.
MAX_USER_LENGTH = 256

TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


def parse_object(raw: bytes) -> dict[str, Any]:
    """The client's JSON body, which must be an object. Raises GatewayError 400."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    return body


def check_request(body: dict[str, Any]) -> dict[str, Any]:
    """`body`, checked for what every Messages request needs before it can be translated
    (`model`, `max_tokens`, `messages` of `user`/`assistant`/`system` turns). Raises GatewayError 400."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid("model: Field required (a string).")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise invalid("max_tokens: Field required (an integer greater than 0).")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: Field required (a non-empty list).")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant", "system"):
            raise invalid(f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'.")
        if not isinstance(message.get("content"), (str, list)):
            raise invalid(f"messages.{i}.content: Input should be a string or a list of content blocks.")
    for name, kind in (("system", (str, list)), ("stop_sequences", list), ("tools", list), ("tool_choice", dict), ("metadata", dict)):
        if body.get(name) is not None and not isinstance(body[name], kind):
            raise invalid(f"{name}: wrong type.")
    return body


def _text_of(content: Any) -> str:
    """The text of a string or of a list of blocks (text blocks "\\n"-joined)."""
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def _media_url(source: Any, where: str) -> str:
    """An OpenAI URL for an Anthropic `source`: base64 → `data:` URL, url → the URL."""
    if isinstance(source, dict):
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            return f"data:{source.get('media_type') or 'application/octet-stream'};base64,{source['data']}"
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return source["url"]
    raise invalid(f"{where}.source: only 'base64' and 'url' sources can be translated for this token's upstream.")


def _part(block: dict, where: str) -> dict | None:
    """One chat content part for a user-side block (None: nothing to send)."""
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text", "")} if block.get("text") else None
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _media_url(block.get("source"), where)}}
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            return {"type": "text", "text": source.get("data", "")}
        url = _media_url(source, where)
        if not url.startswith("data:"):
            raise invalid(f"{where}.source: a document must be sent inline (base64) for this token's upstream.")
        return {"type": "file", "file": {"filename": block.get("title") or "document.pdf", "file_data": url}}
    if kind in DROPPED_BLOCKS:
        return None
    raise invalid(f"{where}: content blocks of type '{kind}' cannot be translated for this token's upstream.")


def _content(parts: list[dict]) -> str | list[dict]:
    """Chat `content`: one text part as a plain string (what every OpenAI-compatible server takes)."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _user_messages(content: str | list, where: str) -> list[dict]:
    """A user turn → `tool` messages for its tool_result blocks, then one `user` message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict] = []
    parts: list[dict] = []
    for k, block in enumerate(content):
        at = f"{where}.{k}"
        if not isinstance(block, dict):
            raise invalid(f"{at}: a content block must be an object.")
        if block.get("type") == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise invalid(f"{at}.tool_use_id: Field required.")
            result = block.get("content")
            text = _text_of(result)
            if block.get("is_error") and not text:
                text = "Error"
            out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
            if isinstance(result, list):  # images a tool returned: shown to the model right after
                parts += [p for j, b in enumerate(result) if isinstance(b, dict) and b.get("type") == "image"
                          for p in [_part(b, f"{at}.content.{j}")] if p]
        elif (part := _part(block, at)) is not None:
            parts.append(part)
    if parts:
        out.append({"role": "user", "content": _content(parts)})
    return out


def _assistant_message(content: str | list, where: str, keep_reasoning: bool) -> dict | None:
    """An assistant turn → one `assistant` message (text content, tool_calls, and its thinking
    as `reasoning_content` when `keep_reasoning`)."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict] = []
    for k, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "thinking" and keep_reasoning and isinstance(block.get("thinking"), str):
            thoughts.append(block["thinking"])
        elif kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise invalid(f"{where}.{k}: a tool_use block needs an 'id' and a 'name'.")
            arguments = orjson.dumps(block.get("input") if block.get("input") is not None else {}).decode()
            calls.append({"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}})
        elif kind not in DROPPED_BLOCKS:
            raise invalid(f"{where}.{k}: content blocks of type '{kind}' cannot be translated for this token's upstream.")
    text = "".join(texts)
    if not text and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if thoughts and "".join(thoughts):
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    return message


def translate_messages(system: Any, messages: list[dict], keep_reasoning: bool = False) -> list[dict]:
    """Anthropic `system` + `messages` → OpenAI `messages`. Raises GatewayError 400."""
    out: list[dict] = []
    if system and (text := system if isinstance(system, str) else "\n\n".join(
            b.get("text", "") for b in system if isinstance(b, dict) and b.get("text"))):
        out.append({"role": "system", "content": text})
    for i, message in enumerate(messages):
        where = f"messages.{i}.content"
        if message["role"] == "system":
            if text := _text_of(message["content"]):
                out.append({"role": "system", "content": text})
        elif message["role"] == "user":
            out += _user_messages(message["content"], where)
        elif (assistant := _assistant_message(message["content"], where, keep_reasoning)) is not None:
            out.append(assistant)
    return out


def translate_tools(tools: list) -> list[dict]:
    """Custom tools → OpenAI function tools; Anthropic's server tools (typed) are left out."""
    out = []
    for j, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            continue
        if not isinstance(tool.get("name"), str):
            raise invalid(f"tools.{j}.name: Field required.")
        function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def translate_tool_choice(choice: dict, out: dict[str, Any]) -> None:
    """Anthropic `tool_choice` → OpenAI `tool_choice` (+ `parallel_tool_calls`), into `out`."""
    kind = choice.get("type")
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise invalid("tool_choice.name: Field required.")
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif kind in TOOL_CHOICES:
        out["tool_choice"] = TOOL_CHOICES[kind]
    else:
        raise invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'.")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False


def reasoning_effort(thinking: Any, output_config: Any) -> str | None:
    """OpenAI `reasoning_effort` for Anthropic `thinking` (+ `output_config.effort`), or None."""
    if not isinstance(thinking, dict):
        return None
    kind = thinking.get("type")
    if kind == "disabled":
        return "none"
    if kind == "enabled" and isinstance(thinking.get("budget_tokens"), int):
        return next((effort for bound, effort in REASONING_BUDGETS if thinking["budget_tokens"] < bound), "high")
    if kind == "adaptive" and isinstance(output_config, dict):
        return EFFORTS.get(output_config.get("effort"))
    return None


def translate_request(body: dict[str, Any], target_type: str, max_tokens_field: str = "max_tokens") -> dict[str, Any]:
    """The chat completion body for a checked Messages request (`check_request`), for an adapter
    of `target_type` whose limit field is `max_tokens_field` (see the module's table). Raises
    GatewayError 400."""
    messages = translate_messages(body.get("system"), body["messages"], target_type in REASONING_HISTORY_TYPES)
    out: dict[str, Any] = {"model": body["model"], "messages": messages}
    out[max_tokens_field] = body["max_tokens"]
    for name in ("temperature", "top_p") + (("top_k",) if target_type in TOP_K_TYPES else ()):
        if body.get(name) is not None:
            out[name] = body[name]
    if stop := [s for s in body.get("stop_sequences") or [] if isinstance(s, str) and s]:
        out["stop"] = stop
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and len(user) <= MAX_USER_LENGTH:
        out["user"] = user
    if tools := translate_tools(body.get("tools") or []):
        out["tools"] = tools
        if body.get("tool_choice"):
            translate_tool_choice(body["tool_choice"], out)
    output_format = (body.get("output_config") or {}).get("format") if isinstance(body.get("output_config"), dict) else None
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": output_format.get("schema") or {}}}
    if target_type in REASONING_TYPES and (effort := reasoning_effort(body.get("thinking"), body.get("output_config"))):
        out["reasoning_effort"] = effort
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """A rough prompt size (4 bytes a token) for `message_start`, before the upstream counts."""
    size = len(orjson.dumps([body.get("system"), body.get("messages"), body.get("tools")]))
    return max(1, size // 4)
