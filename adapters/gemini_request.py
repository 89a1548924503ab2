"""OpenAI chat completion request → Gemini `GenerateContentRequest`, for the `gemini` adapter.

Follows the Gemini API reference, v1beta (https://ai.google.dev/api/generate-content), the
thinking guide (https://ai.google.dev/gemini-api/docs/thinking), the function calling and thought
signature guides (https://ai.google.dev/gemini-api/docs/function-calling,
https://ai.google.dev/gemini-api/docs/thought-signatures) and `google-genai`'s `types.py`.
The mapping table is in `adapters/gemini.py`.

Tool call ids. Gemini correlates calls by name and, on Gemini 3, by `functionCall.id`, which it
wants echoed in `functionResponse.id`; a Gemini 2.5+ call may also carry a `thoughtSignature`
that Gemini 3 requires back on the next turn. OpenAI clients echo only a call's `id`, `name` and
`arguments`, so both ride in the id the gateway gives the client, with no server state::

    call_<24 hex>        Gemini sent no id (a fresh id; nothing is echoed back)
    gcall_<Gemini's id>  Gemini sent an id (sent back as functionCall.id and functionResponse.id)
    ...__ts__<signature> Gemini signed the call (the signature is restored as thoughtSignature)

Without a signature the id stays short (OpenAI caps ids at 40 characters); with one it is as
long as the signature (hundreds of characters): no other field of an OpenAI message is kept by
every client, and a server-side map would not survive restarts or reach other gateway
processes. Other upstreams get such ids rewritten to what they accept (`gateway.tool_ids`). A
signature sent the way Google's own OpenAI-compatible layer returns it,
`tool_calls[].extra_content.google.thought_signature`, is accepted too.
"""

from __future__ import annotations

import base64
import mimetypes
import re
import uuid
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import orjson

from gateway import openai_format as oai
from gateway.errors import invalid_request

# OpenAI request field -> `generationConfig` field, value copied as is. Penalties only go to the
# models that take them (`takes_penalties`).
GENERATION_CONFIG = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "n": "candidateCount",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
PENALTIES = frozenset({"presence_penalty", "frequency_penalty"})

# OpenAI `reasoning_effort` -> Gemini 2.5 `thinkingBudget` (tokens; the values Google's own
# OpenAI-compatible layer uses for low/medium/high) and -> Gemini 3 `thinkingLevel`.
# Gemini 2.5 Pro cannot stop thinking (its minimum budget is 128); Gemini 3 cannot either
# (`MINIMAL` is its least), and 3 Pro takes only `LOW` and `HIGH`.
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576}
PRO_MIN_BUDGET = 128
THINKING_LEVELS = {"none": "MINIMAL", "minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH", "xhigh": "HIGH"}
PRO_THINKING_LEVELS = {"none": "LOW", "minimal": "LOW", "low": "LOW", "medium": "HIGH", "high": "HIGH", "xhigh": "HIGH"}

# OpenAI `tool_choice` string -> `functionCallingConfig.mode`.
TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}

MINTED_PREFIX = "call_"
GEMINI_ID_PREFIX = "gcall_"
SIGNATURE_SEPARATOR = "__ts__"
# Google's documented stand-in for a missing signature (https://ai.google.dev/gemini-api/docs/thought-signatures):
# used for a model turn whose calls were not made by Gemini through this gateway.
SKIP_SIGNATURE = "skip_thought_signature_validator"

_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.DOTALL)
_GENERATION = re.compile(r"gemini-(\d+)(?:\.(\d+))?")


@lru_cache(maxsize=256)
def model_generation(model: str) -> tuple[int, int] | None:
    """(major, minor) of a Gemini model id (`gemini-2.5-flash` → (2, 5)); None when not of that form."""
    match = _GENERATION.search(model)
    return (int(match[1]), int(match[2] or 0)) if match else None


def is_old_family(model: str) -> bool:
    """True for the Gemini 1.x / 2.0 families: penalties work, thinking and external URLs do not."""
    generation = model_generation(model)
    return generation is not None and generation < (2, 5)


# -- tool call ids ------------------------------------------------------------------------------


def tool_call_id(gemini_id: Any = None, signature: str | None = None) -> str:
    """The id the client gets for a `functionCall` (see the module docstring)."""
    base = f"{GEMINI_ID_PREFIX}{gemini_id}" if isinstance(gemini_id, str) and gemini_id else f"{MINTED_PREFIX}{uuid.uuid4().hex[:24]}"
    return f"{base}{SIGNATURE_SEPARATOR}{signature}" if signature else base


def parse_tool_call_id(call_id: Any) -> tuple[str | None, str | None]:
    """(Gemini's `functionCall.id`, `thoughtSignature`) carried by a client's tool call id."""
    if not isinstance(call_id, str):
        return None, None
    base, _, signature = call_id.partition(SIGNATURE_SEPARATOR)
    gemini_id = base[len(GEMINI_ID_PREFIX):] if base.startswith(GEMINI_ID_PREFIX) else None
    return gemini_id or None, signature or None


# -- content parts ------------------------------------------------------------------------------


def _inline_data(url: str, param: str) -> dict[str, Any]:
    """`{inlineData: {mimeType, data}}` from a `data:` URL (base64 or percent-encoded). Raises 400."""
    match = _DATA_URL.match(url)
    if not match:
        raise invalid_request(f"Invalid data URL in '{param}'.", param=param)
    mime = match["mime"] or "application/octet-stream"
    data = match["data"]
    if ";base64" not in match["params"]:
        data = base64.b64encode(unquote_to_bytes(data)).decode("ascii")
    return {"inlineData": {"mimeType": mime, "data": data}}


def _is_gemini_file(uri: str) -> bool:
    """A URI Gemini reads itself: Cloud Storage (`gs://`) or a Files API file."""
    return uri.startswith("gs://") or (urlsplit(uri).hostname == "generativelanguage.googleapis.com" and "/files/" in uri)


def _file_data(url: str, default_mime: str) -> dict[str, Any]:
    """`{fileData: {mimeType, fileUri}}` for a URL Gemini fetches itself."""
    mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or default_mime
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _external_url(url: str, model: str, param: str) -> dict[str, Any]:
    """`fileData` for an external URL, which Gemini fetches only over HTTPS, with a documented
    MIME type, and not on the 1.x / 2.0 families (Google blog "Increased file size limits and
    expanded inputs support", 2026-01; vercel/ai PR #16757). Raises 400 otherwise: the gateway
    does not fetch client URLs itself (upstream hosts come only from the config)."""
    if not url.startswith("https://"):
        raise invalid_request(f"Gemini fetches only https:// URLs; send the file in '{param}' as a data URL instead.", param=param)
    if is_old_family(model):
        raise invalid_request(f"{model} does not fetch external URLs; send the file in '{param}' as a data URL instead.", param=param)
    mime = mimetypes.guess_type(url.split("?", 1)[0].split("#", 1)[0])[0]
    if not mime:
        raise invalid_request(
            f"Cannot tell the MIME type of the URL in '{param}' from its extension; send it as a data URL instead.", param=param
        )
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _media_part(url: str, default_mime: str, model: str, param: str) -> dict[str, Any]:
    if url.startswith("data:"):
        return _inline_data(url, param)
    if _is_gemini_file(url):
        return _file_data(url, default_mime)
    return _external_url(url, model, param)


def _parts(content: Any, model: str, param: str) -> list[dict[str, Any]]:
    """Gemini `parts` for an OpenAI message `content` (string or content-part array). Raises 400
    for a part type Gemini cannot take."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind, where = part.get("type"), f"{param}[{j}]"
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise invalid_request(f"Missing 'image_url.url' in '{where}'.", param=where)
            parts.append(_media_part(url, "image/jpeg", model, where))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append({"inlineData": {"mimeType": f"audio/{audio.get('format', 'wav')}", "data": audio.get("data", "")}})
        elif kind == "file":
            file = part.get("file") or {}
            if isinstance(file.get("file_data"), str):
                parts.append(_media_part(file["file_data"], "application/pdf", model, where))
            elif isinstance(file.get("file_id"), str):
                parts.append(_file_data(file["file_id"], "application/pdf"))
            else:
                raise invalid_request(f"'{where}' needs 'file.file_data' or 'file.file_id'.", param=where)
        elif kind == "refusal":
            continue
        else:
            raise invalid_request(f"Content part type '{kind}' in '{where}' is not supported by Gemini.", param=where)
    return parts


def _function_response(content: Any) -> dict[str, Any]:
    """A `functionResponse.response` object: the tool's JSON object, else `{"content": value}`."""
    text = oai.text_of(content)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"content": text}
    return value if isinstance(value, dict) else {"content": value}


def _extra_signature(call: dict[str, Any]) -> str | None:
    """`tool_calls[].extra_content.google.thought_signature` (Google's OpenAI-compatible layer)."""
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def _function_call_parts(calls: list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    """`functionCall` parts for an assistant message's `tool_calls`: Gemini's ids and signatures
    restored from the ids (module docstring); Google's stand-in signature on the first call when
    none has one."""
    parts = []
    for k, call in enumerate(calls):
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            args = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise invalid_request(
                f"'{param}[{k}].function.arguments' is not valid JSON.", param=f"{param}[{k}].function.arguments"
            ) from None
        gemini_id, signature = parse_tool_call_id(call.get("id"))
        function_call: dict[str, Any] = {"name": function.get("name", ""), "args": args if isinstance(args, dict) else {}}
        if gemini_id:
            function_call = {"id": gemini_id, **function_call}
        part: dict[str, Any] = {"functionCall": function_call}
        if signature := _extra_signature(call) or signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    if parts and not any("thoughtSignature" in p for p in parts):
        parts[0]["thoughtSignature"] = SKIP_SIGNATURE
    return parts


def translate_messages(messages: list[dict[str, Any]], model: str = "") -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """`(systemInstruction, contents)` for OpenAI `messages` sent to `model`.

    system/developer text goes to `systemInstruction`; user/assistant/tool messages become
    `contents` with roles `user`/`model`/`user`, consecutive same-role contents merged (Gemini
    wants the parallel function responses of one turn in one content). A tool message's function
    name is looked up from the assistant tool call it answers. Raises GatewayError 400.
    """
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, msg in enumerate(messages):
        role, param = msg.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            text = oai.text_of(msg.get("content"))
            if text:
                system.append({"text": text})
        elif role == "user":
            add("user", _parts(msg.get("content"), model, f"{param}.content"))
        elif role == "assistant":
            parts = [p for p in _parts(msg.get("content"), model, f"{param}.content") if "text" in p]
            calls = list(msg.get("tool_calls") or [])
            if isinstance(msg.get("function_call"), dict):  # legacy functions API
                calls.append({"function": msg["function_call"]})
            for call in calls:
                if isinstance(call.get("id"), str):
                    names[call["id"]] = (call.get("function") or {}).get("name", "")
            add("model", parts + _function_call_parts(calls, f"{param}.tool_calls"))
        elif role in ("tool", "function"):
            name = names.get(msg.get("tool_call_id")) or msg.get("name")
            if not name:
                raise invalid_request(
                    f"'{param}.tool_call_id' does not match a tool call of an earlier assistant message.",
                    param=f"{param}.tool_call_id",
                )
            response: dict[str, Any] = {"name": name, "response": _function_response(msg.get("content"))}
            if gemini_id := parse_tool_call_id(msg.get("tool_call_id"))[0]:
                response = {"id": gemini_id, **response}
            add("user", [{"functionResponse": response}])
    return ({"parts": system} if system else None), contents


# -- generation config and tools ----------------------------------------------------------------


def thinking_config(effort: Any, model: str) -> dict[str, Any] | None:
    """`generationConfig.thinkingConfig` for OpenAI `reasoning_effort` on `model`.

    Gemini 3: `thinkingLevel` (`THINKING_LEVELS`, `PRO_THINKING_LEVELS` for Pro models); Gemini
    2.5 and unknown names: `thinkingBudget` (`THINKING_BUDGETS`; at least 128 on Pro, which
    cannot stop thinking); 1.x / 2.0 (no thinking): None. `includeThoughts` is set unless the
    effort is `none`, so thought summaries come back as `reasoning_content`. Thought tokens count
    against `maxOutputTokens`. Raises 400 for an unknown effort.
    """
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
        raise invalid_request("Invalid value for 'reasoning_effort': expected 'none', 'minimal', 'low', 'medium', 'high' or 'xhigh'.",
                              param="reasoning_effort")
    generation = model_generation(model)
    if is_old_family(model):
        return None
    pro = "-pro" in model
    if generation is not None and generation >= (3, 0):
        config: dict[str, Any] = {"thinkingLevel": (PRO_THINKING_LEVELS if pro else THINKING_LEVELS)[effort]}
    else:
        budget = THINKING_BUDGETS[effort]
        config = {"thinkingBudget": max(budget, PRO_MIN_BUDGET) if pro else budget}
    if effort != "none":
        config["includeThoughts"] = True
    return config


def translate_generation_config(body: dict[str, Any], model: str = "") -> dict[str, Any]:
    """`generationConfig` from the OpenAI sampling fields, `stop`, max tokens, `response_format`
    and `reasoning_effort`. Penalties are sent to the 1.x / 2.0 families only: Gemini 2.5 and
    later refuse non-zero ones (`Penalty is not enabled for models/...`, vercel/ai#8943)."""
    skip = () if is_old_family(model) else PENALTIES
    config = {gemini: body[openai] for openai, gemini in GENERATION_CONFIG.items() if body.get(openai) is not None and openai not in skip}
    max_tokens = body.get("max_completion_tokens") if body.get("max_completion_tokens") is not None else body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif response_format.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema is not None:
            config["responseJsonSchema"] = schema
    if (thinking := thinking_config(body.get("reasoning_effort"), model)) is not None:
        config["thinkingConfig"] = thinking
    return config


def translate_tools(body: dict[str, Any]) -> dict[str, Any]:
    """`tools` (one `functionDeclarations` list) and `toolConfig` from OpenAI `tools`/`tool_choice`."""
    out: dict[str, Any] = {}
    declarations = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            continue
        function = tool.get("function") or {}
        declaration = {"name": function.get("name", "")}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice in TOOL_CHOICE_MODES:
        out["toolConfig"] = {"functionCallingConfig": {"mode": TOOL_CHOICE_MODES[choice]}}
    elif isinstance(choice, dict) and (name := (choice.get("function") or {}).get("name")):
        out["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return out
