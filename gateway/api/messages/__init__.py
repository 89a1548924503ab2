"""Anthropic Messages ingress (CONTRACT.md §10): `POST /v1/messages` (also `?beta=true`) and
`POST /v1/messages/count_tokens` for every token.

- A `claude` token (directly, or what a `model-name-router` maps the request's model to) is
  relayed natively: the client's body (the config's forced `model` written in), its
  `anthropic-version` / `anthropic-beta` and other headers, the entry's key injected
  (`gateway.api.relay`); the answer, stream and error bodies come back as Anthropic sent them.
- Any other token is translated: `request.py` makes a chat completion request, which goes
  through `gateway.dispatch` (routers, failover, timeouts apply) to the token's adapter;
  `response.py` / `stream.py` turn its answer back into a `message` or an event stream.
- Errors are Anthropic-shaped (`errors.py`). `count_tokens` is 404 `not_found_error` for
  translated tokens, so clients (Claude Code) estimate locally.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import orjson
from starlette.routing import Route

from gateway import dispatch
from gateway.adapter import Adapter
from gateway.api.asgi import client_token, query_params, read_body, send_bytes
from gateway.api.messages.errors import error_json, not_found
from gateway.api.messages.request import check_request, estimate_input_tokens, parse_object, translate_request
from gateway.api.messages.response import translate_completion
from gateway.api.messages.stream import message_events
from gateway.api.relay import forward_headers, relay
from gateway.errors import GatewayError
from gateway.keys.guard import CLIENT_GONE, Ticket, limit_headers, request_context
from gateway.keys.meter import meter_stream
from gateway.request import ChatRequest
from gateway.streaming import send_sse

log = logging.getLogger("gateway.messages")

JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


def answering_entry(adapter: Adapter, model: str | None) -> Adapter:
    """The entry that answers this token and model: `model-name-router`s followed (raising
    their 404/400 for an unmapped model); a `router` is itself (its members are tried in turn)."""
    for _ in range(16):  # config loading refuses cycles; this only bounds the walk
        if adapter.type_name != "model-name-router":
            break
        adapter = adapter.target(SimpleNamespace(model=model))
    return adapter


def _name_header(adapter: Adapter, served_by: str | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-gateway-token-name", adapter.name.encode())]
    if served_by and served_by != adapter.name:
        headers.append((b"x-gateway-served-by", served_by.encode()))
    return headers


class MessagesEndpoint:
    """`POST /v1/messages` or, with `count_tokens=True`, `POST /v1/messages/count_tokens`, as a
    plain ASGI app. Answers an Anthropic `message`, an event stream, `{input_tokens}`, or an
    Anthropic-shaped error; never a traceback."""

    def __init__(self, gateway, count_tokens: bool = False) -> None:
        self.gateway = gateway
        self.count_tokens = count_tokens
        self.path = "v1/messages/count_tokens" if count_tokens else "v1/messages"

    async def __call__(self, scope, receive, send) -> None:
        runtime = self.gateway.runtime
        ticket = None
        try:
            adapter = runtime.authenticate(client_token(scope))
            where = request_context(scope)
            try:
                raw = await read_body(receive)
                body = parse_object(raw)
                model = body.get("model") if isinstance(body.get("model"), str) else None
                entry = answering_entry(adapter, model)
                native = entry.native_family == "anthropic"  # a claude entry: relayed natively, Anthropic checks the body
                if not native and self.count_tokens:
                    raise not_found("count_tokens is only available for tokens whose upstream is Anthropic; estimate locally.")
                if not native:
                    body = check_request(body)
            except GatewayError as error:
                runtime.guard.failed(adapter, error, surface="messages", **where)
                raise
            # §6: the presented token's limits (counting tokens costs nothing upstream: not limited)
            if not self.count_tokens:
                max_tokens = body.get("max_tokens")
                ticket = await runtime.guard.admit(
                    adapter, model=model, prompt_tokens=estimate_input_tokens(body),
                    max_output=max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
                    stream=body.get("stream") is True, surface="messages", **where)
            if native:
                await self._native(entry, adapter, scope, receive, send, raw, body, ticket)
            else:
                with ticket:
                    await self._translated(adapter, entry, body, receive, send, ticket)
        except ConnectionResetError:
            return  # the client went away while sending its body
        except GatewayError as error:
            if error.status >= 500 or (error.status == 429 and not error.headers):
                log.warning("messages request failed: %s %s: %s", error.status, error.code, runtime.scrub(error.message))
            await send_bytes(send, error.status, error_json(error, runtime.scrub), JSON + limit_headers(error, ticket))
        except Exception as exc:
            log.exception("messages request failed unexpectedly: %s", type(exc).__name__)
            error = GatewayError(500, "The gateway failed to handle the request.", type="api_error")
            await send_bytes(send, 500, error_json(error), list(JSON))

    async def _native(self, native: Adapter, adapter: Adapter, scope, receive, send, raw: bytes, body: dict,
                      ticket: Ticket | None = None) -> None:
        """Relay to the claude entry's `/v1/messages[/count_tokens]`, its forced model written in.
        The relayed answer is not read: its usage is counted as the prompt estimate (`estimated`)."""
        if ticket is not None:
            ticket.meter.mark_unread()
            with ticket:
                await self._native(native, adapter, scope, receive, send, raw, body)
            return
        forced = native.config.model
        if forced and body.get("model") != forced:
            raw = orjson.dumps({**body, "model": forced})
        headers = forward_headers(scope["headers"])
        headers["content-length"] = str(len(raw))
        query = [(k, v) for k, v in query_params(scope) if k != "key"]
        url, headers = native.native_request(self.path, query, headers)
        await relay(native, "POST", url, headers, raw, send, receive, _name_header(adapter, native.name))

    async def _translated(self, adapter: Adapter, entry: Adapter, body: dict, receive, send, ticket: Ticket) -> None:
        """Through `gateway.dispatch` to `adapter`; the body is made for `entry`, the one that answers.
        The chat answer's usage goes to `ticket.meter` (§6)."""
        runtime = self.gateway.runtime
        chat = ChatRequest.from_body(translate_request(body, entry.type_name, entry.max_tokens_field))
        if chat.stream:
            first, rest = await dispatch.open_stream(adapter, chat)
            first, rest = meter_stream(first, rest, ticket.meter)
            events = message_events(first, rest, body["model"], estimate_input_tokens(body), runtime.scrub)
            if not await send_sse(send, receive, SSE + _name_header(adapter, dispatch.served_by.get()) + ticket.headers, events):
                ticket.status, ticket.error_code = CLIENT_GONE, "client_closed_request"
            return
        completion = await dispatch.complete(adapter, chat)
        if isinstance(completion, bytes):
            ticket.meter.take_json(completion)
        else:
            ticket.meter.take(completion.get("usage"))
        message = translate_completion(completion, body["model"])
        await send_bytes(send, 200, orjson.dumps(message), JSON + _name_header(adapter, dispatch.served_by.get()) + ticket.headers)


def routes(gateway) -> list[Route]:
    """The Anthropic Messages routes."""
    return [
        Route("/v1/messages", MessagesEndpoint(gateway), methods=["POST"]),
        Route("/v1/messages/count_tokens", MessagesEndpoint(gateway, count_tokens=True), methods=["POST"]),
    ]


__all__ = ["MessagesEndpoint", "answering_entry", "routes"]
