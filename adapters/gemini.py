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
| text part, `image_url` (data URL / URL)  | `{text}`, `{inlineData: {mimeType, data}}` / `{fileData: {mimeType, fileUri}}` |
| assistant `tool_calls[]`                 | `model` `functionCall` parts `{name, args}`             |
| `tool` message (by `tool_call_id`)       | `user` `functionResponse` part `{name, response}`       |
| `tools[].function`                       | `tools[].functionDeclarations[]` (`parametersJsonSchema`) |
| `tool_choice`                            | `toolConfig.functionCallingConfig` (`AUTO`/`NONE`/`ANY`, `allowedFunctionNames`) |
| sampling fields (`GENERATION_CONFIG`)    | `generationConfig.*`                                    |
| `choices[]` / `finish_reason`            | `candidates[]` / `finishReason` (`FINISH_REASONS`)      |
| `usage`                                  | `usageMetadata` (thoughts count as completion tokens)   |

Gemini has no tool call ids, so the gateway makes them (`call_...`). When a `functionCall`
part carries a `thoughtSignature` (Gemini 2.5+ thinking models; Gemini 3 requires it back on
the next turn), the signature rides in the id after `__ts__` and is restored when the client
sends the assistant message back.
"""

from __future__ import annotations

import base64
import mimetypes
import re
import uuid
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlencode

import orjson
from httpx_sse import ServerSentEvent

from gateway import openai_format as oai
from gateway.adapter import AdapterConfig, Completion, HTTPAdapter, StreamTranslator
from gateway.errors import (
    GatewayError,
    from_upstream_status,
    invalid_request,
    parse_retry_after,
    upstream_auth_error,
)
from gateway.registry import register
from gateway.request import ChatRequest

GEMINI_API_BASE = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"

# OpenAI request field -> `generationConfig` field, value copied as is.
GENERATION_CONFIG = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "n": "candidateCount",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}

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

# OpenAI `tool_choice` string -> `functionCallingConfig.mode`.
TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}

# The Gemini error `details[].reason` that means the gateway's own key was refused.
AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})

# Tool call ids the gateway makes: `call_<hex>`, plus `__ts__<thoughtSignature>` when Gemini signed the call.
SIGNATURE_SEPARATOR = "__ts__"
# Google's documented stand-in for a missing signature (https://ai.google.dev/gemini-api/docs/thought-signatures):
# used for a model turn whose calls were not made by Gemini through this gateway.
SKIP_SIGNATURE = "skip_thought_signature_validator"

_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.DOTALL)


class GeminiConfig(AdapterConfig):
    """`api_key` (sent as `x-goog-api-key`), `api_base` (default
    `https://generativelanguage.googleapis.com`), `model` (forced; default `gemini-2.5-flash`),
    `embedding_model` (forced for `/v1/embeddings`; else the request's, else `gemini-embedding-001`)."""

    api_key: str
    embedding_model: str | None = None


# -- request: OpenAI -> Gemini -----------------------------------------------------------------


def _tool_call_id(signature: str | None = None) -> str:
    """A fresh `call_...` id, carrying a Gemini `thoughtSignature` when there is one."""
    call_id = f"call_{uuid.uuid4().hex[:24]}"
    return f"{call_id}{SIGNATURE_SEPARATOR}{signature}" if signature else call_id


def _signature_of(call_id: Any) -> str | None:
    """The `thoughtSignature` a gateway-made tool call id carries, if any."""
    if isinstance(call_id, str) and SIGNATURE_SEPARATOR in call_id:
        return call_id.split(SIGNATURE_SEPARATOR, 1)[1] or None
    return None


def _inline_data(url: str, param: str) -> dict[str, Any]:
    """`{inlineData: {mimeType, data}}` from a `data:` URL (base64 or percent-encoded). Raises 400."""
    match = _DATA_URL.match(url)
    if not match:
        raise invalid_request(f"Invalid data URL in '{param}'.", param=param)
    mime = match["mime"] or "application/octet-stream"
    data = match["data"]
    if ";base64" not in match["params"]:
        data = base64.b64encode(unquote_to_bytes(data)).decode("ascii")
    return {"inlineData": {"mimeType": mime, "data": data}}


def _file_data(url: str, default_mime: str) -> dict[str, Any]:
    """`{fileData: {mimeType, fileUri}}` for a URL Gemini fetches itself (http(s), `gs://`, Files API)."""
    mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or default_mime
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _media_part(url: str, default_mime: str, param: str) -> dict[str, Any]:
    return _inline_data(url, param) if url.startswith("data:") else _file_data(url, default_mime)


def _parts(content: Any, param: str) -> list[dict[str, Any]]:
    """Gemini `parts` for an OpenAI message `content` (string or content-part array). Raises 400
    for a part type Gemini cannot take."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind, where = part.get("type"), f"{param}[{j}]"
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise invalid_request(f"Missing 'image_url.url' in '{where}'.", param=where)
            parts.append(_media_part(url, "image/jpeg", where))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append({"inlineData": {"mimeType": f"audio/{audio.get('format', 'wav')}", "data": audio.get("data", "")}})
        elif kind == "file":
            file = part.get("file") or {}
            if isinstance(file.get("file_data"), str):
                parts.append(_media_part(file["file_data"], "application/pdf", where))
            elif isinstance(file.get("file_id"), str):
                parts.append(_file_data(file["file_id"], "application/pdf"))
            else:
                raise invalid_request(f"'{where}' needs 'file.file_data' or 'file.file_id'.", param=where)
        elif kind == "refusal":
            continue
        else:
            raise invalid_request(f"Content part type '{kind}' in '{where}' is not supported by Gemini.", param=where)
    return parts


def _function_response(content: Any) -> dict[str, Any]:
    """A `functionResponse.response` object: the tool's JSON object, else `{"content": value}`."""
    text = oai.text_of(content)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"content": text}
    return value if isinstance(value, dict) else {"content": value}


def _function_call_parts(calls: list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    """`functionCall` parts for an assistant message's `tool_calls`, signatures restored."""
    parts = []
    for k, call in enumerate(calls):
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            args = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise invalid_request(
                f"'{param}[{k}].function.arguments' is not valid JSON.", param=f"{param}[{k}].function.arguments"
            ) from None
        part: dict[str, Any] = {"functionCall": {"name": function.get("name", ""), "args": args if isinstance(args, dict) else {}}}
        if signature := _signature_of(call.get("id")):
            part["thoughtSignature"] = signature
        parts.append(part)
    if parts and not any("thoughtSignature" in p for p in parts):
        parts[0]["thoughtSignature"] = SKIP_SIGNATURE
    return parts


def translate_messages(messages: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """`(systemInstruction, contents)` for OpenAI `messages`.

    system/developer text goes to `systemInstruction`; user/assistant/tool messages become
    `contents` with roles `user`/`model`/`user`, consecutive same-role contents merged (Gemini
    wants the parallel function responses of one turn in one content). A tool message's function
    name is looked up from the assistant tool call it answers. Raises GatewayError 400.
    """
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, msg in enumerate(messages):
        role, param = msg.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            text = oai.text_of(msg.get("content"))
            if text:
                system.append({"text": text})
        elif role == "user":
            add("user", _parts(msg.get("content"), f"{param}.content"))
        elif role == "assistant":
            parts = [p for p in _parts(msg.get("content"), f"{param}.content") if "text" in p]
            calls = list(msg.get("tool_calls") or [])
            if isinstance(msg.get("function_call"), dict):  # legacy functions API
                calls.append({"function": msg["function_call"]})
            for call in calls:
                if isinstance(call.get("id"), str):
                    names[call["id"]] = (call.get("function") or {}).get("name", "")
            add("model", parts + _function_call_parts(calls, f"{param}.tool_calls"))
        elif role in ("tool", "function"):
            name = names.get(msg.get("tool_call_id")) or msg.get("name")
            if not name:
                raise invalid_request(
                    f"'{param}.tool_call_id' does not match a tool call of an earlier assistant message.",
                    param=f"{param}.tool_call_id",
                )
            add("user", [{"functionResponse": {"name": name, "response": _function_response(msg.get("content"))}}])
    return ({"parts": system} if system else None), contents


def translate_generation_config(body: dict[str, Any]) -> dict[str, Any]:
    """`generationConfig` from the OpenAI sampling fields, `stop`, max tokens and `response_format`."""
    config = {gemini: body[openai] for openai, gemini in GENERATION_CONFIG.items() if body.get(openai) is not None}
    max_tokens = body.get("max_completion_tokens") if body.get("max_completion_tokens") is not None else body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif response_format.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema is not None:
            config["responseJsonSchema"] = schema
    return config


def translate_tools(body: dict[str, Any]) -> dict[str, Any]:
    """`tools` (one `functionDeclarations` list) and `toolConfig` from OpenAI `tools`/`tool_choice`."""
    out: dict[str, Any] = {}
    declarations = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            continue
        function = tool.get("function") or {}
        declaration = {"name": function.get("name", "")}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice in TOOL_CHOICE_MODES:
        out["toolConfig"] = {"functionCallingConfig": {"mode": TOOL_CHOICE_MODES[choice]}}
    elif isinstance(choice, dict) and (name := (choice.get("function") or {}).get("name")):
        out["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return out


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


def _text_and_calls(candidate: dict[str, Any]) -> tuple[str, list[tuple[str, str, str | None]]]:
    """A candidate's visible text (thought summaries left out) and `(name, arguments JSON, signature)` calls."""
    text, calls = [], []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "functionCall" in part:
            call = part["functionCall"]
            calls.append((call.get("name", ""), orjson.dumps(call.get("args") or {}).decode(), part.get("thoughtSignature")))
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            text.append(part["text"])
    return "".join(text), calls


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
    return from_upstream_status(status, message, retry_after)


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
            text, calls = _text_and_calls(candidate)
            if text:
                out.append(self.chunks.chunk({"content": text}, index=index))
            for name, arguments, signature in calls:
                n = self._calls.get(index, 0)
                self._calls[index] = n + 1
                delta = oai.tool_call(_tool_call_id(signature), name, arguments, index=n)
                out.append(self.chunks.chunk({"tool_calls": [delta]}, index=index))
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
        system, contents = translate_messages(body["messages"])
        out: dict[str, Any] = {"contents": contents}
        if system:
            out["systemInstruction"] = system
        out.update(translate_tools(body))
        if config := translate_generation_config(body):
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
            text, calls = _text_and_calls(candidate)
            tool_calls = [oai.tool_call(_tool_call_id(sig), name, args) for name, args, sig in calls]
            message = oai.message(text if text or not tool_calls else None, tool_calls)
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
