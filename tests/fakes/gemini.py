"""A fake Google Gemini API upstream (generateContent / streamGenerateContent).

Speaks https://ai.google.dev/api/generate-content: `POST /{v1beta|v1}/models/{model}:generateContent`
(JSON) and `POST /{version}/models/{model}:streamGenerateContent?alt=sse` (one
`GenerateContentResponse` per SSE `data:` event, `\\r\\n\\r\\n`-separated as Google sends them).
The key is read from `x-goog-api-key` (or the legacy `?key=` query). Errors use Google's shape
`{"error": {"code", "message", "status", "details"}}`; a wrong key is Google's 400
`INVALID_ARGUMENT` with `details[].reason == "API_KEY_INVALID"`. Like the real service, fields
with default values (`index: 0`) are left out, and a request whose `contents` are malformed is a
400 `INVALID_ARGUMENT`.

The model in the path picks a scenario:

- any model: answers `Echo: <last user content>` (inline data as `[inline MIME N bytes]`,
  file data as `[file MIME URI]`); with `tools` and no `functionResponse` in the last content,
  calls the first declared function with `{"city": "Paris"}` (with a `thoughtSignature`);
  after a `functionResponse`, answers `Result: <its response as JSON>`.
  `generationConfig.candidateCount` candidates, the i-th prefixed `[i] ` when there are several.
- `max-tokens`: finishReason `MAX_TOKENS`; `safety`: finishReason `SAFETY`, no content;
  `blocked`: `promptFeedback.blockReason: SAFETY` and no candidates.
- `status-NNN`: HTTP NNN with Google's error body (429 carries a `RetryInfo` of 7s).
- `leak-secret`: a 400 whose message quotes the key it was sent.
- `midstream-error`: streams one text event, then an `{"error": {code 503, ...}}` event.
- `too-long`: the 400 Google sends for an over-long prompt (`The input token count (N) exceeds
  the maximum number of tokens allowed (M).`).

Gemini 3 models (`gemini-3...`) give every `functionCall` an `id` ("Gemini 3 now always returns
a unique id with every functionCall", ai.google.dev/gemini-api/docs/function-calling). With
`generationConfig.thinkingConfig.includeThoughts`, the answer starts with a thought part
(`{"text": "Thinking about it.", "thought": true}`, its own event when streamed).

Like the real API it also refuses, each with its source:

- non-zero `presencePenalty` / `frequencyPenalty` on models other than the 1.5 / 2.0 families
  (`Penalty is not enabled for models/gemini-2.5-flash`: vercel/ai#8943, google-gemini/cookbook#1290);
- a `thinkingConfig` on models without thinking (1.5 / 2.0), `thinkingLevel` on 2.5 models,
  `thinkingLevel` together with `thinkingBudget`, and a budget of 0 on 2.5 Pro, which cannot stop
  thinking (ai.google.dev/gemini-api/docs/thinking);
- a `functionResponse.id` that matches no `functionCall.id` of the turn it answers
  (router-for-me/CLIProxyAPI#5199: "functionResponse.id does not match functionCall.id");
- `fileData.fileUri` that is neither `https://`, `gs://` nor a Files API URI, and external URLs on
  the 1.5 / 2.0 families (Google blog "Increased file size limits and expanded inputs support",
  2026-01; vercel/ai PR #16757).

Usage: `promptTokenCount` 9, `candidatesTokenCount` = words answered, `thoughtsTokenCount` 3.
"""

from __future__ import annotations

import base64
import json
import re
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.vectors import vector
from tests.support.recorder import Recorder

STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
PART_FIELDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode", "codeExecutionResult"}
PROMPT_TOKENS = 9
THOUGHT_TOKENS = 3
SIGNATURE = "ZmFrZS10aG91Z2h0LXNpZ25hdHVyZQ=="
THOUGHT_TEXT = "Thinking about it."
OLD_FAMILIES = ("gemini-1.5", "gemini-2.0")


def google_error(status: int, message: str, details: list | None = None) -> JSONResponse:
    error = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status)


def key_invalid() -> JSONResponse:
    return google_error(400, "API key not valid. Please pass a valid API key.", [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
         "metadata": {"service": "generativelanguage.googleapis.com"}},
        {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": "API key not valid. Please pass a valid API key."},
    ])


def _camel(obj: dict) -> dict:
    """Top-level keys in lowerCamelCase: Google's JSON parser takes `mime_type` and `mimeType` alike."""
    return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): v for k, v in obj.items()}


def _normalize(body: dict) -> None:
    """Read `contents[].parts[]` (and their blobs) and `generationConfig` (and its
    `thinkingConfig`) as Google does, whichever key spelling was sent (google-genai sends
    `thinkingConfig`'s keys in snake_case)."""
    if isinstance(body.get("generationConfig"), dict):
        config = body["generationConfig"] = _camel(body["generationConfig"])
        if isinstance(config.get("thinkingConfig"), dict):
            config["thinkingConfig"] = _camel(config["thinkingConfig"])
    for content in body.get("contents") or []:
        if isinstance(content, dict) and isinstance(content.get("parts"), list):
            parts = [_camel(p) if isinstance(p, dict) else p for p in content["parts"]]
            for part in parts:
                for blob in ("inlineData", "fileData", "functionCall", "functionResponse"):
                    if isinstance(part, dict) and isinstance(part.get(blob), dict):
                        part[blob] = _camel(part[blob])
            content["parts"] = parts


def _invalid_config(body: dict, model: str) -> str | None:
    """What the real API would reject about `generationConfig` for `model`, or None."""
    config = body.get("generationConfig") or {}
    if not model.startswith(OLD_FAMILIES) and (config.get("presencePenalty") or config.get("frequencyPenalty")):
        return f"Penalty is not enabled for models/{model}"
    thinking = config.get("thinkingConfig")
    if thinking is not None:
        if model.startswith(OLD_FAMILIES):
            return "Thinking is not enabled for this model."
        if "thinkingLevel" in thinking and "thinkingBudget" in thinking:
            return "You can only set only one of thinking budget and thinking level."
        if "thinkingLevel" in thinking and model.startswith("gemini-2."):
            return "Thinking level is not supported for this model."
        if thinking.get("thinkingBudget") == 0 and model.startswith("gemini-2.5-pro"):
            return "Budget 0 is invalid. This model only works in thinking mode."
    return None


def _invalid_file_uri(uri: str, model: str) -> str | None:
    if uri.startswith("gs://") or "generativelanguage.googleapis.com/" in uri and "/files/" in uri:
        return None
    if not uri.startswith("https://"):
        return f"Unsupported file uri: {uri}"
    if model.startswith(OLD_FAMILIES):
        return "External URLs are not supported for this model."
    return None


def _invalid_contents(body: dict, model: str = "") -> str | None:
    """What the real API would reject about `contents` (a 400 INVALID_ARGUMENT message), or None."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}])"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        for j, part in enumerate(parts):
            if len(PART_FIELDS & set(part)) != 1:
                return f"* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field"
            response = part.get("functionResponse")
            if response is not None and not isinstance(response.get("response"), dict):
                return f"Invalid value at 'contents[{i}].parts[{j}].function_response.response' (type.googleapis.com/google.protobuf.Struct)"
            if response is not None and response.get("id") is not None:
                asked = {p["functionCall"].get("id") for p in (contents[i - 1]["parts"] if i else []) if "functionCall" in p}
                if response["id"] not in asked:
                    return f"Please ensure that functionResponse.id matches functionCall.id (contents[{i}].parts[{j}])"
            if "fileData" in part and (problem := _invalid_file_uri(str(part["fileData"].get("fileUri")), model)):
                return problem
    return None


class FakeGemini:
    """The fake. `api_key`: the key it accepts; `recorder`: what it received."""

    def __init__(self, api_key: str = "AIzaSyFakeGeminiKey-0123456789abcdefghij") -> None:
        self.api_key = api_key
        self.recorder = Recorder()
        self.app = Starlette(routes=[Route("/{version}/models/{target:path}", self.models_call, methods=["POST"])])

    async def models_call(self, request: Request) -> Response:
        received = await self.recorder.record(request)
        model, _, method = request.path_params["target"].rpartition(":")
        if method == "batchEmbedContents" and request.path_params["version"] in ("v1", "v1beta"):
            return self._batch_embed(request, received, model)
        if request.path_params["version"] not in ("v1", "v1beta") or method not in ("generateContent", "streamGenerateContent"):
            return google_error(404, f"Method not found: {request.url.path}")
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if key != self.api_key:
            return key_invalid()
        body = received.body
        if not isinstance(body, dict):
            return google_error(400, "Invalid JSON payload received.")
        if model.startswith("status-"):
            status = int(model.split("-", 1)[1])
            details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}] if status == 429 else None
            return google_error(status, f"Scenario error {status}", details)
        if model == "leak-secret":
            return google_error(400, f"Request made with key {key} is malformed")
        if model == "too-long":
            return google_error(400, "The input token count (1200345) exceeds the maximum number of tokens allowed (1048576).")
        body = json.loads(json.dumps(body))
        _normalize(body)
        if (problem := _invalid_contents(body, model) or _invalid_config(body, model)) is not None:
            return google_error(400, problem)
        if method == "streamGenerateContent":
            return StreamingResponse(self._stream(body, model, sse=request.query_params.get("alt") == "sse"), media_type="text/event-stream")
        return JSONResponse(self._response(body, model))

    def _batch_embed(self, request: Request, received, model: str) -> Response:
        """`POST /{version}/models/{model}:batchEmbedContents` (https://ai.google.dev/api/embeddings):
        `{requests: [{model: "models/M", content: {parts: [{text}]}, outputDimensionality?}]}` →
        `{embeddings: [{values}]}`; at most 100 requests a call, each naming the URL's model
        (Google: "BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch").
        Vectors have 12 dimensions unless `outputDimensionality` says otherwise."""
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if key != self.api_key:
            return key_invalid()
        body = received.body
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return google_error(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
        if len(requests) > 100:
            return google_error(400, "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch")
        embeddings = []
        for i, item in enumerate(requests):
            if item.get("model") != f"models/{model}":
                return google_error(400, f"* BatchEmbedContentsRequest.requests[{i}].model: the model must match the one in the URL")
            parts = (item.get("content") or {}).get("parts") or []
            text = " ".join(p.get("text", "") for p in parts)
            if not text:
                return google_error(400, f"* BatchEmbedContentsRequest.requests[{i}].content: contents must not be empty")
            embeddings.append({"values": vector(text, item.get("outputDimensionality") or 12)})
        return JSONResponse({"embeddings": embeddings})

    # -- answers --------------------------------------------------------------------------------

    @staticmethod
    def _describe(part: dict) -> str:
        if "text" in part:
            return part["text"]
        if "inlineData" in part:
            data = part["inlineData"]
            return f"[inline {data['mimeType']} {len(base64.b64decode(data['data']))} bytes]"
        if "fileData" in part:
            data = part["fileData"]
            return f"[file {data.get('mimeType')} {data['fileUri']}]"
        return ""

    def _answer(self, body: dict) -> tuple[str, dict | None]:
        """(text, functionCall or None) for the request."""
        last = body["contents"][-1]
        responses = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
        if responses:
            return "Result: " + json.dumps(responses[0]["response"], sort_keys=True), None
        declarations = [d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations") or []]
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
        if declarations and mode != "NONE":
            return "", {"name": declarations[0]["name"], "args": {"city": "Paris"}}
        return "Echo: " + " ".join(filter(None, (self._describe(p) for p in last["parts"]))), None

    def _candidates(self, body: dict, model: str) -> list[dict]:
        config = body.get("generationConfig") or {}
        count = int(config.get("candidateCount") or 1)
        thoughts = bool((config.get("thinkingConfig") or {}).get("includeThoughts"))
        text, call = self._answer(body)
        if call and model.startswith("gemini-3"):
            call = {"id": uuid.uuid4().hex[:8], **call}
        candidates = []
        for i in range(count):
            candidate: dict = {}
            if model == "safety":
                candidate["finishReason"] = "SAFETY"
                candidate["safetyRatings"] = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]
            else:
                if call:
                    parts = [{"functionCall": call, "thoughtSignature": SIGNATURE}]
                else:
                    parts = [{"text": (f"[{i}] " if count > 1 else "") + text}]
                if thoughts:
                    parts.insert(0, {"text": THOUGHT_TEXT, "thought": True})
                candidate["content"] = {"parts": parts, "role": "model"}
                candidate["finishReason"] = "MAX_TOKENS" if model == "max-tokens" else "STOP"
            if i:
                candidate["index"] = i
            candidates.append(candidate)
        return candidates

    @staticmethod
    def _usage(candidates: list[dict]) -> dict:
        words = sum(len(p.get("text", "").split()) + (1 if "functionCall" in p else 0)
                    for c in candidates for p in (c.get("content") or {}).get("parts", []))
        return {"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": words, "thoughtsTokenCount": THOUGHT_TOKENS,
                "totalTokenCount": PROMPT_TOKENS + words + THOUGHT_TOKENS,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}]}

    def _response(self, body: dict, model: str) -> dict:
        if model == "blocked":
            return {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                    "usageMetadata": {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS}, "modelVersion": model}
        candidates = self._candidates(body, model)
        return {"candidates": candidates, "usageMetadata": self._usage(candidates), "modelVersion": model, "responseId": "fakeResponse123"}

    async def _stream(self, body: dict, model: str, sse: bool):
        """Events of a stream: the answer's text split into words (one event per word, every
        candidate in each), the finishReason on the last one, usage on each (as Google sends)."""
        full = self._response(body, model)
        if not sse:  # without alt=sse Google streams one JSON array
            yield json.dumps([full]).encode()
            return

        def event(data: dict) -> bytes:
            return b"data: " + json.dumps(data).encode() + b"\r\n\r\n"

        if "candidates" not in full:
            yield event(full)
            return
        if model == "midstream-error":
            yield event({"candidates": [{"content": {"parts": [{"text": "partial "}], "role": "model"}}], "modelVersion": model})
            yield event({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}})
            return
        head = {"modelVersion": model, "responseId": full["responseId"]}
        partial_usage = {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS}
        thoughts = []
        for i, candidate in enumerate(full["candidates"]):
            parts = (candidate.get("content") or {}).get("parts") or []
            if parts and parts[0].get("thought"):
                thoughts.append({"content": {"parts": [parts.pop(0)], "role": "model"}, **({"index": i} if i else {})})
        if thoughts:  # thought summaries come first, in events of their own
            yield event({"candidates": thoughts, "usageMetadata": partial_usage, **head})
        first_parts = (full["candidates"][0].get("content") or {}).get("parts") or [{}]
        pieces = []
        if "text" in first_parts[0]:
            words = first_parts[0]["text"].split(" ")
            pieces = [w + (" " if k < len(words) - 1 else "") for k, w in enumerate(words)]
        for k, piece in enumerate(pieces[:-1]):
            candidates = []
            for i, candidate in enumerate(full["candidates"]):
                text = candidate["content"]["parts"][0]["text"].split(" ")[k] + " "
                candidates.append({"content": {"parts": [{"text": text}], "role": "model"}, **({"index": i} if i else {})})
            yield event({"candidates": candidates, "usageMetadata": partial_usage, **head})
        last = []
        for candidate in full["candidates"]:
            candidate = dict(candidate)
            parts = (candidate.get("content") or {}).get("parts")
            if parts and "text" in parts[0]:
                text = parts[0]["text"].split(" ")[-1] if pieces else ""
                candidate["content"] = {"parts": [{"text": text}], "role": "model"}
            last.append(candidate)
        yield event({"candidates": last, "usageMetadata": full["usageMetadata"], **head})
