"""`openai` and `proxy`: OpenAI Chat Completions and any OpenAI-compatible service.

Follows https://platform.openai.com/docs/api-reference/chat. No translation: the client's body
goes upstream as sent (unknown fields included); the upstream's JSON and SSE bytes come back
untouched, except where they must not reach the client as they are:

- Request: when the config changes anything (a forced `model`, a sampling default, the model a
  `proxy` discovered), the body sent is the gateway's own encoding of the parsed request (a raw
  body with duplicate keys collapses to the last one, the one the gateway read); the client's
  bytes go upstream only when nothing changes. A config `max_tokens` fills only a request with
  neither `max_tokens` nor `max_completion_tokens`, as `max_tokens_field`: `max_completion_tokens`
  for `openai` (OpenAI's reasoning models refuse `max_tokens`), `max_tokens` for `proxy` (older
  vLLM, Ollama and resellers know only that one); the config's `max_tokens_field` overrides it.
- Answer: a 200 JSON body with a top-level `error` is that error (§3); the entry's key is
  scrubbed from any body that quotes it.
- Stream: see `gateway.streaming.PassThrough` (mid-stream error events become the §3 error
  event, Azure's annotation-only chunks are dropped, the key is scrubbed). A 200 JSON answer to
  a streamed request is read: an error body raises its §3 error (so a router fails over), a
  whole completion is sent as chunks plus `[DONE]`; anything else is 502.
- `proxy` with no model in the request or config: the upstream's first model from `/models`,
  fetched once per entry and refetched when the upstream answers 404 for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal
from urllib.parse import urlencode

import orjson
from pydantic import Field

from gateway.adapter import Adapter, AdapterConfig, Completion, StreamItem
from gateway.errors import (
    GatewayError,
    SecretBytes,
    error_message_from_body,
    from_openai_error,
    from_upstream_status,
    openai_error_of,
    retry_after_from,
)
from gateway.registry import register
from gateway.request import ChatRequest
from gateway.streaming import ERROR_MARK, PassThrough, completion_chunks

OPENAI_API_BASE = "https://api.openai.com/v1"
# First bytes of an event stream (a `data:`/`event:`/`id:`/`retry:` field or a `:` comment).
SSE_STARTS = (b"data:", b"event:", b"id:", b"retry:", b":")

MaxTokensField = Literal["max_tokens", "max_completion_tokens"]


class OpenAIConfig(AdapterConfig):
    """`api_key` (sent as a bearer token; optional for keyless local servers), `api_base`
    (default OpenAI's), `model` (forced), `organization` (optional `OpenAI-Organization`),
    `max_tokens_field` (where a default `max_tokens` goes; default per type), `embedding_model`
    (forced for `/v1/embeddings`; else the request's model)."""

    api_key: str | None = None
    organization: str | None = None
    embedding_model: str | None = None
    max_tokens_field: MaxTokensField | None = Field(
        None, description="the field a default max_tokens is sent as (openai: max_completion_tokens, proxy: max_tokens)"
    )


class ProxyConfig(OpenAIConfig):
    """As `openai`, but `api_base` is required (the OpenAI-compatible service's `/v1` base).
    Declared as a required field, so a config error names `config.api_base`."""

    api_base: str = Field(min_length=1, description="the OpenAI-compatible service's base URL, e.g. http://localhost:8000/v1")


class OpenAICompatible(Adapter):
    """Shared by every OpenAI-wire upstream: send the body, return the bytes, map errors.

    Streams ask the upstream for usage (`stream_options.include_usage: true`, CONTRACT.md §6)
    even when the client did not; `gateway.streaming.sse_body` reads that usage chunk and drops
    it again for such clients. An upstream that rejects `stream_options` (a 400/422 naming it:
    some OpenAI-compatible servers do) is asked again without it, and this entry stops sending
    it until the config is reloaded; its streams are then counted from the text sent.
    """

    native_family = "openai"
    max_tokens_field = "max_completion_tokens"
    discovers_model = False  # True: with no model named, `resolve_model` asks the upstream
    annotated_stream = False  # True: annotation-only chunks may come anywhere in a stream (Azure)

    def __init__(self, entry, runtime) -> None:
        super().__init__(entry, runtime)
        self.max_tokens_field = getattr(self.config, "max_tokens_field", None) or self.default_max_tokens_field()
        self._leaks = SecretBytes(getattr(self.config, name, None) for name in self.secret_fields)
        self.ask_stream_usage = True  # False once the upstream refused stream_options

    def default_max_tokens_field(self) -> str:
        """Where a config default `max_tokens` goes when `max_tokens_field` is not set."""
        return type(self).max_tokens_field

    def endpoint(self) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def translate_error(self, status: int, body: bytes, headers) -> GatewayError:
        """The §3 error for an upstream error status (OpenAI's error body and codes understood)."""
        retry_after = retry_after_from(headers)
        try:
            error = openai_error_of(orjson.loads(body))
        except orjson.JSONDecodeError:
            error = None
        if error is None:
            return from_upstream_status(status, error_message_from_body(body), retry_after)
        return from_openai_error(error, status, retry_after)

    async def resolve_model(self, request: ChatRequest) -> str | None:
        """The model to send: `model_for` (a `proxy` may ask its upstream)."""
        return self.model_for(request)

    async def retry_model(self, request: ChatRequest, model: str | None, error: GatewayError) -> str | None:
        """Another model to try after `error`, or None (a `proxy` whose discovered model vanished)."""
        return None

    def upstream_body(self, request: ChatRequest, model: str | None, ask_usage: bool = False) -> bytes:
        """The client's bytes as sent when nothing changes (no re-encoding); else the gateway's
        encoding of the parsed body with the forced model, the sampling defaults and, with
        `ask_usage`, `stream_options.include_usage: true` (§6: streams are counted)."""
        if not ask_usage and not self._defaults and not self.config.model and model == request.model:
            return request.raw
        body = self.prepared_body(request, model)
        if ask_usage:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return orjson.dumps(body)

    async def complete(self, request: ChatRequest) -> Completion:
        model = await self.resolve_model(request)
        try:
            return await self._complete(request, model)
        except GatewayError as error:
            retry = await self.retry_model(request, model, error)
            if retry is None:
                raise
            return await self._complete(request, retry)

    async def _complete(self, request: ChatRequest, model: str | None) -> bytes:
        response = await self.runtime.http.request(
            "POST", self.endpoint(), headers=self.headers(), content=self.upstream_body(request, model), proxies=self.config.proxies
        )
        if response.status >= 400:
            raise self.translate_error(response.status, response.content, response.headers)
        content = response.content
        if ERROR_MARK in content:
            self._raise_error_body(content, response.headers)
        return self._leaks(content)

    def embeddings_endpoint(self) -> str:
        """The URL of this upstream's OpenAI embeddings API."""
        raise NotImplementedError

    async def embed(self, request) -> dict:
        """`/v1/embeddings` forwarded as sent (token arrays, `dimensions`, `encoding_format`
        included), the config's `embedding_model` written in when set. Raises GatewayError."""
        model = getattr(self.config, "embedding_model", None) or request.model
        body = request.raw if model == request.model else orjson.dumps({**request.body, "model": model})
        response = await self.runtime.http.request(
            "POST", self.embeddings_endpoint(), headers=self.headers(), content=body, proxies=self.config.proxies)
        if response.status >= 400:
            raise self.translate_error(response.status, response.content, response.headers)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            self._raise_error_body(response.content, response.headers)  # a 200 that is an error (resellers)
            raise from_upstream_status(502, "the upstream's embeddings answer is not OpenAI's format")
        return data

    def _raise_error_body(self, content: bytes, headers) -> None:
        """Raise the §3 error of a 200 body that is an OpenAI-shaped error (some resellers and
        One API answer errors with 200); return for any other body."""
        try:
            error = openai_error_of(orjson.loads(content))
        except orjson.JSONDecodeError:
            return
        if error is not None:
            raise from_openai_error(error, 200, retry_after_from(headers))

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        model = self.model_for(request)
        if model is not None or not self.discovers_model:
            return self._stream(request, model)
        return self._stream_resolving(request)

    async def _stream_resolving(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """`_stream` with the model resolved first, and retried once with `retry_model`'s choice
        when the upstream refuses it before the stream started."""
        model = await self.resolve_model(request)
        inner = self._stream(request, model)
        try:
            try:
                first = await anext(inner)
            except StopAsyncIteration:
                return
            except GatewayError as error:
                retry = await self.retry_model(request, model, error)
                if retry is None:
                    raise
                await inner.aclose()
                inner = self._stream(request, retry)
                try:
                    first = await anext(inner)
                except StopAsyncIteration:
                    return
            yield first
            async for item in inner:
                yield item
        finally:
            await inner.aclose()

    async def _stream(self, request: ChatRequest, model: str | None) -> AsyncIterator[StreamItem]:
        ask_usage = self.ask_stream_usage and not request.include_usage
        async with self.runtime.http.stream(
            "POST", self.endpoint(), headers=self.headers(), content=self.upstream_body(request, model, ask_usage),
            proxies=self.config.proxies,
        ) as upstream:
            if upstream.status >= 400:
                body = await upstream.aread()
                if not (ask_usage and upstream.status in (400, 422) and b"stream_options" in body):
                    raise self.translate_error(upstream.status, body, upstream.headers)
                self.ask_stream_usage = False  # this server refuses stream_options: ask again without
                retry = True
            else:
                retry = False
                async for item in self._events(upstream):
                    yield item
        if retry:
            async with self.runtime.http.stream(
                "POST", self.endpoint(), headers=self.headers(), content=self.upstream_body(request, model), proxies=self.config.proxies
            ) as upstream:
                if upstream.status >= 400:
                    raise self.translate_error(upstream.status, await upstream.aread(), upstream.headers)
                async for item in self._events(upstream):
                    yield item

    async def _events(self, upstream) -> AsyncIterator[StreamItem]:
        """The items of an open, successful upstream stream: screened SSE bytes, or the chunks of
        a JSON completion that answered a streamed request."""
        chunks = upstream.aiter_bytes()
        screen = PassThrough(self._leaks, self.annotated_stream)
        if "text/event-stream" not in upstream.headers.get("content-type", ""):
            first = b""
            async for first in chunks:
                if first.strip():
                    break
            if not first.lstrip().startswith(SSE_STARTS):
                await chunks.aclose()
                for item in self._json_answer(first + await upstream.aread(), upstream.headers):
                    yield item
                return
            if out := screen.feed(first):
                yield out
            if screen.error is not None:
                raise screen.error
        async for chunk in chunks:
            out = screen.feed(chunk)
            if out:
                yield out
            if screen.error is not None:
                raise screen.error
        if out := screen.finish():
            yield out
        if screen.error is not None:
            raise screen.error

    def _json_answer(self, body: bytes, headers) -> list[dict]:
        """The chunks for a 200 that answered a streamed request with a body instead of an event
        stream: a JSON completion as chunks; an error body raises its §3 error; else 502."""
        try:
            data = orjson.loads(self._leaks(body))
        except orjson.JSONDecodeError:
            raise from_upstream_status(502, "the upstream answered a streamed request with neither an event stream nor JSON") from None
        error = openai_error_of(data)
        if error is not None:
            raise from_openai_error(error, 200, retry_after_from(headers))
        if isinstance(data, dict) and isinstance(data.get("choices"), list) and data["choices"]:
            return completion_chunks(data)
        raise from_upstream_status(502, "the upstream answered a streamed request with JSON that is not a chat completion")


@register("openai")
class OpenAIAdapter(OpenAICompatible):
    """OpenAI's API (or any base URL speaking it): `{api_base}/chat/completions`, `{api_base}/models`."""

    Config = OpenAIConfig
    default_model = "gpt-4o-mini"

    def __init__(self, entry, runtime) -> None:
        super().__init__(entry, runtime)
        base = self.config.api_base or OPENAI_API_BASE
        self._url = f"{base}/chat/completions"
        self._embeddings_url = f"{base}/embeddings"
        self._models_url = f"{base}/models"
        self._headers = {"content-type": "application/json"}
        if self.config.api_key:
            self._headers["authorization"] = f"Bearer {self.config.api_key}"
        if self.config.organization:
            self._headers["openai-organization"] = self.config.organization

    def endpoint(self) -> str:
        return self._url

    def headers(self) -> dict[str, str]:
        return self._headers

    def embeddings_endpoint(self) -> str:
        return self._embeddings_url

    def native_request(self, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        """`{api_base}/{path}` (`api_base` ends in `/v1`) with the bearer key (and organization)."""
        url = f"{self.config.api_base or OPENAI_API_BASE}/{path}"
        auth = {k: v for k, v in self._headers.items() if k != "content-type"}
        return (f"{url}?{urlencode(query)}" if query else url), {**headers, **auth}

    async def list_models(self) -> list[str]:
        """The forced model, else the upstream's own `/models` list."""
        if self.config.model:
            return [self.config.model]
        return await self.upstream_models()

    async def upstream_models(self) -> list[str]:
        """The model ids of the upstream's `GET {api_base}/models`, in its order. Raises GatewayError."""
        response = await self.runtime.http.request("GET", self._models_url, headers=self._headers, proxies=self.config.proxies)
        if response.status >= 400:
            raise self.translate_error(response.status, response.content, response.headers)
        try:
            data = orjson.loads(response.content)
            return [m["id"] for m in data.get("data", []) if isinstance(m, dict) and "id" in m]
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            raise from_upstream_status(502, "the upstream's model list is not OpenAI's format") from None


@register("proxy")
class ProxyAdapter(OpenAIAdapter):
    """Any OpenAI-compatible service (vLLM, Ollama, llama.cpp, One API, resellers).

    A default `max_tokens` is sent as `max_tokens` (what every such server knows). With no model
    in the request or the config, the model is the first one the upstream's `/models` lists
    (vLLM and most servers refuse a request without `model`), fetched on first need and kept
    for this entry; a 404 for it fetches the list again and retries once with the new first model.
    """

    Config = ProxyConfig
    default_model = None
    max_tokens_field = "max_tokens"
    discovers_model = True

    def __init__(self, entry, runtime) -> None:
        super().__init__(entry, runtime)
        self._discovered: str | None = None
        self._discovering = asyncio.Lock()

    async def resolve_model(self, request: ChatRequest) -> str | None:
        model = self.model_for(request)
        if model is not None:
            return model
        if self._discovered is None:
            async with self._discovering:
                if self._discovered is None:
                    self._discovered = await self._first_upstream_model()
        return self._discovered

    async def retry_model(self, request: ChatRequest, model: str | None, error: GatewayError) -> str | None:
        if error.status != 404 or model is None or self.model_for(request) is not None:
            return None
        async with self._discovering:
            if self._discovered == model:
                self._discovered = await self._first_upstream_model()
            fresh = self._discovered
        return fresh if fresh != model else None

    async def _first_upstream_model(self) -> str:
        models = await self.upstream_models()
        if not models:
            raise GatewayError(
                400,
                "No model was given, this token's config names none, and the upstream lists no models: pass 'model'.",
                param="model",
            )
        return models[0]
