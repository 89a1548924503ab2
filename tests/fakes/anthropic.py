"""A fake Anthropic Messages API upstream.

Speaks https://docs.anthropic.com/en/api/messages: `POST /v1/messages` with the key in `x-api-key`
(or `Authorization: Bearer`, which recent official SDKs send) and an `anthropic-version` header,
answering a `message` object or, with `stream: true`, the SSE event stream of https://docs.anthropic.com/en/api/messages-streaming (`message_start`, `ping`,
`content_block_start` / `content_block_delta` (`text_delta`, `input_json_delta`) /
`content_block_stop`, `message_delta`, `message_stop`, `error`). Errors use Anthropic's body
`{"type": "error", "error": {"type", "message"}}` (https://docs.anthropic.com/en/api/errors).

Like the real API it refuses what the Messages API refuses, so a gateway translation that is
wrong fails loudly: unknown top-level fields, missing `max_tokens`, roles other than `user` /
`assistant`, turns that do not alternate, empty text blocks, `tool_result` blocks that are not
first in their user turn or do not answer the previous turn's `tool_use` blocks, bad image
sources. Also, each with its source:

- `temperature` outside 0..1 ("Ranges from 0.0 to 1.0", `message_create_params.py` of
  anthropic-sdk-python@009b035);
- tool ids not matching `^[a-zA-Z0-9_-]+$` (the API's pydantic pattern error quoted in provider
  switching reports, see gateway/tool_ids.py);
- whitespace-only text blocks and a final assistant turn ending in whitespace
  (`text content blocks must contain non-whitespace text`, `final assistant content cannot end
  with trailing whitespace`: LibreChat-AI/agents PR #124, vercel/ai PR #2124);
- `tool_use` / `tool_result` blocks without `tools` (anthropics/anthropic-sdk-python#494);
- whitespace-only stop sequences (BerriAI/litellm#3286);
- any of `temperature` / `top_p` / `top_k` on Claude Opus 4.7+ and 5.x models ("`temperature` is
  deprecated for this model": oumi-ai/oumi PR #2538 with live calls, BerriAI/litellm PR #37868);
- base64 documents other than PDF; plain-text sources other than `text/plain`
  (`base64_pdf_source_param.py`, `plain_text_source_param.py`);
- `thinking` with a budget under 1024 or not below `max_tokens`, with `temperature` / `top_k`, or
  with a forced `tool_choice` (`thinking_config_enabled_param.py`; extended-thinking docs:
  "Thinking isn't compatible with temperature or top_k modifications ... you can set top_p to
  values between 1 and 0.95 ... only supports tool_choice auto or none"); an `output_config.effort` outside low..max (`output_config_param.py`).

The request's `model` picks a scenario, so one fake serves many tests at once:

- any model: answers `Echo: <last user text>` (images count as `[image]`); with `tools` (and a
  `tool_choice` other than `none`), says `Let me check.` (only with `auto`: a forced tool comes
  alone) and calls the chosen (else the first) tool with `{"city": "Paris"}`; when the last user turn carries `tool_result` blocks, answers
  `Tool said: <their text>`. The answer is cut at the first `stop_sequences` hit
  (`stop_sequence`) or after `max_tokens` words (`max_tokens`).
- `status-NNN`: HTTP NNN with the error type Anthropic uses for it (429 adds `retry-after: 7`).
- `refusal`: `stop_reason: refusal`, no content.
- `cached`: usage with cache reads (100) and writes (20).
- `stream-error`: a stream that sends some text and then an `overloaded_error` event.
- `truncated-stream`: a stream that sends some text and then ends (connection closed early).
- `leak-secret`: a 400 whose message quotes the API key it was sent.
- `too-long`: the 400 Anthropic sends for an over-long prompt (`prompt is too long: N tokens > M maximum`).

With `thinking` enabled or adaptive (and not `disabled`), the answer starts with a `thinking`
block (`Let me think.`, with a `signature`; streamed as `thinking_delta` + `signature_delta`) and
usage has `output_tokens_details.thinking_tokens` (3, also counted in `output_tokens`).

`POST /v1/messages/count_tokens` answers `{input_tokens}` (JSON length of `messages` / 4).

Usage: `input_tokens` 25, `output_tokens` the answer's word count (+5 per tool call).
"""

from __future__ import annotations

import json
import re
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.recorder import Recorder

API_KEY = "sk-ant-api03-fake-upstream-key-0123456789"
INPUT_TOKENS = 25

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               504: "timeout_error", 529: "overloaded_error"}

# The Messages API's top-level request fields (anthropic SDK `MessageCreateParams`).
REQUEST_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p", "top_k",
    "tools", "tool_choice", "thinking", "output_config", "service_tier", "container", "cache_control", "inference_geo",
    "mcp_servers", "context_management", "diagnostics", "speed",
})
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
TOOL_ID_ERROR = "String should match pattern '^[a-zA-Z0-9_-]+$'"
EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
THINKING_TEXT = "Let me think."
THINKING_SIGNATURE = "EqQBCkYIBxgCKkBfakeSignature+/="
THINKING_TOKENS = 3


def anthropic_error(status: int, message: str) -> JSONResponse:
    """An Anthropic error response."""
    headers = {"retry-after": "7"} if status == 429 else {}
    headers["request-id"] = "req_fake"
    body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}, "request_id": "req_fake"}
    return JSONResponse(body, status_code=status, headers=headers)


class InvalidRequest(Exception):
    """What the real API would answer with 400 invalid_request_error."""


def _check_blocks(content, where: str) -> list[dict]:
    if isinstance(content, str):
        if not content:
            raise InvalidRequest(f"{where}: text content blocks must be non-empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise InvalidRequest(f"{where}: all messages must have non-empty content")
    for k, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        at = f"{where}.{k}"
        if kind == "text":
            if not block.get("text"):
                raise InvalidRequest(f"{at}: text content blocks must be non-empty")
            if not block["text"].strip():
                raise InvalidRequest("messages: text content blocks must contain non-whitespace text")
        elif kind in ("image", "document"):
            source = block.get("source") or {}
            if source.get("type") == "base64":
                if kind == "image" and source.get("media_type") not in IMAGE_TYPES:
                    raise InvalidRequest(f"{at}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
                if kind == "document" and source.get("media_type") != "application/pdf":
                    raise InvalidRequest(f"{at}.source.base64.media_type: Input should be 'application/pdf'")
                if not source.get("data"):
                    raise InvalidRequest(f"{at}.source.data: Field required")
            elif source.get("type") == "text" and kind == "document":
                if source.get("media_type") != "text/plain" or not isinstance(source.get("data"), str):
                    raise InvalidRequest(f"{at}.source.text.media_type: Input should be 'text/plain'")
            elif source.get("type") == "url":
                if not str(source.get("url", "")).startswith(("http://", "https://")):
                    raise InvalidRequest(f"{at}.source.url: invalid URL")
            else:
                raise InvalidRequest(f"{at}.source: Input tag does not match any of the expected tags: 'base64', 'url'")
        elif kind == "tool_use":
            if not isinstance(block.get("input"), dict) or not block.get("id") or not block.get("name"):
                raise InvalidRequest(f"{at}: tool_use blocks need id, name and an object input")
            if not TOOL_ID.match(block["id"]):
                raise InvalidRequest(f"{at}.tool_use.id: {TOOL_ID_ERROR}")
        elif kind == "tool_result":
            if not block.get("tool_use_id"):
                raise InvalidRequest(f"{at}.tool_use_id: Field required")
            if not TOOL_ID.match(block["tool_use_id"]):
                raise InvalidRequest(f"{at}.tool_result.tool_use_id: {TOOL_ID_ERROR}")
        elif kind in ("thinking", "redacted_thinking"):
            if not (block.get("signature") if kind == "thinking" else block.get("data")):
                raise InvalidRequest(f"{at}: thinking blocks must be passed back with their signature")
        else:
            raise InvalidRequest(f"{at}: Input tag '{kind}' found using 'type' does not match any of the expected tags")
    return content


def validate(body) -> None:
    """Raise InvalidRequest where the Messages API would answer 400."""
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    for name in body:
        if name not in REQUEST_FIELDS:
            raise InvalidRequest(f"{name}: Extra inputs are not permitted")
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            raise InvalidRequest(f"{name}: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        raise InvalidRequest("max_tokens: Input should be a valid integer greater than 0")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required")
    if "system" in body and not isinstance(body["system"], (str, list)):
        raise InvalidRequest("system: Input should be a valid string or list of text blocks")
    if "stop_sequences" in body and not isinstance(body["stop_sequences"], list):
        raise InvalidRequest("stop_sequences: Input should be a valid list")
    if any(not str(s).strip() for s in body.get("stop_sequences") or []):
        raise InvalidRequest("stop_sequences: each stop sequence must contain non-whitespace")
    if re.search(r"opus-4-[7-9]|-(opus|sonnet|haiku)-[5-9]", body["model"]):
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                raise InvalidRequest(f"`{name}` is deprecated for this model.")
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise InvalidRequest("temperature: range: 0..1")
    _check_thinking(body)
    _check_output_config(body.get("output_config"))
    if "metadata" in body and set(body["metadata"]) - {"user_id"}:
        raise InvalidRequest("metadata: Extra inputs are not permitted")
    pending_tool_uses: set[str] = set()
    previous_role = None
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if role == previous_role:
            raise InvalidRequest("messages: roles must alternate between \"user\" and \"assistant\"")
        blocks = _check_blocks(message.get("content"), f"messages.{i}.content")
        kinds = [b["type"] for b in blocks]
        if role == "user":
            results = {b["tool_use_id"] for b in blocks if b["type"] == "tool_result"}
            if any(k != "tool_result" for k in kinds[: kinds.count("tool_result")]):
                raise InvalidRequest(f"messages.{i}: tool_result blocks must come first in the user message")
            if results - pending_tool_uses:
                raise InvalidRequest(f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {sorted(results - pending_tool_uses)}")
            if pending_tool_uses - results:
                raise InvalidRequest(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {sorted(pending_tool_uses - results)}")
            pending_tool_uses = set()
        else:
            if "tool_result" in kinds:
                raise InvalidRequest(f"messages.{i}: tool_result blocks are only allowed in user messages")
            pending_tool_uses = {b["id"] for b in blocks if b["type"] == "tool_use"}
        previous_role = role
    last = messages[-1]
    if last.get("role") == "assistant":
        last_blocks = _check_blocks(last.get("content"), "messages")
        if last_blocks[-1]["type"] == "text" and last_blocks[-1]["text"] != last_blocks[-1]["text"].rstrip():
            raise InvalidRequest("messages: final assistant content cannot end with trailing whitespace")
    tools = body.get("tools") or []
    has_tool_blocks = any(isinstance(m.get("content"), list) and any(b.get("type") in ("tool_use", "tool_result") for b in m["content"])
                          for m in messages)
    if has_tool_blocks and not tools:
        raise InvalidRequest("Requests which include `tool_use` or `tool_result` blocks must define tools.")
    for j, tool in enumerate(tools):
        if not tool.get("name") or not isinstance(tool.get("input_schema"), dict) or tool["input_schema"].get("type") != "object":
            raise InvalidRequest(f"tools.{j}: a tool needs a name and an input_schema of type 'object'")
        if set(tool) - {"name", "description", "input_schema", "cache_control", "type", "strict"}:
            raise InvalidRequest(f"tools.{j}: Extra inputs are not permitted")
    choice = body.get("tool_choice")
    if choice is not None:
        if not tools:
            raise InvalidRequest("tool_choice may only be specified while providing tools")
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            raise InvalidRequest("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        if choice["type"] == "tool" and choice.get("name") not in {t["name"] for t in tools}:
            raise InvalidRequest("tool_choice.name: no tool of that name")


def _thinking_on(body: dict) -> bool:
    return (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")


def _check_thinking(body: dict) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "adaptive", "disabled", "between_tools"):
        raise InvalidRequest("thinking.type: Input should be 'enabled', 'adaptive', 'disabled' or 'between_tools'")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise InvalidRequest("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if budget >= body["max_tokens"]:
            raise InvalidRequest("`max_tokens` must be greater than `thinking.budget_tokens`")
    if kind in ("enabled", "adaptive"):
        if body.get("temperature") not in (None, 1):
            raise InvalidRequest("`temperature` may only be set to 1 when thinking is enabled")
        if body.get("top_k") is not None:
            raise InvalidRequest("`top_k` is not compatible with thinking")
        if body.get("top_p") is not None and not 0.95 <= body["top_p"] <= 1:
            raise InvalidRequest("`top_p` must be between 0.95 and 1 when thinking is enabled")
        if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
            raise InvalidRequest("Thinking may not be enabled when tool_choice forces tool use.")


def _check_output_config(config) -> None:
    if config is None:
        return
    if set(config) - {"effort", "format"}:
        raise InvalidRequest("output_config: Extra inputs are not permitted")
    if config.get("effort") is not None and config["effort"] not in EFFORTS:
        raise InvalidRequest("output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
    form = config.get("format")
    if form is not None and (form.get("type") != "json_schema" or not isinstance(form.get("schema"), dict)):
        raise InvalidRequest("output_config.format: expected {type: json_schema, schema}")


def _text_of_blocks(blocks) -> str:
    if isinstance(blocks, str):
        return blocks
    parts = []
    for block in blocks or []:
        if block.get("type") == "text":
            parts.append(block["text"])
        elif block.get("type") == "image":
            parts.append("[image]")
        elif block.get("type") == "tool_result":
            parts.append(_text_of_blocks(block.get("content")))
    return " ".join(parts)


class FakeAnthropic:
    """The fake. `api_key`: the key it accepts (None: any); `recorder`: what it received."""

    def __init__(self, api_key: str | None = API_KEY) -> None:
        self.api_key = api_key
        self.recorder = Recorder()
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"]),
                                     Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"])])

    @staticmethod
    def _bearer(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    async def count_tokens(self, request: Request) -> Response:
        """`POST /v1/messages/count_tokens` (https://docs.anthropic.com/en/api/messages-count-tokens):
        `{input_tokens}`; `max_tokens` is not a field of this request."""
        received = await self.recorder.record(request)
        key = request.headers.get("x-api-key") or self._bearer(request)
        if self.api_key is not None and key != self.api_key:
            return anthropic_error(401, "invalid x-api-key")
        body = received.body
        if not isinstance(body, dict) or "model" not in body or not isinstance(body.get("messages"), list):
            return anthropic_error(400, "messages: Field required")
        if "max_tokens" in body:
            return anthropic_error(400, "max_tokens: Extra inputs are not permitted")
        return JSONResponse({"input_tokens": len(json.dumps(body["messages"])) // 4})

    async def messages(self, request: Request) -> Response:
        received = await self.recorder.record(request)
        key = request.headers.get("x-api-key") or self._bearer(request)
        if self.api_key is not None and key != self.api_key:
            return anthropic_error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return anthropic_error(400, "anthropic-version: header is required")
        body = received.body
        try:
            validate(body)
        except InvalidRequest as exc:
            return anthropic_error(400, str(exc))
        model = body["model"]
        if model.startswith("status-"):
            status = int(model.split("-", 1)[1])
            return anthropic_error(status, {529: "Overloaded", 429: "Number of request tokens has exceeded your per-minute rate limit"}.get(status, f"Scenario error {status}"))
        if model == "leak-secret":
            return anthropic_error(400, f"Invalid request made with key {key}")
        if model == "too-long":
            return anthropic_error(400, "prompt is too long: 210345 tokens > 200000 maximum")
        message = self._answer(body)
        if body.get("stream"):
            return StreamingResponse(self._stream(message, model), media_type="text/event-stream")
        return JSONResponse(message, headers={"request-id": "req_fake"})

    def _answer(self, body: dict) -> dict:
        """The full `message` this request gets (the stream sends the same, in events)."""
        model = body["model"]
        last = body["messages"][-1]
        last_blocks = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
        results = [b for b in last_blocks if b["type"] == "tool_result"]
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {"type": "auto"}
        content: list[dict] = []
        stop_reason, stop_sequence = "end_turn", None
        if model == "refusal":
            stop_reason = "refusal"
        elif results:
            content.append({"type": "text", "text": "Tool said: " + " ".join(_text_of_blocks(r.get("content")) for r in results)})
        elif tools and choice["type"] != "none":
            name = choice.get("name") or tools[0]["name"]
            if choice["type"] == "auto":  # a forced tool comes without text before it (tool use docs:
                content.append({"type": "text", "text": "Let me check."})  # "will not emit a chain-of-thought text")
            content.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": name, "input": {"city": "Paris"}})
            stop_reason = "tool_use"
        else:
            content.append({"type": "text", "text": f"Echo: {_text_of_blocks(last_blocks)}"})
        if content and content[0]["type"] == "text" and stop_reason == "end_turn":
            text = content[0]["text"]
            for sequence in body.get("stop_sequences") or []:
                if sequence in text:
                    text, stop_reason, stop_sequence = text[: text.index(sequence)], "stop_sequence", sequence
                    break
            words = text.split(" ")
            if len(words) > body["max_tokens"]:
                text, stop_reason = " ".join(words[: body["max_tokens"]]), "max_tokens"
            content[0]["text"] = text
        output = sum(len(b["text"].split(" ")) if b["type"] == "text" else 5 for b in content)
        usage = {"input_tokens": INPUT_TOKENS, "output_tokens": output, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if _thinking_on(body):
            content.insert(0, {"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE})
            usage["output_tokens"] += THINKING_TOKENS
            usage["output_tokens_details"] = {"thinking_tokens": THINKING_TOKENS}
        if model == "cached":
            usage.update(cache_creation_input_tokens=20, cache_read_input_tokens=100)
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage,
        }

    async def _stream(self, message: dict, model: str):
        def event(name: str, data: dict) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**message["usage"], "output_tokens": 1}}
        yield event("message_start", {"type": "message_start", "message": start})
        yield event("ping", {"type": "ping"})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                yield event("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
                words = block["text"].split(" ")
                for n, word in enumerate(words):
                    piece = word if n == len(words) - 1 else word + " "
                    yield event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})
                if model == "stream-error":
                    yield event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    return
                if model == "truncated-stream":
                    return
            elif block["type"] == "thinking":
                yield event("content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
                for piece in ("Let me ", "think."):
                    yield event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": piece}})
                yield event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                    "delta": {"type": "signature_delta", "signature": block["signature"]}})
            else:
                yield event("content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
                arguments = json.dumps(block["input"])
                yield event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": ""}})
                for i in range(0, len(arguments), 6):
                    yield event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                        "delta": {"type": "input_json_delta", "partial_json": arguments[i:i + 6]}})
            yield event("content_block_stop", {"type": "content_block_stop", "index": index})
        final_usage = {k: v for k, v in message["usage"].items() if k in ("output_tokens", "output_tokens_details")}
        yield event("message_delta", {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
                                      "usage": final_usage})
        yield event("message_stop", {"type": "message_stop"})
