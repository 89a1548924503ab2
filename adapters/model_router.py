"""`model-name-router`: picks a token by the request's `model` (CONTRACT.md §4).

Config (the seed's, 002)::

    {model-2-token: {MODEL_NAME: TOKEN, ..., default: TOKEN}}

A request's `model` selects the target token; `default` (optional) catches models that are not
listed and requests without a `model`. An unlisted model with no `default` is 404
`model_not_found`; a request without `model` and no `default` is 400 `invalid_request_error`.
The target receives the request as it is (its own forced `model` and defaults still apply) and
may be any token of the config: a provider, a `router`, another `model-name-router`, or an
`internal` entry. There is no failover here (one target per model); put a `router` behind a
model name for that. `/v1/models` lists the mapping's keys except `default`.

The target's answer is bounded by `request_timeout` through `gateway.dispatch`, and its entry
`name` (or, for a router target, the innermost member that answered) is published in
`gateway.dispatch.served_by`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated

from pydantic import ConfigDict, Field

from adapters.router import RoutingConfig, complete_member, embed_member, open_member
from gateway import dispatch
from gateway.adapter import Adapter, Completion, StreamItem
from gateway.errors import invalid_request, model_not_found
from gateway.registry import register
from gateway.request import ChatRequest

DEFAULT_KEY = "default"


class ModelRouterConfig(RoutingConfig):
    """`model-2-token`: model name → token (at least one entry); the key `default` is the
    catch-all. Also accepted as `model_2_token`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)

    model_2_token: dict[str, Annotated[str, Field(min_length=1)]] = Field(alias="model-2-token", min_length=1)


@register("model-name-router")
class ModelNameRouterAdapter(Adapter):
    """Routes each request to the token its `model` maps to."""

    Config = ModelRouterConfig
    secret_fields = ()
    is_router = True

    @classmethod
    def labelled_references(cls, config: ModelRouterConfig) -> list[tuple[str, str]]:
        return [(f"config.model-2-token.{model}", token) for model, token in config.model_2_token.items()]

    def target(self, request: ChatRequest) -> Adapter:
        """The adapter for this request's model. Raises GatewayError 404 (unknown model, no
        `default`) or 400 (no `model`, no `default`)."""
        mapping = self.config.model_2_token
        token = mapping.get(request.model) if request.model is not None else None
        if token is None:
            token = mapping.get(DEFAULT_KEY)
        if token is None:
            if request.model is None:
                raise invalid_request(
                    "you must provide a model parameter: this token routes by model name and has no 'default' route",
                    param="model",
                )
            raise model_not_found(request.model)
        return self.runtime.adapter(token)

    async def complete(self, request: ChatRequest) -> Completion:
        """The target's answer (its errors unchanged, so an enclosing router can fail over)."""
        completion, name = await complete_member(self.target(request), request)
        dispatch.served_by.set(name)
        return completion

    async def embed(self, request) -> dict:
        """The target's embeddings (an `EmbeddingRequest` has a `model` too)."""
        result, name = await embed_member(self.target(request), request)
        dispatch.served_by.set(name)
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        """The target's stream, its first item awaited under `request_timeout`."""
        (first, rest), name = await open_member(self.target(request), request)
        dispatch.served_by.set(name)
        async with aclosing(rest):
            if first is not None:
                yield first
            async for item in rest:
                yield item

    async def list_models(self) -> list[str]:
        """The mapping's model names, `default` excluded."""
        return [model for model in self.config.model_2_token if model != DEFAULT_KEY]
