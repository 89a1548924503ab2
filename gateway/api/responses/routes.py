"""HTTP routes of the Responses API (CONTRACT.md §9), after openai-python `resources/responses`:

    POST   /v1/responses                      create (JSON, or SSE with `stream: true`)
    GET    /v1/responses/{id}                 retrieve (`include[]`; `stream=true` replays events)
    DELETE /v1/responses/{id}                 {id, object: "response", deleted: true}
    POST   /v1/responses/{id}/cancel          cancel a background response
    GET    /v1/responses/{id}/input_items     the turn's input items (`after`, `limit`, `order`)

Every route authenticates the token like chat completions (§3) and sees only that token's
objects (others are 404). Errors are OpenAI's `{"error": {...}}`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from contextlib import AsyncExitStack

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway import dispatch
from gateway.api.responses import items as it
from gateway.api.responses.events import ResponseEvents
from gateway.api.responses.service import ENCRYPTED, ResponsesService
from gateway.api.responses.tools import ToolMap
from gateway.auth import presented_token
from gateway.errors import GatewayError, error_response
from gateway.keys.guard import Ticket, request_context

log = logging.getLogger("gateway.responses")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def service_of(request: Request) -> ResponsesService:
    return request.app.state.responses


def owner_of(token: str) -> str:
    """The stored owner key of a token: its SHA-256 (the token itself is never stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def authenticated(request: Request):
    """(adapter, owner) for the request's token. Raises GatewayError 401."""
    token = presented_token(request.headers)
    adapter = request.app.state.gateway.runtime.authenticate(token)
    return adapter, owner_of(token)


def json_response(data: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def handles_errors(handler):
    """Turn GatewayError (and any failure) into an OpenAI-shaped error response."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        scrub = request.app.state.gateway.runtime.scrub
        try:
            return await handler(request)
        except GatewayError as error:
            if error.status >= 500 or error.status == 429:
                log.warning("%s %s failed: %s %s: %s", request.method, request.url.path, error.status, error.code, scrub(error.message))
            return error_response(error, scrub)
        except Exception as exc:
            log.exception("%s %s failed unexpectedly: %s", request.method, request.url.path, type(exc).__name__)
            return error_response(GatewayError(500, "The gateway failed to handle the request.", type="api_error", code="internal_error"))

    return wrapped


@handles_errors
async def create_response(request: Request) -> Response:
    adapter, owner = authenticated(request)
    service = service_of(request)
    guard = request.app.state.gateway.runtime.guard
    where = request_context(request.scope)
    async with AsyncExitStack() as stack:  # holds the conversation's lock for the turn
        try:
            turn = await service.prepare(adapter, owner, await request.body(), stack)
        except GatewayError as error:
            guard.failed(adapter, error, surface="responses", **where)
            raise
        # §6: the token's limits, and its usage once the turn is answered
        turn.ticket = ticket = await guard.admit(adapter, model=turn.chat.model or turn.model or None, body=turn.chat.body,
                                                 stream=turn.chat.stream, surface="responses", **where)
        limits = {k.decode(): v.decode() for k, v in ticket.headers}
        if turn.body.get("background") is True and not turn.chat.stream:
            return json_response(await service.start_background(turn, stack), headers=limits)
        if turn.chat.stream:
            try:
                frames = await service.open_stream(turn)
            except BaseException as exc:
                ticket.__exit__(type(exc), exc, exc.__traceback__)
                raise
            return StreamingResponse(_closing(frames, stack.pop_all(), ticket), media_type="text/event-stream",
                                     headers={**SSE_HEADERS, **_served(adapter), **limits})
        with ticket:
            response = json_response(await service.complete(turn), headers={**_served(adapter), **limits})
        return response


def _served(adapter) -> dict[str, str]:
    """`x-gateway-token-name` (and `x-gateway-served-by` for a router), as chat completions send."""
    headers = {"x-gateway-token-name": adapter.name}
    served = dispatch.served_by.get()
    if served and served != adapter.name:
        headers["x-gateway-served-by"] = served
    return headers


async def _closing(frames, held: AsyncExitStack, ticket: Ticket):
    """The frames, then the turn settled (§6 usage) and its held resources (the conversation
    lock) released."""
    try:
        with ticket:
            async for frame in frames:
                yield frame
    finally:
        await frames.aclose()
        await held.aclose()


async def _owned(request: Request) -> tuple[str, dict, list[dict]]:
    _, owner = authenticated(request)
    response_id = request.path_params["response_id"]
    found = await service_of(request).store.get_response(owner, response_id)
    if found is None:
        raise it.not_found("response", response_id)
    return owner, *found


def _include(request: Request) -> bool:
    return ENCRYPTED in request.query_params.getlist("include[]") + request.query_params.getlist("include")


@handles_errors
async def retrieve_response(request: Request) -> Response:
    _, response, _ = await _owned(request)
    if not _include(request):
        response = {**response, "output": [it.public(i) for i in response["output"]]}
    if request.query_params.get("stream") in ("true", "1"):
        after = int(request.query_params.get("starting_after") or -1)
        return StreamingResponse(_replay(response, after), media_type="text/event-stream", headers=SSE_HEADERS)
    return json_response(response)


async def _replay(response: dict, starting_after: int):
    """A stored response's events, as its stream sent them (events after `starting_after`)."""
    events = ResponseEvents({**response, "status": "in_progress", "output": [], "usage": None}, ToolMap(), lambda _: "")
    frames = events.start()
    for item in response["output"]:
        frames += _replay_item(events, item)
    frames.append(events.terminal(response))
    for number, data in enumerate(frames):
        if number > starting_after:
            yield data


def _replay_item(events: ResponseEvents, item: dict) -> list[bytes]:
    index = len(events.output)
    events.output.append(item)
    frames = [events.event("response.output_item.added", output_index=index, item=item)]
    where = {"item_id": item["id"], "output_index": index}
    if item["type"] == "message":
        for n, part in enumerate(item.get("content") or []):
            text_field = "text" if part["type"] == "output_text" else "refusal"
            frames.append(events.event("response.content_part.added", **where, content_index=n, part={**part, text_field: ""}))
            delta_type = "response.output_text" if text_field == "text" else "response.refusal"
            extra = {"logprobs": []} if text_field == "text" else {}
            frames.append(events.event(f"{delta_type}.delta", **where, content_index=n, delta=part[text_field], **extra))
            frames.append(events.event(f"{delta_type}.done", **where, content_index=n, **{text_field: part[text_field]}, **extra))
            frames.append(events.event("response.content_part.done", **where, content_index=n, part=part))
    elif item["type"] == "function_call":
        frames.append(events.event("response.function_call_arguments.delta", **where, delta=item["arguments"]))
        frames.append(events.event("response.function_call_arguments.done", **where, name=item["name"], arguments=item["arguments"]))
    frames.append(events.event("response.output_item.done", output_index=index, item=item))
    return frames


@handles_errors
async def delete_response(request: Request) -> Response:
    _, owner = authenticated(request)
    response_id = request.path_params["response_id"]
    if not await service_of(request).store.delete_response(owner, response_id):
        raise it.not_found("response", response_id)
    return json_response({"id": response_id, "object": "response", "deleted": True})


@handles_errors
async def cancel_response(request: Request) -> Response:
    _, owner = authenticated(request)
    response = await service_of(request).cancel(owner, request.path_params["response_id"])
    return json_response({**response, "output": [it.public(i) for i in response["output"]]})


@handles_errors
async def list_input_items(request: Request) -> Response:
    after, limit, order = it.list_params(request.query_params)
    _, _, input_items = await _owned(request)
    include = _include(request)
    return json_response(it.page([it.public(i, include) for i in input_items], after, limit, order))
