"""The `gemini` adapter, driven as users do: the official `openai` client against the gateway
(served on loopback) in front of the fake Gemini upstream. Checks what Gemini received (path,
`x-goog-api-key`, no key in the URL, the translated `GenerateContentRequest`), answers, real
streaming, tool-call round trips, images, finish reasons, usage, blocked prompts and the §3
error mapping."""

import json

import httpx
import openai
import pytest
import yaml

from gateway.app import create_app
from gateway.request import ChatRequest
from tests.fakes.gemini import PROMPT_TOKENS, SIGNATURE, THOUGHT_TOKENS, FakeGemini
from tests.support.servers import serve_app

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"], "additionalProperties": False}}}]
PNG = "iVBORw0KGgo="  # 8 bytes


@pytest.fixture(scope="module")
def fake_gemini():
    fake = FakeGemini()
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def config_path(fake_gemini, tmp_path_factory):
    fake, base = fake_gemini
    config = {"tokens": [
        {"token": "sk-gemini", "type": "gemini", "config": {"api_key": fake.api_key, "api_base": base}},
        {"token": "sk-gemini-forced", "type": "gemini",
         "config": {"api_key": fake.api_key, "api_base": f"{base}/", "model": "gemini-2.0-flash", "temperature": 0.3, "max_tokens": 99}},
        {"token": "sk-gemini-badkey", "type": "gemini", "config": {"api_key": "AIzaSyWrongKeyWrongKeyWrongKey0000", "api_base": base}},
    ]}
    path = tmp_path_factory.mktemp("gemini") / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gateway(config_path):
    with serve_app(create_app(config_path)) as url:
        yield url


def client(gateway, token="sk-gemini"):
    return openai.OpenAI(api_key=token, base_url=f"{gateway}/v1", max_retries=0)


def user(text):
    return {"role": "user", "content": text}


# -- plain text -----------------------------------------------------------------------------------


def test_completion_and_translated_request(gateway, fake_gemini):
    fake, _ = fake_gemini
    completion = client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "developer", "content": [{"type": "text", "text": "No lies."}]},
                  user("first"), user("hi there")],
        temperature=0, top_p=0.9, max_completion_tokens=64, max_tokens=10, stop="END", n=1, seed=7,
        presence_penalty=0.5, frequency_penalty=0.25, user="user-12345",
    )
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.model == "gemini-2.5-flash"
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == ("assistant", "Echo: first hi there", "stop")
    assert choice.message.tool_calls is None
    received = fake.recorder.last
    assert received.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert received.headers["x-goog-api-key"] == fake.api_key
    assert received.query == {} and "authorization" not in received.headers
    assert received.body == {
        "contents": [{"role": "user", "parts": [{"text": "first"}, {"text": "hi there"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "No lies."}]},
        # penalties are not sent: Gemini 2.5+ refuse them (tests/test_adapter_gemini_fidelity.py)
        "generationConfig": {"temperature": 0, "topP": 0.9, "candidateCount": 1, "seed": 7, "maxOutputTokens": 64, "stopSequences": ["END"]},
    }


def test_usage_counts_thoughts_as_completion(gateway):
    completion = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("a b c")])
    usage = completion.usage
    words = len("Echo: a b c".split())
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, words + THOUGHT_TOKENS)
    assert usage.total_tokens == PROMPT_TOKENS + words + THOUGHT_TOKENS
    assert usage.completion_tokens_details.reasoning_tokens == THOUGHT_TOKENS


def test_forced_model_and_config_defaults(gateway, fake_gemini):
    fake, _ = fake_gemini
    completion = client(gateway, "sk-gemini-forced").chat.completions.create(model="whatever", messages=[user("hey")])
    assert completion.choices[0].message.content == "Echo: hey"
    received = fake.recorder.last
    assert received.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert received.body["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 99}
    assert [m.id for m in client(gateway, "sk-gemini-forced").models.list()] == ["gemini-2.0-flash"]
    assert [m.id for m in client(gateway).models.list()] == ["gemini-2.5-flash"]


def test_request_without_model_uses_default(gateway, fake_gemini):
    fake, _ = fake_gemini
    response = httpx.post(f"{gateway}/v1/chat/completions", headers={"authorization": "Bearer sk-gemini"},
                          json={"messages": [user("no model")]})
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "Echo: no model"
    assert fake.recorder.last.path == "/v1beta/models/gemini-2.5-flash:generateContent"


def test_models_prefix_dropped_and_name_quoted(gateway, fake_gemini, config_path):
    fake, base = fake_gemini
    client(gateway).chat.completions.create(model="models/gemini-2.5-pro", messages=[user("x")])
    assert fake.recorder.last.path == "/v1beta/models/gemini-2.5-pro:generateContent"
    client(gateway).chat.completions.create(model="tuned/a b?c&key=1", messages=[user("x")])
    assert fake.recorder.last.query == {}  # nothing of the model name leaks into the query string
    adapter = create_app(config_path).state.gateway.runtime.adapter("sk-gemini")
    request = ChatRequest.from_body({"model": "tuned/a b?c", "messages": [user("x")]})
    assert adapter.endpoint(request, False) == f"{base}/v1beta/models/tuned%2Fa%20b%3Fc:generateContent"
    assert adapter.endpoint(request, True) == f"{base}/v1beta/models/tuned%2Fa%20b%3Fc:streamGenerateContent?alt=sse"


def test_response_format_json_schema_and_json_object(gateway, fake_gemini):
    fake, _ = fake_gemini
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}
    client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("x")],
                                            response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema, "strict": True}})
    assert fake.recorder.last.body["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("x")], response_format={"type": "json_object"})
    assert fake.recorder.last.body["generationConfig"] == {"responseMimeType": "application/json"}


# -- streaming ------------------------------------------------------------------------------------


def test_stream_is_real_streaming(gateway, fake_gemini):
    fake, _ = fake_gemini
    chunks = list(client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("one two")], stream=True))
    received = fake.recorder.last
    assert received.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent" and received.query == {"alt": "sse"}
    assert received.headers["x-goog-api-key"] == fake.api_key
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text_chunks = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert text_chunks == ["Echo: ", "one ", "two"]  # one chunk per upstream event, not one re-chunked answer
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_stream_include_usage(gateway):
    stream = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("hi")], stream=True,
                                                     stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == PROMPT_TOKENS
    assert chunks[-1].usage.completion_tokens == 2 + THOUGHT_TOKENS
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_stream_multiple_candidates(gateway):
    chunks = list(client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("hi")], stream=True, n=2))
    texts = {0: "", 1: ""}
    finishes = {}
    for chunk in chunks:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            if c.finish_reason:
                finishes[c.index] = c.finish_reason
    assert texts == {0: "[0] Echo: hi", 1: "[1] Echo: hi"} and finishes == {0: "stop", 1: "stop"}


def test_multiple_candidates_become_choices(gateway, fake_gemini):
    completion = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("hi")], n=2)
    assert [(c.index, c.message.content) for c in completion.choices] == [(0, "[0] Echo: hi"), (1, "[1] Echo: hi")]
    assert fake_gemini[0].recorder.last.body["generationConfig"] == {"candidateCount": 2}


# -- tools ----------------------------------------------------------------------------------------


def test_tool_call_round_trip(gateway, fake_gemini):
    fake, _ = fake_gemini
    c = client(gateway)
    messages = [user("weather in Paris?")]
    first = c.chat.completions.create(model="gemini-2.5-flash", messages=messages, tools=TOOLS, tool_choice="required")
    sent = fake.recorder.last.body
    assert sent["tools"] == [{"functionDeclarations": [{"name": "get_weather", "description": "Weather of a city",
                                                        "parametersJsonSchema": TOOLS[0]["function"]["parameters"]}]}]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    second = c.chat.completions.create(model="gemini-2.5-flash", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == 'Result: {"temp": 21}'
    assert second.choices[0].finish_reason == "stop"
    assert fake.recorder.last.body["contents"] == [
        {"role": "user", "parts": [{"text": "weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIGNATURE}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}]},
    ]


def test_tool_results_text_wrapped_and_parallel_merged(gateway, fake_gemini):
    fake, _ = fake_gemini
    messages = [
        user("two cities"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "[1, 2]"}]},
    ]
    completion = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=messages,
                                                         tool_choice={"type": "function", "function": {"name": "get_weather"}}, tools=TOOLS)
    assert completion.choices[0].message.content == 'Result: {"content": "sunny"}'
    body = fake.recorder.last.body
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    # calls not made through this gateway carry Google's documented stand-in signature on the first call
    assert body["contents"][1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "skip_thought_signature_validator"},
        {"functionCall": {"name": "get_time", "args": {}}}]}
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
        {"functionResponse": {"name": "get_time", "response": {"content": [1, 2]}}}]}


def test_tool_message_with_unknown_call_id_is_400(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[
            user("x"), {"role": "tool", "tool_call_id": "call_nowhere", "content": "1"}])
    assert caught.value.body["param"] == "messages[1].tool_call_id"


def test_tool_choice_none(gateway, fake_gemini):
    completion = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("x")], tools=TOOLS, tool_choice="none")
    assert completion.choices[0].message.content == "Echo: x"
    assert fake_gemini[0].recorder.last.body["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}


def test_streamed_tool_call(gateway):
    chunks = list(client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("weather?")], tools=TOOLS, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 1
    delta = deltas[0]
    assert delta.index == 0 and delta.id.startswith("call_") and delta.type == "function"
    assert (delta.function.name, json.loads(delta.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# -- images ---------------------------------------------------------------------------------------


def test_image_parts(gateway, fake_gemini):
    fake, _ = fake_gemini
    content = [{"type": "text", "text": "what is this?"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=big", "detail": "low"}}]
    completion = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user(content)])
    assert completion.choices[0].message.content == "Echo: what is this? [inline image/png 8 bytes] [file image/webp https://example.com/cat.webp?size=big]"
    assert fake.recorder.last.body["contents"][0]["parts"] == [
        {"text": "what is this?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=big"}},
    ]


# -- finish reasons and blocked prompts -----------------------------------------------------------


@pytest.mark.parametrize(("model", "reason"), [("gemini-2.5-flash", "stop"), ("max-tokens", "length"), ("safety", "content_filter")])
def test_finish_reasons(gateway, model, reason):
    completion = client(gateway).chat.completions.create(model=model, messages=[user("x")])
    assert completion.choices[0].finish_reason == reason
    chunks = list(client(gateway).chat.completions.create(model=model, messages=[user("x")], stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [reason]


def test_safety_finish_has_empty_content(gateway):
    completion = client(gateway).chat.completions.create(model="safety", messages=[user("x")])
    assert completion.choices[0].message.content == ""


@pytest.mark.parametrize("stream", [False, True])
def test_blocked_prompt_is_clear_error(gateway, stream):
    with pytest.raises(openai.BadRequestError) as caught:
        result = client(gateway).chat.completions.create(model="blocked", messages=[user("x")], stream=stream)
        list(result) if stream else None
    error = caught.value.body
    assert caught.value.status_code == 400
    assert (error["type"], error["code"]) == ("invalid_request_error", "content_filter")
    assert "SAFETY" in error["message"]


# -- errors (CONTRACT §3) -------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "status", "type_", "code"), [
    ("status-400", 400, "invalid_request_error", None),
    ("status-404", 404, "invalid_request_error", "not_found"),
    ("status-401", 502, "api_error", "upstream_auth_error"),
    ("status-403", 502, "api_error", "upstream_auth_error"),
    ("status-429", 429, "rate_limit_error", "rate_limit_exceeded"),
    ("status-500", 502, "api_error", "upstream_error"),
    ("status-503", 502, "api_error", "upstream_error"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_errors_mapped(gateway, model, status, type_, code, stream):
    response = httpx.post(f"{gateway}/v1/chat/completions", headers={"authorization": "Bearer sk-gemini"},
                          json={"model": model, "messages": [user("x")], "stream": stream})
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (type_, code)
    if status == 400:
        assert error["message"] == "Scenario error 400"


def test_rate_limit_error_through_sdk(gateway):
    with pytest.raises(openai.RateLimitError):
        client(gateway).chat.completions.create(model="status-429", messages=[user("x")])


@pytest.mark.parametrize("stream", [False, True])
def test_api_key_invalid_is_upstream_auth_error(gateway, stream):
    with pytest.raises(openai.InternalServerError) as caught:
        result = client(gateway, "sk-gemini-badkey").chat.completions.create(model="gemini-2.5-flash", messages=[user("x")], stream=stream)
        list(result) if stream else None
    assert caught.value.status_code == 502
    assert (caught.value.body["type"], caught.value.body["code"]) == ("api_error", "upstream_auth_error")
    assert "API key not valid" in caught.value.body["message"]


def test_upstream_quoting_the_key_is_scrubbed(gateway, fake_gemini):
    fake, _ = fake_gemini
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="leak-secret", messages=[user("x")])
    assert fake.api_key not in caught.value.body["message"] and "***" in caught.value.body["message"]


def test_unsupported_content_part_is_400(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user([{"type": "video", "video": "x"}])])
    assert caught.value.body["param"] == "messages[0].content[0]"


def test_error_after_stream_started(gateway):
    stream = client(gateway).chat.completions.create(model="midstream-error", messages=[user("x")], stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "partial "
    assert caught.value.code == "upstream_error" and "overloaded" in caught.value.message
