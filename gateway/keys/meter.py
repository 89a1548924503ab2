"""Reading a request's token usage off its answer, and estimating it when the answer has none.

`UsageMeter` collects one request's usage: from an OpenAI `usage` object (`take`), from an
OpenAI-format JSON answer still in bytes (`take_json`), from a translated stream's chunks
(`see_chunk`), or from an OpenAI-wire SSE byte stream (`SSEUsageTap`, which also removes the
usage chunk the gateway asked for when the client did not ask for it). When no usage came (a
cut stream, the client gone) `final()` falls back to estimates and marks them `estimated`.

Usage fields follow OpenAI's `CompletionUsage` (https://platform.openai.com/docs/api-reference/chat/object):
`prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`,
`completion_tokens_details.reasoning_tokens`. The final usage chunk of a stream is the one with
`choices: []` and a non-null `usage` (https://platform.openai.com/docs/api-reference/chat/streaming).

`estimate_tokens(text)` is a cheap heuristic (about 4 ASCII characters per token, one token
per other character, as CJK text runs), good enough for a reservation that is settled later.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def estimate_tokens(text: str) -> int:
    """A rough token count of `text` (see the module docstring)."""
    if not text:
        return 0
    chars = len(text)
    if text.isascii():
        return -(-chars // 4)
    extra = len(text.encode("utf-8")) - chars  # 1-3 extra bytes per non-ASCII character
    other = min(chars, (extra + 1) // 2)
    return math.ceil((chars - other) / 4) + other


def estimate_prompt(body: dict[str, Any]) -> int:
    """A rough prompt size of a chat completion request: its messages' text (and tool
    definitions) plus 4 tokens of framing per message; an image part counts 85 tokens."""
    total = 0
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        total += 4
        content = message.get("content")
        if isinstance(content, str):
            total += estimate_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    text = part.get("text")
                    total += estimate_tokens(text) if isinstance(text, str) else 85
        calls = message.get("tool_calls")
        if calls:
            total += estimate_tokens(orjson.dumps(calls).decode())
    if body.get("tools"):
        total += estimate_tokens(orjson.dumps(body["tools"]).decode())
    return total


def output_limit(body: dict[str, Any]) -> int | None:
    """The request's cap on generated tokens (`max_completion_tokens`, else `max_tokens`) × `n`."""
    cap = body.get("max_completion_tokens")
    if not isinstance(cap, int) or isinstance(cap, bool):
        cap = body.get("max_tokens")
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
        return None
    n = body.get("n")
    return cap * (n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1)


class UsageMeter:
    """One request's usage as it becomes known. `reported` is True once the upstream's own
    usage was seen; until then `completion_chars`/`events` feed the estimate."""

    __slots__ = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "reported",
                 "completion_chars", "events", "prompt_estimate", "first_at", "error_code", "unread")

    def __init__(self, prompt_estimate: int | None = None) -> None:
        self.prompt_tokens = self.completion_tokens = self.cached_tokens = self.reasoning_tokens = 0
        self.reported = False
        self.completion_chars = 0
        self.events = 0
        self.prompt_estimate = prompt_estimate
        self.first_at: float | None = None  # perf_counter() when the first byte went to the client (streams)
        self.error_code: str | None = None  # an error that ended a stream after it started
        self.unread = False

    def take(self, usage: Any) -> None:
        """Adopt an OpenAI `usage` object (ignored when it is not one)."""
        if not isinstance(usage, dict):
            return
        self.prompt_tokens = _int(usage.get("prompt_tokens"))
        self.completion_tokens = _int(usage.get("completion_tokens"))
        details = usage.get("prompt_tokens_details")
        self.cached_tokens = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
        details = usage.get("completion_tokens_details")
        self.reasoning_tokens = _int(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
        self.reported = True

    def take_json(self, body: bytes) -> None:
        """Adopt the `usage` of an OpenAI-format JSON answer in bytes, without parsing all of it."""
        usage = usage_in_json(body)
        if usage is not None:
            self.take(usage)

    def see_chunk(self, chunk: dict[str, Any]) -> None:
        """Account for one translated `chat.completion.chunk` (usage, else the text it carries)."""
        usage = chunk.get("usage")
        if usage:
            self.take(usage)
            return
        self.events += 1
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str):
                    self.completion_chars += len(content)
                for call in delta.get("tool_calls") or ():
                    args = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
                    if isinstance(args, str):
                        self.completion_chars += len(args)

    def mark_unread(self) -> None:
        """The answer went by without being read (a native relay): `final()` then counts the
        prompt estimate and no completion, marked `estimated`."""
        self.unread = True

    def final(self, prompt_fallback: int = 0) -> tuple[int, int, int, int, bool]:
        """`(prompt, completion, cached, reasoning, estimated)`: the reported usage, else an
        estimate from the prompt estimate and the text (or, for raw streams, the events) sent."""
        if self.reported:
            return self.prompt_tokens, self.completion_tokens, self.cached_tokens, self.reasoning_tokens, False
        prompt = self.prompt_estimate if self.prompt_estimate is not None else prompt_fallback
        if self.unread and not self.events and not self.completion_chars:
            return prompt, 0, 0, 0, True
        if self.completion_chars:
            completion = math.ceil(self.completion_chars / 4)
        else:
            completion = self.events  # OpenAI-wire streams carry about one token per event
        return prompt, completion, 0, 0, True


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_in_json(body: bytes) -> dict | None:
    """The `usage` object of an OpenAI-format JSON answer. A small answer is parsed whole
    (orjson is fastest there); in a large one the usage object is found from the end (OpenAI
    puts it last; the answer's text comes before it), its extent found with a few `bytes.find`
    calls and that slice alone parsed. None when there is none."""
    if len(body) <= 4096:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return data.get("usage") if isinstance(data, dict) else None
    at = body.rfind(b'"usage"')
    if at < 0:
        return None
    match = _USAGE_OBJECT.match(body, at)
    if match is None:
        return None
    start = match.end() - 1
    end = _object_end(body, start)
    if end is not None:
        try:
            return orjson.loads(body[start:end])
        except orjson.JSONDecodeError:
            pass
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data.get("usage") if isinstance(data, dict) else None


def _object_end(body: bytes, start: int) -> int | None:
    """Index after the `}` closing the object opening at `start` (a usage object holds numbers
    and nested objects only, no strings with braces)."""
    depth, pos = 1, start + 1
    for _ in range(16):
        close = body.find(b"}", pos)
        if close < 0:
            return None
        opens = body.count(b"{", pos, close)
        depth += opens - 1
        pos = close + 1
        if depth == 0:
            return pos
    return None


class SSEUsageTap:
    """Passes an OpenAI-wire SSE byte stream through, event-aligned, reading its usage chunk
    into `meter` and cutting that chunk out when `hide_usage` (the client did not ask for it).

    `feed(bytes)` returns the bytes to send now (complete events; a partial event is held until
    its end arrives); `flush()` returns whatever is left at the end. Bytes are not re-encoded.
    """

    __slots__ = ("meter", "hide_usage", "_pending")

    def __init__(self, meter: UsageMeter, hide_usage: bool) -> None:
        self.meter = meter
        self.hide_usage = hide_usage
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        if self._pending:
            data = self._pending + data
        cut = data.rfind(b"\n\n")
        crlf = data.rfind(b"\r\n\r\n")
        if crlf >= 0 and crlf + 2 > cut:
            cut = crlf + 2
        if cut < 0:
            self._pending = data
            return b""
        head, self._pending = data[: cut + 2], data[cut + 2 :]
        self.meter.events += head.count(b"data:")
        match = _USAGE_OBJECT.search(head)
        if match is not None:
            head = self._usage_event(head, match.start())
        return head

    def _usage_event(self, head: bytes, at: int) -> bytes:
        start = head.rfind(b"data:", 0, at)
        end = head.find(b"\n\n", at)
        if start < 0 or end < 0:
            return head
        end += 2
        try:
            chunk = orjson.loads(head[start + 5 : end].strip())
        except orjson.JSONDecodeError:
            return head
        if not isinstance(chunk, dict) or not chunk.get("usage"):
            return head
        self.meter.take(chunk["usage"])
        self.meter.events -= 1
        if self.hide_usage and not chunk.get("choices"):
            return head[:start] + head[end:]
        return head

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest


def meter_stream(first, rest, meter: UsageMeter):
    """`(first, rest)` of an opened adapter stream (`gateway.dispatch.open_stream`), passed on
    unchanged in content while `meter` reads it: translated chunks through `see_chunk`, raw
    OpenAI SSE bytes through an `SSEUsageTap` that hides nothing (event-aligned bytes). For
    surfaces that re-encode a chat stream themselves (Anthropic Messages)."""
    import time

    tap = SSEUsageTap(meter, hide_usage=False) if first is not None and not isinstance(first, dict) else None

    def see(item):
        if meter.first_at is None:
            meter.first_at = time.perf_counter()
        if isinstance(item, dict):
            meter.see_chunk(item)
            return item
        return tap.feed(item) if tap is not None else item

    async def more():
        try:
            async for item in rest:
                out = see(item)
                if out:
                    yield out
            if tap is not None and (tail := tap.flush()):
                yield tail
        finally:
            await rest.aclose()

    return (see(first) if first is not None else None), more()
