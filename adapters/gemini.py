"""`gemini`: the Google Gemini API (`generateContent` / `streamGenerateContent`).

Follows the Gemini API reference, v1beta (https://ai.google.dev/api/generate-content):

- `POST {api_base}/v1beta/models/{model}:generateContent` answers one `GenerateContentResponse`;
- `POST {api_base}/v1beta/models/{model}:streamGenerateContent?alt=sse` streams them, one per
  SSE `data:` event (real streaming: each event is translated as it arrives);
- the key travels in the `x-goog-api-key` header, never in the URL;
- errors are `{"error": {"code", "message", "status", "details": [{"reason", ...}]}}`
  (https://ai.google.dev/gemini-api/docs/troubleshooting).

The mapping, OpenAI Chat Completions on the left, Gemini on the right:

| OpenAI                                   | Gemini                                                  |
|------------------------------------------|---------------------------------------------------------|
| `system` / `developer` messages          | `systemInstruction.parts[].text`                        |
| `user` / `assistant` roles               | `contents[].role` `user` / `model` (runs of one role merged) |
| text part, `image_url` (data URL / URL)  | `{text}`, `{inlineData: {mimeType, data}}` / `{fileData: {mimeType, fileUri}}` (https URLs of a known MIME type, `gs://`, Files API; others 400) |
| assistant `tool_calls[]`                 | `model` `functionCall` parts `{id?, name, args}` + `thoughtSignature` (from the id) |
| `tool` message (by `tool_call_id`)       | `user` `functionResponse` part `{id?, name, response}`  |
| `tools[].function`                       | `tools[].functionDeclarations[]` (`parametersJsonSchema`) |
| `tool_choice`                            | `toolConfig.functionCallingConfig` (`AUTO`/`NONE`/`ANY`, `allowedFunctionNames`) |
| sampling fields (`GENERATION_CONFIG`)    | `generationConfig.*` (penalties only on 1.x / 2.0: 2.5+ refuse them) |
| `reasoning_effort`                       | `generationConfig.thinkingConfig` (`thinkingBudget` on 2.5, `thinkingLevel` on 3; `includeThoughts`) |
| `message.reasoning_content`, `delta.reasoning_content` | thought parts (`thought: true`)         |
| `choices[]` / `finish_reason`            | `candidates[]` / `finishReason` (`FINISH_REASONS`)      |
| `usage`                                  | `usageMetadata` (thoughts count as completion tokens)   |

Tool call ids carry Gemini's own `functionCall.id` (`gcall_<id>`, else a fresh `call_<hex>`)
and its `thoughtSignature` (after `__ts__`), restored when the client sends the assistant
message back: see `adapters/gemini_request.py`, where the request converters live too.
An over-long prompt's 400 gets the code `context_length_exceeded`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from httpx_sse import ServerSentEvent

from adapters import gemini_request as req
from gateway import openai_format as oai
from gateway.adapter import AdapterConfig, Completion, HTTPAdapter, StreamTranslator
from gateway.errors import (
    GatewayError,
    from_upstream_status,
    parse_retry_after,
    upstream_auth_error,
)
from gateway.registry import register
from gateway.request import ChatRequest

GEMINI_API_BASE = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"

# Gemini `finishReason` -> OpenAI `finish_reason` (a candidate with a functionCall is `tool_calls`).
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}

# The Gemini error `details[].reason` that means the gateway's own key was refused.
AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})

# A 400 INVALID_ARGUMENT for an over-long prompt: `The input token count (N) exceeds the maximum
# number of tokens allowed (M).`
CONTEXT_LENGTH_ERROR = re.compile(r"input token count.*exceeds the maximum number of tokens", re.IGNORECASE | re.DOTALL)


class GeminiConfig(AdapterConfig):
    """`api_key` (sent as `x-goog-api-key`), `api_base` (default
    `https://generativelanguage.googleapis.com`), `model` (forced; default `gemini-2.5-flash`),
    `embedding_model` (forced for `/v1/embeddings`; else the request's, else `gemini-embedding-001`)."""

    api_key: str
    embedding_model: str | None = None


# -- response: Gemini -> OpenAI ----------------------------------------------------------------


def translate_usage(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI `usage` from `usageMetadata`: prompt = `promptTokenCount`, completion =
    `candidatesTokenCount + thoughtsTokenCount` (thoughts also as `reasoning_tokens`)."""
    if not metadata:
        return None
    thoughts = int(metadata.get("thoughtsTokenCount") or 0)
    usage: dict[str, Any] = oai.usage(metadata.get("promptTokenCount"), int(metadata.get("candidatesTokenCount") or 0) + thoughts)
    usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    usage["prompt_tokens_details"] = {"cached_tokens": int(metadata.get("cachedContentTokenCount") or 0)}
    return usage


def finish_reason(candidate: dict[str, Any], called: bool) -> str | None:
    """OpenAI `finish_reason` for a candidate (`tool_calls` when it called a function)."""
    reason = candidate.get("finishReason")
    if not reason:
        return None
    return "tool_calls" if called else FINISH_REASONS.get(reason, "stop")


def _read_candidate(candidate: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]]]:
    """A candidate's (visible text, thought summary text, OpenAI `tool_calls` without `index`).
    A call's id carries Gemini's `functionCall.id` and `thoughtSignature` (`req.tool_call_id`)."""
    text, thoughts, calls = [], [], []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "functionCall" in part:
            call = part["functionCall"]
            call_id = req.tool_call_id(call.get("id"), part.get("thoughtSignature"))
            calls.append(oai.tool_call(call_id, call.get("name", ""), orjson.dumps(call.get("args") or {}).decode()))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else text).append(part["text"])
    return "".join(text), "".join(thoughts), calls


def blocked_prompt(data: dict[str, Any]) -> GatewayError | None:
    """A 400 `content_filter` error when Gemini blocked the prompt (no candidates, `promptFeedback.blockReason`)."""
    reason = (data.get("promptFeedback") or {}).get("blockReason")
    if reason and not data.get("candidates"):
        return GatewayError(
            400,
            f"Gemini blocked the prompt (blockReason: {reason}); no answer was generated.",
            code="content_filter",
            param="messages",
        )
    return None


def translate_error(status: int, body: Any, retry_after: float | None = None) -> GatewayError:
    """A §3 error for a Gemini error body (`{"error": {code, message, status, details}}`, maybe in a
    one-element list). `API_KEY_INVALID` (sent with 400) means our key was refused: 502
    `upstream_auth_error`; otherwise the HTTP status decides (`from_upstream_status`). A 429's
    `RetryInfo.retryDelay` (e.g. `"37s"`) stands in for a missing `Retry-After`."""
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = body if isinstance(body, str) else ""
        return from_upstream_status(status, text[:500], retry_after)
    message = str(error.get("message") or error.get("status") or "")
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    if any(d.get("reason") in AUTH_REASONS for d in details):
        return upstream_auth_error(message)
    if retry_after is None:
        for detail in details:
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                retry_after = parse_retry_after(delay[:-1])
    error = from_upstream_status(status, message, retry_after)
    if status == 400 and CONTEXT_LENGTH_ERROR.search(message):
        error.code = "context_length_exceeded"
    return error


class GeminiStream(StreamTranslator):
    """Turns `streamGenerateContent?alt=sse` events into OpenAI chunks as they arrive.

    Per candidate (= choice index): a role chunk first, then text deltas, one complete
    `tool_calls` delta per `functionCall` part (`index`, `id`, `name`, `arguments`), then the
    finish chunk. `usageMetadata` (repeated, cumulative, in events) becomes one final usage chunk.
    """

    def __init__(self, model: str) -> None:
        self.chunks = oai.ChunkBuilder(model)
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}
        self._usage: dict[str, Any] | None = None

    def feed(self, event: ServerSentEvent) -> list[dict[str, Any]]:
        if not event.data.strip():
            return []
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise from_upstream_status(502, "the upstream sent a stream event that is not JSON") from None
        if isinstance(data, list) and data:
            data = data[0]
        if not isinstance(data, dict):
            return []
        if "error" in data:  # an error after the stream started
            error = data["error"] if isinstance(data["error"], dict) else {}
            code = error.get("code")
            raise translate_error(code if isinstance(code, int) and code >= 400 else 500, data)
        if (error := blocked_prompt(data)) is not None:
            raise error
        if data.get("usageMetadata"):
            self._usage = translate_usage(data["usageMetadata"])
        out = []
        for position, candidate in enumerate(data.get("candidates") or []):
            index = int(candidate.get("index", position))
            if index not in self._started:
                self._started.add(index)
                out.append(self.chunks.chunk({"role": "assistant", "content": ""}, index=index))
            text, thoughts, calls = _read_candidate(candidate)
            if thoughts:
                out.append(self.chunks.chunk({"reasoning_content": thoughts}, index=index))
            if text:
                out.append(self.chunks.chunk({"content": text}, index=index))
            for call in calls:
                n = self._calls.get(index, 0)
                self._calls[index] = n + 1
                out.append(self.chunks.chunk({"tool_calls": [{"index": n, **call}]}, index=index))
            reason = finish_reason(candidate, index in self._calls)
            if reason:
                out.append(self.chunks.chunk({}, reason, index=index))
        return out

    def finish(self) -> list[dict[str, Any]]:
        return [self.chunks.usage_chunk(self._usage)] if self._usage else []


@register("gemini")
class GeminiAdapter(HTTPAdapter):
    """Google Gemini through `generateContent` / `streamGenerateContent` (v1beta)."""

    Config = GeminiConfig
    default_model = "gemini-2.5-flash"

    def __init__(self, entry, runtime) -> None:
        super().__init__(entry, runtime)
        self.api_root = f"{self.config.api_base or GEMINI_API_BASE}/{API_VERSION}"
        self._base = f"{self.api_root}/models"

    def fixed_headers(self) -> dict[str, str]:
        return {"content-type": "application/json", "x-goog-api-key": self.config.api_key}

    native_family = "gemini"

    async def embed(self, request) -> dict[str, Any]:
        """`/v1/embeddings` through `batchEmbedContents` (`adapters.gemini_embeddings`)."""
        from adapters import gemini_embeddings

        return await gemini_embeddings.embed(self, request)

    def native_request(self, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        """`{api_base}/{path}` (e.g. `v1beta/models/M:generateContent`) with `x-goog-api-key`."""
        url = f"{self.config.api_base or GEMINI_API_BASE}/{path}"
        return (f"{url}?{urlencode(query)}" if query else url), {**headers, "x-goog-api-key": self.config.api_key}

    def model_for(self, request: ChatRequest) -> str:
        """The config's `model`, else the request's, else `gemini-2.5-flash`; a `models/` prefix is dropped."""
        model = super().model_for(request) or self.default_model
        return model.removeprefix("models/")

    def endpoint(self, request: ChatRequest, stream: bool) -> str:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self._base}/{quote(self.model_for(request), safe='')}:{method}"

    def translate_request(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        """The `GenerateContentRequest`: `contents`, `systemInstruction`, `tools`, `toolConfig`, `generationConfig`."""
        body = self.prepared_body(request)
        model = self.model_for(request)
        system, contents = req.translate_messages(body["messages"], model)
        out: dict[str, Any] = {"contents": contents}
        if system:
            out["systemInstruction"] = system
        out.update(req.translate_tools(body))
        if config := req.translate_generation_config(body, model):
            out["generationConfig"] = config
        return out

    def translate_response(self, data: Any, request: ChatRequest) -> Completion:
        """A `chat.completion` from a `GenerateContentResponse`: one choice per candidate.
        Raises 400 `content_filter` for a blocked prompt, 502 for an answer without candidates."""
        if isinstance(data, list) and data:
            data = data[0]
        if not isinstance(data, dict):
            raise from_upstream_status(502, "the upstream's answer is not a GenerateContentResponse")
        if (error := blocked_prompt(data)) is not None:
            raise error
        candidates = data.get("candidates") or []
        if not candidates:
            raise from_upstream_status(502, "Gemini answered without any candidate")
        choices = []
        for position, candidate in enumerate(candidates):
            text, thoughts, calls = _read_candidate(candidate)
            message = oai.message(text if text or not calls else None, calls)
            if thoughts:
                message["reasoning_content"] = thoughts
            choices.append(oai.choice(int(candidate.get("index", position)), message, finish_reason(candidate, bool(calls)) or "stop"))
        response_id = data.get("responseId")
        return oai.chat_completion(
            data.get("modelVersion") or self.model_for(request),
            choices,
            translate_usage(data.get("usageMetadata")) or oai.usage(0, 0),
            id_=f"chatcmpl-{response_id}" if response_id else None,
        )

    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        return GeminiStream(self.model_for(request))

    def translate_error(self, status: int, body: bytes, headers: Any) -> GatewayError:
        try:
            data: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = body[:500].decode("utf-8", "replace").strip()
        return translate_error(status, data, parse_retry_after(headers.get("retry-after")))
