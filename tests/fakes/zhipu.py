"""A fake Zhipu GLM v4 chat completions upstream.

Speaks `POST /api/paas/v4/chat/completions` (https://open.bigmodel.cn/dev/api/normal-model/glm-4):
JSON answers, SSE streams of OpenAI-like chunks ending `data: [DONE]` (the last chunk carries the
finish reason and `usage`), and errors as `{"error": {"code": "1261", "message": ...}}` with the
HTTP status Zhipu uses for that code.

Auth as Zhipu checks it: `Authorization: Bearer <key>` with the plain API key, or a JWT signed
with the key's secret (HS256, header `sign_type: SIGN`, payload `api_key`/`exp`/`timestamp` in
milliseconds); a bad or expired token answers 401 with code 1002/1003/1000.

The request's `model` picks a scenario:

- any model: echoes the last user message (`Echo: ...`); with `tools` and no `tool` message yet,
  calls the first tool (in a stream, as one complete tool-call delta, as GLM does).
- `error-CODE`: answers with Zhipu's business error CODE (e.g. `error-1302` → 429).
- `sensitive`: finishes with `finish_reason: "sensitive"`.
- `network-error`: finishes with `finish_reason: "network_error"`.
- `stream-error`: streams one chunk, then an in-band `data: {"error": ...}` event.
- `bad-event`: a stream whose first event's data is not JSON (an HTML error page).
- `echo-key-STATUS` (400, 401, 429, 500): an error at STATUS whose message quotes the bearer
  credential it received (the signed JWT), as the probe's echoing upstream did.
- thinking models (`glm-4.5*`, `glm-4.6*`, `glm-4.7*`, `glm-5*`) think unless the request sends
  `thinking: {"type": "disabled"}`: the answer carries `reasoning_content` (non-stream:
  `message.reasoning_content`; stream: `delta.reasoning_content` chunks before the content) and
  `usage.completion_tokens_details.reasoning_tokens` (docs.z.ai/guides/capabilities/thinking-mode;
  the zhipuai SDK's `CompletionMessage.reasoning_content`, `ChoiceDelta.reasoning_content`).

What the real API refuses, refused alike (400, code 1210 "API 调用参数有误"): a `thinking` that is
not `{"type": "enabled" | "disabled"}` and a `response_format.type` other than `text` and
`json_object` (the only values docs.z.ai/api-reference/llm/chat-completion lists).
"""

from __future__ import annotations

import json
import time

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.vectors import vector
from tests.support.recorder import Recorder

API_KEY_ID = "4f2a9c61b0d84e7f"
API_KEY_SECRET = "Zq8sWm3LrT5vXy1K"
API_KEY = f"{API_KEY_ID}.{API_KEY_SECRET}"

# Business code → (HTTP status, message), from Zhipu's error-code table.
ERRORS = {
    1000: (401, "身份验证失败。"),
    1002: (401, "Authorization Token非法，请确认Authorization Token正确传递。"),
    1003: (401, "Authorization Token过期，请重新生成/获取。"),
    1210: (400, "API 调用参数有误，请检查文档。"),
    1113: (429, "您的账户已欠费，请充值后重试。"),
    1211: (400, "模型不存在，请检查模型代码。"),
    1261: (400, "Prompt 超长"),
    1301: (400, "系统检测到输入或生成内容可能包含不安全或敏感内容，请您避免输入易产生敏感内容的提示语，感谢您的配合。"),
    1302: (429, "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。"),
    1305: (429, "当前API请求过多，请稍后重试。"),
    500: (500, "内部错误"),
}

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "prompt_tokens_details": {"cached_tokens": 4}}
THINKING_USAGE = {**USAGE, "completion_tokens_details": {"reasoning_tokens": 5}}
THINKING_MODELS = ("glm-4.5", "glm-4.6", "glm-4.7", "glm-5")
# Status → the business code an echoing error carries.
ECHO_CODES = {400: "1210", 401: "1000", 429: "1302", 500: "500"}


def zhipu_error(code: int) -> JSONResponse:
    status, message = ERRORS[code]
    return JSONResponse({"error": {"code": str(code), "message": message}}, status_code=status)


def thinks(body: dict) -> bool:
    """GLM-4.5+ think unless `thinking.type` is `disabled` (GLM-4.7 and later think by default)."""
    model = body.get("model") or ""
    return model.startswith(THINKING_MODELS) and (body.get("thinking") or {}).get("type") != "disabled"


def invalid_parameter(body: dict) -> JSONResponse | None:
    """1210 for the documented enums the real API checks (`thinking.type`, `response_format.type`)."""
    thinking = body.get("thinking")
    if thinking is not None and (not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled")):
        return zhipu_error(1210)
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict) or response_format.get("type") not in ("text", "json_object")):
        return zhipu_error(1210)
    return None


class FakeZhipu:
    """The fake. `api_key`: the `id.secret` key it accepts; `recorder`: what it received."""

    base_path = "/api/paas/v4"

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.recorder = Recorder()
        self.app = Starlette(routes=[Route(f"{self.base_path}/chat/completions", self.chat, methods=["POST"]),
                                     Route(f"{self.base_path}/embeddings", self.embeddings, methods=["POST"])])

    def _auth_error(self, request: Request) -> JSONResponse | None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return zhipu_error(1000)
        token = auth[7:]
        if token == self.api_key:
            return None
        key_id, secret = self.api_key.split(".")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_exp": False})
        except jwt.PyJWTError:
            return zhipu_error(1002)
        if header.get("sign_type") != "SIGN" or claims.get("api_key") != key_id:
            return zhipu_error(1002)
        if int(claims.get("exp", 0)) < int(time.time() * 1000):
            return zhipu_error(1003)
        return None

    async def embeddings(self, request: Request) -> Response:
        """`POST /api/paas/v4/embeddings` (https://docs.bigmodel.cn/api-reference 文本嵌入):
        `input` a string or at most 64 strings; `embedding-3` takes `dimensions` 256, 512, 1024
        or 2048 (default 2048); answers OpenAI-like `{data: [{embedding, index, object}], model,
        object, usage}` with float vectors only."""
        received = await self.recorder.record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        body = received.body if isinstance(received.body, dict) else {}
        items = body.get("input")
        items = [items] if isinstance(items, str) else items
        if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
            return JSONResponse({"error": {"code": "1214", "message": "input 参数非法。"}}, status_code=400)
        if len(items) > 64:
            return JSONResponse({"error": {"code": "1214", "message": "input数组最大不得超过64条"}}, status_code=400)
        model = body.get("model")
        if model not in ("embedding-3", "embedding-2"):
            return zhipu_error(1211)
        dimensions = body.get("dimensions") or 2048
        if model == "embedding-3" and dimensions not in (256, 512, 1024, 2048):
            return JSONResponse({"error": {"code": "1214", "message": "dimensions 参数非法。"}}, status_code=400)
        data = [{"embedding": vector(item, dimensions), "index": i, "object": "embedding"} for i, item in enumerate(items)]
        tokens = sum(len(i) for i in items)
        return JSONResponse({"data": data, "model": model, "object": "list", "request_id": "req-fake",
                             "usage": {"completion_tokens": 0, "prompt_tokens": tokens, "total_tokens": tokens}})

    async def chat(self, request: Request) -> Response:
        received = await self.recorder.record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        body = received.body
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return JSONResponse({"error": {"code": "1214", "message": "messages 参数非法。请检查文档。"}}, status_code=400)
        model = body.get("model") or ""
        if model.startswith("error-"):
            return zhipu_error(int(model.split("-", 1)[1]))
        if model.startswith("echo-key-"):
            status = int(model.rsplit("-", 1)[1])
            credential = request.headers.get("authorization", "").removeprefix("Bearer ")
            return JSONResponse({"error": {"code": ECHO_CODES[status], "message": f"API key {credential} 无效"}}, status_code=status)
        if (err := invalid_parameter(body)) is not None:
            return err
        if body.get("stream"):
            return StreamingResponse(self._stream(body, model), media_type="text/event-stream")
        content, tool_calls = self._answer(body)
        message = {"role": "assistant", "content": content}
        if thinks(body):
            message["reasoning_content"] = self._reasoning(body)
        if tool_calls:
            message["tool_calls"] = tool_calls
        return JSONResponse({
            "id": "8313807536837492492", "request_id": body.get("request_id") or "req-fake", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": self._finish(model, tool_calls), "message": message}],
            "usage": THINKING_USAGE if thinks(body) else USAGE,
        })

    def _reasoning(self, body: dict) -> str:
        return f"The user wrote {self._last_user_text(body)!r}; answer by echoing it."

    @staticmethod
    def _finish(model: str, tool_calls) -> str:
        return {"sensitive": "sensitive", "network-error": "network_error"}.get(model, "tool_calls" if tool_calls else "stop")

    @staticmethod
    def _last_user_text(body: dict) -> str:
        for msg in reversed(body["messages"]):
            if msg.get("role") == "user":
                content = msg.get("content")
                if isinstance(content, list):
                    return " ".join(p.get("text", f"[{p.get('type')}]") for p in content)
                return content or ""
        return ""

    def _answer(self, body: dict) -> tuple[str, list | None]:
        tools = body.get("tools")
        if tools and not any(m.get("role") == "tool" for m in body["messages"]):
            name = tools[0]["function"]["name"]
            call = {"id": "call_9026283482761", "index": 0, "type": "function", "function": {"name": name, "arguments": json.dumps({"city": "北京"}, ensure_ascii=False)}}
            return "", [call]
        tool_results = [m.get("content") for m in body["messages"] if m.get("role") == "tool"]
        if tool_results:
            return f"Tool said: {tool_results[-1]}", None
        return f"Echo: {self._last_user_text(body)}", None

    async def _stream(self, body: dict, model: str):
        base = {"id": "8313807536837492492", "created": int(time.time()), "model": model}

        def event(choice: dict, **extra) -> bytes:
            return b"data: " + json.dumps({**base, "choices": [choice], **extra}, ensure_ascii=False).encode() + b"\n\n"

        content, tool_calls = self._answer(body)
        usage = THINKING_USAGE if thinks(body) else USAGE
        if model == "bad-event":
            yield b"data: <html>502 Bad Gateway</html>\n\n"
            return
        if thinks(body):
            for word in self._reasoning(body).split(" "):
                yield event({"index": 0, "delta": {"role": "assistant", "reasoning_content": word + " "}})
        if tool_calls:
            yield event({"index": 0, "finish_reason": "tool_calls", "delta": {"role": "assistant", "content": "", "tool_calls": tool_calls}}, usage=usage)
        else:
            for word in content.split(" "):
                yield event({"index": 0, "delta": {"role": "assistant", "content": word + " "}})
                if model == "stream-error":
                    yield b'data: {"error": {"code": "500", "message": "\xe5\x86\x85\xe9\x83\xa8\xe9\x94\x99\xe8\xaf\xaf"}}\n\n'
                    return
            yield event({"index": 0, "finish_reason": self._finish(model, None), "delta": {"role": "assistant", "content": ""}}, usage=usage)
        yield b"data: [DONE]\n\n"
