"""`xunfei-spark-api`: iFlytek Spark chat over its HMAC-signed WebSocket API.

Follows the Spark Web API reference (https://www.xfyun.cn/doc/spark/Web.html) and iFlytek's URL
authentication (https://www.xfyun.cn/doc/spark/general_url_authentication.html). One chat
completion is one WebSocket session:

1. connect to `{api_base}{path}?authorization=...&date=...&host=...` (`signed_url`); `path` and
   `domain` come from the config's `api_model_version` (`VERSIONS`, CONTRACT.md §4);
2. send one request frame (`SparkAdapter.translate_request`)::

       {"header": {"app_id", "uid"},
        "parameter": {"chat": {"domain", "temperature", "max_tokens", "top_k", "chat_id"?}},
        "payload": {"message": {"text": [{"role", "content"}]},
                    "functions": {"text": [{"name", "description", "parameters"}]}?}}

3. read response frames until `header.status == 2` (the server then closes)::

       {"header": {"code", "message", "sid", "status": 0 | 1 | 2},
        "payload": {"choices": {"status", "seq", "text": [{"content", "role", "index", "function_call"?}]},
                    "usage": {"text": {"question_tokens", "prompt_tokens", "completion_tokens",
                                       "total_tokens"}}}}   # usage: last frame only

   A non-zero `header.code` ends the session with an error (`error_for_code`).

OpenAI → Spark, in short: `system`/`developer` messages become one leading `system` text (or,
for versions without a system role, are put in front of the first user text); `tool` results
and the assistant's earlier `tool_calls` are rendered as plain user/assistant text (Spark's
WebSocket protocol has no role for them); consecutive texts of one role are merged; `tools`
become `payload.functions.text`; `temperature`, `max_tokens` / `max_completion_tokens` and
`top_k` are clamped into Spark's documented ranges (`SAMPLING`). `top_p`, penalties, `seed`,
`stop` and `response_format` have no Spark counterpart and are dropped.

Spark → OpenAI: text deltas become `content`, `function_call` becomes `tool_calls` with
`finish_reason: "tool_calls"`, the last frame's `usage.text` becomes `usage`.

The transport is aiohttp's WebSocket client through the shared `UpstreamHTTP.websocket`:
`connect_timeout` bounds the handshake, `request_timeout` the first frame and
`stream_idle_timeout` each later frame. `proxies` work as for the HTTP adapters: a `wss://` URL
goes through the `https` proxy (a CONNECT tunnel), a `ws://` URL through the `http` one.

Tools: `tools` are sent as `payload.functions`, which the older Web API revision lists for
4.0Ultra and Max. The current revision (https://www.xfyun.cn/doc/spark/Web.html, "Ultra版本已
升级至X1.5") says function calls need the HTTP protocol ("如果需要使用FunctionCall 功能,请移步http协议"),
so on the WebSocket a model may ignore them; use Spark's OpenAI-compatible HTTP endpoint
(`https://spark-api-open.xf-yun.com/v1`) through the `proxy` type for reliable tool calls.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import orjson
from pydantic import Field, field_validator

from gateway import openai_format as oai
from gateway.adapter import Adapter, AdapterConfig, Completion, StreamItem
from gateway.errors import (
    GatewayError,
    ProviderCodes,
    from_upstream_status,
    invalid_request,
    upstream_timeout,
    upstream_unreachable,
)
from gateway.registry import register
from gateway.request import ChatRequest

SPARK_API_BASE = "wss://spark-api.xf-yun.com"


@dataclass(frozen=True, slots=True)
class SparkVersion:
    """One `api_model_version`: URL `path`, `parameter.chat.domain`, the upper bound of
    `parameter.chat.max_tokens`, and whether `system` is accepted as the first text's role."""

    path: str
    domain: str
    max_tokens: int
    system_role: bool


# api_model_version → endpoint (CONTRACT.md §4; limits and system support from the Web API doc).
VERSIONS: dict[str, SparkVersion] = {
    "v1.1": SparkVersion("/v1.1/chat", "lite", 4096, False),
    "v2.0": SparkVersion("/v2.1/chat", "generalv2", 8192, False),
    "v3.0": SparkVersion("/v3.1/chat", "generalv3", 8192, False),
    "v3.5": SparkVersion("/v3.5/chat", "generalv3.5", 8192, True),
    "v4.0": SparkVersion("/v4.0/chat", "4.0Ultra", 8192, True),
    "pro-128k": SparkVersion("/chat/pro-128k", "pro-128k", 4096, False),
    "max-32k": SparkVersion("/chat/max-32k", "max-32k", 8192, True),
}
# Other spellings users of the seed project write (the URL's version, the old "V1.5" name).
VERSION_ALIASES = {"v1.5": "v1.1", "v2.1": "v2.0", "v3.1": "v3.0"}

# Spark's documented ranges: temperature (0, 1], top_k [1, 6], max_tokens [1, version limit].
TEMPERATURE_MIN, TEMPERATURE_MAX = 0.01, 1.0
TOP_K_MIN, TOP_K_MAX = 1, 6
UID_MAX_LENGTH = 32
DEFAULT_UID = "openai-gateway"

# Spark `header.code` → the CONTRACT.md §3 answer (codes from the Web API doc's error table).
SPARK_CODES = ProviderCodes(
    rate_limit=frozenset({10006, 10007, 11201, 11202, 11203}),  # concurrency, daily/second/concurrent flow control
    auth=frozenset({10015, 10016, 11200}),  # appid blacklisted / not authorised for this version
    content_filter=frozenset({10013, 10014, 10019, 10021}),  # input or output failed moderation
    request={  # the request frame itself was refused
        10003: None, 10004: None, 10005: None, 10160: None, 10161: None, 10163: None,
        10907: "context_length_exceeded",
    },
)


class SparkConfig(AdapterConfig):
    """The seed's fields: `app_id`, `api_key`, `api_secret` (from the iFlytek console),
    `api_model_version` (a key of `VERSIONS`, default `v3.5`), `top_k` (1-6, default sampling
    breadth); plus the common `api_base` (default `wss://spark-api.xf-yun.com`; `ws://` works,
    `http(s)://` is read as `ws(s)://`), `model` (the name reported back) and sampling defaults.
    `proxies`: the outbound HTTP proxy, as for the HTTP adapters (`{https: URL}` for `wss://`)."""

    app_id: str = Field(min_length=1)
    api_key: str = Field(min_length=1)
    api_secret: str = Field(min_length=1)
    api_model_version: str = "v3.5"
    top_k: int | None = Field(None, ge=TOP_K_MIN, le=TOP_K_MAX)

    @field_validator("api_model_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        value = VERSION_ALIASES.get(value, value)
        if value not in VERSIONS:
            raise ValueError(f"unknown Spark version '{value}' (known: {', '.join(VERSIONS)})")
        return value

    @field_validator("api_base")
    @classmethod
    def _websocket_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, _, rest = value.partition("://")
        scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
        if scheme not in ("ws", "wss") or not rest:
            raise ValueError("api_base must be a ws:// or wss:// URL (default wss://spark-api.xf-yun.com)")
        return f"{scheme}://{rest}".rstrip("/")


def signed_url(url: str, api_key: str, api_secret: str, date: str | None = None) -> str:
    """`url` with iFlytek's URL-authentication query (`authorization`, `date`, `host`).

    `date` is RFC 1123 in GMT (now, unless given). The signature is base64(HMAC-SHA256(
    api_secret, "host: {host}\\ndate: {date}\\nGET {path} HTTP/1.1")); `authorization` is
    base64('api_key="..", algorithm="hmac-sha256", headers="host date request-line",
    signature=".."'). `host` is the URL's netloc (with its port, if any).
    """
    parts = urlsplit(url)
    host = parts.netloc
    date = date or formatdate(usegmt=True)
    signature_origin = f"host: {host}\ndate: {date}\nGET {parts.path} HTTP/1.1"
    digest = hmac.new(api_secret.encode(), signature_origin.encode(), hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode()
    authorization_origin = (
        f'api_key="{api_key}", algorithm="hmac-sha256", headers="host date request-line", signature="{signature}"'
    )
    authorization = base64.b64encode(authorization_origin.encode()).decode()
    query = urlencode({"authorization": authorization, "date": date, "host": host})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


# -- OpenAI request → Spark request frame -------------------------------------------------------


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


# parameter.chat field: (OpenAI request fields, first set wins; cast; documented range (low, high)
# where high None means the version's max_tokens).
SAMPLING: dict[str, tuple[tuple[str, ...], type, tuple[float, float | None]]] = {
    "temperature": (("temperature",), float, (TEMPERATURE_MIN, TEMPERATURE_MAX)),
    "max_tokens": (("max_completion_tokens", "max_tokens"), int, (1, None)),
    "top_k": (("top_k",), int, (TOP_K_MIN, TOP_K_MAX)),
}


def spark_chat_parameters(body: dict[str, Any], version: SparkVersion, top_k_default: int | None) -> dict[str, Any]:
    """`parameter.chat`: the version's `domain` and the sampling parameters clamped into range.

    `body` is the OpenAI request with the config's defaults filled in; `top_k` (not an OpenAI
    field) is read from the request when a client sends it, else from the config. A client's
    `chat_id` string (Spark's conversation id) is passed on.
    """
    chat: dict[str, Any] = {"domain": version.domain}
    for name, (sources, cast, (low, high)) in SAMPLING.items():
        value = next((body[s] for s in sources if isinstance(body.get(s), (int, float)) and not isinstance(body[s], bool)), None)
        if value is None and name == "top_k":
            value = top_k_default
        if value is not None:
            chat[name] = cast(_clamp(cast(value), low, version.max_tokens if high is None else high))
    if isinstance(body.get("chat_id"), str) and body["chat_id"]:
        chat["chat_id"] = body["chat_id"][:UID_MAX_LENGTH]
    return chat


def _text_content(content: Any, index: int) -> str:
    """The text of a message's content; image parts are refused (Spark chat is text-only)."""
    if isinstance(content, list):
        for j, part in enumerate(content):
            if part.get("type") not in ("text", "input_text"):
                raise invalid_request(
                    f"xunfei-spark-api accepts text only; content part type '{part.get('type')}' is not supported.",
                    param=f"messages[{index}].content[{j}]",
                )
        return "".join(p.get("text", "") for p in content)
    return oai.text_of(content)


def _render_tool_calls(tool_calls: list[dict[str, Any]]) -> str:
    """An assistant's `tool_calls` as text lines `[function call] name(arguments)`."""
    functions = [(call.get("function") or {}) for call in tool_calls if isinstance(call, dict)]
    return "\n".join(f"[function call] {f.get('name', '')}({f.get('arguments', '')})" for f in functions)


def spark_messages(messages: list[dict[str, Any]], version: SparkVersion) -> list[dict[str, str]]:
    """`payload.message.text` for OpenAI `messages`.

    - `system` / `developer`: joined into one leading `{"role": "system"}` text; for versions
      without a system role (or a request with nothing else) put in front of the first user
      text instead;
    - `user` → `user`; `assistant` → `assistant`, its `tool_calls` rendered as
      `[function call] name(arguments)` lines after its text;
    - `tool` (and legacy `function`) results → `user` text
      `[function result] name: content`, the name looked up from the assistant's tool call;
    - consecutive texts of the same role are merged (blank line between), empty ones dropped.

    Raises GatewayError 400 for image content parts.
    """
    system: list[str] = []
    turns: list[dict[str, str]] = []
    call_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        role = message.get("role")
        text = _text_content(message.get("content"), i)
        if role in ("system", "developer"):
            if text:
                system.append(text)
            continue
        if role == "assistant":
            tool_calls = message.get("tool_calls") or []
            for call in tool_calls:
                if isinstance(call, dict) and call.get("id"):
                    call_names[call["id"]] = (call.get("function") or {}).get("name", "")
            rendered = _render_tool_calls(tool_calls)
            text = "\n".join(t for t in (text, rendered) if t)
        elif role in ("tool", "function"):
            name = message.get("name") or call_names.get(message.get("tool_call_id") or "", "") or "function"
            role, text = "user", f"[function result] {name}: {text}"
        if text:
            turns.append({"role": role, "content": text})
    if system:
        system_text = "\n\n".join(system)
        if version.system_role and turns:  # a lone system prompt is asked as the user's text
            turns.insert(0, {"role": "system", "content": system_text})
        else:
            turns.insert(0, {"role": "user", "content": system_text})
    merged: list[dict[str, str]] = []
    for turn in turns:
        if merged and merged[-1]["role"] == turn["role"] and turn["role"] != "system":
            merged[-1] = {"role": turn["role"], "content": f"{merged[-1]['content']}\n\n{turn['content']}"}
        else:
            merged.append(turn)
    return merged


def spark_functions(tools: Any, tool_choice: Any) -> list[dict[str, Any]]:
    """`payload.functions.text` for OpenAI `tools` (function tools only; none when
    `tool_choice` is `"none"`): `{"name", "description", "parameters"}` each."""
    if not isinstance(tools, list) or tool_choice == "none":
        return []
    functions = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" else None
        if isinstance(function, dict) and function.get("name"):
            functions.append({
                "name": function["name"],
                "description": function.get("description") or "",
                "parameters": function.get("parameters") or {"type": "object", "properties": {}},
            })
    return functions


# -- Spark response frames → OpenAI --------------------------------------------------------------


def error_for_code(code: int, message: str | None, sid: str | None = None) -> GatewayError:
    """The §3 error for a Spark `header.code` by `SPARK_CODES`: rate limits → 429,
    credential/authorisation codes → 502 `upstream_auth_error`, moderation → 400
    `content_filter`, request-frame errors → 400, anything else → 502 `upstream_error`."""
    text = f"Spark error {code}: {message or 'no message'}" + (f" (sid {sid})" if sid else "")
    return SPARK_CODES.error(code, text)


class SparkReply:
    """Reads one session's response frames into OpenAI terms.

    `feed(frame)` returns the frame's `(content, tool_calls)` deltas and raises GatewayError for
    an error frame — except a moderation code after output was already produced, which ends the
    answer with `finish_reason: "content_filter"` (as OpenAI does). After the last frame
    `finish_reason` is set (`tool_calls`, `length` when the completion used the whole
    `max_tokens`, else `stop`) and `usage` holds the OpenAI usage, if Spark sent one.
    """

    def __init__(self, max_tokens: int | None) -> None:
        self.max_tokens = max_tokens
        self.tool_calls: list[dict[str, Any]] = []
        self.usage: dict[str, int] | None = None
        self.finish_reason: str | None = None
        self.produced = False

    def feed(self, frame: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        header = frame.get("header") if isinstance(frame.get("header"), dict) else {}
        code = header.get("code") or 0
        if code:
            if code in SPARK_CODES.content_filter and self.produced:
                self.finish_reason = "content_filter"
                return "", []
            raise error_for_code(code, header.get("message"), header.get("sid"))
        payload = frame.get("payload") if isinstance(frame.get("payload"), dict) else {}
        choices = payload.get("choices") if isinstance(payload.get("choices"), dict) else {}
        content, calls = "", []
        for item in choices.get("text") or ():
            if not isinstance(item, dict):
                continue
            content += item.get("content") or ""
            call = item.get("function_call")
            if isinstance(call, dict) and call.get("name"):
                arguments = call.get("arguments")
                if not isinstance(arguments, str):
                    arguments = orjson.dumps(arguments or {}).decode()
                calls.append(oai.tool_call(f"call_{uuid.uuid4().hex[:24]}", call["name"], arguments))
        self.tool_calls.extend(calls)
        self.produced = self.produced or bool(content or calls)
        usage = (payload.get("usage") or {}).get("text") if isinstance(payload.get("usage"), dict) else None
        if isinstance(usage, dict):
            self.usage = oai.usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))
        if header.get("status") == 2 or choices.get("status") == 2:
            self.finish_reason = self._finish_reason()
        return content, calls

    def _finish_reason(self) -> str:
        if self.tool_calls:
            return "tool_calls"
        if self.usage and self.max_tokens and self.usage["completion_tokens"] >= self.max_tokens:
            return "length"
        return "stop"


# -- the adapter ---------------------------------------------------------------------------------

_CLOSING: set[asyncio.Task] = set()
# aiohttp message types that end a session before its last frame.
_ENDED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


async def _close(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Close the websocket (close handshake, bounded by `close_timeout`), finishing in the
    background when the caller is being cancelled (the client disconnected)."""
    task = asyncio.ensure_future(ws.close())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)
    await asyncio.shield(task)


@register("xunfei-spark-api")
class SparkAdapter(Adapter):
    """iFlytek Spark over WebSocket; the reported model is the config's `model`, else the
    request's, else the version's `domain` (e.g. `generalv3.5`)."""

    Config = SparkConfig
    secret_fields = ("api_key", "api_secret")

    def __init__(self, entry, runtime) -> None:
        super().__init__(entry, runtime)
        self.version = VERSIONS[self.config.api_model_version]
        self.url = f"{self.config.api_base or SPARK_API_BASE}{self.version.path}"

    def model_for(self, request: ChatRequest) -> str:
        return self.config.model or request.model or self.version.domain

    async def list_models(self) -> list[str]:
        return [self.config.model or self.version.domain]

    def translate_request(self, request: ChatRequest) -> dict[str, Any]:
        """The Spark request frame for an OpenAI request. Raises GatewayError 400 for what
        Spark cannot do (`n` > 1, image parts)."""
        body = self.prepared_body(request)
        if isinstance(body.get("n"), int) and body["n"] > 1:
            raise invalid_request("xunfei-spark-api returns one choice; 'n' must be 1.", param="n")
        user = body.get("user")
        frame: dict[str, Any] = {
            "header": {"app_id": self.config.app_id, "uid": user[:UID_MAX_LENGTH] if isinstance(user, str) and user else DEFAULT_UID},
            "parameter": {"chat": spark_chat_parameters(body, self.version, self.config.top_k)},
            "payload": {"message": {"text": spark_messages(body["messages"], self.version)}},
        }
        functions = spark_functions(body.get("tools"), body.get("tool_choice"))
        if functions:
            frame["payload"]["functions"] = {"text": functions}
        return frame

    async def _frames(self, frame: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One session: connect (signed), send `frame`, yield each response frame until the last
        (`status` 2) or an error frame. The websocket is closed when this generator ends or is
        closed (client disconnect). Raises GatewayError for every transport failure."""
        settings = self.runtime.settings
        ws = await self.runtime.http.websocket(
            signed_url(self.url, self.config.api_key, self.config.api_secret), proxies=self.config.proxies
        )
        try:
            await ws.send_str(orjson.dumps(frame).decode())
            first = True
            while True:
                try:
                    async with asyncio.timeout(settings.request_timeout if first else settings.stream_idle_timeout):
                        message = await ws.receive()
                except TimeoutError:
                    raise upstream_timeout("first frame" if first else "stream idle") from None
                first = False
                if message.type in _ENDED:
                    raise upstream_unreachable("the connection closed before the answer ended")
                try:
                    data = orjson.loads(message.data)
                except (orjson.JSONDecodeError, TypeError):
                    data = None
                if not isinstance(data, dict):
                    raise from_upstream_status(502, "the upstream sent a frame that is not a JSON object")
                yield data
                header = data.get("header") if isinstance(data.get("header"), dict) else {}
                if header.get("code") or header.get("status") == 2:
                    return
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise upstream_unreachable(f"the connection failed before the answer ended ({type(exc).__name__})") from None
        finally:
            await _close(ws)

    async def complete(self, request: ChatRequest) -> Completion:
        frame = self.translate_request(request)
        reply = SparkReply(frame["parameter"]["chat"].get("max_tokens"))
        content: list[str] = []
        async with aclosing(self._frames(frame)) as frames:
            async for response_frame in frames:
                text, _ = reply.feed(response_frame)
                content.append(text)
        text = "".join(content)
        message = oai.message(text if text or not reply.tool_calls else None, reply.tool_calls)
        return oai.chat_completion(
            self.model_for(request),
            [oai.choice(0, message, reply.finish_reason or "stop")],
            reply.usage or oai.usage(0, 0),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamItem]:
        frame = self.translate_request(request)
        reply = SparkReply(frame["parameter"]["chat"].get("max_tokens"))
        chunks = oai.ChunkBuilder(self.model_for(request))
        role_sent = False
        async with aclosing(self._frames(frame)) as frames:
            async for response_frame in frames:
                first_call = len(reply.tool_calls)
                text, calls = reply.feed(response_frame)
                if not (text or calls):
                    continue
                delta: dict[str, Any] = {} if role_sent else {"role": "assistant"}
                role_sent = True
                if text or not calls:
                    delta["content"] = text
                if calls:
                    delta["tool_calls"] = [{"index": first_call + i, **call} for i, call in enumerate(calls)]
                yield chunks.chunk(delta)
        final: dict[str, Any] = {} if role_sent else {"role": "assistant", "content": ""}
        yield chunks.chunk(final, reply.finish_reason or "stop")
        if reply.usage is not None:
            yield chunks.usage_chunk(reply.usage)
