"""A fake OpenAI-compatible upstream for router tests: many pool members behind one server.

Speaks https://platform.openai.com/docs/api-reference/chat (`POST /v1/chat/completions`, JSON or
SSE; `GET /v1/models`). Router tests point several `proxy` entries at it, each with its own
forced `model`, and the model name picks how that member behaves:

- `ok-TAG`: answers at once with `from ok-TAG` (a stream: a few chunks, then `[DONE]`).
- `delay-MS-TAG`: the same after MS milliseconds (a stream: its first chunk comes after MS ms).
- `status-NNN-TAG`: HTTP NNN with an OpenAI error body; `status-429-raS-TAG` adds `Retry-After: S`.
- `flaky-TAG`: like `status-500-TAG` while TAG is in `fake.failing`, else like `ok-TAG`.
- `midstream-TAG`: a stream that sends two chunks and then breaks the connection.
- `slowstream-TAG`: a stream whose first chunk comes at once, then one chunk every 20 ms for a
  long time.

Any wait ends early when the client goes away, and then `disconnect:MODEL` is recorded
(`fake.recorder.wait_for_event`), so a test can prove the gateway closed an upstream request.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.requests import Request

from tests.support.recorder import Recorder

ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_denied", 429: "rate_limit_exceeded"}


class MemberFake:
    """The fake, as a raw ASGI app (full control over waits, disconnects and broken streams)."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.failing: set[str] = set()
        self.models = ["fake-model-1", "fake-model-2"]

    def hits(self, model: str) -> int:
        """How many chat completion requests arrived for `model`."""
        return sum(1 for r in self.recorder.requests if isinstance(r.body, dict) and r.body.get("model") == model)

    def reset(self) -> None:
        self.recorder.requests.clear()
        self.recorder.events.clear()
        self.failing.clear()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if scope["path"] == "/v1/models" and scope["method"] == "GET":
            await self.recorder.record(request)
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
            await _json(send, 200, {"object": "list", "data": data})
            return
        if scope["path"] != "/v1/chat/completions" or scope["method"] != "POST":
            await _json(send, 404, {"error": {"message": "not found", "type": "invalid_request_error", "param": None, "code": None}})
            return
        received = await self.recorder.record(request)
        body = received.body if isinstance(received.body, dict) else {}
        model = str(body.get("model") or "")
        kind, *args = model.split("-")
        if kind == "flaky":
            kind = "status" if args and args[-1] in self.failing else "ok"
            args = ["500", *args] if kind == "status" else args
        if kind == "status":
            status = int(args[0])
            headers = {}
            if len(args) > 1 and args[1].startswith("ra"):
                headers["retry-after"] = args[1][2:]
            error = {"message": f"Scenario error {status}", "type": ERROR_TYPES.get(status, "server_error"), "param": None, "code": "scenario"}
            await _json(send, status, {"error": error}, headers)
            return
        if kind == "delay" and not body.get("stream"):
            if await self._wait(receive, int(args[0]) / 1000, model):
                return
        if body.get("stream"):
            await self._stream(receive, send, model, kind, args)
        else:
            await _json(send, 200, completion(model))

    async def _wait(self, receive, seconds: float, model: str) -> bool:
        """Wait `seconds`; True (and `disconnect:MODEL` recorded) if the client left first."""
        try:
            async with asyncio.timeout(seconds):
                while (await receive())["type"] != "http.disconnect":
                    pass
        except TimeoutError:
            return False
        self.recorder.event(f"disconnect:{model}")
        return True

    async def _stream(self, receive, send, model: str, kind: str, args: list[str]) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})

        async def event(data: dict | str) -> None:
            text = data if isinstance(data, str) else json.dumps(data)
            await send({"type": "http.response.body", "body": f"data: {text}\n\n".encode(), "more_body": True})

        if kind == "delay" and await self._wait(receive, int(args[0]) / 1000, model):
            return
        await event(chunk(model, {"role": "assistant", "content": ""}))
        if kind == "midstream":
            await event(chunk(model, {"content": "partial "}))
            raise RuntimeError("midstream scenario: the upstream breaks the connection")
        if kind == "slowstream":
            for i in range(5000):
                if await self._wait(receive, 0.02, model):
                    return
                await event(chunk(model, {"content": f"{i} "}))
        for word in f"from {model}".split(" "):
            await event(chunk(model, {"content": word + " "}))
        await event(chunk(model, {}, "stop"))
        await event("[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def completion(model: str) -> dict:
    """An OpenAI `chat.completion` answering `from MODEL`."""
    return {
        "id": "chatcmpl-member", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"from {model}"}, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def chunk(model: str, delta: dict, finish: str | None = None) -> dict:
    """An OpenAI `chat.completion.chunk` with one choice."""
    return {"id": "chatcmpl-member", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


async def _json(send, status: int, data: dict, headers: dict | None = None) -> None:
    raw = json.dumps(data).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    head += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw, "more_body": False})
