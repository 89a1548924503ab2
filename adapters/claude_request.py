"""OpenAI chat completion request → Anthropic Messages request, for the `claude` adapter.

Follows the Anthropic API reference (https://docs.anthropic.com/en/api/messages) and the
official SDK's request params (`anthropic/types/message_create_params.py`,
`thinking_config_*_param.py`, `output_config_param.py`, `plain_text_source_param.py`).
The mapping tables are in `adapters/claude.py`; this module holds the converters, including the
rewrites that keep a request valid where Anthropic is stricter than OpenAI:

- `temperature` is clamped to Anthropic's 0..1 (OpenAI's is 0..2);
- whitespace-only stop sequences and text blocks are left out, and the last text block of a
  final assistant (prefill) turn is right-stripped: the API refuses all three;
- tool call ids are made to match `^[a-zA-Z0-9_-]+$` (`gateway.tool_ids.fit_tool_id`);
- a history with tool calls but no `tools` gets stub tools named after the calls, with
  `tool_choice: none` (the API refuses tool blocks without `tools`);
- `response_format: json_object` (no Anthropic counterpart: structured outputs need a strict
  schema, where a bare `{"type": "object"}` would allow only `{}`) becomes a forced tool whose
  input is the JSON object (`JSON_TOOL`), or, when the request has tools or thinking, which
  forbid forcing one, an instruction in `system`;
- `reasoning_effort` becomes `thinking` (and `output_config.effort` on adaptive models).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from gateway import openai_format as oai
from gateway.errors import invalid_request
from gateway.tool_ids import fit_tool_id

# OpenAI `reasoning_effort` → `thinking.budget_tokens` (models with manual extended thinking;
# the API wants at least 1024 and less than `max_tokens`) and → `output_config.effort` (models
# with adaptive thinking, Claude Opus / Sonnet 4.6 and later). `none` turns thinking off.
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768, "max": 32768}
EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}
MIN_THINKING_BUDGET = 1024
JSON_OBJECT_INSTRUCTION = "Respond with one valid JSON object only: no prose before or after it, no code fences."
# The tool `response_format: json_object` is answered through: its `input` is the client's
# JSON object (Anthropic's tool inputs are always parsed JSON objects).
JSON_TOOL = {"name": "json_response", "description": "Give the complete answer as one JSON object.",
             "input_schema": {"type": "object"}}
STUB_TOOL_DESCRIPTION = "No longer available: do not call it."

_MODEL_VERSION = re.compile(r"claude-(?:(?P<old>\d)(?:-\d)?-(?P<old_family>opus|sonnet|haiku)|(?P<family>opus|sonnet|haiku)-(?P<major>\d+)(?:-(?P<minor>\d{1,2})(?!\d))?)")


@lru_cache(maxsize=256)
def model_generation(model: str | None) -> tuple[str, int, int] | None:
    """(family, major, minor) of a Claude model id (`claude-sonnet-4-5` → `("sonnet", 4, 5)`,
    `claude-3-7-sonnet-latest` → `("sonnet", 3, 0)`); None for a name that is not of that form."""
    match = _MODEL_VERSION.search(model or "")
    if not match:
        return None
    if match["old"]:
        return match["old_family"], int(match["old"]), 0
    return match["family"], int(match["major"]), int(match["minor"] or 0)


def thinking_is_adaptive(model: str | None) -> bool:
    """True for models whose thinking is `{type: adaptive}` + `output_config.effort` (Claude 4.6
    and later, and names the gateway cannot place); False for manual-budget models."""
    generation = model_generation(model)
    return generation is None or generation[1:] >= (4, 6)


def refuses_sampling(model: str | None) -> bool:
    """True for models that answer 400 "`temperature` is deprecated for this model" to any of
    `temperature` / `top_p` / `top_k`: Claude Opus 4.7 and later, and every 5.x model (reports:
    oumi-ai/oumi PR #2538 with live calls, BerriAI/litellm PR #37868, rocketride-server#1194)."""
    generation = model_generation(model)
    if generation is None:
        return False
    family, major, minor = generation
    return major >= 5 or (family == "opus" and (major, minor) >= (4, 7))


def _same(value: Any) -> Any:
    return value


def _temperature(value: float) -> float:
    """OpenAI `temperature` (0..2) → Anthropic's (0..1, "Ranges from 0.0 to 1.0"): clamped."""
    return min(max(value, 0), 1)


def _stop_sequences(stop: str | list[str]) -> list[str] | None:
    """OpenAI `stop` → Anthropic `stop_sequences`, leaving out whitespace-only sequences (the API
    refuses them: "each stop sequence must contain non-whitespace"); None when none is left."""
    sequences = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]
    return [s for s in sequences if s.strip()] or None


def _metadata(user: str) -> dict[str, str]:
    """OpenAI `user` → Anthropic `metadata.user_id`."""
    return {"user_id": user}


def _tools(tools: list[dict]) -> list[dict] | None:
    """OpenAI `tools` (`{type: "function", function: {name, description, parameters}}`) →
    Anthropic `tools` (`{name, description, input_schema}`). Raises 400 for other tool types."""
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise invalid_request("Only tools of type 'function' can be sent to a claude upstream.", param=f"tools[{i}]")
        if not isinstance(function.get("name"), str):
            raise invalid_request("Missing required parameter: 'tools[].function.name'.", param=f"tools[{i}].function.name")
        converted = {"name": function["name"], "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
        if function.get("description"):
            converted["description"] = function["description"]
        out.append(converted)
    return out or None


def stub_tools(messages: list[dict]) -> list[dict]:
    """Anthropic `tools` for the names of the `tool_use` blocks in `messages` (in order of first
    use), each with an empty object schema: what lets the API take a tool history when the client
    no longer sends `tools` (as aws-samples/bedrock-access-gateway PR #239 does)."""
    names = dict.fromkeys(b["name"] for m in messages if m["role"] == "assistant" for b in m["content"] if b["type"] == "tool_use")
    return [{"name": name, "description": STUB_TOOL_DESCRIPTION, "input_schema": {"type": "object", "properties": {}}} for name in names]


def tool_choice(choice: str | dict | None, parallel_tool_calls: bool | None) -> dict | None:
    """OpenAI `tool_choice` (+ `parallel_tool_calls`) → Anthropic `tool_choice`.

    `auto` → `{type: auto}`, `none` → `{type: none}`, `required` → `{type: any}`,
    `{type: function, function: {name}}` → `{type: tool, name}`; `parallel_tool_calls: false`
    adds `disable_parallel_tool_use: true`. None when neither is set.
    """
    if choice is None:
        converted = {"type": "auto"} if parallel_tool_calls is False else None
    elif isinstance(choice, str):
        kinds = {"auto": "auto", "none": "none", "required": "any"}
        if choice not in kinds:
            raise invalid_request("Invalid value for 'tool_choice': expected 'auto', 'none', 'required' or a function.", param="tool_choice")
        converted = {"type": kinds[choice]}
    else:
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise invalid_request("Invalid value for 'tool_choice': expected {'type': 'function', 'function': {'name': ...}}.", param="tool_choice")
        converted = {"type": "tool", "name": name}
    if converted is not None and parallel_tool_calls is False and converted["type"] != "none":
        converted["disable_parallel_tool_use"] = True
    return converted


def _output_config(response_format: dict) -> dict | None:
    """OpenAI `response_format` → Anthropic `output_config.format` (structured outputs).

    `{type: json_schema, json_schema: {schema}}` → `{format: {type: json_schema, schema}}`;
    `text` and `json_object` send nothing here (see `JSON_TOOL`).
    """
    if response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    if not isinstance(schema, dict):
        raise invalid_request("Missing required parameter: 'response_format.json_schema.schema'.", param="response_format")
    return {"format": {"type": "json_schema", "schema": schema}}


# OpenAI request field → (Anthropic field, converter). A converter returning None sends nothing.
# `model`, `messages`, `max_tokens`, `tool_choice`, `thinking` and `stream` are built by the
# adapter's `translate_request`; every other OpenAI field is not sent.
REQUEST_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "temperature": ("temperature", _temperature),
    "top_p": ("top_p", _same),
    "top_k": ("top_k", _same),
    "stop": ("stop_sequences", _stop_sequences),
    "user": ("metadata", _metadata),
    "tools": ("tools", _tools),
    "response_format": ("output_config", _output_config),
}

def answers_with_json_tool(body: dict) -> bool:
    """True when a `tool_use` of `JSON_TOOL`'s name in the answer is the JSON object the client
    asked for with `response_format: json_object` (and not a tool of its own)."""
    return (body.get("response_format") or {}).get("type") == "json_object" and not any(
        isinstance(t, dict) and (t.get("function") or {}).get("name") == JSON_TOOL["name"] for t in body.get("tools") or []
    )


_DATA_URL = re.compile(r"^data:(?P<media_type>[\w.+-]+/[\w.+-]+)(?:;[\w.+-]+=[\w.+-]+)*;base64,(?P<data>.*)$", re.DOTALL)


def _media_source(url: str, param: str) -> dict[str, str]:
    """An Anthropic `source` for a URL: `data:TYPE;base64,DATA` → `{type: base64, media_type,
    data}`; `http(s)://...` → `{type: url, url}`. Raises 400 for anything else."""
    match = _DATA_URL.match(url)
    if match:
        return {"type": "base64", "media_type": match["media_type"], "data": match["data"]}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise invalid_request("Expected a base64 data URL or an http(s) URL.", param=param)


def _document_source(data_url: str, param: str) -> dict[str, str]:
    """An Anthropic document `source` for an OpenAI `file.file_data` data URL: PDF → base64 source
    (`base64_pdf_source_param.py`); `text/*` (plain, CSV, Markdown, ...) → its decoded text as a
    `{type: text, media_type: text/plain}` source (`plain_text_source_param.py`). Raises 400 for
    other types, which Anthropic documents do not take."""
    source = _media_source(data_url, param)
    media_type = source.get("media_type", "")
    if source["type"] != "base64" or media_type == "application/pdf":
        return source
    if media_type.startswith("text/"):
        try:
            text = base64.b64decode(source["data"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise invalid_request(f"The '{media_type}' file in '{param}' is not base64-encoded UTF-8 text.", param=param) from None
        return {"type": "text", "media_type": "text/plain", "data": text}
    raise invalid_request(
        f"A claude upstream takes PDF and text files only, not '{media_type}'.", param=param
    )


def _content_blocks(content: str | list | None, param: str) -> list[dict]:
    """OpenAI message `content` → Anthropic content blocks.

    A string → one text block; parts: `text` → text block, `image_url` → image block,
    `file` (a `file_data` data URL: PDF or text) → document block, `refusal` → text block.
    Whitespace-only texts are left out (the API refuses them). Raises 400 for other parts.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks: list[dict] = []
    for j, part in enumerate(content):
        kind, where = part.get("type"), f"{param}[{j}]"
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise invalid_request(f"Missing text in content part '{where}'.", param=where)
            if text.strip():
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise invalid_request(f"Missing 'image_url.url' in content part '{where}'.", param=where)
            blocks.append({"type": "image", "source": _media_source(url, where)})
        elif kind == "file":
            file = part.get("file") or {}
            data = file.get("file_data") if isinstance(file, dict) else None
            if not isinstance(data, str) or not data.startswith("data:"):
                raise invalid_request("Only files sent inline as 'file.file_data' data URLs can go to a claude upstream.", param=where)
            blocks.append({"type": "document", "source": _document_source(data, where)})
        else:
            raise invalid_request(f"Content parts of type '{kind}' are not supported by a claude upstream.", param=where)
    return blocks


def _tool_use_blocks(tool_calls: list, param: str) -> list[dict]:
    """OpenAI assistant `tool_calls` → Anthropic `tool_use` blocks (`arguments` JSON → `input`,
    `id` → `fit_tool_id(id)`)."""
    blocks = []
    for k, call in enumerate(tool_calls):
        where = f"{param}[{k}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(call.get("id"), str) or not isinstance(function.get("name"), str):
            raise invalid_request(f"'{where}' needs an 'id' and a 'function' with a 'name'.", param=where)
        arguments = function.get("arguments") or "{}"
        try:
            tool_input = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            tool_input = None
        if not isinstance(tool_input, dict):
            raise invalid_request(f"'{where}.function.arguments' must be a JSON object.", param=f"{where}.function.arguments")
        blocks.append({"type": "tool_use", "id": fit_tool_id(call["id"]), "name": function["name"], "input": tool_input})
    return blocks


def _tool_result_block(message: dict, param: str) -> dict:
    """An OpenAI `tool` message → an Anthropic `tool_result` block (`tool_call_id` →
    `tool_use_id`, mapped as the `tool_use` id is)."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise invalid_request(f"Missing required parameter: '{param}.tool_call_id'.", param=f"{param}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": fit_tool_id(call_id)}
    content = message.get("content")
    if isinstance(content, str):
        if content.strip():
            block["content"] = content
    elif content and (blocks := _content_blocks(content, f"{param}.content")):
        block["content"] = blocks
    return block


def _rstrip_final_assistant(turns: list[dict]) -> None:
    """Right-strip the text that ends a final assistant (prefill) turn, which the API refuses
    with trailing whitespace; blocks and the turn itself are dropped when nothing is left."""
    while turns and turns[-1]["role"] == "assistant":
        blocks = turns[-1]["content"]
        if blocks and blocks[-1]["type"] == "text":
            stripped = blocks[-1]["text"].rstrip()
            if stripped:
                blocks[-1] = {**blocks[-1], "text": stripped}
                return
            blocks.pop()
        if blocks:
            return
        turns.pop()


def translate_messages(messages: list[dict]) -> tuple[str | None, list[dict]]:
    """OpenAI `messages` → (Anthropic `system`, Anthropic `messages`).

    `system`/`developer` texts are hoisted into `system`; `tool` messages become user turns of
    `tool_result` blocks; consecutive turns of one role are merged into one, with `tool_result`
    blocks first in a user turn, as the API requires; a final assistant turn is right-stripped.
    Raises 400 (GatewayError) for a message the API cannot express (legacy `function` role,
    unsupported content part, bad arguments).
    """
    system: list[str] = []
    turns: list[dict] = []
    for i, message in enumerate(messages):
        role, param = message.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            if (text := oai.text_of(message.get("content"))).strip():
                system.append(text)
            continue
        if role == "user":
            blocks = _content_blocks(message.get("content"), f"{param}.content")
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"), f"{param}.content")
            blocks += _tool_use_blocks(message.get("tool_calls") or [], f"{param}.tool_calls")
        elif role == "tool":
            role, blocks = "user", [_tool_result_block(message, param)]
        else:
            raise invalid_request("Legacy 'function' messages cannot go to a claude upstream; use 'tools' and 'tool' messages.", param=f"{param}.role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")  # stable: results first
    _rstrip_final_assistant(turns)
    return ("\n\n".join(system) or None), turns


def in_tool_loop(turns: list[dict]) -> bool:
    """True when the last turn returns tool results: the assistant turn it answers would have to
    start with its signed thinking block for thinking to stay on."""
    return bool(turns) and turns[-1]["role"] == "user" and any(b["type"] == "tool_result" for b in turns[-1]["content"])


def thinking(effort: Any, model: str | None, max_tokens: int, max_tokens_set: bool) -> tuple[dict | None, str | None, int]:
    """(`thinking`, `output_config.effort`, `max_tokens`) for OpenAI `reasoning_effort`.

    Adaptive models: `none` → `{type: disabled}`, else `{type: adaptive}` + effort (`EFFORTS`).
    Manual-budget models: `none` → nothing; else `{type: enabled, budget_tokens}`
    (`THINKING_BUDGETS`), the budget kept under `max_tokens` (which includes thinking); when the
    client and config left `max_tokens` unset it grows to budget + `max_tokens` instead. With
    less than 1024 tokens to spare, thinking is left off. Raises 400 for an unknown effort.
    """
    if effort is None:
        return None, None, max_tokens
    if not isinstance(effort, str) or (effort != "none" and effort not in THINKING_BUDGETS):
        raise invalid_request("Invalid value for 'reasoning_effort': expected 'none', 'minimal', 'low', 'medium', 'high' or 'xhigh'.",
                              param="reasoning_effort")
    if thinking_is_adaptive(model):
        return ({"type": "disabled"}, None, max_tokens) if effort == "none" else ({"type": "adaptive"}, EFFORTS[effort], max_tokens)
    if effort == "none":
        return None, None, max_tokens
    budget = THINKING_BUDGETS[effort]
    if budget >= max_tokens:
        if not max_tokens_set:
            max_tokens += budget
        else:
            budget = max_tokens - 1
    if budget < MIN_THINKING_BUDGET:
        return None, None, max_tokens
    return {"type": "enabled", "budget_tokens": budget}, None, max_tokens
