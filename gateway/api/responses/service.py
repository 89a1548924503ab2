"""Creating a response (CONTRACT.md §9): context, the upstream chat completion, storage.

`ResponsesService.create` resolves the context (`previous_response_id` chain or `conversation`
items, then the input, `item_reference`s looked up), translates it to one chat completion
request (`translate.py`), calls the token's adapter through `call_upstream` (the one place the
gateway calls upstream for this API: `gateway.dispatch`, so routers, timeouts and failover
apply), builds the Response (`output.py`, `events.py` when streamed) and stores it (`store.py`)
before the client sees `response.completed`. `background: true` answers `queued` at once and runs
the turn in a task of this process; `cancel` stops it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import orjson

from gateway import dispatch
from gateway.adapter import Adapter, Completion, StreamItem
from gateway.api.responses import items as it
from gateway.api.responses.events import ResponseEvents, chat_chunks
from gateway.api.responses.output import output_items, response_object, status_of, usage
from gateway.api.responses.seal import Sealer
from gateway.api.responses.store import ResponseStore
from gateway.api.responses.tools import ToolMap, tool_map
from gateway.api.responses.translate import chat_body, chat_messages, check_fields
from gateway.errors import GatewayError, from_upstream_status, invalid_request
from gateway.keys.guard import CLIENT_GONE, Ticket
from gateway.request import ChatRequest

log = logging.getLogger("gateway.responses")

ENCRYPTED = "reasoning.encrypted_content"


async def call_upstream(adapter: Adapter, chat: ChatRequest) -> Completion | tuple[StreamItem | None, AsyncIterator[StreamItem]]:
    """The upstream call of a Responses turn: a chat completion, or for `chat.stream` the
    opened stream `(first item, rest)`. Raises GatewayError (nothing reached the client yet)."""
    if chat.stream:
        return await dispatch.open_stream(adapter, chat)
    return await dispatch.complete(adapter, chat)


def previous_not_found(response_id: str) -> GatewayError:
    """400 `previous_response_not_found` (OpenAI's status and code for an unusable chain id)."""
    return GatewayError(400, f"Previous response with id '{response_id}' not found.", param="previous_response_id",
                        code="previous_response_not_found")


@dataclass(slots=True)
class Turn:
    """One prepared request: who asks, what goes upstream, what gets stored."""

    owner: str
    adapter: Adapter
    body: dict
    chat: ChatRequest
    tools: ToolMap
    input_items: list[dict]
    response_id: str
    created_at: int
    model: str
    conversation_id: str | None
    store: bool
    include_encrypted: bool
    ticket: Ticket | None = None  # §6: the admitted request's limits and usage (`gateway.keys`)

    def response(self, status: str, **fields) -> dict:
        return response_object(self.response_id, self.body, model=fields.pop("model", None) or self.model, status=status,
                               created_at=self.created_at, conversation_id=self.conversation_id, **fields)

    def public(self, response: dict) -> dict:
        """The response as the client sees it (sealed content only when included)."""
        if self.include_encrypted:
            return response
        return {**response, "output": [it.public(i) for i in response["output"]]}


def _model_name(adapter: Adapter, chat: ChatRequest) -> str:
    """The model a response names before the upstream answered (routers have no forced model)."""
    forced = getattr(adapter.config, "model", None)
    return forced or chat.model or adapter.default_model or ""


class ResponsesService:
    """The Responses API over one gateway's runtime and database."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.store = ResponseStore(gateway.database)
        self._sealer: Sealer | None = None
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tasks: dict[str, asyncio.Task] = {}

    async def sealer(self) -> Sealer:
        if self._sealer is None:
            self._sealer = Sealer(await self.store.sealing_key())
        return self._sealer

    def lock(self, conversation_id: str) -> asyncio.Lock:
        """The lock that serializes turns of one conversation (in this process)."""
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = self._locks[conversation_id] = asyncio.Lock()
        return lock

    # -- preparing a turn -------------------------------------------------------------------

    async def _context(self, owner: str, body: dict, stack: AsyncExitStack) -> tuple[list[dict], str | None, str | None]:
        """(history items, conversation id, previous response's model)."""
        previous, conversation = body.get("previous_response_id"), body.get("conversation")
        if previous and conversation:
            raise invalid_request("'previous_response_id' and 'conversation' cannot be used together: send one of them.",
                                  param="conversation")
        if previous:
            found = await self.store.chain(owner, previous)
            if found is None:
                raise previous_not_found(previous)
            history, newest = found
            return history, None, newest.get("model")
        if conversation:
            conversation_id = conversation.get("id") if isinstance(conversation, dict) else conversation
            if not isinstance(conversation_id, str) or await self.store.get_conversation(owner, conversation_id) is None:
                raise it.not_found("conversation", str(conversation_id), param="conversation")
            await stack.enter_async_context(self.lock(conversation_id))
            return await self.store.items(conversation_id), conversation_id, None
        return [], None, None

    async def _resolve(self, owner: str, items: list[dict], history: list[dict], stored: bool) -> list[dict]:
        """`item_reference`s replaced by the items they name (history first, then `owner`'s
        conversations). Raises GatewayError 404 for an id that is nowhere."""
        if not any(i["type"] == "item_reference" for i in items):
            return items
        known = {i.get("id"): i for i in history}
        out = []
        for item in items:
            if item["type"] == "item_reference":
                found = known.get(item["id"]) or await self.store.find_item(owner, item["id"])
                if found is None:
                    hint = "" if stored else " Items are not persisted when `store` is set to false."
                    raise GatewayError(404, f"Item with id '{item['id']}' not found.{hint}", param="input", code="not_found")
                item = found
            out.append(item)
        return out

    async def prepare(self, adapter: Adapter, owner: str, raw: bytes, stack: AsyncExitStack) -> Turn:
        """Check and translate a request body. Raises GatewayError 400/404 (nothing stored)."""
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise invalid_request("We could not parse the JSON body of your request: it is not valid JSON.") from None
        body = check_fields(body)
        tools = tool_map(body.get("tools"))
        input_items = it.normalize_input(body.get("input"))
        history, conversation_id, previous_model = await self._context(owner, body, stack)
        store = body.get("store") is not False
        input_items = await self._resolve(owner, input_items, history, store)
        sealer = await self.sealer()
        messages = chat_messages(body.get("instructions"), history + input_items, tools, sealer.open)
        model = body.get("model") or previous_model
        stream = body.get("stream") is True
        chat = ChatRequest.from_body(chat_body(body, model, messages, tools, stream))
        return Turn(owner, adapter, body, chat, tools, input_items, it.new_id("resp"), int(time.time()),
                    _model_name(adapter, chat), conversation_id, store or body.get("background") is True,
                    ENCRYPTED in (body.get("include") or []))

    # -- running it -------------------------------------------------------------------------

    async def _save(self, turn: Turn, response: dict, new: bool = True) -> None:
        if not turn.store:
            return
        appended = turn.input_items + response["output"] if turn.conversation_id and response["status"] in ("completed", "incomplete") else None
        await self.store.put_response(turn.owner, response, turn.input_items, new=new,
                                      append_to=turn.conversation_id if appended else None, appended=appended)

    async def complete(self, turn: Turn) -> dict:
        """Run a non-streamed turn; store it; the Response. Raises GatewayError from upstream."""
        completion = await call_upstream(turn.adapter, turn.chat)
        response = await self._build(turn, completion)
        await self._save(turn, response)
        return turn.public(response)

    async def _build(self, turn: Turn, completion: Completion) -> dict:
        try:
            data = orjson.loads(completion) if isinstance(completion, bytes) else completion
            choice = data["choices"][0]
            message, finish_reason = choice.get("message") or {}, choice.get("finish_reason")
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            raise from_upstream_status(502, "the upstream's answer is not a chat completion") from None
        if turn.ticket is not None:
            turn.ticket.meter.take(data.get("usage"))
        sealer = await self.sealer()
        status, incomplete = status_of(finish_reason)
        return turn.response(status, model=data.get("model"), output=output_items(message, finish_reason, turn.tools, sealer.seal),
                             usage_=usage(data.get("usage")), incomplete_details=incomplete)

    async def open_stream(self, turn: Turn) -> AsyncIterator[bytes]:
        """Open the upstream stream (errors here are plain HTTP errors) and return the event
        stream's frames."""
        first, rest = await call_upstream(turn.adapter, turn.chat)
        sealer = await self.sealer()
        return self._events(turn, first, rest, sealer)

    async def _events(self, turn: Turn, first, rest, sealer: Sealer) -> AsyncIterator[bytes]:
        events = ResponseEvents(turn.public(turn.response("in_progress")), turn.tools, sealer.seal, turn.include_encrypted)
        model = None
        try:
            for data in events.start():
                yield data
            error = None
            meter = turn.ticket.meter if turn.ticket is not None else None
            try:
                async for chunk in chat_chunks(first, rest):
                    if meter is not None:
                        meter.see_chunk(chunk)
                        meter.first_at = meter.first_at or time.perf_counter()
                    model = model or chunk.get("model")
                    for data in events.feed(chunk):
                        yield data
            except GatewayError as exc:
                error = {"code": exc.code or "server_error", "message": self.gateway.runtime.scrub(exc.message)}
            except Exception as exc:  # a translation bug ends the stream with response.failed, not a cut connection
                log.exception("responses stream failed: %s", type(exc).__name__)
                error = {"code": "server_error", "message": "The upstream stream failed."}
            status, incomplete = ("failed", None) if error else status_of(events.finish_reason)
            for data in events.finish("incomplete" if status != "completed" else "completed"):
                yield data
            response = turn.response(status, model=model, output=events.output, usage_=usage(events.usage), error=error,
                                     incomplete_details=incomplete)
            await self._save(turn, response)
            yield events.terminal(turn.public(response))
        finally:
            await rest.aclose()

    # -- background -------------------------------------------------------------------------

    async def start_background(self, turn: Turn, stack: AsyncExitStack) -> dict:
        """Store the turn as `queued` and run it in a task; the queued Response."""
        queued = turn.response("queued")
        await self.store.put_response(turn.owner, queued, turn.input_items, new=True)
        held = stack.pop_all()  # the conversation lock now belongs to the task
        task = asyncio.create_task(self._run_background(turn, held))
        self._tasks[turn.response_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(turn.response_id, None))
        return turn.public(queued)

    async def _run_background(self, turn: Turn, held: AsyncExitStack) -> None:
        async with held:
            if turn.ticket is None:
                return await self._background_turn(turn)
            with turn.ticket:
                return await self._background_turn(turn)

    async def _background_turn(self, turn: Turn) -> None:
        try:
            await self.store.put_response(turn.owner, turn.response("in_progress"), turn.input_items, new=False)
            response = await self._build(turn, await call_upstream(turn.adapter, turn.chat))
        except GatewayError as exc:
            self._outcome(turn, exc.status, exc.code)
            response = turn.response("failed", error={"code": exc.code or "server_error",
                                                      "message": self.gateway.runtime.scrub(exc.message)})
        except asyncio.CancelledError:
            self._outcome(turn, CLIENT_GONE, "response_cancelled")
            return  # `cancel` stored the cancelled response
        except Exception:
            log.exception("background response failed")
            self._outcome(turn, 500, "internal_error")
            response = turn.response("failed", error={"code": "server_error", "message": "The gateway failed to run the response."})
        await self._save(turn, response, new=False)

    @staticmethod
    def _outcome(turn: Turn, status: int, code: str | None) -> None:
        """What the usage record of a background turn says (its HTTP answer was the `queued` 200)."""
        if turn.ticket is not None:
            turn.ticket.status, turn.ticket.error_code = status, code

    async def cancel(self, owner: str, response_id: str) -> dict:
        """Cancel a background response; the Response (`cancelled`, or as it ended).
        Raises GatewayError 404 (unknown) or 400 (not a background response)."""
        found = await self.store.get_response(owner, response_id)
        if found is None:
            raise it.not_found("response", response_id)
        response, input_items = found
        if not response.get("background"):
            raise invalid_request("Only responses created with 'background: true' can be cancelled.", param="response_id")
        task = self._tasks.get(response_id)
        if response["status"] in ("queued", "in_progress"):
            if task is not None:
                task.cancel()
            response = {**response, "status": "cancelled"}
            await self.store.put_response(owner, response, input_items, new=False)
            response = (await self.store.get_response(owner, response_id) or (response,))[0]
        return response
