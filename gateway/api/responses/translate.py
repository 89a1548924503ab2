"""A Responses request → the chat completion request the adapter answers (CONTRACT.md §9).

Follows openai-python `types/responses/response_create_params.py` (the request) and the Chat
Completions request reference (the result). The mapping:

    Responses request                        chat completion request
    ---------------------------------------  -----------------------------------------------
    instructions (this request's only)       the first message, role system
    history items + input items (§ below)    messages
    model                                    model (None: the token's default)
    tools, tool_choice                       tools, tool_choice (see `tools.py`)
    parallel_tool_calls                      parallel_tool_calls (when there are tools)
    text.format text|json_object|json_schema response_format (none | json_object |
                                               {type: json_schema, json_schema: {name, schema,
                                               strict, description}})
    max_output_tokens                        max_completion_tokens
    temperature, top_p                       temperature, top_p
    reasoning.effort                         reasoning_effort
    stream                                   stream + stream_options.include_usage

    item                                     chat message
    ---------------------------------------  -----------------------------------------------
    message user|system|developer            role user|system|system; input_text → text,
                                               input_image → image_url, input_file → file
    message assistant (output_text|refusal)  assistant text
    function_call / custom_tool_call         a tool call of the assistant message before it
                                               (consecutive calls share one message), arguments
                                               as sent / {"input": input}
    function_call_output / *_output          {role: tool, tool_call_id: call_id, content}
    reasoning with our sealed content        its chat fields (e.g. reasoning_content and the
                                               provider's signatures) on the next assistant
                                               message; other reasoning items are dropped
    built-in tool calls, compaction          dropped (nothing upstream can read them)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.api.responses.tools import ToolMap, chat_tool_choice, flat_name, tool_map
from gateway.errors import invalid_request

Unseal = Callable[[Any], dict | None]

_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "instructions": (str,), "previous_response_id": (str,), "conversation": (str, dict),
    "store": (bool,), "stream": (bool,), "background": (bool,), "tools": (list,), "tool_choice": (str, dict),
    "parallel_tool_calls": (bool,), "text": (dict,), "max_output_tokens": (int,), "temperature": (int, float),
    "top_p": (int, float), "reasoning": (dict,), "metadata": (dict,), "truncation": (str,), "include": (list,),
}


def check_fields(body: Any) -> dict:
    """The request body, its known fields' JSON types checked (unknown fields are ignored).
    Raises GatewayError 400 `invalid_request_error` naming the field."""
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    for name, expected in _TYPES.items():
        value = body.get(name)
        if value is not None and (not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)):
            raise invalid_request(f"Invalid type for '{name}'.", param=name)
    input_ = body.get("input")
    if input_ is not None and not isinstance(input_, (str, list)):
        raise invalid_request("Invalid type for 'input': expected a string or an array of input items.", param="input")
    metadata = body.get("metadata") or {}
    if len(metadata) > 16 or any(len(str(k)) > 64 or not isinstance(v, str) or len(v) > 512 for k, v in metadata.items()):
        raise invalid_request("Invalid 'metadata': at most 16 string pairs, keys up to 64 and values up to 512 characters.", param="metadata")
    return body


def response_format(text: dict | None) -> dict | None:
    """The chat `response_format` for the Responses `text` config (None for plain text)."""
    fmt = (text or {}).get("format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise invalid_request(f"Invalid value for 'text.format.type': '{fmt['type']}'.", param="text.format.type")


def _user_part(part: dict, param: str) -> dict:
    kind = part["type"]
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "input_image":
        if part.get("file_id") and not part.get("image_url"):
            raise invalid_request("Files are not stored by this gateway: send the image as 'image_url' (a URL or data URL).", param=param)
        image = {"url": part.get("image_url")}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_id") and not (part.get("file_data") or part.get("file_url")):
            raise invalid_request("Files are not stored by this gateway: send the file as 'file_data'.", param=param)
        return {"type": "file", "file": {k: part[k] for k in ("file_data", "file_url", "filename") if part.get(k)}}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    raise invalid_request(f"Invalid content part type '{kind}' in '{param}'.", param=param)


def _content(parts: list[dict], param: str) -> str | list[dict]:
    converted = [_user_part(p, f"{param}[{j}]") for j, p in enumerate(parts)]
    if all(p["type"] == "text" for p in converted):
        return "".join(p["text"] for p in converted)
    return converted


def _tool_output(output: Any, param: str) -> str | list[dict]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _content([p for p in output if isinstance(p, dict) and isinstance(p.get("type"), str)], param)
    return "" if output is None else str(output)


class _Messages:
    """Builds the chat `messages` from items, one item at a time."""

    def __init__(self, tools: ToolMap, unseal: Unseal) -> None:
        self.out: list[dict] = []
        self.tools = tools
        self.unseal = unseal
        self.extras: dict = {}  # chat fields of a reasoning item, for the next assistant message

    def _assistant(self, open_for_calls: bool) -> dict:
        last = self.out[-1] if self.out else None
        if last is not None and last["role"] == "assistant" and (open_for_calls or not last.get("tool_calls")):
            message = last
        else:
            message = {"role": "assistant", "content": None}
            self.out.append(message)
        if self.extras:
            message.update(self.extras)
            self.extras = {}
        return message

    def add(self, item: dict, param: str) -> None:
        kind = item.get("type")
        if kind == "message":
            role = item["role"]
            if role == "assistant":
                message = self._assistant(open_for_calls=False)
                text = "".join(p.get("text") or p.get("refusal") or "" for p in item["content"])
                message["content"] = (message.get("content") or "") + text
            else:
                self.extras = {}
                self.out.append({"role": "system" if role == "developer" else role,
                                 "content": _content(item["content"], f"{param}.content")})
        elif kind in ("function_call", "custom_tool_call"):
            if kind == "function_call":
                name, arguments = flat_name(item.get("namespace"), item["name"]), item["arguments"]
            else:
                name, arguments = flat_name(item.get("namespace"), item["name"]), orjson.dumps({"input": item["input"]}).decode()
            message = self._assistant(open_for_calls=True)
            message.setdefault("tool_calls", []).append(
                {"id": item["call_id"], "type": "function", "function": {"name": name, "arguments": arguments}})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self.out.append({"role": "tool", "tool_call_id": item["call_id"], "content": _tool_output(item.get("output"), f"{param}.output")})
        elif kind == "reasoning":
            self.extras = self.unseal(item.get("encrypted_content")) or {}


def chat_messages(instructions: str | None, items: list[dict], tools: ToolMap, unseal: Unseal) -> list[dict]:
    """The chat `messages` for `instructions` and the history + input `items` (resolved: no
    `item_reference` left). Raises GatewayError 400 for content the chat format cannot carry."""
    builder = _Messages(tools, unseal)
    if instructions:
        builder.out.append({"role": "system", "content": instructions})
    for i, item in enumerate(items):
        builder.add(item, f"input[{i}]")
    if not builder.out:
        raise invalid_request("The request has no input: send 'input' (a string or input items).", param="input")
    return builder.out


def chat_body(body: dict, model: str | None, messages: list[dict], tools: ToolMap, stream: bool) -> dict:
    """The chat completion request body for a checked Responses `body`."""
    chat: dict[str, Any] = {"messages": messages}
    if model:
        chat["model"] = model
    choice = chat_tool_choice(body.get("tool_choice"), tools)
    if tools.tools:
        chat["tools"] = tools.tools
        if choice is not None:
            chat["tool_choice"] = choice
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    if (fmt := response_format(body.get("text"))) is not None:
        chat["response_format"] = fmt
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    effort = (body.get("reasoning") or {}).get("effort")
    if isinstance(effort, str):
        chat["reasoning_effort"] = effort
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


__all__ = ["check_fields", "chat_messages", "chat_body", "response_format", "tool_map"]
