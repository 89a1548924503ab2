"""Chat completion chunks → the Responses event stream (CONTRACT.md §9, Streaming).

Follows openai-python `types/responses/response_stream_event.py` (each `response_*_event.py`) and
the order its accumulator (`lib/streaming/responses/_responses.py`) and Codex
(`codex-api/src/sse/responses.rs`) need. Each frame is `event: TYPE` + `data: {type,
sequence_number, ...}`; `sequence_number` counts from 0; there is no `data: [DONE]`:

    response.created, response.in_progress                       (the response, output [])
    per output item, one at a time (item n is done before n+1 is added):
      response.output_item.added                                 (output_index, item)
      reasoning: reasoning_summary_part.added, reasoning_summary_text.delta..., .done,
                 reasoning_summary_part.done                     (summary_index 0)
      message:   content_part.added, output_text.delta..., output_text.done,
                 content_part.done                               (content_index 0; a refusal
                                                                  part uses refusal.delta/.done)
      function_call: function_call_arguments.delta..., .done     (custom tools:
                                                                  custom_tool_call_input.*)
      response.output_item.done                                  (the finished item)
    response.completed | response.incomplete | response.failed   (the final response)

Chat deltas map as: `reasoning_content` (or `reasoning`) → a reasoning item; `content` → a
message; `refusal` → the message's refusal part; `tool_calls[index]` → one function_call item
per index, its arguments streamed as they come; a call that starts while another is still
open (parallel calls, maybe interleaved) is held and streamed whole once that one is done, so
every `.done` event carries the call's complete arguments. Other delta fields (a provider's
signatures) are collected (strings joined, lists extended), sealed into the reasoning item.
Upstream chunk ids are never used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource

from gateway.adapter import StreamItem
from gateway.api.responses.items import new_id, public
from gateway.api.responses.output import STANDARD_MESSAGE_FIELDS, Seal, call_item, reasoning_item
from gateway.api.responses.tools import ToolMap
from gateway.errors import from_openai_error, openai_error_of

DELTA_FIELDS = STANDARD_MESSAGE_FIELDS | {"reasoning_content", "reasoning"}
CALL_TYPES = ("function_call", "custom_tool_call")


class _Bytes(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk


async def chat_chunks(first: StreamItem | None, rest: AsyncIterator[StreamItem]) -> AsyncIterator[dict]:
    """The adapter's stream as chunk dicts: dicts as they are; an OpenAI-compatible upstream's
    raw SSE bytes parsed (httpx-sse) up to `[DONE]`. An `{"error": ...}` event raises its §3
    GatewayError (`gateway.errors.from_openai_error`)."""
    if first is None:
        return
    if isinstance(first, dict):
        yield first
        async for item in rest:
            yield item  # type: ignore[misc]
        return

    async def raw() -> AsyncIterator[bytes]:
        yield first  # type: ignore[misc]
        async for item in rest:
            yield item  # type: ignore[misc]

    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Bytes(raw()))
    async for event in EventSource(response).aiter_sse():
        if event.data.strip() == "[DONE]":
            return
        if not event.data.strip():
            continue
        data = orjson.loads(event.data)
        if (error := openai_error_of(data)) is not None:
            raise from_openai_error(error)
        yield data


def frame(event: dict) -> bytes:
    """One SSE frame for an event: `event: TYPE` and `data: JSON`."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class ResponseEvents:
    """The events of one streamed response, made from its chat chunks.

    `start()` → created + in_progress; `feed(chunk)` → the events a chunk makes; `finish()`
    closes the open item (and returns its events). Then `output`, `finish_reason` and `usage`
    hold the result; `terminal(response)` is the last event.
    """

    def __init__(self, skeleton: dict, tools: ToolMap, seal: Seal, include_encrypted: bool = False) -> None:
        self.skeleton = skeleton
        self.include_encrypted = include_encrypted
        self._sealed: dict | None = None
        self.tools = tools
        self.seal = seal
        self.seq = 0
        self.output: list[dict] = []
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.extras: dict[str, Any] = {}
        self._open: dict | None = None  # the item being streamed
        self._part: dict | None = None  # its open content part (message) or summary part
        self._calls: dict[int, dict] = {}  # chat tool call index → its item
        self._waiting: list[dict] = []  # calls that started while another call was open
        self._reasoning: dict | None = None

    def event(self, type_: str, **payload: Any) -> bytes:
        data = {"type": type_, "sequence_number": self.seq, **payload}
        self.seq += 1
        return frame(data)

    def start(self) -> list[bytes]:
        return [self.event("response.created", response=self.skeleton), self.event("response.in_progress", response=self.skeleton)]

    def _add(self, item: dict) -> list[bytes]:
        out = self._close()
        self._open = item
        self.output.append(item)
        return out + [self.event("response.output_item.added", output_index=len(self.output) - 1, item=_added(item))]

    def _where(self) -> dict:
        return {"item_id": self._open["id"], "output_index": len(self.output) - 1}

    def _close_part(self) -> list[bytes]:
        part, self._part = self._part, None
        if part is None:
            return []
        if part["type"] == "summary_text":
            where = {**self._where(), "summary_index": 0}
            return [self.event("response.reasoning_summary_text.done", **where, text=part["text"]),
                    self.event("response.reasoning_summary_part.done", **where, part=part)]
        where = {**self._where(), "content_index": self._open["content"].index(part)}
        if part["type"] == "refusal":
            return [self.event("response.refusal.done", **where, refusal=part["refusal"]),
                    self.event("response.content_part.done", **where, part=part)]
        return [self.event("response.output_text.done", **where, text=part["text"], logprobs=[]),
                self.event("response.content_part.done", **where, part=part)]

    def _close(self, status: str = "completed") -> list[bytes]:
        """Close the open item, then stream the tool calls that waited for it."""
        return self._close_open(status) + self._flush_waiting()

    def _close_open(self, status: str = "completed") -> list[bytes]:
        item = self._open
        if item is None:
            return []
        out = self._close_part()
        if item["type"] == "function_call":
            out.append(self.event("response.function_call_arguments.done", **self._where(), name=item["name"], arguments=item["arguments"]))
        elif item["type"] == "custom_tool_call":
            final = call_item(item["call_id"], item["_chat_name"], item.pop("_arguments"), self.tools, item_id=item["id"])
            item.clear()
            item.update(final)
            if item["input"]:
                out.append(self.event("response.custom_tool_call_input.delta", **self._where(), delta=item["input"]))
            out.append(self.event("response.custom_tool_call_input.done", **self._where(), input=item["input"]))
        elif item["type"] == "reasoning" and self.extras:
            item["encrypted_content"] = self.seal(self.extras)
            self._sealed = dict(self.extras)
        item.pop("_chat_name", None)
        if item["type"] != "reasoning":
            item["status"] = status
        out.append(self.event("response.output_item.done", output_index=len(self.output) - 1, item=public(item, self.include_encrypted)))
        self._open = None
        return out

    def _text(self, kind: str, delta: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open is None or self._open["type"] != "message":
            out += self._add({"type": "message", "id": new_id("msg"), "role": "assistant", "status": "in_progress", "content": []})
        if self._part is None or self._part["type"] != kind:
            out += self._close_part()
            self._part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []} if kind == "output_text" else {"type": "refusal", "refusal": ""}
            self._open["content"].append(self._part)
            out.append(self.event("response.content_part.added", **self._where(), content_index=len(self._open["content"]) - 1,
                                  part={**self._part, **({"text": ""} if kind == "output_text" else {"refusal": ""})}))
        where = {**self._where(), "content_index": len(self._open["content"]) - 1}
        if kind == "output_text":
            self._part["text"] += delta
            out.append(self.event("response.output_text.delta", **where, delta=delta, logprobs=[]))
        else:
            self._part["refusal"] += delta
            out.append(self.event("response.refusal.delta", **where, delta=delta))
        return out

    def _thinking(self, delta: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open is None or self._open["type"] != "reasoning":
            self._reasoning = reasoning_item("", {}, self.seal)
            out += self._add(self._reasoning)
            self._part = {"type": "summary_text", "text": ""}
            self._reasoning["summary"].append(self._part)
            out.append(self.event("response.reasoning_summary_part.added", **self._where(), summary_index=0, part={"type": "summary_text", "text": ""}))
        self._part["text"] += delta
        out.append(self.event("response.reasoning_summary_text.delta", **self._where(), summary_index=0, delta=delta))
        return out

    def _tool_call(self, call: dict) -> list[bytes]:
        index = call.get("index", 0)
        function = call.get("function") or {}
        fragment = function.get("arguments") or ""
        item = self._calls.get(index)
        out: list[bytes] = []
        if item is None:
            chat_name = function.get("name") or ""
            item = call_item(call.get("id") or new_id("call"), chat_name, "", self.tools, status="in_progress")
            item["_chat_name"] = chat_name
            if item["type"] == "custom_tool_call":
                item["_arguments"] = ""
            self._calls[index] = item
            if self._open is not None and self._open["type"] in CALL_TYPES:
                self._waiting.append(item)  # streamed once the open call is done
            else:
                out += self._add(item)
        if not fragment:
            return out
        if item["type"] == "custom_tool_call":
            item["_arguments"] += fragment
        else:
            item["arguments"] += fragment
            if item is self._open:
                out.append(self.event("response.function_call_arguments.delta", **self._where(), delta=fragment))
        return out

    def _flush_waiting(self) -> list[bytes]:
        """The calls that started while another was open: each added, its arguments, done."""
        out: list[bytes] = []
        while self._waiting:
            item = self._waiting.pop(0)
            self._open = item
            self.output.append(item)
            out.append(self.event("response.output_item.added", output_index=len(self.output) - 1, item=_added(item)))
            if item["type"] == "function_call" and item["arguments"]:
                out.append(self.event("response.function_call_arguments.delta", **self._where(), delta=item["arguments"]))
            out += self._close_open()
        return out

    def feed(self, chunk: dict) -> list[bytes]:
        out: list[bytes] = []
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            for key in ("reasoning_content", "reasoning"):
                thinking = delta.get(key)
                if isinstance(thinking, str) and thinking:
                    out += self._thinking(thinking)
                    self.extras[key] = self.extras.get(key, "") + thinking
                    break
            for key, value in delta.items():
                if key not in DELTA_FIELDS and value not in (None, ""):
                    self.extras[key] = _merged(self.extras.get(key), value)
            if delta.get("content"):
                out += self._text("output_text", delta["content"])
            if delta.get("refusal"):
                out += self._text("refusal", delta["refusal"])
            for call in delta.get("tool_calls") or []:
                out += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self, status: str) -> list[bytes]:
        """Close the open item (a message gets `status`); seal late provider fields."""
        out = self._close(status)
        if self.extras:
            if self._reasoning is None:
                self._reasoning = reasoning_item("", {}, self.seal)
                out += self._add(self._reasoning)
                out += self._close()
            elif self.extras != self._sealed:
                self._reasoning["encrypted_content"] = self.seal(self.extras)
        return out

    def terminal(self, response: dict) -> bytes:
        kind = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(response["status"], "response.failed")
        return self.event(kind, response=response)


def _merged(previous: Any, value: Any) -> Any:
    """A provider delta field accumulated: strings concatenate, lists extend, else the latest."""
    if isinstance(previous, str) and isinstance(value, str):
        return previous + value
    if isinstance(previous, list) and isinstance(value, list):
        return previous + value
    return value


def _added(item: dict) -> dict:
    """The item as `output_item.added` shows it: no content yet, no private fields."""
    empty = {"message": {"content": []}, "reasoning": {"summary": []}, "function_call": {"arguments": ""},
             "custom_tool_call": {"input": ""}}.get(item["type"], {})
    return {k: v for k, v in {**item, **empty}.items() if not k.startswith("_")}
