"""What every adapter is: a configured upstream that answers OpenAI chat completion requests.

An adapter module in `adapters/` subclasses `Adapter` (or, for an HTTP provider, `HTTPAdapter`),
sets `Config` to the pydantic model of its `config` block, and registers itself with
`gateway.registry.register`.

`Adapter.complete` returns a `chat.completion` (a dict, or the upstream's own JSON bytes when no
translation is needed). `Adapter.stream` is an async generator of `chat.completion.chunk`
objects (dicts) or of raw OpenAI SSE bytes; it raises `GatewayError` before its first item when
the upstream fails, which is what lets routers fail over before anything reached the client.

`HTTPAdapter` is the Portkey-style shape: a provider supplies where to send (`endpoint`,
`headers`), `translate_request`, `translate_response`, a per-stream `StreamTranslator`, and
optionally `translate_error`; the exchange itself (pooled client, timeouts, SSE, errors) is shared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from httpx_sse import ServerSentEvent
from pydantic import BaseModel, ConfigDict, field_validator

from gateway.errors import (
    GatewayError,
    error_message_from_body,
    from_upstream_status,
    invalid_request,
    retry_after_from,
)
from gateway.request import ChatRequest

if TYPE_CHECKING:
    from gateway.config import Entry
    from gateway.runtime import Runtime

Completion = dict[str, Any] | bytes
StreamItem = dict[str, Any] | bytes

# Request fields an adapter's config may default (applied when the request has none).
SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty", "seed", "stop")
# The two names OpenAI's API has for one limit (`max_tokens` is deprecated in favour of
# `max_completion_tokens`, which reasoning models require): a request that sets either has set it.
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")


class AdapterConfig(BaseModel):
    """Fields every adapter's `config` accepts (CONTRACT.md §4).

    `api_base`: base URL of the provider's API (each adapter documents its default);
    `model`: forced upstream model; `proxies`: outbound HTTP proxy (`{https: URL}` or one URL);
    sampling defaults (`temperature`, `top_p`, `max_tokens`, ...) used when a request has none.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    api_base: str | None = None
    model: str | None = None
    proxies: dict[str, str] | str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None

    @field_validator("api_base")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    def sampling_defaults(self) -> dict[str, Any]:
        """The sampling defaults that are set."""
        return {k: v for k in SAMPLING_FIELDS if (v := getattr(self, k)) is not None}


class Adapter:
    """One configured upstream. Subclasses override `complete`, `stream` and maybe `list_models`.

    Class attributes: `Config` (config model), `default_model` (used when neither the request
    nor the config names one), `secret_fields` (config fields masked and scrubbed),
    `is_router` (members are bounded by their own timeouts), `max_tokens_field` (the request
    field a config default `max_tokens` is filled into, see `prepared_body`).
    """

    type_name: ClassVar[str] = ""
    Config: ClassVar[type[AdapterConfig]] = AdapterConfig
    default_model: ClassVar[str | None] = None
    secret_fields: ClassVar[tuple[str, ...]] = ("api_key",)
    is_router: ClassVar[bool] = False
    max_tokens_field: str = "max_tokens"
    # Which native pass-through (CONTRACT.md §10) this entry serves: "anthropic", "gemini",
    # "openai", or None (no native API to relay to).
    native_family: ClassVar[str | None] = None

    def __init__(self, entry: Entry, runtime: Runtime) -> None:
        self.entry = entry
        self.config = entry.config
        self.runtime = runtime
        self._defaults = self.config.sampling_defaults()
        self._sampling = {k: v for k, v in self._defaults.items() if k != "max_tokens"}
        self._max_tokens = self._defaults.get("max_tokens")

    @property
    def name(self) -> str:
        """The entry's display name (never its token)."""
        return self.entry.name

    def model_for(self, request: ChatRequest) -> str | None:
        """The upstream model: the config's forced `model`, else the request's, else the default."""
        return self.config.model or request.model or self.default_model

    def prepared_body(self, request: ChatRequest, model: str | None = None) -> dict[str, Any]:
        """A copy of the request body with the forced model (`model`, else `model_for`) and the
        config's sampling defaults, each filled only where the request has none (None counts as
        none). `max_tokens` and `max_completion_tokens` are one limit: the config's `max_tokens`
        fills `self.max_tokens_field` only when the request set neither, and the client's field
        is kept as sent (CONTRACT.md §4)."""
        body = dict(request.body)
        for key, value in self._sampling.items():
            if body.get(key) is None:
                body[key] = value
        if self._max_tokens is not None and body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body[self.max_tokens_field] = self._max_tokens
        model = model or self.model_for(request)
        if model is not None:
            body["model"] = model
        return body

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer a non-streamed request with a `chat.completion`. Raises GatewayError."""
        raise NotImplementedError

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """Answer a streamed request: chunks (dicts) or raw OpenAI SSE bytes. Raises GatewayError."""
        raise NotImplementedError

    async def list_models(self) -> list[str]:
        """Model ids this token can reach (§4's rules): the forced model, else the default."""
        model = self.config.model or self.default_model
        return [model] if model else []

    def native_request(self, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        """`(url, headers)` for relaying a client's native call: `path` (relative, already
        checked by `gateway.api.passthrough`) joined to this entry's API base as its SDK would,
        `query` (the client's, credentials removed) appended, and `headers` (the client's,
        credentials removed) plus this entry's own key. Only for entries with a `native_family`."""
        raise NotImplementedError

    async def embed(self, request: Any) -> dict[str, Any]:
        """Answer an embeddings request (`gateway.api.embeddings.EmbeddingRequest`) with OpenAI's
        `{object: "list", data: [{object: "embedding", index, embedding}], model, usage}`.
        Raises GatewayError; by default 400: this type has no embeddings."""
        raise invalid_request(f"Tokens of type '{self.type_name}' have no embeddings endpoint.", code="embeddings_unsupported")

    @classmethod
    def references(cls, config: AdapterConfig) -> list[str]:
        """Tokens this entry routes to (routers); checked at load for existence and cycles."""
        return [ref for _, ref in cls.labelled_references(config)]

    @classmethod
    def labelled_references(cls, config: AdapterConfig) -> list[tuple[str, str]]:
        """`(field path, token)` for each token this entry routes to."""
        return []


class StreamTranslator:
    """Per-stream state that turns a provider's stream events into OpenAI chunks.

    `feed` takes one upstream event and returns the chunks it yields (maybe none); `finish`
    returns the closing chunks after the upstream ended (e.g. the usage chunk). A final usage
    chunk is always produced when the provider reports usage; the gateway drops it unless the
    client asked for `stream_options.include_usage`.
    """

    def feed(self, event: ServerSentEvent) -> list[dict[str, Any]]:
        raise NotImplementedError

    def finish(self) -> list[dict[str, Any]]:
        return []


class HTTPAdapter(Adapter):
    """An adapter for a provider spoken over HTTP with JSON bodies and SSE streams."""

    def __init__(self, entry: Entry, runtime: Runtime) -> None:
        super().__init__(entry, runtime)
        self._headers = self.fixed_headers()

    def fixed_headers(self) -> dict[str, str]:
        """The headers every request of this entry carries (auth, version), built once."""
        return {"content-type": "application/json"}

    def endpoint(self, request: ChatRequest, stream: bool) -> str:
        """The full URL to call."""
        raise NotImplementedError

    def headers(self, request: ChatRequest) -> dict[str, str]:
        """Request headers: `fixed_headers()` unless the provider needs per-request ones (a token
        that expires, say)."""
        return self._headers

    def translate_request(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        """The provider's request body for this OpenAI request."""
        raise NotImplementedError

    def translate_response(self, data: Any, request: ChatRequest) -> Completion:
        """A `chat.completion` from the provider's JSON answer. May raise GatewayError."""
        raise NotImplementedError

    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        """A fresh translator for one stream."""
        raise NotImplementedError

    def translate_error(self, status: int, body: bytes, headers: Any) -> GatewayError:
        """A §3 error for an upstream error status, or for a 200 that answered a streamed call
        with something other than an event stream (default: the body's message, status mapped;
        a 200 becomes 502 `upstream_error`)."""
        return from_upstream_status(status, error_message_from_body(body), retry_after_from(headers))

    async def complete(self, request: ChatRequest) -> Completion:
        response = await self.runtime.http.request(
            "POST",
            self.endpoint(request, False),
            headers=self.headers(request),
            content=orjson.dumps(self.translate_request(request, False)),
            proxies=self.config.proxies,
        )
        if response.status >= 400:
            raise self.translate_error(response.status, response.content, response.headers)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise from_upstream_status(502, "the upstream answered with a body that is not JSON") from None
        return self.translate_response(data, request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        async with self.runtime.http.stream(
            "POST",
            self.endpoint(request, True),
            headers=self.headers(request),
            content=orjson.dumps(self.translate_request(request, True)),
            proxies=self.config.proxies,
        ) as upstream:
            if upstream.status >= 400 or "text/event-stream" not in upstream.headers.get("content-type", ""):
                raise self.translate_error(upstream.status, await upstream.aread(), upstream.headers)
            translator = self.stream_translator(request)
            async for event in upstream.aiter_sse():
                for chunk in translator.feed(event):
                    yield chunk
            for chunk in translator.finish():
                yield chunk
