"""The client's chat completion request: parsed once, checked against OpenAI's field types.

Follows the OpenAI Chat Completions request (https://platform.openai.com/docs/api-reference/chat/create).
Only the shape is checked here (what a 400 must catch: not JSON, `messages` missing, a known
field of the wrong type); values are the upstream's business. Unknown fields are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import invalid_request

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

_NUMBER = (int, float)
# field → accepted JSON types (None allowed everywhere: OpenAI accepts explicit nulls).
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "stream": (bool,),
    "stream_options": (dict,),
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "presence_penalty": _NUMBER,
    "frequency_penalty": _NUMBER,
    "max_tokens": (int,),
    "max_completion_tokens": (int,),
    "n": (int,),
    "seed": (int,),
    "stop": (str, list),
    "tools": (list,),
    "tool_choice": (str, dict),
    "parallel_tool_calls": (bool,),
    "response_format": (dict,),
    "user": (str,),
    "logit_bias": (dict,),
    "logprobs": (bool,),
    "top_logprobs": (int,),
}
_TYPE_NAMES = {str: "string", bool: "boolean", dict: "object", list: "array", int: "integer", float: "number"}


@dataclass(slots=True)
class ChatRequest:
    """A validated chat completion request.

    `body` is the client's JSON object as sent (adapters copy before changing it), `raw` its
    bytes; `model`, `stream` and `include_usage` are read from it once.
    """

    body: dict[str, Any]
    raw: bytes
    model: str | None
    stream: bool
    include_usage: bool

    @classmethod
    def from_body(cls, body: dict[str, Any], raw: bytes | None = None) -> ChatRequest:
        """Build from a parsed body (`raw` defaults to its JSON encoding)."""
        options = body.get("stream_options") or {}
        return cls(
            body,
            orjson.dumps(body) if raw is None else raw,
            body.get("model"),
            body.get("stream") is True,
            bool(options.get("include_usage")),
        )


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Parse and check a request body. Raises GatewayError 400 `invalid_request_error`."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_request("We could not parse the JSON body of your request: it is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    for name, expected in FIELD_TYPES.items():
        value = body.get(name)
        if value is not None and (not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)):
            wanted = " or ".join(_TYPE_NAMES[t] for t in expected if t in _TYPE_NAMES)
            raise invalid_request(f"Invalid type for '{name}': expected {wanted}.", param=name)
    _check_messages(body.get("messages"))
    return ChatRequest.from_body(body, raw)


def _check_messages(messages: Any) -> None:
    if messages is None:
        raise invalid_request("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("'messages' must be a non-empty array of message objects.", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_request(f"Invalid type for 'messages[{i}]': expected an object.", param=f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise invalid_request(
                f"Invalid value for 'messages[{i}].role': expected one of {', '.join(sorted(ROLES))}.",
                param=f"messages[{i}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise invalid_request(
                f"Invalid type for 'messages[{i}].content': expected a string or an array of content parts.",
                param=f"messages[{i}].content",
            )
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise invalid_request(
                        f"Invalid content part 'messages[{i}].content[{j}]': expected an object with a 'type'.",
                        param=f"messages[{i}].content[{j}]",
                    )
