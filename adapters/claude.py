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
    whitespace-only text; final assistant text  left out; right-stripped (the API refuses both)
    tool_calls[].id, tool_call_id               tool_use.id, tool_use_id: `fit_tool_id` (ids
                                                  outside ^[a-zA-Z0-9_-]+$ get a stable rewrite)
    file file_data: PDF / text/*                document: base64 PDF / plain text source
    max_completion_tokens, else max_tokens      max_tokens (else config `max_tokens`, else 4096)
    stop                                        stop_sequences (whitespace-only ones left out)
    temperature (0..2), top_p, top_k            temperature (clamped to 0..1), top_p, top_k (not
                                                  both temperature and top_p, which Claude 4.5+
                                                  refuses: the one the client set wins,
                                                  temperature if both; none of them on models
                                                  that refuse sampling, Opus 4.7+ and 5.x)
    reasoning_effort                            thinking {enabled, budget_tokens} (manual models)
                                                  or {adaptive} + output_config.effort (4.6+)
    user                                        metadata.user_id
    tools[type=function]                        tools (name, description, input_schema)
    (no tools, but tool calls in history)       stub tools from the history + tool_choice none
    tool_choice auto|none|required|{function}   tool_choice auto|none|any|{tool, name}
    parallel_tool_calls=false                   tool_choice.disable_parallel_tool_use=true
    response_format json_schema                 output_config.format json_schema
    response_format json_object                 a forced tool `json_response` whose input is the
                                                  answer (with tools or thinking: an instruction
                                                  appended to system)
    stream                                      stream

    Anthropic Messages response                 OpenAI chat completion
    ------------------------------------------  ----------------------------------------------
    id, model                                   id, model
    content[type=text]                          choices[0].message.content (joined)
    content[type=thinking]                      choices[0].message.reasoning_content (joined)
    content[type=tool_use] id, name, input      choices[0].message.tool_calls (arguments: JSON)
    stop_reason                                 choices[0].finish_reason (FINISH_REASONS)
    usage input_tokens (+ cache tokens),        usage prompt_tokens, completion_tokens,
      output_tokens                               total_tokens
    usage output_tokens_details.thinking_tokens usage completion_tokens_details.reasoning_tokens

Stream events (`message_start`, `content_block_start/delta/stop`, `message_delta`,
`message_stop`, `ping`, `error`) become `chat.completion.chunk`s as they arrive (`ClaudeStream`).
Error statuses map through `gateway.errors.from_upstream_status` (Anthropic's body is
`{"type": "error", "error": {"type", "message"}}`; 529 `overloaded_error` → 502 `upstream_error`;
`prompt is too long` → 400 `context_length_exceeded`).
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode
from typing import Any

import orjson
from httpx_sse import ServerSentEvent

from adapters import claude_request as req
from gateway import openai_format as oai
from gateway.adapter import AdapterConfig, HTTPAdapter, StreamTranslator
from gateway.errors import GatewayError, error_message_from_body, from_upstream_status, invalid_request, parse_retry_after
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

# Anthropic's over-long prompt errors (400 invalid_request_error): `prompt is too long: N tokens >
# M maximum`, and the older `input length and `max_tokens` exceed context limit: N + M > L`.
JSON_TOOL_NAME = req.JSON_TOOL["name"]
CONTEXT_LENGTH_ERROR = re.compile(r"prompt is too long|exceed context limit", re.IGNORECASE)

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


# -- response: Anthropic → OpenAI -------------------------------------------------------------


def finish_reason(stop_reason: str | None) -> str:
    """Anthropic `stop_reason` → OpenAI `finish_reason` (unknown reasons count as `stop`)."""
    return FINISH_REASONS.get(stop_reason, "stop")


def translate_usage(usage: dict | None) -> dict[str, Any]:
    """Anthropic `usage` → OpenAI `usage`. `prompt_tokens` counts every input token (uncached,
    cache writes and cache reads, as Anthropic bills them); cache reads are also given as
    `prompt_tokens_details.cached_tokens`; `output_tokens_details.thinking_tokens` (included in
    `output_tokens`) as `completion_tokens_details.reasoning_tokens`."""
    usage = usage or {}
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0) + cached
    out: dict[str, Any] = oai.usage(prompt, usage.get("output_tokens"))
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    thinking = (usage.get("output_tokens_details") or {}).get("thinking_tokens")
    if thinking is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": thinking}
    return out


def _arguments(tool_input: Any) -> str:
    return json.dumps(tool_input if tool_input is not None else {}, ensure_ascii=False)


def upstream_error_event(error: Any) -> GatewayError:
    """A GatewayError for an Anthropic `error` object (`{type, message}`) met mid-stream, with
    the status the API gives that type (`overloaded_error` → 529 → 502 `upstream_error`)."""
    error = error if isinstance(error, dict) else {}
    status = ERROR_TYPE_STATUS.get(error.get("type"), 500)
    return translate_error(status, str(error.get("message") or error.get("type") or "stream error"))


def translate_error(status: int, message: str, retry_after: float | None = None) -> GatewayError:
    """The §3 error for an Anthropic error status and message; an over-long prompt (400 `prompt
    is too long: N tokens > M maximum`) gets OpenAI's code `context_length_exceeded`, on which
    clients trim or summarise their history."""
    error = from_upstream_status(status, message, retry_after)
    if status in (400, 413) and CONTEXT_LENGTH_ERROR.search(message):
        error.code = "context_length_exceeded"
    return error


class ClaudeStream(StreamTranslator):
    """Anthropic stream events → OpenAI chunks, one event at a time.

    `message_start` → the role chunk (and the prompt token count); text blocks' `text_delta` →
    `content` deltas; thinking blocks' `thinking_delta` → `reasoning_content` deltas (signatures
    and redacted thinking are not sent); a `tool_use` block → a `tool_calls` delta with `index`, `id`, `type` and
    `name`, then its `input_json_delta` fragments as `arguments` deltas; `message_delta` → the
    chunk carrying `finish_reason`; `error` → GatewayError; `ping` and unknown events → nothing.
    With `json_tool`, the `json_response` tool's argument fragments are `content` deltas instead
    (`response_format: json_object`, see `claude_request.JSON_TOOL`), and it finishes as `stop`.
    `finish` gives the usage chunk; a stream that ended before its `stop_reason` raises 502.
    """

    def __init__(self, model: str, json_tool: bool = False) -> None:
        self.chunks = oai.ChunkBuilder(model)
        self.usage: dict[str, Any] = {}
        self.tools: dict[int, dict[str, Any]] = {}  # content block index → {index, input, sent, json}
        self.json_tool = json_tool
        self.calls = 0
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
        if block.get("type") == "thinking":
            return [self.chunks.chunk({"reasoning_content": block["thinking"]})] if block.get("thinking") else []
        if block.get("type") != "tool_use":
            return []  # redacted thinking and server-tool blocks have no OpenAI counterpart
        if self.json_tool and block.get("name") == JSON_TOOL_NAME:  # its input is the answer's content
            self.tools[data.get("index", -1)] = {"input": block.get("input"), "sent": False, "json": True}
            return []
        index = self.calls
        self.calls += 1
        self.tools[data.get("index", index)] = {"index": index, "input": block.get("input"), "sent": False, "json": False}
        call = oai.tool_call(block.get("id", ""), block.get("name", ""), "", index)
        return [self.chunks.chunk({"tool_calls": [call]})]

    def _arguments_chunk(self, tool: dict, fragment: str) -> dict:
        tool["sent"] = True
        if tool["json"]:
            return self.chunks.chunk({"content": fragment})
        return self.chunks.chunk({"tool_calls": [{"index": tool["index"], "function": {"arguments": fragment}}]})

    def _on_content_block_delta(self, data: dict) -> list[dict]:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self.chunks.chunk({"content": delta["text"]})]
        if delta.get("type") == "thinking_delta" and delta.get("thinking"):
            return [self.chunks.chunk({"reasoning_content": delta["thinking"]})]
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
        reason = finish_reason(stop_reason)
        return [self.chunks.chunk({}, "stop" if reason == "tool_calls" and not self.calls else reason)]

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
        """The Anthropic Messages body for an OpenAI chat completion request (module tables,
        converters in `adapters.claude_request`).

        Raises 400 (GatewayError) for what Anthropic cannot express: `n` > 1, non-function
        tools, unsupported content parts or file types, legacy `function` messages, an unknown
        `reasoning_effort`.
        """
        body = self.prepared_body(request)
        if body.get("n") not in (None, 1):
            raise invalid_request("A claude upstream answers with one choice only; 'n' must be 1.", param="n")
        model = body.get("model")
        system, messages = req.translate_messages(body["messages"])
        requested_max = body.get("max_completion_tokens") or body.get("max_tokens")
        thinking, effort, max_tokens = req.thinking(body.get("reasoning_effort"), model, requested_max or DEFAULT_MAX_TOKENS, bool(requested_max))
        choice = req.tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls")) if body.get("tools") else None
        if thinking and thinking["type"] != "disabled" and ((choice or {}).get("type") in ("any", "tool") or req.in_tool_loop(messages)):
            # Anthropic refuses thinking with a forced tool, and a tool loop's next turn needs the
            # signed thinking block back, which OpenAI clients do not keep: answer without thinking.
            thinking, effort = None, None
        out: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
        if system:
            out["system"] = system
        if body.get("top_k") is None and self.config.top_k is not None:
            body["top_k"] = self.config.top_k
        if body.get("temperature") is not None and body.get("top_p") is not None:
            # Claude 4.5+ models refuse both; keep the one the client set (temperature if both).
            client_set_top_p_only = request.body.get("top_p") is not None and request.body.get("temperature") is None
            body.pop("temperature" if client_set_top_p_only else "top_p")
        thinking_on = bool(thinking) and thinking["type"] != "disabled"
        if req.refuses_sampling(model) or thinking_on:
            # Opus 4.7+ / 5.x refuse all three; thinking takes no temperature or top_k, and a
            # top_p of 0.95..1 only (extended thinking docs)
            keep_top_p = thinking_on and not req.refuses_sampling(model) and (body.get("top_p") or 1) >= 0.95
            for name in ("temperature", "top_k") if keep_top_p else ("temperature", "top_k", "top_p"):
                body.pop(name, None)
        for name, (anthropic_name, convert) in req.REQUEST_FIELDS.items():
            if body.get(name) is not None and (value := convert(body[name])) is not None:
                out[anthropic_name] = value
        if "tools" not in out and (stubs := req.stub_tools(messages)):
            out["tools"], choice = stubs, {"type": "none"}
        if "tools" in out and choice:
            out["tool_choice"] = choice
        if (body.get("response_format") or {}).get("type") == "json_object":
            if "tools" not in out and not thinking_on:
                out["tools"], out["tool_choice"] = [req.JSON_TOOL], {"type": "tool", "name": req.JSON_TOOL["name"]}
            else:  # a forced tool would replace the client's tools, and thinking refuses one
                out["system"] = f"{system}\n\n{req.JSON_OBJECT_INSTRUCTION}" if system else req.JSON_OBJECT_INSTRUCTION
        if thinking:
            out["thinking"] = thinking
        if effort:
            out["output_config"] = {**out.get("output_config", {}), "effort": effort}
        if stream:
            out["stream"] = True
        return out

    def translate_response(self, data: Any, request: ChatRequest) -> dict[str, Any]:
        """A `chat.completion` from an Anthropic `message`. Raises 502 when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise from_upstream_status(502, "the upstream's answer is not an Anthropic message")
        json_tool = req.answers_with_json_tool(request.body)
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict] = []
        for block in data["content"]:
            if block.get("type") == "text":
                texts.append(block.get("text") or "")
            elif block.get("type") == "thinking":
                thoughts.append(block.get("thinking") or "")
            elif block.get("type") == "tool_use" and json_tool and block.get("name") == req.JSON_TOOL["name"]:
                texts = [_arguments(block.get("input"))]  # the JSON object is the answer
            elif block.get("type") == "tool_use":
                calls.append(oai.tool_call(block.get("id", ""), block.get("name", ""), _arguments(block.get("input"))))
        content = "".join(texts) if texts or not calls else None
        message = oai.message(content, calls)
        if any(thoughts):
            message["reasoning_content"] = "".join(thoughts)
        reason = finish_reason(data.get("stop_reason"))
        choice = oai.choice(0, message, "stop" if reason == "tool_calls" and not calls else reason)
        return oai.chat_completion(
            data.get("model") or self.model_for(request), [choice], translate_usage(data.get("usage")), id_=data.get("id")
        )

    def stream_translator(self, request: ChatRequest) -> ClaudeStream:
        return ClaudeStream(self.model_for(request) or "", json_tool=req.answers_with_json_tool(request.body))

    def translate_error(self, status: int, body: bytes, headers: Any) -> GatewayError:
        return translate_error(status, error_message_from_body(body), parse_retry_after(headers.get("retry-after")))
