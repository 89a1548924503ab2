"""The client's chat completion request: parsed once, checked against OpenAI's field types.

Follows the OpenAI Chat Completions request (https://platform.openai.com/docs/api-reference/chat/create).
Only the shape is checked here (what a 400 must catch: not JSON, `messages` missing, a known
field of the wrong type); values are the upstream's business. Unknown fields are kept.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import GatewayError, invalid_request

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


# Bodies at least this large are parsed in a worker thread, after a cheap count of their JSON
# containers (README "Limits and hardening"): parsing millions of `{}` holds the event loop for
# seconds and takes ~30x the body in memory; a real chat body has few containers per byte.
OFFLOAD_BYTES = 256 * 1024


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Parse and check a request body against OpenAI's request schema (see `_check_messages`,
    `_check_tools`, ...). Raises GatewayError 400 `invalid_request_error` naming the field in
    `param`."""
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
    if body.get("tools") is not None:
        _check_tools(body["tools"])
    if body.get("tool_choice") is not None:
        _check_tool_choice(body["tool_choice"])
    if body.get("response_format") is not None:
        _check_response_format(body["response_format"])
    if isinstance(body.get("stop"), list):
        for i, item in enumerate(body["stop"]):
            _want(item, str, f"stop[{i}]")
    if body.get("stream_options") is not None:
        _fields(body["stream_options"], "stream_options", (), (("include_usage", bool),))
    return ChatRequest.from_body(body, raw)


async def parse_large_chat_request(raw: bytes, settings) -> ChatRequest:
    """`parse_chat_request` for a body of `OFFLOAD_BYTES` or more, in a worker thread so the
    event loop keeps serving. Refused first with 413 `request_too_complex` when it holds more
    than `settings.max_json_containers` objects and arrays, or more than
    `settings.max_json_values` values (counted on the bytes as `{`, `[` and `,`, strings
    included: an over-estimate that costs milliseconds)."""
    return await asyncio.to_thread(_parse_large, raw, settings.max_json_containers, settings.max_json_values)


def _parse_large(raw: bytes, max_containers: int, max_values: int) -> ChatRequest:
    containers = raw.count(b"{") + raw.count(b"[")
    values = containers + raw.count(b",")
    if containers > max_containers or values > max_values:
        raise GatewayError(
            413,
            f"The request body has too many JSON values ({containers} objects and arrays, at most {max_containers}: "
            f"settings.max_json_containers; about {values} values, at most {max_values}: settings.max_json_values).",
            code="request_too_complex",
        )
    return parse_chat_request(raw)


# -- the schema checks (plain code over the parsed dict: this runs on every request) ---------
# The common case is checked inline with isinstance; a field's path (`param`) is only built
# when it is wrong.


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _ok(value: Any, expected: type) -> bool:
    return isinstance(value, expected) and (expected is bool or not isinstance(value, bool))


def _wrong(value: Any, expected: type, param: str) -> GatewayError:
    if value is None:
        return invalid_request(f"Missing required parameter: '{param}'.", param=param)
    return invalid_request(
        f"Invalid type for '{param}': expected {_TYPE_NAMES.get(expected, expected.__name__)}, but got {_kind(value)} instead.",
        param=param,
    )


def _want(value: Any, expected: type, param: str) -> None:
    """Refuse `value` unless it is an instance of `expected` (a bool is not an integer)."""
    if not _ok(value, expected):
        raise _wrong(value, expected, param)


def _fields(obj: dict, where: str, required: tuple[tuple[str, type], ...] = (), optional: tuple[tuple[str, type], ...] = ()) -> None:
    """Check `obj`'s required and optional (None allowed) members by type."""
    for key, expected in required:
        value = obj.get(key)
        if not _ok(value, expected):
            raise _wrong(value, expected, f"{where}.{key}")
    for key, expected in optional:
        value = obj.get(key)
        if value is not None and not _ok(value, expected):
            raise _wrong(value, expected, f"{where}.{key}")


def _check_messages(messages: Any) -> None:
    if messages is None:
        raise invalid_request("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("'messages' must be a non-empty array of message objects.", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_request(f"Invalid type for 'messages[{i}]': expected an object.", param=f"messages[{i}]")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise invalid_request(
                f"Invalid value for 'messages[{i}].role': expected one of {', '.join(sorted(ROLES))}.",
                param=f"messages[{i}].role",
            )
        content = message.get("content")
        if isinstance(content, list):
            _check_parts(content, i)
        elif content is not None and not isinstance(content, str):
            raise invalid_request(
                f"Invalid type for 'messages[{i}].content': expected a string or an array of content parts.",
                param=f"messages[{i}].content",
            )
        if len(message) > 2:  # more than role and content: the optional fields
            _check_message_fields(message, role, i)


_FUNCTION_CALL = ((), (("name", str), ("arguments", str)))


def _check_message_fields(message: dict, role: str, i: int) -> None:
    name = message.get("name")
    if name is not None and not isinstance(name, str):
        raise _wrong(name, str, f"messages[{i}].name")
    if role == "tool":
        call_id = message.get("tool_call_id")
        if call_id is not None and not isinstance(call_id, str):
            raise _wrong(call_id, str, f"messages[{i}].tool_call_id")
    elif role == "assistant":
        calls = message.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise _wrong(calls, list, f"messages[{i}].tool_calls")
            for j, call in enumerate(calls):
                function = call.get("function") if isinstance(call, dict) else None
                if (
                    not isinstance(function, dict)
                    or not isinstance(function.get("name"), str)
                    or not isinstance(function.get("arguments", ""), str)
                    or not isinstance(call.get("id", ""), str)
                    or not isinstance(call.get("type", ""), str)
                ):
                    at = f"messages[{i}].tool_calls[{j}]"
                    _want(call, dict, at)
                    _fields(call, at, (("function", dict),), (("id", str), ("type", str)))
                    _fields(function, f"{at}.function", (("name", str),), (("arguments", str),))
        function_call = message.get("function_call")
        if function_call is not None:
            _want(function_call, dict, f"messages[{i}].function_call")
            _fields(function_call, f"messages[{i}].function_call", *_FUNCTION_CALL)


# content part type → (field holding the payload, its type, required str members, optional str members)
_PARTS: dict[str, tuple[str, type, tuple[tuple[str, type], ...], tuple[tuple[str, type], ...]]] = {
    "text": ("text", str, (), ()),
    "refusal": ("refusal", str, (), ()),
    "image_url": ("image_url", dict, (("url", str),), (("detail", str),)),
    "input_audio": ("input_audio", dict, (("data", str), ("format", str)), ()),
    "file": ("file", dict, (), (("file_data", str), ("file_id", str), ("filename", str))),
}


def _check_parts(parts: list, i: int) -> None:
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            at = f"messages[{i}].content[{j}]"
            raise invalid_request(f"Invalid content part '{at}': expected an object with a 'type'.", param=at)
        spec = _PARTS.get(kind)
        if spec is None:
            continue  # other part types are the upstream's to accept or refuse
        key, expected, required, optional = spec
        payload = part.get(key)
        if not isinstance(payload, expected):
            raise _wrong(payload, expected, f"messages[{i}].content[{j}].{key}")
        if required or optional:
            _fields(payload, f"messages[{i}].content[{j}].{key}", required, optional)


def _check_tools(tools: list) -> None:
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _wrong(tool, dict, f"tools[{i}]")
        kind = tool.get("type")
        if not isinstance(kind, str):
            raise _wrong(kind, str, f"tools[{i}].type")
        if kind == "function":
            function = tool.get("function")
            if not isinstance(function, dict):
                raise _wrong(function, dict, f"tools[{i}].function")
            _fields(function, f"tools[{i}].function", (("name", str),), (("description", str), ("parameters", dict), ("strict", bool)))


def _check_tool_choice(choice: Any) -> None:
    if isinstance(choice, str):
        return  # "none" | "auto" | "required": the value is the upstream's to judge
    _fields(choice, "tool_choice", (("type", str),))
    if choice["type"] == "function":
        _fields(choice, "tool_choice", (("function", dict),))
        _fields(choice["function"], "tool_choice.function", (("name", str),))


def _check_response_format(response_format: dict) -> None:
    _fields(response_format, "response_format", (("type", str),))
    if response_format["type"] == "json_schema":
        _fields(response_format, "response_format", (("json_schema", dict),))
        _fields(response_format["json_schema"], "response_format.json_schema", (), (("name", str), ("schema", dict), ("strict", bool)))
