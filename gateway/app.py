"""The Starlette application: the OpenAI-compatible HTTP API of CONTRACT.md §3.

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{id}`, `GET /healthz`,
the §10 surfaces of `gateway.api` (`/v1/messages`, `/v1/embeddings`, and the native
pass-through routes, mounted last because `/v1/{path}` takes whatever no other route serves),
and the config page's routes, when `gateway.admin` is present. CORS preflights are answered
without auth.

`create_app(config_path)` loads the config (raising `ConfigError`); `create_app()` reads the
path from `$GATEWAY_CONFIG` (how `open-api.py` hands it to uvicorn workers).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import time
from contextlib import asynccontextmanager

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import dispatch, health
from gateway.api import embeddings, messages, passthrough
from gateway.api import responses as responses_api
from gateway.api.messages import models as anthropic_models
from gateway.auth import auth_headers, presented_token
from gateway.body import BodyGuard, ClientGone, declared_length, read_body, too_large
from gateway.config import GatewayConfig, load_config
from gateway.errors import GatewayError, error_json, error_response, model_not_found, retry_after_headers
from gateway.http import UpstreamHTTP
from gateway.keys import views as key_views
from gateway.keys.guard import CLIENT_GONE, SINK_KEY, STORE_KEY
from gateway.keys.restore import restore_budgets
from gateway.middleware import HTTP_ERROR_HANDLERS, LiveCORS
from gateway.observability.request_id import RequestIdMiddleware, request_id_of
from gateway.request import OFFLOAD_BYTES, parse_chat_request, parse_large_chat_request
from gateway.runtime import Runtime
from gateway.store import Database, database_url
from gateway.store.redis import SHARED_REDIS_KEY, SharedRedis
from gateway.store.shared_health import SharedHealth
from gateway.streaming import send_sse, sse_body
from gateway.usage import prices
from gateway.usage.ledger import UsageLedger

log = logging.getLogger("gateway")

DEFAULT_CONFIG = "configs/model_config.yaml"
SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class Gateway:
    """Holds the current `Runtime` and swaps it atomically on reload."""

    def __init__(self, config: GatewayConfig, path: str | None = None) -> None:
        self.path = path
        self.http = UpstreamHTTP(config.settings)
        # §8: the shared Redis (read at start; a change of redis_url needs a restart). Its
        # stores go into the state before the first runtime is built (its guard takes them).
        state: dict = {}
        self.redis = SharedRedis(config.settings.redis_url, config.settings.redis_timeout) if config.settings.redis_url else None
        if self.redis is not None:
            from gateway.keys.redis_store import RedisCounterStore

            state[SHARED_REDIS_KEY] = self.redis  # routers' round-robin positions
            state[STORE_KEY] = RedisCounterStore(self.redis, config.settings.limits.on_store_error)  # §6's counters
        self.runtime = Runtime(config, self.http, state)
        # §8: the SQL store (usage, stored responses); started in the app's lifespan.
        self.database = Database(database_url(config.settings.database, path))
        # §6: usage events are queued here and written in batches by a background task.
        self.usage = UsageLedger.from_settings(self.database, config.settings.usage)
        self.usage_sink = self.usage  # settlement (gateway/keys) hands its events to the ledger
        prices.configure(config.settings.prices)
        self.shared_health: SharedHealth | None = None

    async def start(self) -> None:
        """Open the stores: the database schema, and the shared cooldowns when Redis is set."""
        await self.database.start()
        self.usage.start()
        if self.redis is not None:
            book = health.book(self.runtime.state)
            self.shared_health = SharedHealth(self.redis, book, lambda: self.runtime.adapters.keys())
            await self.shared_health.start()

    async def aclose(self) -> None:
        """Close upstream connections and the stores."""
        await self.http.aclose()
        if self.shared_health is not None:
            await self.shared_health.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.usage.stop()  # writes what is still queued
        await self.database.close()

    def health_reasons(self) -> list[str]:
        """Why `/healthz` is degraded (§7): the shared stores that are unreachable."""
        reasons = self.redis.reasons() if self.redis is not None else []
        return list(dict.fromkeys(reasons + self.runtime.guard.store.health()))

    @property
    def usage_sink(self):
        """Where usage events go (§6): a `gateway.usage.events.UsageSink`; the ledger writer
        replaces the default in-memory one. Kept across config reloads."""
        return self.runtime.state[SINK_KEY]

    @usage_sink.setter
    def usage_sink(self, sink) -> None:
        self.runtime.state[SINK_KEY] = sink

    @property
    def metrics(self):
        """The §7 metrics (`gateway.observability.metrics.Metrics`), kept across reloads."""
        return self.runtime.guard.metrics

    def apply(self, config: GatewayConfig) -> None:
        """Serve `config` from now on; requests in flight keep the runtime they started with."""
        self.http.configure(config.settings)
        self.runtime = Runtime(config, self.http, self.runtime.state)
        self.usage.configure(config.settings.usage)
        prices.configure(config.settings.prices)


def _json(data: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def _response_headers(content_type: bytes, adapter_name: str | None, served_by: str | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type)]
    if adapter_name:
        headers.append((b"x-gateway-token-name", adapter_name.encode()))
        if served_by and served_by != adapter_name:
            headers.append((b"x-gateway-served-by", served_by.encode()))
    return headers


async def _send_json(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ChatCompletions:
    """`POST /v1/chat/completions`, as a plain ASGI app: this is every request's hot path, so it
    reads the body and writes the answer with ASGI messages directly (no Request/Response
    objects). Answers a `chat.completion` (JSON) or an SSE stream of chunks, or an OpenAI-shaped
    error (§3); an unexpected failure is a 500 `api_error`, never a traceback."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope, receive, send) -> None:
        runtime = self.gateway.runtime
        rid = request_id_of(scope["headers"])
        rid_header = (b"x-request-id", rid.encode())
        adapter = ticket = None
        try:
            limit = runtime.settings.max_request_bytes
            declared = declared_length(scope["headers"])
            if declared is not None and declared > limit:
                raise too_large(limit)  # before auth and before a byte of the body is read
            adapter = runtime.authenticate(presented_token(auth_headers(scope["headers"])))
            guard = runtime.guard
            client = scope.get("client")
            where = {"request_id": rid, "path": scope["path"], "client": client[0] if client else None}
            try:
                raw = await read_body(receive, limit)
                chat = parse_chat_request(raw) if len(raw) < OFFLOAD_BYTES else await parse_large_chat_request(raw, runtime.settings)
            except GatewayError as error:
                guard.failed(adapter, error, **where)
                raise
            ticket = await guard.admit(adapter, model=chat.model or _chosen_model(adapter), body=chat.body, stream=chat.stream, **where)
            with ticket:
                if chat.stream:
                    first, rest = await dispatch.open_stream(adapter, chat)
                    headers = _response_headers(b"text/event-stream", adapter.name, dispatch.served_by.get())
                    headers += SSE_HEADERS
                    headers += ticket.headers
                    headers.append(rid_header)
                    body = sse_body(first, rest, chat.include_usage, runtime.scrub, ticket.meter)
                    if not await send_sse(send, receive, headers, body):
                        ticket.status, ticket.error_code = CLIENT_GONE, "client_closed_request"
                    return
                completion = await dispatch.complete(adapter, chat)
                if isinstance(completion, bytes):
                    ticket.meter.take_json(completion)
                    body = completion
                else:
                    ticket.meter.take(completion.get("usage"))
                    body = orjson.dumps(completion)
                headers = _response_headers(b"application/json", adapter.name, dispatch.served_by.get())
                headers += ticket.headers
                headers.append(rid_header)
                await _send_json(send, 200, body, headers)
        except ClientGone:
            return  # nobody left to answer
        except GatewayError as error:
            if error.status >= 500 or (error.status == 429 and error.code == "rate_limit_exceeded" and not error.headers):
                log.warning("chat completion failed: %s %s: %s", error.status, error.code, runtime.scrub(error.message))
            headers = _response_headers(b"application/json", None, None)
            extra = dict(retry_after_headers(error))
            if error.headers:  # the limits' own: retry-after, x-should-retry, x-ratelimit-*
                extra.update((k.encode(), v.encode()) for k, v in error.headers.items())
            elif ticket is not None:
                headers += ticket.headers  # an upstream error after admission: still the token's windows
            headers += extra.items()
            headers.append(rid_header)
            await _send_json(send, error.status, error_json(error, runtime.scrub), headers)
        except Exception as exc:
            log.exception("chat completion failed unexpectedly: %s", type(exc).__name__)
            error = GatewayError(500, "The gateway failed to handle the request.", type="api_error", code="internal_error")
            await _send_json(send, 500, error_json(error), _response_headers(b"application/json", None, None) + [rid_header])


def _chosen_model(adapter) -> str | None:
    """The model an entry uses for a request that names none (None for routers)."""
    config_model = getattr(adapter.config, "model", None)
    return config_model or adapter.default_model


CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})


def _is_plain_chat_request(scope) -> bool:
    """A chat completion POST without an `Origin` header: SDKs, curl, servers (not a browser,
    so CORS has nothing to add)."""
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and scope["path"] in CHAT_PATHS
        and not any(name == b"origin" for name, _ in scope["headers"])
    )


class GatewayApp(Starlette):
    """Starlette, with the hot path taken first: a plain chat completion request goes straight
    to `ChatCompletions`, past the middleware stack (error, CORS and exception middleware and
    their per-message wrappers) and routing. Everything else, browser requests included, takes
    the normal Starlette path. `ChatCompletions` answers every failure itself."""

    chat: ChatCompletions
    guarded: BodyGuard  # the Starlette path behind the request-size limit

    async def __call__(self, scope, receive, send) -> None:
        if _is_plain_chat_request(scope):
            await self.chat(scope, receive, send)
        else:
            await self.guarded(scope, receive, send)


def _model_object(model_id: str, owner: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


async def _models_of(request: Request) -> tuple[Runtime, list[dict]]:
    runtime: Runtime = request.app.state.gateway.runtime
    adapter = runtime.authenticate(presented_token(auth_headers(request.scope["headers"])))
    runtime.guard.check_expiry(adapter)
    ids = await adapter.list_models()
    limits = adapter.entry.limits
    if limits is not None and limits.models is not None:
        ids = [m for m in ids if limits.allows(m)]  # §6: filtered to the allowlist
    return runtime, [_model_object(m, adapter.type_name) for m in dict.fromkeys(ids)]


async def list_models(request: Request) -> Response:
    """The token's models; in Anthropic's page shape for Anthropic clients (§10)."""
    anthropic = anthropic_models.wants_anthropic(request.headers)
    try:
        _, models = await _models_of(request)
    except GatewayError as error:
        render = anthropic_models.error_response if anthropic else error_response
        return render(error, request.app.state.gateway.runtime.scrub)
    return _json(anthropic_models.model_page(models) if anthropic else {"object": "list", "data": models})


async def retrieve_model(request: Request) -> Response:
    model_id = request.path_params["model"]
    anthropic = anthropic_models.wants_anthropic(request.headers)
    try:
        _, models = await _models_of(request)
        for model in models:
            if model["id"] == model_id:
                return _json(anthropic_models.model_info(model) if anthropic else model)
        raise model_not_found(model_id)
    except GatewayError as error:
        render = anthropic_models.error_response if anthropic else error_response
        return render(error, request.app.state.gateway.runtime.scrub)


async def healthz(request: Request) -> Response:
    reasons = request.app.state.gateway.health_reasons()
    return _json({"status": "degraded", "reasons": reasons} if reasons else {"status": "ok"})


def create_app(config: GatewayConfig | str | os.PathLike | None = None) -> Starlette:
    """The ASGI app for a loaded config or a config path (default `$GATEWAY_CONFIG`, else
    `configs/model_config.yaml`). Raises ConfigError when the file cannot be loaded."""
    path: str | None = None
    if not isinstance(config, GatewayConfig):
        path = str(config or os.environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG)
        config = load_config(path)
    gateway = Gateway(config, path)
    chat = ChatCompletions(gateway)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        await gateway.start()
        await restore_budgets(gateway)
        yield
        await gateway.aclose()

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        *key_views.routes(),  # before pass-through, which takes every other `/v1/{path}`
        *messages.routes(gateway),
        *embeddings.routes(gateway),
        *passthrough.routes(gateway),  # last: `/v1/{path}` takes what no route above serves
    ]
    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(LiveCORS, origins=lambda: gateway.runtime.settings.cors_allow_origins),
    ]
    app = GatewayApp(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers=HTTP_ERROR_HANDLERS)
    app.chat = chat
    app.guarded = BodyGuard(functools.partial(Starlette.__call__, app), lambda: gateway.runtime.settings.max_request_bytes)
    app.state.gateway = gateway
    app.state.started = time.time()
    _mount_admin(app)
    responses_api.mount(app)
    return app


def _mount_admin(app: Starlette) -> None:
    """Add the config page's routes when the admin module is installed (issue #5)."""
    if importlib.util.find_spec("gateway.admin") is None:
        return
    from gateway import admin

    admin.mount(app)


__all__ = ["create_app", "Gateway"]
