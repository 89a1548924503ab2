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
        _optional(body["stream_options"], "include_usage", bool, "stream_options")
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


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _want(value: Any, expected: type, param: str) -> None:
    """Refuse `value` unless it is an instance of `expected` (a bool is not an integer)."""
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise invalid_request(
            f"Invalid type for '{param}': expected {_TYPE_NAMES.get(expected, expected.__name__)}, but got {_kind(value)} instead.",
            param=param,
        )


def _optional(obj: dict, key: str, expected: type, where: str) -> None:
    value = obj.get(key)
    if value is not None:
        _want(value, expected, f"{where}.{key}")


def _required(obj: dict, key: str, expected: type, where: str) -> Any:
    value = obj.get(key)
    if value is None:
        raise invalid_request(f"Missing required parameter: '{where}.{key}'.", param=f"{where}.{key}")
    _want(value, expected, f"{where}.{key}")
    return value


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
            _check_parts(content, f"messages[{i}].content")
        elif content is not None and not isinstance(content, str):
            raise invalid_request(
                f"Invalid type for 'messages[{i}].content': expected a string or an array of content parts.",
                param=f"messages[{i}].content",
            )
        if len(message) > 2:  # more than role and content: the optional fields
            _check_message_fields(message, role, f"messages[{i}]")


def _check_message_fields(message: dict, role: str, where: str) -> None:
    _optional(message, "name", str, where)
    if role == "tool":
        _optional(message, "tool_call_id", str, where)
    elif role == "assistant":
        calls = message.get("tool_calls")
        if calls is not None:
            _want(calls, list, f"{where}.tool_calls")
            for j, call in enumerate(calls):
                at = f"{where}.tool_calls[{j}]"
                _want(call, dict, at)
                _optional(call, "id", str, at)
                _optional(call, "type", str, at)
                function = _required(call, "function", dict, at)
                _required(function, "name", str, f"{at}.function")
                _optional(function, "arguments", str, f"{at}.function")
        function_call = message.get("function_call")
        if function_call is not None:
            _want(function_call, dict, f"{where}.function_call")
            _optional(function_call, "name", str, f"{where}.function_call")
            _optional(function_call, "arguments", str, f"{where}.function_call")


# content part type → (field holding the payload, its type, required str members of an object payload)
_PARTS: dict[str, tuple[str, type, tuple[str, ...]]] = {
    "text": ("text", str, ()),
    "refusal": ("refusal", str, ()),
    "image_url": ("image_url", dict, ("url",)),
    "input_audio": ("input_audio", dict, ("data", "format")),
    "file": ("file", dict, ()),
}


def _check_parts(parts: list, where: str) -> None:
    for j, part in enumerate(parts):
        at = f"{where}[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid_request(f"Invalid content part '{at}': expected an object with a 'type'.", param=at)
        spec = _PARTS.get(part["type"])
        if spec is None:
            continue  # other part types are the upstream's to accept or refuse
        key, expected, members = spec
        payload = _required(part, key, expected, at)
        if expected is dict:
            for member in members:
                _required(payload, member, str, f"{at}.{key}")
            for member, value in payload.items():
                if value is not None and member in ("detail", "file_data", "file_id", "filename"):
                    _want(value, str, f"{at}.{key}.{member}")


def _check_tools(tools: list) -> None:
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        _want(tool, dict, at)
        kind = _required(tool, "type", str, at)
        if kind == "function":
            function = _required(tool, "function", dict, at)
            _required(function, "name", str, f"{at}.function")
            _optional(function, "description", str, f"{at}.function")
            _optional(function, "parameters", dict, f"{at}.function")
            _optional(function, "strict", bool, f"{at}.function")


def _check_tool_choice(choice: Any) -> None:
    if isinstance(choice, str):
        return  # "none" | "auto" | "required": the value is the upstream's to judge
    kind = _required(choice, "type", str, "tool_choice")
    if kind == "function":
        function = _required(choice, "function", dict, "tool_choice")
        _required(function, "name", str, "tool_choice.function")


def _check_response_format(response_format: dict) -> None:
    kind = _required(response_format, "type", str, "response_format")
    if kind == "json_schema":
        schema = _required(response_format, "json_schema", dict, "response_format")
        _optional(schema, "name", str, "response_format.json_schema")
        _optional(schema, "schema", dict, "response_format.json_schema")
        _optional(schema, "strict", bool, "response_format.json_schema")
