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
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.vectors import vector
from tests.support.recorder import Received, Recorder

ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_denied", 404: "invalid_request_error",
               413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_exceeded"}


def openai_error(status: int, message: str, code: str | None = None) -> JSONResponse:
    headers = {"retry-after": "7"} if status == 429 else None
    body = {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class FakeOpenAI:
    """The fake. `api_key`: the key it accepts (None: any); `recorder`: what it received."""

    def __init__(self, api_key: str | None = "sk-upstream-secret-key-0123456789", slow_seconds: float = 30.0) -> None:
        self.api_key = api_key
        self.slow_seconds = slow_seconds
        self.recorder = Recorder()
        self.models = ["gpt-4o-mini", "gpt-4o"]
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
        base = {"id": "cmpl-fake1", "object": "text_completion", "created": int(time.time()), "model": body["model"]}
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
        return JSONResponse({"created": int(time.time()), "data": [dict(item, revised_prompt=body["prompt"]) for _ in range(body.get("n") or 1)]})

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
        model = body.get("model") or "gpt-4o-mini"
        if model.startswith("status-"):
            status = int(model.split("-", 1)[1])
            return openai_error(status, f"Scenario error {status}", "scenario")
        if model == "leak-secret":
            return openai_error(400, f"Invalid request made with key {key}")
        if model == "slow-first-byte":
            await asyncio.sleep(self.slow_seconds)
        if body.get("stream"):
            return StreamingResponse(self._stream(body, model), media_type="text/event-stream")
        content, tool_calls = self._answer(body)
        message = {"role": "assistant", "content": content, "refusal": None}
        if model == "reasoning":
            message["reasoning_content"] = "Thinking it over."
        if tool_calls:
            message["tool_calls"] = tool_calls
        return JSONResponse({
            "id": "chatcmpl-fake123", "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if tool_calls else "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
        })

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
            return None, [{"id": "call_fake1", "type": "function", "function": {"name": name, "arguments": json.dumps({"city": "Paris"})}}]
        return f"Echo: {self._last_user_text(body)}", None

    async def _stream(self, body: dict, model: str):
        base = {"id": "chatcmpl-fake123", "object": "chat.completion.chunk", "created": int(time.time()), "model": model, "system_fingerprint": "fp_fake"}

        def event(choices, **extra) -> bytes:
            return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

        def delta(d, finish=None):
            return event([{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}])

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        yield delta({"role": "assistant", "content": ""})
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
        if model == "reasoning":
            for piece in ("Thinking ", "it over."):
                yield delta({"content": None, "reasoning_content": piece})
        if tool_calls:
            call = tool_calls[0]
            yield delta({"tool_calls": [{"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}]})
            args = call["function"]["arguments"]
            for i in range(0, len(args), 5):
                yield delta({"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 5]}}]})
            yield delta({}, "tool_calls")
        else:
            for word in content.split(" "):
                yield delta({"content": word + " "})
            yield delta({}, "stop")
        if include_usage:
            yield event([], usage={"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21})
        yield b"data: [DONE]\n\n"
