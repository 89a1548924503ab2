"""A fake OpenAI (and Azure OpenAI) Chat Completions upstream.

Speaks https://platform.openai.com/docs/api-reference/chat: `POST /v1/chat/completions` (JSON or
SSE), `GET /v1/models`, and Azure's `POST /openai/deployments/{id}/chat/completions?api-version=`
with the `api-key` header. Errors use OpenAI's `{"error": {...}}` body.

The request's `model` picks a scenario, so one fake serves many tests at once:

- any model: echoes the last user message (`Echo: ...`); with `tools`, calls the first tool.
- `status-NNN`: answers HTTP NNN with an OpenAI error body (429 adds `Retry-After: 7`).
- `slow-first-byte`: waits `slow_seconds` before answering.
- `slow-stream`: streams one chunk every 50 ms for a long time; records `disconnect` when the
  client goes away.
- `stall-stream`: sends one chunk, then nothing for `slow_seconds`.
- `leak-secret`: a 400 whose message quotes the API key it was sent.
- `truncated-stream`: streams a little text, then ends without a finish reason or `[DONE]`.
- `text-only...`: answers with text even when `tools` are offered.
- `reasoning`: a reasoning model as DeepSeek's OpenAI-compatible API serves it
  (https://api-docs.deepseek.com/guides/reasoning_model): `reasoning_content` in the message
  (and in stream deltas, before the content) beside the answer.
- `leak-secret-200`: a 200 completion whose content quotes the key (streamed: a chunk does).
- `midstream-<kind>`: a stream that sends one chunk, then OpenAI's in-stream error event
  `data: {"error": {...}}` (what resellers and One API-style proxies send) quoting the key, then
  stops; `first-<kind>`: that event first; `midstream-split`: the event in three writes.
  `<kind>`: `auth`, `rate`, `context`, `server`.
- `json-<kind>`: a 200 `application/json` error body (`{"error": {...}}`) to any request;
  `json-completion`: a 200 JSON completion answering a streamed request.
- `plain-<scenario>`: that scenario's stream, labelled `text/plain`.
- `logprobs-error`: a stream whose chunks carry logprobs for the token `"error"` (a normal chunk
  that contains the bytes `"error"`).
- `parallel`: with `tools`, two parallel calls of the first tool (Paris, Rome); the stream
  interleaves their deltas (both headers, then argument pieces alternating), as OpenAI-compatible
  servers may.
- `reasoner-signed`: a thinking model in OpenRouter's format
  (https://openrouter.ai/docs/use-cases/reasoning-tokens#preserving-reasoning-blocks): `reasoning`
  text plus `reasoning_details` blocks carrying a signature that must come back unmodified; the
  stream sends them as `reasoning` / `reasoning_details` deltas.
- `reasoner`: a thinking model in DeepSeek's chat format (https://api-docs.deepseek.com/guides/thinking_mode):
  the message (and the stream's first deltas) carry `reasoning_content` "Thinking it over.".

Like OpenAI, it refuses a request without `model` on `/v1/chat/completions` (400 "you must
provide a model parameter", as quoted in openai/openai-python issues; vLLM refuses it too) and
`max_tokens` for reasoning models (`o1`, `o3`, `o4-mini`, `gpt-5...`: 400 `unsupported_parameter`,
"Use 'max_completion_tokens' instead", quoted in the reports behind review-adapters row 2).
`strict_models=True` makes it a vLLM serving exactly `models`: any other model is a 404
`NotFoundError` (vLLM's `ErrorResponse`). Azure's route sends what Azure sends with its default
content filter (learn.microsoft.com/azure/ai-services/openai/concepts/content-filter, "Streaming"):
`prompt_filter_results` on the answer, and a stream that opens with the annotation-only chunk
`{"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": [...]}`
(its exact bytes are quoted in microsoft/autogen#6465 and AbanteAI/mentat#429).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.vectors import vector
from tests.support.recorder import Received, Recorder

CREATED = 1735689600  # fixed, so two streams of one scenario are byte for byte alike
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
FILTER_RESULTS = {"hate": {"filtered": False, "severity": "safe"}, "self_harm": {"filtered": False, "severity": "safe"},
                  "sexual": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}
# Azure's first stream event, as Azure writes it (keys sorted, compact).
AZURE_PROMPT_FILTER_CHUNK = (
    b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,'
    b'"content_filter_results":' + json.dumps(FILTER_RESULTS, separators=(",", ":")).encode() + b'}]}\n\n'
)
# OpenAI-shaped errors per scenario kind: (type, code) and the status they come with over HTTP.
ERROR_KINDS = {
    "auth": ("invalid_request_error", "invalid_api_key", 401),
    "rate": ("requests", "rate_limit_exceeded", 429),
    "context": ("invalid_request_error", "context_length_exceeded", 400),
    "server": ("server_error", None, 500),
}
REASONING = "Thinking it over."
REASONING_DETAILS = [{"type": "reasoning.text", "text": REASONING, "signature": "sig-ErUBCkYIBRgCKkD", "format": "anthropic-claude-v1", "index": 0}]

ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_denied", 404: "invalid_request_error",
               413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_exceeded"}


def openai_error(status: int, message: str, code: str | None = None) -> JSONResponse:
    headers = {"retry-after": "7"} if status == 429 else None
    body = {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class FakeOpenAI:
    """The fake. `api_key`: the key it accepts (None: any); `recorder`: what it received."""

    def __init__(self, api_key: str | None = "sk-upstream-secret-key-0123456789", slow_seconds: float = 30.0,
                 models: list[str] | None = None, strict_models: bool = False) -> None:
        self.api_key = api_key
        self.slow_seconds = slow_seconds
        self.recorder = Recorder()
        self.models = models or ["gpt-4o-mini", "gpt-4o"]
        self.strict_models = strict_models
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/openai/deployments/{deployment}/chat/completions", self.azure_chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
                Route("/v1/moderations", self.moderations, methods=["POST"]),
                Route("/v1/images/generations", self.images, methods=["POST"]),
                Route("/openai/deployments/{deployment}/embeddings", self.azure_embeddings, methods=["POST"]),
            ]
        )

    def _presented_key(self, request: Request, azure: bool) -> str | None:
        if azure:
            return request.headers.get("api-key")
        auth = request.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    def _auth_error(self, key: str | None) -> JSONResponse | None:
        if self.api_key is None or key == self.api_key:
            return None
        return openai_error(401, f"Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_api_key")

    async def list_models(self, request: Request) -> Response:
        await self.recorder.record(request)
        if (err := self._auth_error(self._presented_key(request, False))) is not None:
            return err
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "openai"} for m in self.models]})

    async def azure_chat(self, request: Request) -> Response:
        if "api-version" not in request.query_params:
            return openai_error(404, "Resource not found")
        return await self._chat(request, azure=True)

    async def azure_embeddings(self, request: Request) -> Response:
        if "api-version" not in request.query_params:
            return openai_error(404, "Resource not found")
        return await self._embeddings(request, azure=True)

    async def embeddings(self, request: Request) -> Response:
        return await self._embeddings(request, azure=False)

    async def _embeddings(self, request: Request, azure: bool) -> Response:
        """`POST /v1/embeddings` (https://platform.openai.com/docs/api-reference/embeddings/create):
        `input` a string, strings, token ids or lists of token ids (empty strings refused);
        `encoding_format` `float` (the API's default) or `base64` (float32 little-endian, what
        openai-python asks for); `dimensions` only for `text-embedding-3*` models. Vectors
        have 8 dimensions by default (`tests.fakes.vectors`); a token counts as one word or id."""
        received = await self.recorder.record(request)
        if (err := self._auth_error(self._presented_key(request, azure))) is not None:
            return err
        body = received.body if isinstance(received.body, dict) else {}
        items = body.get("input")
        if isinstance(items, str) or (isinstance(items, list) and items and all(isinstance(t, int) for t in items)):
            items = [items]
        if not isinstance(items, list) or not items or not all(
                (isinstance(i, str) and i) or (isinstance(i, list) and i and all(isinstance(t, int) for t in i)) for i in items):
            return openai_error(400, "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.")
        model = body.get("model")
        if not model:
            return openai_error(400, "you must provide a model parameter")
        if model.startswith("status-"):
            return openai_error(int(model.split("-", 1)[1]), "Scenario error")
        if model.startswith("json-") and model[5:] in ERROR_KINDS:  # a reseller's 200 error body
            type_, code, _ = ERROR_KINDS[model[5:]]
            return JSONResponse({"error": {"message": f"Scenario {model}", "type": type_, "param": None, "code": code}})
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            return openai_error(400, f"Invalid value for 'encoding_format': '{encoding}'.")
        dimensions = body.get("dimensions")
        if dimensions is not None and not model.startswith("text-embedding-3"):
            return openai_error(400, "This model does not support specifying dimensions.")
        data = []
        for index, item in enumerate(items):
            values = vector(item, dimensions or 8)
            embedding = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode() if encoding == "base64" else values
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(i.split()) if isinstance(i, str) else len(i) for i in items)
        return JSONResponse({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def completions(self, request: Request) -> Response:
        """Legacy `POST /v1/completions` (https://platform.openai.com/docs/api-reference/completions),
        as FIM autocomplete clients use it: answers `[completion of: PROMPT|SUFFIX]`, streamed as
        `text_completion` chunks when `stream` is set."""
        received = await self.recorder.record(request)
        if (err := self._auth_error(self._presented_key(request, False))) is not None:
            return err
        body = received.body if isinstance(received.body, dict) else {}
        if not isinstance(body.get("prompt"), str) or not body.get("model"):
            return openai_error(400, "'prompt' and 'model' are required properties")
        text = f"[completion of: {body['prompt']}|{body.get('suffix') or ''}]"
        base = {"id": "cmpl-fake1", "object": "text_completion", "created": CREATED, "model": body["model"]}
        if body.get("stream"):
            async def events():
                for piece in (text[: len(text) // 2], text[len(text) // 2:]):
                    yield b"data: " + json.dumps({**base, "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None}]}).encode() + b"\n\n"
                yield b"data: " + json.dumps({**base, "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]}).encode() + b"\n\n"
                yield b"data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({**base, "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})

    async def transcriptions(self, request: Request) -> Response:
        """`POST /v1/audio/transcriptions` (multipart/form-data: `file`, `model`): answers
        `{"text": "<N bytes of FILENAME>"}`; records the upload's size and content type."""
        if (err := self._auth_error(self._presented_key(request, False))) is not None:
            return err
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return openai_error(400, "Could not parse multipart form")
        async with request.form(max_part_size=64 * 1024 * 1024) as form:
            upload = form.get("file")
            if upload is None or not form.get("model"):
                return openai_error(400, "'file' and 'model' are required")
            data = await upload.read()
        self.recorder.requests.append(Received("POST", request.url.path, dict(request.query_params),
                                               {k.lower(): v for k, v in request.headers.items()},
                                               {"model": form.get("model"), "filename": upload.filename, "size": len(data),
                                                "sha256": hashlib.sha256(data).hexdigest()}))
        return JSONResponse({"text": f"<{len(data)} bytes of {upload.filename}>"})

    async def images(self, request: Request) -> Response:
        """`POST /v1/images/generations` (https://platform.openai.com/docs/api-reference/images/create):
        `n` images (default 1) as `b64_json` (a 1×1 PNG) or `url`, per `response_format`."""
        received = await self.recorder.record(request)
        if (err := self._auth_error(self._presented_key(request, False))) is not None:
            return err
        body = received.body if isinstance(received.body, dict) else {}
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return openai_error(400, "'prompt' is a required property")
        png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
        item = {"url": "https://images.example/fake.png"} if body.get("response_format") == "url" else {"b64_json": png}
        return JSONResponse({"created": CREATED, "data": [dict(item, revised_prompt=body["prompt"]) for _ in range(body.get("n") or 1)]})

    async def moderations(self, request: Request) -> Response:
        """`POST /v1/moderations`: nothing is ever flagged."""
        received = await self.recorder.record(request)
        if (err := self._auth_error(self._presented_key(request, False))) is not None:
            return err
        inputs = received.body.get("input") if isinstance(received.body, dict) else None
        inputs = [inputs] if isinstance(inputs, str) else inputs or []
        result = {"flagged": False, "categories": {"violence": False}, "category_scores": {"violence": 0.0}}
        return JSONResponse({"id": "modr-fake", "model": "omni-moderation-latest", "results": [result for _ in inputs]})

    async def chat(self, request: Request) -> Response:
        return await self._chat(request, azure=False)

    async def _chat(self, request: Request, azure: bool) -> Response:
        received = await self.recorder.record(request)
        key = self._presented_key(request, azure)
        if (err := self._auth_error(key)) is not None:
            return err
        body = received.body
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return openai_error(400, "'messages' is a required property")
        model = body.get("model")
        if not model:
            if not azure:  # Azure's deployment names the model
                return openai_error(400, "you must provide a model parameter")
            model = "gpt-4o-mini"
        if self.strict_models and model not in self.models:
            return JSONResponse({"object": "error", "message": f"The model `{model}` does not exist.", "type": "NotFoundError",
                                 "param": None, "code": 404}, status_code=404)
        if model.startswith(REASONING_PREFIXES) and body.get("max_tokens") is not None:
            return JSONResponse({"error": {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
                "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}, status_code=400)
        if model.startswith("status-"):
            status = int(model.split("-", 1)[1])
            return openai_error(status, f"Scenario error {status}", "scenario")
        if model == "leak-secret":
            return openai_error(400, f"Invalid request made with key {key}")
        if model.startswith("json-") and model[5:] in ERROR_KINDS:
            type_, code, _ = ERROR_KINDS[model[5:]]
            return JSONResponse({"error": {"message": f"Scenario {model} for key {key}", "type": type_, "param": None, "code": code}})
        if model == "slow-first-byte":
            await asyncio.sleep(self.slow_seconds)
        if body.get("stream") and model != "json-completion":
            # `plain-*`: an event stream mislabelled `text/plain`, as some local servers send it
            media_type = "text/plain" if model.startswith("plain-") else "text/event-stream"
            return StreamingResponse(self._stream(body, model.removeprefix("plain-"), key, azure), media_type=media_type)
        content, tool_calls = self._answer(body)
        if model == "leak-secret-200":
            content = f"The key I was called with is {key}."
        message = {"role": "assistant", "content": content, "refusal": None}
        if model == "reasoner":
            message["reasoning_content"] = REASONING
        if model == "reasoner-signed":
            message["reasoning"], message["reasoning_details"] = REASONING, REASONING_DETAILS
        if model == "reasoning":
            message["reasoning_content"] = "Thinking it over."
        if tool_calls:
            message["tool_calls"] = tool_calls
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if tool_calls else "stop"}
        completion = {
            "id": "chatcmpl-fake123", "object": "chat.completion", "created": CREATED, "model": model,
            "system_fingerprint": "fp_fake", "choices": [choice],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
        }
        if azure:
            choice["content_filter_results"] = FILTER_RESULTS
            completion["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": FILTER_RESULTS}]
        return JSONResponse(completion)

    @staticmethod
    def _last_user_text(body: dict) -> str:
        for msg in reversed(body["messages"]):
            if msg.get("role") == "user":
                content = msg.get("content")
                if isinstance(content, list):
                    return " ".join(p.get("text", f"[{p.get('type')}]") for p in content)
                return content or ""
        return ""

    def _answer(self, body: dict) -> tuple[str | None, list | None]:
        tools = body.get("tools")
        if str(body.get("model")).startswith("text-only"):
            tools = None
        if tools and not any(m.get("role") == "tool" for m in body["messages"]):
            name = tools[0]["function"]["name"]
            calls = [{"id": "call_fake1", "type": "function", "function": {"name": name, "arguments": json.dumps({"city": "Paris"})}}]
            if body.get("model") == "parallel":
                calls.append({"id": "call_fake2", "type": "function", "function": {"name": name, "arguments": json.dumps({"city": "Rome"})}})
            return None, calls
        return f"Echo: {self._last_user_text(body)}", None

    async def _stream(self, body: dict, model: str, key: str | None = None, azure: bool = False):
        base = {"id": "chatcmpl-fake123", "object": "chat.completion.chunk", "created": CREATED, "model": model, "system_fingerprint": "fp_fake"}

        def event(choices, **extra) -> bytes:
            return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

        def delta(d, finish=None, logprobs=None):
            return event([{"index": 0, "delta": d, "logprobs": logprobs, "finish_reason": finish}])

        def error_event(kind: str) -> bytes:
            type_, code, _ = ERROR_KINDS[kind]
            error = {"message": f"Incorrect API key provided: {key}", "type": type_, "param": None, "code": code}
            return b"data: " + json.dumps({"error": error}).encode() + b"\n\n"

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if azure:
            yield AZURE_PROMPT_FILTER_CHUNK
        if model.startswith("first-") and model[6:] in ERROR_KINDS:
            yield error_event(model[6:])
            return
        yield delta({"role": "assistant", "content": ""})
        if model == "midstream-split":  # the error event in three writes, the key cut in two
            yield delta({"content": "Partial"})
            event = error_event("auth")
            cut = event.index(key.encode()) + 6
            for part in (event[:10], event[10:cut], event[cut:]):
                yield part
                await asyncio.sleep(0.01)
            return
        if model.startswith("midstream-") and model[10:] in ERROR_KINDS:
            yield delta({"content": "Partial"})
            yield error_event(model[10:])
            return
        if model == "leak-secret-200":
            yield delta({"content": f"The key I was called with is {key}."})
        if model == "logprobs-error":
            logprobs = {"content": [{"token": "error", "logprob": -0.1, "bytes": [101, 114, 114, 111, 114], "top_logprobs": []}]}
            yield delta({"content": "error"}, logprobs=logprobs)
        if model == "slow-stream":
            try:
                for i in range(2000):
                    await asyncio.sleep(0.05)
                    yield delta({"content": f"{i} "})
            except (asyncio.CancelledError, GeneratorExit):
                self.recorder.event("disconnect")
                raise
        if model == "stall-stream":
            await asyncio.sleep(self.slow_seconds)
        if model == "truncated-stream":
            yield delta({"content": "partial"})
            return
        content, tool_calls = self._answer(body)
        if model == "reasoner":
            for word in REASONING.split(" "):
                yield delta({"reasoning_content": word + " "})
        if model == "reasoner-signed":
            yield delta({"reasoning": REASONING, "reasoning_details": REASONING_DETAILS})
        if model == "reasoning":
            for piece in ("Thinking ", "it over."):
                yield delta({"content": None, "reasoning_content": piece})
        if tool_calls:
            for n, call in enumerate(tool_calls):
                yield delta({"tool_calls": [{"index": n, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}]})
            pieces = [[args[i:i + 5] for i in range(0, len(args), 5)] for args in (c["function"]["arguments"] for c in tool_calls)]
            for step in range(max(len(p) for p in pieces)):  # one piece of each call in turn
                for n, call_pieces in enumerate(pieces):
                    if step < len(call_pieces):
                        yield delta({"tool_calls": [{"index": n, "function": {"arguments": call_pieces[step]}}]})
            yield delta({}, "tool_calls")
        else:
            for word in content.split(" "):
                yield delta({"content": word + " "})
            yield delta({}, "stop")
        if include_usage:
            yield event([], usage={"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21})
        yield b"data: [DONE]\n\n"
