"""A fake iFlytek Spark WebSocket chat upstream.

Speaks the Spark Web API (https://www.xfyun.cn/doc/spark/Web.html) on every version path of
CONTRACT.md §4 (`VERSION_PATHS`), behind iFlytek's URL authentication
(https://www.xfyun.cn/doc/spark/general_url_authentication.html), checked at the handshake:

- the query must carry `authorization`, `date` and `host` (else HTTP 401 `Unauthorized`);
- `date` (RFC 1123, GMT) must be within `max_skew` seconds of now (else HTTP 403);
- `authorization` is base64 of `api_key="..", algorithm="hmac-sha256", headers="host date
  request-line", signature=".."`: the api_key must be the fake's, `host` must be the Host the
  client connected to, and the signature must equal base64(HMAC-SHA256(api_secret,
  "host: {host}\\ndate: {date}\\nGET {path} HTTP/1.1")) (else HTTP 401).

After the handshake the fake reads one request frame, checks it against the documented schema
(app_id, the path's `domain`, `temperature` in (0, 1], `top_k` in [1, 6], `max_tokens` in
[1, limit], text roles, functions) and answers with response frames (`header.status` 0, 1, 2;
usage on the last), or with one error frame (`header.code` != 0), then closes. Every session is
recorded (`recorder.requests`: path, query, headers, body = the request frame, None when the
handshake was refused).

The last user text picks a scenario (tokens in square brackets):

- default: streams `Echo: <last user text>` word by word;
- `[function]` with `functions`: answers with a `function_call` of the first function;
- `[error NNNNN]`: one error frame with code NNNNN; `[error-after NNNNN]`: two text frames first;
- `[leak]`: an error frame (10163) whose message quotes the api_key and api_secret;
- `[slow]`: a text frame every 50 ms for a long time, recording `disconnect` when the client goes;
- `[stall]`: one text frame, then nothing for `slow_seconds` (or until the client closes);
- `[hangup]`: one text frame, then the connection closes without a last frame.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from email.utils import parsedate_to_datetime

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.support.recorder import Received, Recorder

APP_ID = "a1b2c3d4"
API_KEY = "spark-key-0123456789abcdef0123456789"
API_SECRET = "spark-secret-ZmFrZXNlY3JldDAxMjM0NTY3"

# path → (domain, max_tokens limit), as in CONTRACT.md §4 and the Web API doc.
VERSION_PATHS = {
    "/v1.1/chat": ("lite", 4096),
    "/v2.1/chat": ("generalv2", 8192),
    "/v3.1/chat": ("generalv3", 8192),
    "/v3.5/chat": ("generalv3.5", 8192),
    "/v4.0/chat": ("4.0Ultra", 8192),
    "/chat/pro-128k": ("pro-128k", 4096),
    "/chat/max-32k": ("max-32k", 8192),
}
CHAT_FIELDS = {"domain", "temperature", "max_tokens", "top_k", "chat_id", "auditing"}
_PAIR = re.compile(r'(\w+)="([^"]*)"')


def sign(secret: str, host: str, date: str, path: str) -> str:
    """The documented signature: base64(HMAC-SHA256(secret, "host: ..\\ndate: ..\\nGET path HTTP/1.1"))."""
    origin = f"host: {host}\ndate: {date}\nGET {path} HTTP/1.1"
    return base64.b64encode(hmac.new(secret.encode(), origin.encode(), hashlib.sha256).digest()).decode()


def response_frame(sid: str, status: int, seq: int, content: str = "", usage: dict | None = None, function_call: dict | None = None) -> dict:
    """One documented response frame."""
    item = {"content": content, "role": "assistant", "index": 0}
    if function_call is not None:
        item["content_type"] = "text"
        item["function_call"] = function_call
    frame = {
        "header": {"code": 0, "message": "Success", "sid": sid, "status": status},
        "payload": {"choices": {"status": status, "seq": seq, "text": [item]}},
    }
    if usage is not None:
        frame["payload"]["usage"] = {"text": usage}
    return frame


def error_frame(sid: str, code: int, message: str) -> dict:
    """An error frame: a header only, `status` 2."""
    return {"header": {"code": code, "message": message, "sid": sid, "status": 2}}


class FakeSpark:
    """The fake. `app_id`, `api_key`, `api_secret`: the credentials it accepts; `max_skew`:
    seconds a signed `date` may be off; `recorder`: what it received."""

    def __init__(self, app_id: str = APP_ID, api_key: str = API_KEY, api_secret: str = API_SECRET,
                 max_skew: float = 300, slow_seconds: float = 30) -> None:
        self.app_id, self.api_key, self.api_secret = app_id, api_key, api_secret
        self.max_skew = max_skew
        self.slow_seconds = slow_seconds
        self.recorder = Recorder()
        self.app = Starlette(routes=[WebSocketRoute(path, self.chat) for path in VERSION_PATHS])

    # -- handshake ------------------------------------------------------------------------------

    def check_auth(self, websocket: WebSocket) -> tuple[int, str] | None:
        """None when the signed URL is valid, else (HTTP status, message) to refuse it with."""
        query = websocket.query_params
        authorization, date, host = query.get("authorization"), query.get("date"), query.get("host")
        if not (authorization and date and host):
            return 401, "Unauthorized"
        try:
            signed_at = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return 403, "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"
        if not date.endswith("GMT") or abs(time.time() - signed_at) > self.max_skew:
            return 403, "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication"
        try:
            fields = dict(_PAIR.findall(base64.b64decode(authorization, validate=True).decode()))
        except ValueError:
            return 401, "HMAC signature cannot be verified"
        if fields.get("api_key") != self.api_key:
            return 401, "HMAC signature cannot be verified"
        if fields.get("algorithm") != "hmac-sha256" or fields.get("headers") != "host date request-line":
            return 401, "HMAC signature cannot be verified"
        if host != websocket.headers.get("host"):
            return 401, "HMAC signature does not match"
        expected = sign(self.api_secret, host, date, websocket.url.path)
        if not hmac.compare_digest(fields.get("signature", ""), expected):
            return 401, "HMAC signature does not match"
        return None

    def _record(self, websocket: WebSocket, body) -> None:
        self.recorder.requests.append(Received(
            "GET", websocket.url.path, dict(websocket.query_params),
            {k.lower(): v for k, v in websocket.headers.items()}, body,
        ))

    # -- session --------------------------------------------------------------------------------

    async def chat(self, websocket: WebSocket) -> None:
        refused = self.check_auth(websocket)
        if refused is not None:
            self._record(websocket, None)
            status, message = refused
            await websocket.send_denial_response(JSONResponse({"message": message}, status_code=status))
            return
        await websocket.accept()
        sid = f"cht000{uuid.uuid4().hex[:12]}@dx{uuid.uuid4().hex[:16]}"
        try:
            raw = await websocket.receive_text()
        except WebSocketDisconnect:
            return
        try:
            request = json.loads(raw)
        except ValueError:
            request = None
        self._record(websocket, request if request is not None else raw)
        problem = self.check_frame(request, websocket.url.path)
        try:
            if problem is not None:
                code, message = problem
                await websocket.send_json(error_frame(sid, code, message))
            else:
                await self.answer(websocket, request, sid)
            await websocket.close()
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away first

    def check_frame(self, request, path: str) -> tuple[int, str] | None:
        """(error code, message) when the request frame breaks the documented schema."""
        if not isinstance(request, dict):
            return 10003, "msg format error: not a JSON object"
        header, parameter, payload = request.get("header"), request.get("parameter"), request.get("payload")
        if not (isinstance(header, dict) and isinstance(parameter, dict) and isinstance(payload, dict)):
            return 10004, "schema error: header, parameter and payload are required"
        if header.get("app_id") != self.app_id:
            return 11200, "AppIdNoAuthError: app_id does not match the api_key"
        uid = header.get("uid")
        if uid is not None and (not isinstance(uid, str) or len(uid) > 32):
            return 10163, "header.uid: maxLength 32"
        chat = parameter.get("chat")
        domain, limit = VERSION_PATHS[path]
        if not isinstance(chat, dict) or chat.get("domain") != domain:
            return 10163, f"parameter.chat.domain must be '{domain}' on {path}"
        if set(chat) - CHAT_FIELDS:
            return 10163, f"parameter.chat: unknown field(s) {sorted(set(chat) - CHAT_FIELDS)}"
        temperature = chat.get("temperature")
        if temperature is not None and (not isinstance(temperature, (int, float)) or not 0 < temperature <= 1):
            return 10163, "parameter.chat.temperature must be in (0, 1]"
        top_k = chat.get("top_k")
        if top_k is not None and (not isinstance(top_k, int) or not 1 <= top_k <= 6):
            return 10163, "parameter.chat.top_k must be an integer in [1, 6]"
        max_tokens = chat.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or not 1 <= max_tokens <= limit):
            return 10163, f"parameter.chat.max_tokens must be an integer in [1, {limit}]"
        text = (payload.get("message") or {}).get("text")
        if not isinstance(text, list) or not text:
            return 10163, "payload.message.text must be a non-empty array"
        for i, item in enumerate(text):
            if not isinstance(item, dict) or item.get("role") not in ("system", "user", "assistant"):
                return 10163, f"payload.message.text[{i}].role must be system, user or assistant"
            if item["role"] == "system" and i != 0:
                return 10163, "payload.message.text: system must be the first text"
            if not isinstance(item.get("content"), str) or not item["content"]:
                return 10163, f"payload.message.text[{i}].content must be a non-empty string"
        if text[-1]["role"] != "user":
            return 10163, "payload.message.text: the last text must be the user's"
        functions = payload.get("functions")
        if functions is not None:
            items = functions.get("text") if isinstance(functions, dict) else None
            if not isinstance(items, list) or not all(
                isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("parameters"), dict) for f in items
            ):
                return 10163, "payload.functions.text must be an array of {name, description, parameters}"
        return None

    async def answer(self, websocket: WebSocket, request: dict, sid: str) -> None:
        text = request["payload"]["message"]["text"]
        question = text[-1]["content"]
        functions = (request["payload"].get("functions") or {}).get("text") or []
        prompt_tokens = sum(len(t["content"].split()) for t in text)
        usage = lambda completion: {  # noqa: E731
            "question_tokens": len(question.split()), "prompt_tokens": prompt_tokens,
            "completion_tokens": completion, "total_tokens": prompt_tokens + completion,
        }
        if (match := re.search(r"\[error (\d+)\]", question)) is not None:
            await websocket.send_json(error_frame(sid, int(match.group(1)), f"Scenario error {match.group(1)}"))
            return
        if "[leak]" in question:
            await websocket.send_json(error_frame(sid, 10163, f"bad request with key {self.api_key} and secret {self.api_secret}"))
            return
        if "[function]" in question and functions:
            call = {"name": functions[0]["name"], "arguments": json.dumps({"city": "Paris"})}
            await websocket.send_json(response_frame(sid, 2, 0, "", usage(7), function_call=call))
            return
        if (match := re.search(r"\[error-after (\d+)\]", question)) is not None:
            await websocket.send_json(response_frame(sid, 0, 0, "Partial "))
            await websocket.send_json(response_frame(sid, 1, 1, "answer "))
            await websocket.send_json(error_frame(sid, int(match.group(1)), f"Scenario error {match.group(1)}"))
            return
        if "[slow]" in question:
            try:
                await websocket.send_json(response_frame(sid, 0, 0, "slow "))
                for i in range(2000):
                    await asyncio.sleep(0.05)
                    await websocket.send_json(response_frame(sid, 1, i + 1, f"{i} "))
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.recorder.event("disconnect")
            except asyncio.CancelledError:
                self.recorder.event("disconnect")
                raise
            return
        if "[stall]" in question:
            await websocket.send_json(response_frame(sid, 0, 0, "stall "))
            try:  # silent until the client gives up (its close frame arrives) or slow_seconds pass
                await asyncio.wait_for(websocket.receive(), self.slow_seconds)
            except TimeoutError:
                pass
            return
        if "[hangup]" in question:
            await websocket.send_json(response_frame(sid, 0, 0, "bye "))
            return
        words = f"Echo: {question}".split(" ")
        for seq, word in enumerate(words):
            last = seq == len(words) - 1
            status = 2 if last else (0 if seq == 0 else 1)
            piece = word if last else word + " "
            await websocket.send_json(response_frame(sid, status, seq, piece, usage(len(words)) if last else None))
