"""`coze` and `coze-workflow`: Coze bots (v3 chat API) and Coze workflows.

Follows the Coze open API (https://www.coze.cn/open/docs/developer_guides/chat_v3,
.../workflow_run, .../workflow_stream_run, error codes at .../coze_error_codes; the same on
coze.com) and the official `cozepy` SDK's wire format. `api_base` defaults to
`https://api.coze.cn` (use `https://api.coze.com` for the international site); the key is a
personal/service access token sent as `Authorization: Bearer <api_key>`.

- `coze`: `POST {api_base}/v3/chat` with `stream: true` and `auto_save_history: false`; the
  OpenAI messages become `additional_messages` (the last one is the query). Stream events
  (`event:` + `data:` lines) are translated as they arrive. A non-streamed request collects the
  same stream into one chat completion: Coze only allows `stream: false` together with
  `auto_save_history: true` (error 4007) and then needs create → poll `/v3/chat/retrieve` →
  `/v3/chat/message/list`; one streamed call answers sooner, needs no polling and saves nothing
  in the bot's conversation history.
- `coze-workflow`: `POST {api_base}/v1/workflow/run` (non-stream) and
  `POST {api_base}/v1/workflow/stream_run` (SSE `id`/`event`/`data`, events Message, Error,
  Interrupt, Done). The last user message goes to the workflow's `input_parameter`; the answer is
  the output's `output` field when the output is a JSON object carrying one, else the output text.

Coze reports most failures as HTTP 200 with `{"code": N, "msg": ...}` (N != 0), also in answer to
a streamed call; `coze_error` maps N to CONTRACT §3, and both the JSON and the stream paths
go through it.
"""

from __future__ import annotations

from typing import Any

import orjson
from httpx_sse import ServerSentEvent

from gateway import openai_format as oai
from gateway.adapter import (
    AdapterConfig,
    Completion,
    HTTPAdapter,
    StreamTranslator,
)
from gateway.errors import (
    GatewayError,
    ProviderCodes,
    error_message_from_body,
    from_upstream_status,
    invalid_request,
    parse_retry_after,
)
from gateway.registry import register
from gateway.request import ChatRequest

COZE_API_BASE = "https://api.coze.cn"


class CozeConfig(AdapterConfig):
    """`api_key` (Coze access token), `bot_id`, `user_id` (the Coze user the gateway chats as,
    default `gateway`; a request's `user` takes precedence), `api_base` (default
    `https://api.coze.cn`; `https://api.coze.com` for coze.com)."""

    api_key: str
    bot_id: str
    user_id: str = "gateway"


class CozeWorkflowConfig(AdapterConfig):
    """`api_key`, `workflow_id`, `input_parameter` (the start node's parameter that receives the
    last user message, default `input`), `parameters` (further fixed start-node parameters),
    `bot_id` / `app_id` (for workflows that need them), `api_base` (default `https://api.coze.cn`)."""

    api_key: str
    workflow_id: str
    input_parameter: str = "input"
    parameters: dict[str, Any] = {}
    bot_id: str | None = None
    app_id: str | None = None


# -- errors ------------------------------------------------------------------------------------

# Coze business codes by §3 outcome, checked against Coze's error code table
# (https://www.coze.cn/open/docs/developer_guides/coze_error_codes; cozepy has no table of its
# own: `CozeAPIError` just carries `code`/`msg`). Anything else (4012 invalid model, 4013 model
# service error, 4021 workflow not configured, 4102 risk control, 5000) is a 502 upstream_error,
# which a router fails over.
COZE_CODES = ProviderCodes(
    # the config is wrong: token invalid (4100) or lacking permission (4101), OAuth token invalid
    # (700012006), bot id wrong or not this token's (4006), bot not published to the API (4015)
    auth=frozenset({4100, 4101, 700012006, 4006, 4015}),
    # daily uses (4008), system limit (4009), Coze token balance (4011), a chat already running
    # (4016), pay-as-you-go balance (4019), RPM quota (4020), model service in arrears (4022)
    rate_limit=frozenset({4008, 4009, 4011, 4016, 4019, 4020, 4022}),
    content_filter=frozenset({4105}),
    request={
        **dict.fromkeys((4000, 4001, 4002, 4003, 4004, 4005, 4007, 4014, 4104, 4200, 4300, 4301, 4302, 4303, 4304, 4314, 4315)),
        4010: "context_length_exceeded",  # the prompt's tokens exceed the model's limit
    },
)


def coze_error(code: Any, msg: str, retry_after: float | None = None, status: int = 200) -> GatewayError:
    """The §3 error for a Coze error code by `COZE_CODES`: any other code (4013 model error,
    5000, ...) follows the HTTP `status` it came with, which for Coze's usual HTTP 200 means 502
    `upstream_error`."""
    text = f"{msg} (Coze error {code})" if code is not None else msg
    return COZE_CODES.error(code, text, status, retry_after)


def check_coze_body(data: Any) -> dict[str, Any]:
    """A Coze JSON answer, checked: raises the mapped GatewayError when `code` is non-zero (HTTP
    200 errors included) or the body is not an object."""
    if not isinstance(data, dict):
        raise from_upstream_status(502, "Coze answered with an unexpected body")
    code = data.get("code")
    if code not in (None, 0, "0"):
        raise coze_error(code, str(data.get("msg") or data.get("message") or ""))
    return data


def _json(data: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


# -- coze: OpenAI messages → additional_messages ------------------------------------------------

# OpenAI role → Coze role (Coze takes user and assistant only; system/developer instructions and
# tool results are given to the bot as user messages).
COZE_ROLES = {"user": "user", "assistant": "assistant", "system": "user", "developer": "user", "tool": "user", "function": "user"}


def coze_message(message: dict[str, Any]) -> dict[str, Any] | None:
    """One OpenAI message → a Coze message `{role, type, content, content_type}`, or None when it
    has nothing to say. A user message with images becomes `object_string` content (a JSON list
    of `{type: text|image, text|file_url}`); image data URLs cannot be sent by URL and are left out."""
    role = COZE_ROLES.get(message.get("role"), "user")
    content = message.get("content")
    kind = "answer" if role == "assistant" else "question"
    if isinstance(content, list):
        objects = []
        for part in content:
            if part.get("type") == "text" and part.get("text"):
                objects.append({"type": "text", "text": part["text"]})
            elif part.get("type") == "image_url" and role == "user":
                image = part.get("image_url") or {}
                url = image.get("url", "") if isinstance(image, dict) else str(image)
                if url.startswith(("http://", "https://")):
                    objects.append({"type": "image", "file_url": url})
        if any(o["type"] == "image" for o in objects):
            return {"role": role, "type": kind, "content": orjson.dumps(objects).decode(), "content_type": "object_string"}
        content = "".join(o["text"] for o in objects)
    if not content:
        return None
    return {"role": role, "type": kind, "content": content, "content_type": "text"}


# -- coze: stream events → OpenAI chunks -------------------------------------------------------


class _Chunks:
    """Chunk state shared by the Coze translators: the role goes with the first content, the
    finish chunk once, usage at the end."""

    def __init__(self, model: str) -> None:
        self.chunks = oai.ChunkBuilder(model)
        self.started = False
        self.finished = False
        self.usage: dict[str, int] | None = None

    def content(self, text: str, field: str = "content") -> list[dict[str, Any]]:
        """A delta of `content` (or `reasoning_content`) text; nothing for empty text."""
        if not text:
            return []
        delta = {field: text}
        if not self.started:
            delta = {"role": "assistant", **delta}
            self.started = True
        return [self.chunks.chunk(delta)]

    def finish(self, reason: str = "stop") -> list[dict[str, Any]]:
        if self.finished:
            return []
        self.finished = True
        delta: dict[str, Any] = {}
        if not self.started:
            delta, self.started = {"role": "assistant", "content": ""}, True
        return [self.chunks.chunk(delta, reason)]

    def close(self) -> list[dict[str, Any]]:
        if not self.started:
            raise from_upstream_status(502, "the Coze stream ended without an answer")
        out = self.finish()
        if self.usage is not None:
            out.append(self.chunks.usage_chunk(self.usage))
        return out


def _coze_usage(usage: Any) -> dict[str, int] | None:
    """Coze `usage` (`token_count`, `input_count`, `output_count`) → OpenAI usage."""
    if not isinstance(usage, dict):
        return None
    return oai.usage(usage.get("input_count"), usage.get("output_count"))


class CozeChatStreamTranslator(StreamTranslator):
    """Coze v3 chat events → OpenAI chunks.

    `conversation.message.delta` of type `answer` → `reasoning_content` deltas (a deep-thinking
    bot's `reasoning_content`, cozepy `Message.reasoning_content`) and content deltas (an `answer`
    that arrives only as `conversation.message.completed` is sent whole); `conversation.chat.completed` → finish
    `stop` and usage; `conversation.chat.failed` (its `last_error`) and `error` events raise the
    mapped GatewayError; `conversation.chat.requires_action` (a client-side plugin) raises 502.
    `created`, `in_progress`, other message types (function_call, tool_output, verbose,
    follow_up) and `done` produce nothing.
    """

    def __init__(self, model: str) -> None:
        self.state = _Chunks(model)
        self.streamed: set[Any] = set()

    def feed(self, event: ServerSentEvent) -> list[dict[str, Any]]:
        name = event.event
        data = _json(event.data) if event.data else None
        if name == "conversation.message.delta":
            if isinstance(data, dict) and data.get("type") == "answer" and data.get("role", "assistant") == "assistant":
                self.streamed.add(data.get("id"))
                return self._answer(data)
        elif name == "conversation.message.completed":
            if isinstance(data, dict) and data.get("type") == "answer" and data.get("id") not in self.streamed:
                return self._answer(data)
        elif name == "conversation.chat.completed":
            if isinstance(data, dict):
                self.state.usage = _coze_usage(data.get("usage"))
            return self.state.finish("stop")
        elif name == "conversation.chat.failed":
            error = (data or {}).get("last_error") if isinstance(data, dict) else None
            error = error if isinstance(error, dict) else {}
            raise coze_error(error.get("code"), error.get("msg") or "the Coze chat failed")
        elif name == "conversation.chat.requires_action":
            raise from_upstream_status(502, "the Coze bot asked for a client-side tool result (requires_action), which the gateway cannot provide")
        elif name == "error":
            error = data if isinstance(data, dict) else {}
            raise coze_error(error.get("code"), str(error.get("msg") or event.data or "Coze stream error"))
        return []

    def _answer(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        reasoning = message.get("reasoning_content")
        out = self.state.content(reasoning, "reasoning_content") if isinstance(reasoning, str) else []
        content = message.get("content")
        return out + self.state.content(content if isinstance(content, str) else "")

    def finish(self) -> list[dict[str, Any]]:
        return self.state.close()


# -- coze-workflow -----------------------------------------------------------------------------


def workflow_answer(output: Any) -> str:
    """The answer text of a workflow output: its `output` field when it is a JSON object that
    has one (non-strings as JSON), else the output string itself."""
    if not isinstance(output, str):
        return "" if output is None else orjson.dumps(output).decode()
    data = _json(output)
    if isinstance(data, dict) and "output" in data:
        value = data["output"]
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    return output


INTERRUPT_NOTE = (
    "[The Coze workflow paused at its '{node}' node, waiting for input. The gateway cannot resume a "
    "paused workflow: each request starts a new run.]"
)


class CozeWorkflowStreamTranslator(StreamTranslator):
    """Coze workflow stream events → OpenAI chunks: `Message` → content (`workflow_answer` of
    its `content`; its `usage`, when present, kept for the usage chunk); `Error`
    (`error_code`/`error_message`) raises the mapped GatewayError; `Done` ends the answer with
    `stop`. `Interrupt` (cozepy `WorkflowEventInterrupt`: a Question or input node named
    `node_title` waits for an answer, which only Coze's resume API can give) adds a note saying so
    to the content (`INTERRUPT_NOTE`), then ends with `stop`."""

    def __init__(self, model: str) -> None:
        self.state = _Chunks(model)

    def feed(self, event: ServerSentEvent) -> list[dict[str, Any]]:
        data = _json(event.data) if event.data else None
        if event.event == "Message" and isinstance(data, dict):
            if (usage := _coze_usage(data.get("usage"))) is not None:
                self.state.usage = usage
            return self.state.content(workflow_answer(data.get("content")))
        if event.event == "Error":
            error = data if isinstance(data, dict) else {}
            raise coze_error(error.get("error_code"), str(error.get("error_message") or event.data or "Coze workflow error"))
        if event.event in ("Interrupt", "Done"):
            if isinstance(data, dict) and (usage := _coze_usage(data.get("usage"))) is not None:
                self.state.usage = usage
            note = []
            if event.event == "Interrupt":
                node = data.get("node_title") if isinstance(data, dict) else None
                text = INTERRUPT_NOTE.format(node=node or "?")
                note = self.state.content(f"\n\n{text}" if self.state.started else text)
            return note + self.state.finish("stop")
        return []

    def finish(self) -> list[dict[str, Any]]:
        return self.state.close()


# -- adapters ------------------------------------------------------------------------------------


class CozeAdapter(HTTPAdapter):
    """What both Coze types share: bearer auth, and streams that may answer with a JSON error
    (`{"code": N, "msg": ...}`, HTTP 200) instead of an event stream."""

    def __init__(self, entry, runtime) -> None:
        super().__init__(entry, runtime)
        self._base = self.config.api_base or COZE_API_BASE

    def fixed_headers(self) -> dict[str, str]:
        return {"content-type": "application/json", "authorization": f"Bearer {self.config.api_key}"}

    def translate_request(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        """Raises GatewayError 400 for `n` > 1: Coze answers once."""
        n = request.body.get("n")
        if isinstance(n, int) and n > 1:
            raise invalid_request(f"{self.type_name} returns one choice; 'n' must be 1.", param="n")
        return self.coze_body(request)

    def coze_body(self, request: ChatRequest) -> dict[str, Any]:
        """The Coze request body."""
        raise NotImplementedError

    def translate_error(self, status: int, body: bytes, headers: Any) -> GatewayError:
        """An error status, or a JSON body where an event stream was expected: the body's Coze
        code decides when it has one, else the status."""
        data = _json(body.decode("utf-8", "replace")) if body else None
        if isinstance(data, dict) and data.get("code") not in (None, 0, "0"):
            return coze_error(data["code"], str(data.get("msg") or ""), parse_retry_after(headers.get("retry-after")), status)
        return from_upstream_status(status, error_message_from_body(body), parse_retry_after(headers.get("retry-after")))


@register("coze")
class CozeChatAdapter(CozeAdapter):
    """A Coze bot through the v3 chat API (`POST {api_base}/v3/chat`)."""

    Config = CozeConfig
    default_model = "coze"

    def endpoint(self, request: ChatRequest, stream: bool) -> str:
        return f"{self._base}/v3/chat"

    def coze_body(self, request: ChatRequest) -> dict[str, Any]:
        """`{bot_id, user_id, stream: true, auto_save_history: false, additional_messages}`."""
        messages = [m for m in (coze_message(msg) for msg in request.body["messages"]) if m is not None]
        user = request.body.get("user")
        return {
            "bot_id": self.config.bot_id,
            "user_id": user if isinstance(user, str) and user else self.config.user_id,
            "stream": True,
            "auto_save_history": False,
            "additional_messages": messages,
        }

    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        return CozeChatStreamTranslator(self.model_for(request))

    async def complete(self, request: ChatRequest) -> Completion:
        """The streamed answer collected into one `chat.completion` (see the module docstring)."""
        parts: list[str] = []
        reasoning: list[str] = []
        reason, usage = "stop", None
        async for chunk in self.stream(request):
            if not chunk["choices"]:
                usage = chunk.get("usage")
                continue
            choice = chunk["choices"][0]
            parts.append(choice["delta"].get("content") or "")
            reasoning.append(choice["delta"].get("reasoning_content") or "")
            reason = choice["finish_reason"] or reason
        message = oai.message("".join(parts))
        if any(reasoning):
            message["reasoning_content"] = "".join(reasoning)
        return oai.chat_completion(self.model_for(request), [oai.choice(0, message, reason)], usage or oai.usage(0, 0))


@register("coze-workflow")
class CozeWorkflowAdapter(CozeAdapter):
    """A published Coze workflow: `/v1/workflow/run` and `/v1/workflow/stream_run`."""

    Config = CozeWorkflowConfig
    default_model = "coze-workflow"

    def endpoint(self, request: ChatRequest, stream: bool) -> str:
        return f"{self._base}/v1/workflow/{'stream_run' if stream else 'run'}"

    def coze_body(self, request: ChatRequest) -> dict[str, Any]:
        """`{workflow_id, parameters: {input_parameter: last user text, ...}, bot_id?, app_id?}`."""
        c = self.config
        body: dict[str, Any] = {
            "workflow_id": c.workflow_id,
            "parameters": {**c.parameters, c.input_parameter: oai.last_user_text(request.body["messages"])},
        }
        if c.bot_id:
            body["bot_id"] = c.bot_id
        if c.app_id:
            body["app_id"] = c.app_id
        return body

    def translate_response(self, data: Any, request: ChatRequest) -> Completion:
        """`{code: 0, data: "<output>", usage?}` → a chat completion; a non-zero code raises."""
        data = check_coze_body(data)
        message = oai.message(workflow_answer(data.get("data")))
        usage = _coze_usage(data.get("usage")) or oai.usage(0, 0)
        return oai.chat_completion(self.model_for(request), [oai.choice(0, message, "stop")], usage)

    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        return CozeWorkflowStreamTranslator(self.model_for(request))
