"""Responses tools and `tool_choice` → chat completion `tools` and `tool_choice` (CONTRACT.md §9).

Follows openai-python `types/responses/` `function_tool.py`, `custom_tool.py`,
`namespace_tool.py`, `tool_choice_*.py` on the Responses side and the Chat Completions `tools`
reference on the other:

    Responses tool                                  chat completion tool
    ----------------------------------------------  ---------------------------------------------
    {type: function, name, description, parameters,  {type: function, function: {name, description,
     strict}  (flat)                                   parameters, strict}}
    {type: custom, name, description, format}        a function taking one string `input`
      (Codex's freeform apply_patch)                   (its call's `input` = arguments.input)
    {type: namespace, name: NS, tools: [...]}        each inner tool, named `NS__name` (`NSname`
                                                       when NS ends with "_"); calls carry
                                                       `namespace: NS` and the inner name back
    built-ins (web_search, file_search, mcp, ...)    left out (the gateway runs none of them)

    tool_choice auto | none | required              the same
    {type: function | custom, name}                 {type: function, function: {name}}
    {type: allowed_tools, mode, tools}              the listed tools only; `mode` as tool_choice
    a built-in or mcp                               400 invalid_request_error / unsupported_tool
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError, invalid_request

CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's raw input text."}},
    "required": ["input"],
}
EMPTY_PARAMETERS = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class ToolName:
    """What a chat tool name stands for: `kind` `function` or `custom`, its `namespace` (or
    None) and its Responses `name`."""

    kind: str
    namespace: str | None
    name: str


def flat_name(namespace: str | None, name: str) -> str:
    """The chat function name of a (namespaced) Responses tool."""
    if not namespace:
        return name
    return f"{namespace}{name}" if namespace.endswith("_") else f"{namespace}__{name}"


@dataclass(slots=True)
class ToolMap:
    """The chat `tools` for one request and the way back from a chat tool call name."""

    tools: list[dict] = field(default_factory=list)
    names: dict[str, ToolName] = field(default_factory=dict)
    builtins: list[str] = field(default_factory=list)

    def add(self, tool: dict, namespace: str | None, param: str) -> None:
        kind = tool.get("type")
        if kind == "namespace" and namespace is None:
            inner = tool.get("tools")
            if not isinstance(tool.get("name"), str) or not isinstance(inner, list):
                raise invalid_request(f"A namespace tool needs a 'name' and a 'tools' array ('{param}').", param=param)
            for j, each in enumerate(inner):
                self.add(each if isinstance(each, dict) else {}, tool["name"], f"{param}.tools[{j}]")
            return
        if kind not in ("function", "custom"):
            if isinstance(kind, str):
                self.builtins.append(kind)
                return
            raise invalid_request(f"Invalid value for '{param}.type': expected a tool type.", param=f"{param}.type")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_request(f"Missing required parameter: '{param}.name'.", param=f"{param}.name")
        function: dict[str, Any] = {"name": flat_name(namespace, name)}
        if tool.get("description"):
            function["description"] = tool["description"]
        if kind == "function":
            function["parameters"] = tool.get("parameters") or EMPTY_PARAMETERS
            if tool.get("strict") is not None:
                function["strict"] = tool["strict"]
        else:
            function["parameters"] = CUSTOM_PARAMETERS
        self.tools.append({"type": "function", "function": function})
        self.names[function["name"]] = ToolName(kind, namespace, name)

    def lookup(self, chat_name: str) -> ToolName:
        """The Responses tool behind a chat tool call's name (a plain function when unknown)."""
        return self.names.get(chat_name) or ToolName("function", None, chat_name)


def tool_map(tools: Any) -> ToolMap:
    """Map the request's `tools` (None or a list). Raises GatewayError 400 on malformed tools."""
    mapped = ToolMap()
    if tools is None:
        return mapped
    if not isinstance(tools, list):
        raise invalid_request("Invalid type for 'tools': expected an array.", param="tools")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid_request(f"Invalid type for 'tools[{i}]': expected an object.", param=f"tools[{i}]")
        mapped.add(tool, None, f"tools[{i}]")
    return mapped


def unsupported_tool(kind: str) -> GatewayError:
    """400 `unsupported_tool`: `tool_choice` forces a built-in tool the gateway does not run."""
    return GatewayError(
        400,
        f"The tool '{kind}' is not supported by this gateway: it runs no built-in tools, so tool_choice cannot force it.",
        param="tool_choice",
        code="unsupported_tool",
    )


def chat_tool_choice(choice: Any, tools: ToolMap) -> Any:
    """The chat `tool_choice` for the request's, or None to leave it out. May narrow
    `tools.tools` (`allowed_tools`). Raises GatewayError 400 (`unsupported_tool` for a forced
    built-in, `invalid_request_error` for a malformed choice)."""
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise invalid_request("Invalid value for 'tool_choice': expected 'auto', 'none' or 'required'.", param="tool_choice")
        return choice if tools.tools else None
    if not isinstance(choice, dict):
        raise invalid_request("Invalid type for 'tool_choice': expected a string or an object.", param="tool_choice")
    kind = choice.get("type")
    if kind in ("function", "custom"):
        name = choice.get("name")
        if not isinstance(name, str):
            raise invalid_request("Missing required parameter: 'tool_choice.name'.", param="tool_choice.name")
        return {"type": "function", "function": {"name": flat_name(choice.get("namespace"), name)}}
    if kind == "allowed_tools":
        allowed = {flat_name(t.get("namespace"), t.get("name") or t.get("type")) for t in choice.get("tools") or [] if isinstance(t, dict)}
        tools.tools = [t for t in tools.tools if t["function"]["name"] in allowed]
        mode = choice.get("mode") or "auto"
        return mode if tools.tools else None
    raise unsupported_tool(kind if isinstance(kind, str) else "unknown")
