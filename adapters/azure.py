"""`azure`: Azure OpenAI deployments.

Follows the Azure OpenAI data-plane reference (chat completions):
`POST {api_base}/openai/deployments/{deployment_id}/chat/completions?api-version={api_version}`
with the key in the `api-key` header. The wire format is OpenAI's, so no translation; the
request, answer and stream rules of `adapters.openai` apply (Azure's annotation-only stream
chunks, `"object": ""`, are dropped there).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from pydantic import Field

from gateway.registry import register

from adapters.openai import MaxTokensField, OpenAICompatible
from gateway.adapter import AdapterConfig


# The first data-plane api-version that takes `max_completion_tokens` (2024-09-01-preview,
# https://learn.microsoft.com/azure/ai-services/openai/api-version-deprecation); earlier ones
# know only `max_tokens`.
MAX_COMPLETION_TOKENS_SINCE = "2024-09-01"


class AzureConfig(AdapterConfig):
    """`api_base`: the resource root (`https://NAME.openai.azure.com`); `deployment_id`;
    `api_version` (e.g. `2024-10-21`); `api_key`; `max_tokens_field` (where a default
    `max_tokens` goes; default `max_completion_tokens` from api-version 2024-09-01 on, else
    `max_tokens`)."""

    api_base: str
    deployment_id: str
    api_version: str = "2024-10-21"
    api_key: str
    max_tokens_field: MaxTokensField | None = Field(
        None, description="the field a default max_tokens is sent as (default: max_completion_tokens from api-version 2024-09-01)"
    )


@register("azure")
class AzureAdapter(OpenAICompatible):
    """An Azure OpenAI deployment. The deployment fixes the model; `model` in the body is kept."""

    Config = AzureConfig
    annotated_stream = True  # the asynchronous content filter annotates anywhere in the stream

    def __init__(self, entry, runtime) -> None:
        super().__init__(entry, runtime)
        c = self.config
        self._url = f"{c.api_base}/openai/deployments/{quote(c.deployment_id, safe='')}/chat/completions?api-version={quote(c.api_version, safe='')}"
        self._headers = {"content-type": "application/json", "api-key": c.api_key}
        self._embeddings_url = self._url.replace("/chat/completions?", "/embeddings?", 1)

    def default_max_tokens_field(self) -> str:
        """`max_completion_tokens` for api-versions that take it, else `max_tokens`."""
        return "max_completion_tokens" if self.config.api_version[:10] >= MAX_COMPLETION_TOKENS_SINCE else "max_tokens"

    def endpoint(self) -> str:
        return self._url

    def headers(self) -> dict[str, str]:
        return self._headers

    def embeddings_endpoint(self) -> str:
        """`{api_base}/openai/deployments/{deployment_id}/embeddings?api-version=...`: the
        deployment decides the embedding model."""
        return self._embeddings_url

    def native_request(self, path: str, query: list[tuple[str, str]], headers: dict[str, str]) -> tuple[str, dict[str, str]]:
        """`{api_base}/openai/deployments/{deployment_id}/{path}?api-version=...` with `api-key`
        (the client's own `api-version` wins when it sent one)."""
        c = self.config
        if not any(name == "api-version" for name, _ in query):
            query = [*query, ("api-version", c.api_version)]
        url = f"{c.api_base}/openai/deployments/{quote(c.deployment_id, safe='')}/{path}?{urlencode(query)}"
        return url, {**headers, "api-key": c.api_key}

    async def list_models(self) -> list[str]:
        """The forced model, else the deployment's name."""
        return [self.config.model or self.config.deployment_id]
