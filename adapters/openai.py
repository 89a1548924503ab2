"""`openai` and `proxy`: OpenAI Chat Completions and any OpenAI-compatible service.

Follows https://platform.openai.com/docs/api-reference/chat. No translation: the client's body
goes upstream as sent (unknown fields included), with the config's forced `model` and sampling
defaults filled in; the upstream's JSON and SSE bytes come back untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from pydantic import Field

from gateway.adapter import Adapter, AdapterConfig, Completion, StreamItem
from gateway.errors import GatewayError, error_message_from_body, from_upstream_status, parse_retry_after
from gateway.registry import register
from gateway.request import ChatRequest

OPENAI_API_BASE = "https://api.openai.com/v1"


class OpenAIConfig(AdapterConfig):
    """`api_key` (sent as a bearer token; optional for keyless local servers), `api_base`
    (default OpenAI's), `model` (forced), `organization` (optional `OpenAI-Organization`)."""

    api_key: str | None = None
    organization: str | None = None


class ProxyConfig(OpenAIConfig):
    """As `openai`, but `api_base` is required (the OpenAI-compatible service's `/v1` base).
    Declared as a required field, so a config error names `config.api_base`."""

    api_base: str = Field(min_length=1, description="the OpenAI-compatible service's base URL, e.g. http://localhost:8000/v1")


class OpenAICompatible(Adapter):
    """Shared by every OpenAI-wire upstream: send the body, return the bytes, map errors."""

    def endpoint(self) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def translate_error(self, status: int, body: bytes, headers) -> GatewayError:
        return from_upstream_status(status, error_message_from_body(body), parse_retry_after(headers.get("retry-after")))

    def upstream_body(self, request: ChatRequest) -> bytes:
        """The client's bytes as sent when nothing needs filling in (no re-encoding), else the
        body with the forced model and sampling defaults."""
        if not self._defaults and self.model_for(request) == request.model:
            return request.raw
        return orjson.dumps(self.prepared_body(request))

    async def complete(self, request: ChatRequest) -> Completion:
        response = await self.runtime.http.request(
            "POST", self.endpoint(), headers=self.headers(), content=self.upstream_body(request), proxies=self.config.proxies
        )
        if response.status >= 400:
            raise self.translate_error(response.status, response.content, response.headers)
        return response.content

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        async with self.runtime.http.stream(
            "POST", self.endpoint(), headers=self.headers(), content=self.upstream_body(request), proxies=self.config.proxies
        ) as upstream:
            if upstream.status >= 400:
                raise self.translate_error(upstream.status, await upstream.aread(), upstream.headers)
            async for chunk in upstream.aiter_bytes():
                yield chunk


@register("openai")
class OpenAIAdapter(OpenAICompatible):
    """OpenAI's API (or any base URL speaking it): `{api_base}/chat/completions`, `{api_base}/models`."""

    Config = OpenAIConfig
    default_model = "gpt-4o-mini"

    def __init__(self, entry, runtime) -> None:
        super().__init__(entry, runtime)
        base = self.config.api_base or OPENAI_API_BASE
        self._url = f"{base}/chat/completions"
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

    async def list_models(self) -> list[str]:
        """The forced model, else the upstream's own `/models` list."""
        if self.config.model:
            return [self.config.model]
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
    """Any OpenAI-compatible service (vLLM, Ollama, llama.cpp, One API, resellers)."""

    Config = ProxyConfig
    default_model = None
