"""`zhipu-api`: Zhipu AI GLM v4 chat completions.

Follows the GLM v4 HTTP API (https://open.bigmodel.cn/dev/api/normal-model/glm-4, error codes at
https://open.bigmodel.cn/dev/api/error-code/service-error, English mirror
https://docs.z.ai/api-reference/api-code) and the official `zhipuai` SDK's wire format:
`POST {api_base}/chat/completions`, `api_base` default `https://open.bigmodel.cn/api/paas/v4`.

Auth: a key of the form `id.secret` is turned into a short-lived HS256 JWT exactly as the SDK does
(header `{"alg": "HS256", "sign_type": "SIGN"}`, payload `{"api_key": id, "exp": ms, "timestamp":
ms}`, signed with `secret`), cached until shortly before it expires; any other key is sent as it is.
Both go as `Authorization: Bearer ...`. Each signed JWT is a live credential: it is registered with
the runtime's scrubber (`Scrubber.add_derived`) before it is sent, so an upstream error quoting it
never reaches a client, the admin page or a log.

Reasoning (docs.z.ai/guides/capabilities/thinking-mode; the SDK's `CompletionMessage` and
`ChoiceDelta` both carry `reasoning_content`): GLM's `reasoning_content` is passed on as
`message.reasoning_content` and `delta.reasoning_content` (the field DeepSeek, GLM and
NextChat/LobeChat use), an assistant message's `reasoning_content` goes back to GLM in the history
(interleaved thinking with tools needs it), and OpenAI's `reasoning_effort` becomes GLM's
`thinking` (`none`/`minimal` → `{"type": "disabled"}`, others → `{"type": "enabled"}`) unless the
client sent `thinking` itself.

The body is OpenAI-like; `GLM_REQUEST_FIELDS` is the field mapping (what GLM accepts, renamed or
clamped where its ranges differ); everything else is dropped. Answers and SSE chunks are
OpenAI-shaped; they are normalised to strict OpenAI (finish reasons, tool calls, usage).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import jwt
import orjson
from httpx_sse import ServerSentEvent

from gateway import openai_format as oai
from gateway.adapter import AdapterConfig, Completion, HTTPAdapter, StreamTranslator
from gateway.errors import (
    GatewayError,
    ProviderCodes,
    error_message_from_body,
    from_upstream_status,
    invalid_request,
    parse_retry_after,
)
from gateway.api.embeddings import embedding_list, text_inputs
from gateway.registry import register
from gateway.request import ChatRequest

ZHIPU_API_BASE = "https://open.bigmodel.cn/api/paas/v4"
DEFAULT_EMBEDDING_MODEL = "embedding-3"
EMBEDDING_BATCH_LIMIT = 64  # inputs per embeddings call

# JWT lifetime and how long before expiry a cached token is replaced (the SDK signs for 210 s
# and caches for 180 s).
JWT_TTL_SECONDS = 210
JWT_REFRESH_MARGIN_SECONDS = 30


class ZhipuConfig(AdapterConfig):
    """`api_key` (`id.secret` from the Zhipu console → signed JWT; other keys sent as given),
    `api_base` (default `https://open.bigmodel.cn/api/paas/v4`), `model` (forced model),
    `embedding_model` (forced for `/v1/embeddings`; else the request's, else `embedding-3`)."""

    api_key: str
    embedding_model: str | None = None


# -- request: OpenAI → GLM --------------------------------------------------------------------


def _temperature(value: float, out: dict[str, Any]) -> None:
    """GLM's temperature is in (0, 1]: 0 (greedy) becomes `do_sample: false`, above 1 is cut."""
    if value <= 0:
        out["temperature"] = 0.01
        out.setdefault("do_sample", False)
    else:
        out["temperature"] = min(float(value), 1.0)


def _top_p(value: float, out: dict[str, Any]) -> None:
    """GLM's top_p is in the open interval (0, 1) (OpenAI clients often send 1)."""
    out["top_p"] = min(max(float(value), 0.01), 0.99)


def _thinking_from_effort(value: str, out: dict[str, Any]) -> None:
    """OpenAI `reasoning_effort` → GLM `thinking` (GLM has only on and off); a client's own
    `thinking` (mapped after this) wins."""
    out["thinking"] = {"type": "disabled" if value in REASONING_OFF else "enabled"}


def _response_format(value: dict, out: dict[str, Any]) -> None:
    """GLM takes `text` and `json_object` only (docs.z.ai/api-reference/llm/chat-completion):
    `json_schema` is sent as `json_object`, its schema given to the model in the system prompt
    (`_schema_hint`)."""
    if isinstance(value, dict) and value.get("type") == "json_schema":
        out["response_format"] = {"type": "json_object"}
        spec = value.get("json_schema") if isinstance(value.get("json_schema"), dict) else {}
        out["_schema_hint"] = SCHEMA_HINT.format(schema=orjson.dumps(spec.get("schema") or {"type": "object"}).decode())
    else:
        out["response_format"] = value


def _stop(value: str | list[str], out: dict[str, Any]) -> None:
    """GLM takes a list with a single stop word."""
    words = [value] if isinstance(value, str) else [w for w in value if isinstance(w, str)]
    if words:
        out["stop"] = words[:1]


def _tool_choice(value: str | dict, out: dict[str, Any]) -> None:
    """GLM only knows `auto`: `none` removes the tools, anything else asks for `auto`."""
    if value == "none":
        out["_no_tools"] = True
    else:
        out["tool_choice"] = "auto"


def _user(value: str, out: dict[str, Any]) -> None:
    """GLM's `user_id` must be 6–128 characters; other values are not sent."""
    if 6 <= len(value) <= 128:
        out["user_id"] = value


def _copy(name: str) -> Callable[[Any, dict[str, Any]], None]:
    def put(value: Any, out: dict[str, Any]) -> None:
        out[name] = value

    return put


# `reasoning_effort` values that turn GLM's thinking off.
REASONING_OFF = frozenset({"none", "minimal"})
SCHEMA_HINT = "Respond with a JSON object that conforms to this JSON schema: {schema}"

# OpenAI request field → how it lands in the GLM body, applied in this order (a later field
# wins: the client's `max_completion_tokens` over `max_tokens`, which may be the config's
# default; GLM's own `thinking` over `reasoning_effort`). Fields not listed are dropped
# (presence_penalty, frequency_penalty, logit_bias, logprobs, parallel_tool_calls, stream_options...);
# `n` > 1 is refused (`glm_request`).
GLM_REQUEST_FIELDS: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "model": _copy("model"),
    "stream": _copy("stream"),
    "temperature": _temperature,
    "top_p": _top_p,
    "max_tokens": _copy("max_tokens"),
    "max_completion_tokens": _copy("max_tokens"),
    "stop": _stop,
    "tools": _copy("tools"),
    "tool_choice": _tool_choice,
    "response_format": _response_format,
    "seed": _copy("seed"),
    "user": _user,
    "reasoning_effort": _thinking_from_effort,
    # GLM's own fields, passed through when a client sends them.
    "user_id": _copy("user_id"),
    "request_id": _copy("request_id"),
    "do_sample": _copy("do_sample"),
    "thinking": _copy("thinking"),
    "meta": _copy("meta"),
    "sensitive_word_check": _copy("sensitive_word_check"),
}

# OpenAI message role → GLM role.
GLM_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool", "function": "tool"}


def _glm_content(content: Any) -> Any:
    """A string stays; a part list becomes a string when it is all text, else GLM-4V's part list
    (`text` and `image_url` parts, data URLs reduced to their base64 payload as the SDK does)."""
    if not isinstance(content, list):
        return content if content is not None else ""
    if all(p.get("type") == "text" for p in content):
        return oai.text_of(content)
    parts = []
    for part in content:
        if part.get("type") == "text":
            parts.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            image = part.get("image_url") or {}
            url = image.get("url", "") if isinstance(image, dict) else str(image)
            if url.startswith("data:image/"):
                url = url.split("base64,")[-1]
            parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def glm_message(message: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI message → a GLM message (`role`, `content`, `reasoning_content`, `tool_calls`,
    `tool_call_id`); an assistant's `reasoning_content` goes back to GLM as it came."""
    role = GLM_ROLES.get(message.get("role"), "user")
    out: dict[str, Any] = {"role": role, "content": _glm_content(message.get("content"))}
    if role == "assistant" and isinstance(message.get("reasoning_content"), str) and message["reasoning_content"]:
        out["reasoning_content"] = message["reasoning_content"]
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = [
            {"id": c.get("id"), "type": "function", "function": {"name": c["function"]["name"], "arguments": c["function"].get("arguments", "")}}
            for c in message["tool_calls"]
            if isinstance(c, dict) and isinstance(c.get("function"), dict)
        ]
    if role == "tool":
        out["tool_call_id"] = message.get("tool_call_id") or message.get("name")
    return out


def glm_request(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion request body → the GLM v4 request body. Raises GatewayError 400
    for `n` > 1 (GLM returns one choice)."""
    if isinstance(body.get("n"), int) and body["n"] > 1:
        raise invalid_request("zhipu-api returns one choice; 'n' must be 1.", param="n")
    out: dict[str, Any] = {"messages": [glm_message(m) for m in body["messages"]]}
    for field, put in GLM_REQUEST_FIELDS.items():
        value = body.get(field)
        if value is not None:
            put(value, out)
    if out.pop("_no_tools", False):
        out.pop("tools", None)
        out.pop("tool_choice", None)
    if hint := out.pop("_schema_hint", None):
        _add_system_text(out["messages"], hint)
    return out


def _add_system_text(messages: list[dict[str, Any]], text: str) -> None:
    """Append `text` to the leading system message (a new one when there is none)."""
    if messages and messages[0]["role"] == "system" and isinstance(messages[0]["content"], str):
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{text}" if messages[0]["content"] else text}
    else:
        messages.insert(0, {"role": "system", "content": text})


# -- response: GLM → OpenAI ------------------------------------------------------------------

# GLM finish_reason → OpenAI finish_reason; `network_error` (inference failed) raises instead.
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "sensitive": "content_filter"}


def finish_reason(value: str | None) -> str | None:
    """GLM's finish reason in OpenAI's vocabulary. Raises GatewayError 502 for `network_error`."""
    if value is None:
        return None
    if value == "network_error":
        raise from_upstream_status(502, "Zhipu reported a model inference failure (finish_reason network_error)")
    return FINISH_REASONS.get(value, "stop")


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _tool_calls(calls: Any, stream: bool) -> list[dict[str, Any]] | None:
    if not calls:
        return None
    out = []
    for position, call in enumerate(calls):
        function = call.get("function") or {}
        index = call.get("index", position) if stream else None
        out.append(oai.tool_call(call.get("id") or f"call_{position}", function.get("name", ""), _arguments(function.get("arguments", "")), index))
    return out


def _usage(data: dict[str, Any]) -> dict[str, Any] | None:
    """GLM usage → OpenAI usage, with `prompt_tokens_details` (`cached_tokens`) and
    `completion_tokens_details` (`reasoning_tokens`) copied when GLM sends them."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    out: dict[str, Any] = oai.usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))
    for details in ("prompt_tokens_details", "completion_tokens_details"):
        if isinstance(usage.get(details), dict):
            out[details] = usage[details]
    return out


def _message(msg: dict[str, Any]) -> dict[str, Any]:
    """A GLM answer message → an OpenAI message, `reasoning_content` kept."""
    out = oai.message(msg.get("content"), _tool_calls(msg.get("tool_calls"), False))
    if isinstance(msg.get("reasoning_content"), str):
        out["reasoning_content"] = msg["reasoning_content"]
    return out


def openai_completion(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A GLM chat completion → an OpenAI `chat.completion`. Raises GatewayError on an error body."""
    if isinstance(data.get("error"), dict):
        raise zhipu_error(200, data["error"])
    choices = []
    for position, item in enumerate(data.get("choices") or []):
        msg = item.get("message") or {}
        choices.append(oai.choice(item.get("index", position), _message(msg), finish_reason(item.get("finish_reason"))))
    return oai.chat_completion(data.get("model") or model, choices, _usage(data) or oai.usage(0, 0), id_=data.get("id"), created=data.get("created"))


class ZhipuStreamTranslator(StreamTranslator):
    """GLM SSE chunks (`data: {chunk}` ... `data: [DONE]`) → OpenAI chunks (`content`,
    `reasoning_content` and `tool_calls` deltas); the usage of the last chunk becomes the final
    usage chunk. Raises GatewayError 502 for an event that is not a JSON object."""

    def __init__(self, model: str) -> None:
        self.chunks = oai.ChunkBuilder(model)
        self.started = False
        self.usage: dict[str, int] | None = None

    def feed(self, event: ServerSentEvent) -> list[dict[str, Any]]:
        if not event.data or event.data.startswith("[DONE]"):
            return []
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise from_upstream_status(502, "Zhipu sent a stream event that is not a JSON object")
        if isinstance(data.get("error"), dict):
            raise zhipu_error(200, data["error"])
        if data.get("id") and not self.started:
            self.chunks.id = data["id"]
        self.usage = _usage(data) or self.usage
        out = []
        for item in data.get("choices") or []:
            upstream = item.get("delta") or {}
            delta: dict[str, Any] = {}
            if not self.started:
                delta["role"] = "assistant"
                self.started = True
            if upstream.get("reasoning_content"):
                delta["reasoning_content"] = upstream["reasoning_content"]
            if upstream.get("content"):
                delta["content"] = upstream["content"]
            calls = _tool_calls(upstream.get("tool_calls"), True)
            if calls:
                delta["tool_calls"] = calls
            reason = finish_reason(item.get("finish_reason"))
            if delta or reason:
                out.append(self.chunks.chunk(delta, reason, item.get("index", 0)))
        return out

    def finish(self) -> list[dict[str, Any]]:
        return [self.chunks.usage_chunk(self.usage)] if self.usage else []


# -- errors ------------------------------------------------------------------------------------

# Zhipu business error codes (the `error.code` string) → §3 error, where the code says more
# than the HTTP status. Others fall back to the status.
ZHIPU_CODES = ProviderCodes(
    auth=frozenset({1000, 1001, 1002, 1003, 1004, 1100, 1110, 1111, 1112, 1120, 1121, 1220}),
    rate_limit=frozenset({1113, 1302, 1303, 1304, 1305, 1308, 1309, 1310}),
    content_filter=frozenset({1301}),
    request={**dict.fromkeys((1210, 1211, 1212, 1213, 1214, 1215, 1231)), 1261: "context_length_exceeded"},  # 1261: prompt too long
)


def zhipu_error(status: int, error: Any, retry_after: float | None = None) -> GatewayError:
    """Map a Zhipu error (`{"code": "1261", "message": ...}`) with its HTTP status to §3 by
    `ZHIPU_CODES` (1301, sensitive content → 400 `content_filter`; a 200 with no known code → 502)."""
    message = error.get("message", "") if isinstance(error, dict) else str(error or "")
    code = error.get("code") if isinstance(error, dict) else None
    text = f"{message} (Zhipu error {code})" if code is not None else message
    return ZHIPU_CODES.error(code, text, status, retry_after)


# -- auth --------------------------------------------------------------------------------------


class ZhipuToken:
    """The `Authorization` value for a key: a cached HS256 JWT for `id.secret` keys (as the
    zhipuai SDK signs it; times in milliseconds), the key itself otherwise. `on_sign(jwt)` is
    called with each newly signed JWT before it is used (the adapter registers it for scrubbing)."""

    def __init__(self, api_key: str, on_sign: Callable[[str], None] | None = None) -> None:
        self.api_key = api_key
        self._on_sign = on_sign
        key_id, dot, secret = api_key.partition(".")
        self._parts = (key_id, secret) if dot and key_id and secret and "." not in secret else None
        self._token = ""
        self._refresh_at = 0.0

    def __call__(self) -> str:
        if self._parts is None:
            return self.api_key
        now = time.time()
        if now >= self._refresh_at:
            key_id, secret = self._parts
            now_ms = int(round(now * 1000))
            payload = {"api_key": key_id, "exp": now_ms + JWT_TTL_SECONDS * 1000, "timestamp": now_ms}
            self._token = jwt.encode(payload, secret, algorithm="HS256", headers={"alg": "HS256", "sign_type": "SIGN"})
            self._refresh_at = now + JWT_TTL_SECONDS - JWT_REFRESH_MARGIN_SECONDS
            if self._on_sign is not None:
                self._on_sign(self._token)
        return self._token


@register("zhipu-api")
class ZhipuAdapter(HTTPAdapter):
    """Zhipu GLM v4: `POST {api_base}/chat/completions` with a JWT (or plain key) bearer token."""

    Config = ZhipuConfig
    default_model = "glm-4-flash"

    def __init__(self, entry, runtime) -> None:
        super().__init__(entry, runtime)
        self._url = f"{self.config.api_base or ZHIPU_API_BASE}/chat/completions"
        self._embeddings_url = f"{self.config.api_base or ZHIPU_API_BASE}/embeddings"
        source = f"zhipu-api#{entry.index}"
        self._token = ZhipuToken(self.config.api_key, lambda token: runtime.scrub.add_derived(source, token))

    def endpoint(self, request: ChatRequest, stream: bool) -> str:
        return self._url

    def headers(self, request: ChatRequest) -> dict[str, str]:
        return {"content-type": "application/json", "authorization": f"Bearer {self._token()}"}

    def translate_request(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body = glm_request(self.prepared_body(request))
        body["stream"] = stream
        return body

    def translate_response(self, data: Any, request: ChatRequest) -> Completion:
        if not isinstance(data, dict):
            raise from_upstream_status(502, "Zhipu answered with an unexpected body")
        return openai_completion(data, self.model_for(request))

    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        return ZhipuStreamTranslator(self.model_for(request))

    async def embed(self, request) -> dict[str, Any]:
        """`/v1/embeddings` through GLM's `POST {api_base}/embeddings` (OpenAI-like body and
        answer; https://docs.bigmodel.cn/api-reference 文本嵌入): strings only (token ids → 400),
        at most 64 inputs a call (larger inputs are split into calls made at once, reassembled
        in order), `dimensions` passed on (embedding-3: 256/512/1024/2048), float vectors back."""
        texts = text_inputs(request, self.type_name)
        model = self.config.embedding_model or request.model or DEFAULT_EMBEDDING_MODEL
        chunks = [texts[i : i + EMBEDDING_BATCH_LIMIT] for i in range(0, len(texts), EMBEDDING_BATCH_LIMIT)]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._embed_batch(model, chunk, request.dimensions)) for chunk in chunks]
        vectors = [v for task in tasks for v in task.result()[0]]
        return embedding_list(vectors, model, sum(task.result()[1] for task in tasks))

    async def _embed_batch(self, model: str, texts: list[str], dimensions: int | None) -> tuple[list[list[float]], int]:
        body: dict[str, Any] = {"model": model, "input": texts}
        if dimensions:
            body["dimensions"] = dimensions
        response = await self.runtime.http.request(
            "POST", self._embeddings_url, headers=self.headers(None), content=orjson.dumps(body), proxies=self.config.proxies)
        if response.status >= 400:
            raise self.translate_error(response.status, response.content, response.headers)
        try:
            data = orjson.loads(response.content)
            items = sorted(data["data"], key=lambda item: item.get("index", 0))
            vectors = [item["embedding"] for item in items]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise from_upstream_status(502, "Zhipu's embeddings answer is not in its documented shape") from None
        if len(vectors) != len(texts):
            raise from_upstream_status(502, f"Zhipu returned {len(vectors)} embeddings for {len(texts)} inputs")
        return vectors, int((data.get("usage") or {}).get("prompt_tokens") or 0)

    def translate_error(self, status: int, body: bytes, headers: Any) -> GatewayError:
        retry_after = parse_retry_after(headers.get("retry-after"))
        try:
            error = orjson.loads(body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            error = None
        if not isinstance(error, dict):
            return from_upstream_status(status, error_message_from_body(body), retry_after)
        return zhipu_error(status, error, retry_after)
