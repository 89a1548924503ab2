"""`claude` (alias `claude-api`): the Anthropic Messages API.

Follows the Anthropic API reference: Messages (https://docs.anthropic.com/en/api/messages),
streaming (https://docs.anthropic.com/en/api/messages-streaming) and errors
(https://docs.anthropic.com/en/api/errors)::

    POST {api_base}/v1/messages     x-api-key: KEY     anthropic-version: 2023-06-01

The Anthropic body is built field by field from the tables below; nothing of the OpenAI body is
forwarded as is, because the API rejects fields it does not know (`n`, `seed`, penalties,
`logprobs`, `stream_options`, ... are not sent).

    OpenAI chat completion request              Anthropic Messages request
    ------------------------------------------  ----------------------------------------------
    model (config `model` forces it)            model
    messages[role=system|developer]             system (their texts, in order, "\\n\\n"-joined)
    messages[role=user] text / image_url / file user turn: text / image / document blocks
    messages[role=assistant] content+tool_calls assistant turn: text + tool_use blocks
    messages[role=tool]                         user turn: tool_result blocks (first in the turn)
    consecutive messages of one role            one turn (the API wants user/assistant turns)
    max_completion_tokens, else max_tokens      max_tokens (else config `max_tokens`, else 4096)
    stop                                        stop_sequences
    temperature, top_p, top_k                   temperature, top_p, top_k (not both temperature
                                                  and top_p, which Claude 4.5+ refuses: the one
                                                  the client set wins, temperature if both)
    user                                        metadata.user_id
    tools[type=function]                        tools (name, description, input_schema)
    tool_choice auto|none|required|{function}   tool_choice auto|none|any|{tool, name}
    parallel_tool_calls=false                   tool_choice.disable_parallel_tool_use=true
    response_format json_schema                 output_config.format json_schema
    stream                                      stream

    Anthropic Messages response                 OpenAI chat completion
    ------------------------------------------  ----------------------------------------------
    id, model                                   id, model
    content[type=text]                          choices[0].message.content (joined)
    content[type=tool_use] id, name, input      choices[0].message.tool_calls (arguments: JSON)
    stop_reason                                 choices[0].finish_reason (FINISH_REASONS)
    usage input_tokens (+ cache tokens),        usage prompt_tokens, completion_tokens,
      output_tokens                               total_tokens

Stream events (`message_start`, `content_block_start/delta/stop`, `message_delta`,
`message_stop`, `ping`, `error`) become `chat.completion.chunk`s as they arrive (`ClaudeStream`).
Error statuses map through `gateway.errors.from_upstream_status` (Anthropic's body is
`{"type": "error", "error": {"type", "message"}}`; 529 `overloaded_error` → 502 `upstream_error`).
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode
from collections.abc import Callable
from typing import Any

import orjson
from httpx_sse import ServerSentEvent

from gateway import openai_format as oai
from gateway.adapter import AdapterConfig, HTTPAdapter, StreamTranslator
from gateway.errors import GatewayError, from_upstream_status, invalid_request
from gateway.registry import register
from gateway.request import ChatRequest

ANTHROPIC_API_BASE = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

# Anthropic `stop_reason` → OpenAI `finish_reason`.
FINISH_REASONS: dict[str | None, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error `type` → the HTTP status the API uses for it (for `error` events mid-stream).
ERROR_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class ClaudeConfig(AdapterConfig):
    """`api_key` (sent as `x-api-key`); `api_base` (default `https://api.anthropic.com`, the
    gateway calls `{api_base}/v1/messages`); `model` (forced); `max_tokens` (used when the request
    sets neither `max_tokens` nor `max_completion_tokens`; else 4096); `anthropic_version` (the
    `anthropic-version` header); `top_k` (default for Anthropic's `top_k` sampling)."""

    api_key: str
    anthropic_version: str = ANTHROPIC_VERSION
    top_k: int | None = None


# -- request: OpenAI → Anthropic --------------------------------------------------------------


def _same(value: Any) -> Any:
    return value


def _stop_sequences(stop: str | list[str]) -> list[str] | None:
    """OpenAI `stop` (a string or a list) → Anthropic `stop_sequences` (a list; None when empty)."""
    sequences = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]
    return [s for s in sequences if s] or None


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


def _tool_choice(choice: str | dict | None, parallel_tool_calls: bool | None) -> dict | None:
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
    `text` and `json_object` have no Anthropic counterpart and send nothing.
    """
    if response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    if not isinstance(schema, dict):
        raise invalid_request("Missing required parameter: 'response_format.json_schema.schema'.", param="response_format")
    return {"format": {"type": "json_schema", "schema": schema}}


# OpenAI request field → (Anthropic field, converter). A converter returning None sends nothing.
# `model`, `messages`, `max_tokens`, `tool_choice` and `stream` are built by `translate_request`;
# every other OpenAI field is not sent.
REQUEST_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "temperature": ("temperature", _same),
    "top_p": ("top_p", _same),
    "top_k": ("top_k", _same),
    "stop": ("stop_sequences", _stop_sequences),
    "user": ("metadata", _metadata),
    "tools": ("tools", _tools),
    "response_format": ("output_config", _output_config),
}

_DATA_URL = re.compile(r"^data:(?P<media_type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)


def _media_source(url: str, param: str) -> dict[str, str]:
    """An Anthropic `source` for a URL: `data:TYPE;base64,DATA` → `{type: base64, media_type,
    data}`; `http(s)://...` → `{type: url, url}`. Raises 400 for anything else."""
    match = _DATA_URL.match(url)
    if match:
        return {"type": "base64", "media_type": match["media_type"], "data": match["data"]}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise invalid_request("Expected a base64 data URL or an http(s) URL.", param=param)


def _content_blocks(content: str | list | None, param: str) -> list[dict]:
    """OpenAI message `content` → Anthropic content blocks.

    A string → one text block; parts: `text` → text block, `image_url` → image block,
    `file` (a `file_data` data URL, e.g. a PDF) → document block, `refusal` → text block.
    Empty texts are left out (the API refuses empty text blocks). Raises 400 for other parts.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict] = []
    for j, part in enumerate(content):
        kind, where = part.get("type"), f"{param}[{j}]"
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise invalid_request(f"Missing text in content part '{where}'.", param=where)
            if text:
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
            blocks.append({"type": "document", "source": _media_source(data, where)})
        else:
            raise invalid_request(f"Content parts of type '{kind}' are not supported by a claude upstream.", param=where)
    return blocks


def _tool_use_blocks(tool_calls: list, param: str) -> list[dict]:
    """OpenAI assistant `tool_calls` → Anthropic `tool_use` blocks (`arguments` JSON → `input`)."""
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
        blocks.append({"type": "tool_use", "id": call["id"], "name": function["name"], "input": tool_input})
    return blocks


def _tool_result_block(message: dict, param: str) -> dict:
    """An OpenAI `tool` message → an Anthropic `tool_result` block (`tool_call_id` → `tool_use_id`)."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise invalid_request(f"Missing required parameter: '{param}.tool_call_id'.", param=f"{param}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content:
        block["content"] = _content_blocks(content, f"{param}.content")
    return block


def translate_messages(messages: list[dict]) -> tuple[str | None, list[dict]]:
    """OpenAI `messages` → (Anthropic `system`, Anthropic `messages`).

    `system`/`developer` texts are hoisted into `system`; `tool` messages become user turns of
    `tool_result` blocks; consecutive turns of one role are merged into one, with `tool_result`
    blocks first in a user turn, as the API requires. Raises 400 (GatewayError) for a message
    the API cannot express (legacy `function` role, unsupported content part, bad arguments).
    """
    system: list[str] = []
    turns: list[dict] = []
    for i, message in enumerate(messages):
        role, param = message.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            if text := oai.text_of(message.get("content")):
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
    return ("\n\n".join(system) or None), turns


# -- response: Anthropic → OpenAI -------------------------------------------------------------


def finish_reason(stop_reason: str | None) -> str:
    """Anthropic `stop_reason` → OpenAI `finish_reason` (unknown reasons count as `stop`)."""
    return FINISH_REASONS.get(stop_reason, "stop")


def translate_usage(usage: dict | None) -> dict[str, Any]:
    """Anthropic `usage` → OpenAI `usage`. `prompt_tokens` counts every input token (uncached,
    cache writes and cache reads, as Anthropic bills them); cache reads are also given as
    `prompt_tokens_details.cached_tokens`."""
    usage = usage or {}
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0) + cached
    out: dict[str, Any] = oai.usage(prompt, usage.get("output_tokens"))
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def _arguments(tool_input: Any) -> str:
    return json.dumps(tool_input if tool_input is not None else {}, ensure_ascii=False)


def upstream_error_event(error: Any) -> GatewayError:
    """A GatewayError for an Anthropic `error` object (`{type, message}`) met mid-stream, with
    the status the API gives that type (`overloaded_error` → 529 → 502 `upstream_error`)."""
    error = error if isinstance(error, dict) else {}
    status = ERROR_TYPE_STATUS.get(error.get("type"), 500)
    return from_upstream_status(status, str(error.get("message") or error.get("type") or "stream error"))


class ClaudeStream(StreamTranslator):
    """Anthropic stream events → OpenAI chunks, one event at a time.

    `message_start` → the role chunk (and the prompt token count); text blocks' `text_delta` →
    `content` deltas; a `tool_use` block → a `tool_calls` delta with `index`, `id`, `type` and
    `name`, then its `input_json_delta` fragments as `arguments` deltas; `message_delta` → the
    chunk carrying `finish_reason`; `error` → GatewayError; `ping` and unknown events → nothing.
    `finish` gives the usage chunk; a stream that ended before its `stop_reason` raises 502.
    """

    def __init__(self, model: str) -> None:
        self.chunks = oai.ChunkBuilder(model)
        self.usage: dict[str, Any] = {}
        self.tools: dict[int, dict[str, Any]] = {}  # content block index → {index, input, sent}
        self.finished = False

    def feed(self, event: ServerSentEvent) -> list[dict[str, Any]]:
        if not event.data.strip():
            return []
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise from_upstream_status(502, "the upstream sent a stream event that is not JSON") from None
        if not isinstance(data, dict):
            return []
        kind = data.get("type") or event.event
        handler = getattr(self, f"_on_{kind}", None)
        return handler(data) if handler else []

    def _on_message_start(self, data: dict) -> list[dict]:
        message = data.get("message") or {}
        if message.get("id"):
            self.chunks.id = message["id"]
        if message.get("model"):
            self.chunks.model = message["model"]
        self.usage.update(message.get("usage") or {})
        return [self.chunks.chunk({"role": "assistant", "content": ""})]

    def _on_content_block_start(self, data: dict) -> list[dict]:
        block = data.get("content_block") or {}
        if block.get("type") == "text":
            return [self.chunks.chunk({"content": block["text"]})] if block.get("text") else []
        if block.get("type") != "tool_use":
            return []  # thinking and server-tool blocks have no OpenAI counterpart
        index = len(self.tools)
        self.tools[data.get("index", index)] = {"index": index, "input": block.get("input"), "sent": False}
        call = oai.tool_call(block.get("id", ""), block.get("name", ""), "", index)
        return [self.chunks.chunk({"tool_calls": [call]})]

    def _arguments_chunk(self, tool: dict, fragment: str) -> dict:
        tool["sent"] = True
        return self.chunks.chunk({"tool_calls": [{"index": tool["index"], "function": {"arguments": fragment}}]})

    def _on_content_block_delta(self, data: dict) -> list[dict]:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self.chunks.chunk({"content": delta["text"]})]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            tool = self.tools.get(data.get("index"))
            if tool is not None:
                return [self._arguments_chunk(tool, delta["partial_json"])]
        return []

    def _on_content_block_stop(self, data: dict) -> list[dict]:
        tool = self.tools.get(data.get("index"))
        if tool is None or tool["sent"]:
            return []
        return [self._arguments_chunk(tool, _arguments(tool["input"] or {}))]  # a call without argument fragments

    def _on_message_delta(self, data: dict) -> list[dict]:
        self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        stop_reason = (data.get("delta") or {}).get("stop_reason")
        if stop_reason is None or self.finished:
            return []
        self.finished = True
        return [self.chunks.chunk({}, finish_reason(stop_reason))]

    def _on_error(self, data: dict) -> list[dict]:
        raise upstream_error_event(data.get("error"))

    def finish(self) -> list[dict[str, Any]]:
        if not self.finished:
            raise from_upstream_status(502, "the upstream stream ended before the message was complete")
        return [self.chunks.usage_chunk(translate_usage(self.usage))] if self.usage else []


# -- the adapter ------------------------------------------------------------------------------


@register("claude", aliases=("claude-api",))
class ClaudeAdapter(HTTPAdapter):
    """Anthropic's Messages API at `{api_base}/v1/messages` (see the module's mapping tables)."""

    Config = ClaudeConfig
    default_model = "claude-sonnet-4-5"

    def __init__(self, entry, runtime) -> None:
        super().__init__(entry, runtime)
        self._url = f"{self.config.api_base or ANTHROPIC_API_BASE}/v1/messages"

    def fixed_headers(self) -> dict[str, str]:
        return {"content-type": "application/json", "x-api-key": self.config.api_key, "anthropic-version": self.config.anthropic_version}

    def endpoint(self, request: ChatRequest, stream: bool) -> str:
        return self._url

    native_family = "anthropic"

    def native_request(self, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        """`{api_base}/{path}` with `x-api-key`; the client's `anthropic-version` and
        `anthropic-beta` are kept (the config's version when the client sent none)."""
        url = f"{self.config.api_base or ANTHROPIC_API_BASE}/{path}"
        headers = {**headers, "x-api-key": self.config.api_key}
        headers.setdefault("anthropic-version", self.config.anthropic_version)
        return (f"{url}?{urlencode(query)}" if query else url), headers

    def translate_request(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        """The Anthropic Messages body for an OpenAI chat completion request (module tables).

        Raises 400 (GatewayError) for what Anthropic cannot express: `n` > 1, non-function
        tools, unsupported content parts, legacy `function` messages.
        """
        body = self.prepared_body(request)
        if body.get("n") not in (None, 1):
            raise invalid_request("A claude upstream answers with one choice only; 'n' must be 1.", param="n")
        system, messages = translate_messages(body["messages"])
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
        out: dict[str, Any] = {"model": body.get("model"), "max_tokens": max_tokens, "messages": messages}
        if system:
            out["system"] = system
        if body.get("top_k") is None and self.config.top_k is not None:
            body["top_k"] = self.config.top_k
        if body.get("temperature") is not None and body.get("top_p") is not None:
            # Claude 4.5+ models refuse both; keep the one the client set (temperature if both).
            client_set_top_p_only = request.body.get("top_p") is not None and request.body.get("temperature") is None
            body.pop("temperature" if client_set_top_p_only else "top_p")
        for name, (anthropic_name, convert) in REQUEST_FIELDS.items():
            if body.get(name) is not None and (value := convert(body[name])) is not None:
                out[anthropic_name] = value
        if "tools" in out and (choice := _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))):
            out["tool_choice"] = choice
        if stream:
            out["stream"] = True
        return out

    def translate_response(self, data: Any, request: ChatRequest) -> dict[str, Any]:
        """A `chat.completion` from an Anthropic `message`. Raises 502 when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise from_upstream_status(502, "the upstream's answer is not an Anthropic message")
        texts: list[str] = []
        calls: list[dict] = []
        for block in data["content"]:
            if block.get("type") == "text":
                texts.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                calls.append(oai.tool_call(block.get("id", ""), block.get("name", ""), _arguments(block.get("input"))))
        content = "".join(texts) if texts or not calls else None
        choice = oai.choice(0, oai.message(content, calls), finish_reason(data.get("stop_reason")))
        return oai.chat_completion(
            data.get("model") or self.model_for(request), [choice], translate_usage(data.get("usage")), id_=data.get("id")
        )

    def stream_translator(self, request: ChatRequest) -> ClaudeStream:
        return ClaudeStream(self.model_for(request) or "")
