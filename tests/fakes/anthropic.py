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
sources.

The request's `model` picks a scenario, so one fake serves many tests at once:

- any model: answers `Echo: <last user text>` (images count as `[image]`); with `tools` (and a
  `tool_choice` other than `none`), says `Let me check.` and calls the chosen (else the first)
  tool with `{"city": "Paris"}`; when the last user turn carries `tool_result` blocks, answers
  `Tool said: <their text>`. The answer is cut at the first `stop_sequences` hit
  (`stop_sequence`) or after `max_tokens` words (`max_tokens`).
- `status-NNN`: HTTP NNN with the error type Anthropic uses for it (429 adds `retry-after: 7`).
- `refusal`: `stop_reason: refusal`, no content.
- `cached`: usage with cache reads (100) and writes (20).
- `stream-error`: a stream that sends some text and then an `overloaded_error` event.
- `truncated-stream`: a stream that sends some text and then ends (connection closed early).
- `leak-secret`: a 400 whose message quotes the API key it was sent.

`POST /v1/messages/count_tokens` answers `{input_tokens}` (JSON length of `messages` / 4).

Usage: `input_tokens` 25, `output_tokens` the answer's word count (+5 per tool call).
"""

from __future__ import annotations

import json
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
        elif kind in ("image", "document"):
            source = block.get("source") or {}
            if source.get("type") == "base64":
                if kind == "image" and source.get("media_type") not in IMAGE_TYPES:
                    raise InvalidRequest(f"{at}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
                if not source.get("data"):
                    raise InvalidRequest(f"{at}.source.data: Field required")
            elif source.get("type") == "url":
                if not str(source.get("url", "")).startswith(("http://", "https://")):
                    raise InvalidRequest(f"{at}.source.url: invalid URL")
            else:
                raise InvalidRequest(f"{at}.source: Input tag does not match any of the expected tags: 'base64', 'url'")
        elif kind == "tool_use":
            if not isinstance(block.get("input"), dict) or not block.get("id") or not block.get("name"):
                raise InvalidRequest(f"{at}: tool_use blocks need id, name and an object input")
        elif kind == "tool_result":
            if not block.get("tool_use_id"):
                raise InvalidRequest(f"{at}.tool_use_id: Field required")
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
    tools = body.get("tools") or []
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
            content.append({"type": "text", "text": "Let me check."})
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
            else:
                yield event("content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
                arguments = json.dumps(block["input"])
                yield event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": ""}})
                for i in range(0, len(arguments), 6):
                    yield event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                        "delta": {"type": "input_json_delta", "partial_json": arguments[i:i + 6]}})
            yield event("content_block_stop", {"type": "content_block_stop", "index": index})
        yield event("message_delta", {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
                                      "usage": {"output_tokens": message["usage"]["output_tokens"]}})
        yield event("message_stop", {"type": "message_stop"})
