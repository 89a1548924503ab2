"""A fake Coze open API upstream: bots (v3 chat) and workflows.

Speaks what the official `cozepy` SDK speaks (https://www.coze.cn/open/docs/developer_guides):

- `POST /v3/chat`: `stream: true` answers an event stream (`event:NAME` + `data:{json}` lines:
  conversation.chat.created, conversation.chat.in_progress, conversation.message.delta,
  conversation.message.completed, conversation.chat.completed with `usage`, done);
  `stream: false` (which Coze allows only with `auto_save_history: true`, else code 4007)
  answers the chat object `in_progress`, to be followed with
- `GET|POST /v3/chat/retrieve?conversation_id=&chat_id=` (then `completed`) and
- `GET /v3/chat/message/list?conversation_id=&chat_id=` (the answer, a verbose and a follow_up message).
- `POST /v1/workflow/run`: `{code: 0, data: "<JSON string>", usage, debug_url}`.
- `POST /v1/workflow/stream_run`: events with `id`/`event`/`data` lines (Message, Error,
  Interrupt, Done).

Errors are HTTP 200 with `{"code": N, "msg": ...}`, as Coze sends them (also to streamed calls);
a wrong token is code 4100. The bot id (or workflow id) picks a scenario:

- anything else: echoes the last user message (`Echo: ...`; images as `[image URL]`).
- `error-CODE`: answers `{"code": CODE, "msg": ...}`.
- `failed-CODE` (bot): the chat fails (`conversation.chat.failed` / retrieve `failed`) with `last_error.code` CODE.
- `event-error-CODE`: an `error` (bot) / `Error` (workflow) event before any answer.
- `partial-failed-CODE` (bot): one answer delta, then the chat fails with CODE.
- `completed-only` (bot): the answer comes only as `conversation.message.completed`.
- `reasoning` (bot): a deep-thinking bot: `conversation.message.delta` events carrying
  `reasoning_content` (with empty `content`) come before the answer deltas, and the completed
  answer message carries both (cozepy `Message.reasoning_content`).
- `wf-text` (workflow): the output is plain text, not a JSON object.
- `wf-json` (workflow): the stream's single Message carries the End node's JSON `{"output": ...}`.
- `interrupt` (workflow): a Message, then an Interrupt event (a question node waits for input).
- `http-502`: answers HTTP 502 with a text body.
"""

from __future__ import annotations

import itertools
import json
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.recorder import Recorder

API_KEY = "pat_FakeCozeToken0123456789abcdef"
USAGE = {"token_count": 30, "output_count": 10, "input_count": 20}

# Messages of Coze's error code table (https://www.coze.cn/open/docs/developer_guides/coze_error_codes).
MESSAGES = {
    4000: "Request parameter error",
    4006: "invalid bot",
    4008: "The number of bot uses today has exceeded the limit",
    4009: "已达系统请求上限，请稍后重试",
    4010: "当前问题请求的 prompt token 数量超过模型上限",
    4011: "当前账户的 Coze Token 余额不足",
    4012: "invalid model",
    4013: "Model error",
    4015: "The bot has not been published to the API channel",
    4016: "当前会话已有chat在运行",
    4019: "火山Bot调用按量余额不足",
    4020: "火山Bot调用超出RPM峰值",
    4022: "模型欠费",
    4100: "authentication is invalid",
    4101: "The token you entered is incorrect. Please double-check and try again.",
    4102: "命中风控拦截",
    4105: "Content contains sensitive information",
    4200: "Resource not found",
    5000: "Internal server error",
    700012006: "access token invalid",
}
REASONING = "The user greets me; I echo."


def coze_error(code: int) -> JSONResponse:
    return JSONResponse({"code": code, "msg": MESSAGES.get(code, f"error {code}"), "detail": {"logid": "20241015100256FA70F619ED86EC262A80"}})


def _sse(fields: dict) -> bytes:
    return "".join(f"{k}:{v}\n" for k, v in fields.items()).encode() + b"\n"


class FakeCoze:
    """The fake. `api_key`: the token it accepts; `recorder`: what it received."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.recorder = Recorder()
        self.chats: dict[str, dict] = {}
        self._ids = itertools.count(7_382_158_397_837_344_768)
        self.app = Starlette(routes=[
            Route("/v3/chat", self.chat, methods=["POST"]),
            Route("/v3/chat/retrieve", self.retrieve, methods=["GET", "POST"]),
            Route("/v3/chat/message/list", self.message_list, methods=["GET", "POST"]),
            Route("/v1/workflow/run", self.workflow_run, methods=["POST"]),
            Route("/v1/workflow/stream_run", self.workflow_stream_run, methods=["POST"]),
        ])

    def _id(self) -> str:
        return str(next(self._ids))

    def _auth_error(self, request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return coze_error(4100)
        return None

    @staticmethod
    def _scenario_error(name: str) -> Response | None:
        if name.startswith("error-"):
            return coze_error(int(name.split("-", 1)[1]))
        if name == "http-502":
            return PlainTextResponse("Bad Gateway", status_code=502)
        return None

    # -- bots ----------------------------------------------------------------------------------

    @staticmethod
    def _query(body: dict) -> str:
        for msg in reversed(body.get("additional_messages") or []):
            if msg.get("role") == "user":
                if msg.get("content_type") == "object_string":
                    objects = json.loads(msg["content"])
                    return " ".join(o.get("text") or f"[{o['type']} {o.get('file_url')}]" for o in objects)
                return msg.get("content", "")
        return ""

    def _chat_object(self, chat: dict, status: str, last_error: dict | None = None) -> dict:
        out = {"id": chat["id"], "conversation_id": chat["conversation_id"], "bot_id": chat["bot_id"], "created_at": chat["created_at"],
               "last_error": last_error or {"code": 0, "msg": ""}, "status": status, "meta_data": {}}
        if status == "completed":
            out["completed_at"] = int(time.time())
            out["usage"] = USAGE
        if status == "failed":
            out["failed_at"] = int(time.time())
        return out

    def _message(self, chat: dict, type_: str, content: str, message_id: str | None = None, **extra) -> dict:
        return {"id": message_id or self._id(), "conversation_id": chat["conversation_id"], "bot_id": chat["bot_id"], "chat_id": chat["id"],
                "role": "assistant", "type": type_, "content": content, "content_type": "text", "created_at": int(time.time()), "updated_at": int(time.time()), **extra}

    async def chat(self, request: Request) -> Response:
        received = await self.recorder.record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        body = received.body if isinstance(received.body, dict) else {}
        if not body.get("bot_id") or not body.get("user_id"):
            return coze_error(4000)
        bot = str(body["bot_id"])
        if (err := self._scenario_error(bot)) is not None:
            return err
        chat = {"id": self._id(), "conversation_id": request.query_params.get("conversation_id") or self._id(), "bot_id": bot,
                "created_at": int(time.time()), "answer": f"Echo: {self._query(body)}"}
        if body.get("stream"):
            return StreamingResponse(self._chat_stream(chat), media_type="text/event-stream")
        if not body.get("auto_save_history", True):
            return JSONResponse({"code": 4007, "msg": "stream false is only allowed when auto_save_history is true"})
        self.chats[chat["id"]] = chat
        return JSONResponse({"code": 0, "msg": "", "data": self._chat_object(chat, "in_progress")})

    async def _chat_stream(self, chat: dict):
        def event(name: str, data) -> bytes:
            return _sse({"event": name, "data": json.dumps(data, ensure_ascii=False) if not isinstance(data, str) else data})

        bot = chat["bot_id"]
        yield event("conversation.chat.created", self._chat_object(chat, "created"))
        yield event("conversation.chat.in_progress", self._chat_object(chat, "in_progress"))
        if bot.startswith("event-error-"):
            yield event("error", {"code": int(bot.rsplit("-", 1)[1]), "msg": "stream error"})
            return
        if bot.startswith("failed-"):
            code = int(bot.split("-", 1)[1])
            yield event("conversation.chat.failed", self._chat_object(chat, "failed", {"code": code, "msg": MESSAGES.get(code, "failed")}))
            yield event("done", '"[DONE]"')
            return
        answer_id = self._id()
        thinking = {"reasoning_content": REASONING} if bot == "reasoning" else {}
        if thinking:
            for word in REASONING.split(" "):
                yield event("conversation.message.delta", self._message(chat, "answer", "", answer_id, reasoning_content=word + " "))
        if bot != "completed-only":
            for word in chat["answer"].split(" "):
                yield event("conversation.message.delta", self._message(chat, "answer", word + " ", answer_id))
                if bot.startswith("partial-failed-"):
                    code = int(bot.rsplit("-", 1)[1])
                    yield event("conversation.chat.failed", self._chat_object(chat, "failed", {"code": code, "msg": MESSAGES.get(code, "failed")}))
                    return
        yield event("conversation.message.completed", self._message(chat, "answer", chat["answer"] + ("" if bot == "completed-only" else " "), answer_id, **thinking))
        yield event("conversation.message.completed", self._message(chat, "verbose", json.dumps({"msg_type": "generate_answer_finish", "data": ""})))
        yield event("conversation.message.completed", self._message(chat, "follow_up", "Anything else?"))
        yield event("conversation.chat.completed", self._chat_object(chat, "completed"))
        yield event("done", '"[DONE]"')

    def _known_chat(self, request: Request) -> dict | None:
        chat = self.chats.get(request.query_params.get("chat_id", ""))
        if chat is None or chat["conversation_id"] != request.query_params.get("conversation_id"):
            return None
        return chat

    async def retrieve(self, request: Request) -> Response:
        await self.recorder.record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        chat = self._known_chat(request)
        if chat is None:
            return JSONResponse({"code": 4001, "msg": "invalid chat"})
        if chat["bot_id"].startswith("failed-"):
            code = int(chat["bot_id"].split("-", 1)[1])
            return JSONResponse({"code": 0, "msg": "", "data": self._chat_object(chat, "failed", {"code": code, "msg": MESSAGES.get(code, "failed")})})
        return JSONResponse({"code": 0, "msg": "", "data": self._chat_object(chat, "completed")})

    async def message_list(self, request: Request) -> Response:
        await self.recorder.record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        chat = self._known_chat(request)
        if chat is None:
            return JSONResponse({"code": 4001, "msg": "invalid chat"})
        messages = [self._message(chat, "answer", chat["answer"]),
                    self._message(chat, "verbose", json.dumps({"msg_type": "generate_answer_finish", "data": ""})),
                    self._message(chat, "follow_up", "Anything else?")]
        return JSONResponse({"code": 0, "msg": "", "data": messages})

    # -- workflows -----------------------------------------------------------------------------

    @staticmethod
    def _workflow_input(body: dict) -> str:
        params = body.get("parameters") or {}
        value = params.get("input", next(iter(params.values()), ""))
        return value if isinstance(value, str) else json.dumps(value)

    async def _workflow_body(self, request: Request) -> tuple[dict, Response | None]:
        received = await self.recorder.record(request)
        if (err := self._auth_error(request)) is not None:
            return {}, err
        body = received.body if isinstance(received.body, dict) else {}
        if not body.get("workflow_id"):
            return body, coze_error(4000)
        return body, self._scenario_error(str(body["workflow_id"]))

    async def workflow_run(self, request: Request) -> Response:
        body, err = await self._workflow_body(request)
        if err is not None:
            return err
        answer = f"Echo: {self._workflow_input(body)}"
        data = answer if body["workflow_id"] == "wf-text" else json.dumps({"output": answer}, ensure_ascii=False)
        return JSONResponse({"code": 0, "msg": "Success", "data": data, "usage": USAGE, "execute_id": self._id(),
                             "debug_url": "https://www.coze.cn/work_flow?execute_id=1&space_id=2&workflow_id=3"})

    async def workflow_stream_run(self, request: Request) -> Response:
        body, err = await self._workflow_body(request)
        if err is not None:
            return err
        return StreamingResponse(self._workflow_stream(body), media_type="text/event-stream")

    async def _workflow_stream(self, body: dict):
        workflow = str(body["workflow_id"])
        counter = itertools.count()

        def event(name: str, data: dict) -> bytes:
            return _sse({"id": f" {next(counter)}", "event": f" {name}", "data": f" {json.dumps(data, ensure_ascii=False)}"})

        def message(content: str, finish: bool, **extra) -> bytes:
            return event("Message", {"content": content, "node_is_finish": finish, "node_seq_id": "0", "node_title": "End", **extra})

        if workflow.startswith("event-error-"):
            yield event("Error", {"error_code": int(workflow.rsplit("-", 1)[1]), "error_message": "workflow failed"})
            return
        answer = f"Echo: {self._workflow_input(body)}"
        if workflow == "wf-json":
            yield message(json.dumps({"output": answer}, ensure_ascii=False), True, usage=USAGE)
        elif workflow == "interrupt":
            yield message("Which city?", True)
            yield event("Interrupt", {"interrupt_data": {"event_id": "7404830425073352713/2769808280134765896", "type": 2}, "node_title": "Question"})
            return
        else:
            words = answer.split(" ")
            for i, word in enumerate(words):
                last = i == len(words) - 1
                yield message(word + ("" if last else " "), last, **({"usage": USAGE} if last else {}))
        yield event("Done", {"debug_url": "https://www.coze.cn/work_flow?execute_id=1&space_id=2&workflow_id=3"})
