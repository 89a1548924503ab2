"""The `claude` adapter (alias `claude-api`), driven as users drive the gateway: the official
`openai` client against the gateway app, in front of the fake Anthropic upstream. Each test also
checks what the upstream received (path, `x-api-key`, `anthropic-version`, translated body)."""

import json

import httpx
import openai
import pytest
import yaml

from gateway.app import create_app
from tests.fakes.anthropic import API_KEY, INPUT_TOKENS, FakeAnthropic
from tests.support.servers import serve_app

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]
OPENAI_ONLY = {"n", "seed", "stream_options", "presence_penalty", "frequency_penalty", "logprobs", "user", "max_completion_tokens",
               "response_format", "parallel_tool_calls", "stop", "logit_bias"}


@pytest.fixture(scope="module")
def upstream():
    fake = FakeAnthropic()
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    _, url = upstream
    config = {"tokens": [
        {"token": "gw-claude", "type": "claude", "config": {"api_base": url, "api_key": API_KEY}},
        {"token": "gw-claude-api", "type": "claude-api",
         "config": {"api_base": f"{url}/", "api_key": API_KEY, "model": "claude-opus-4-1", "max_tokens": 512,
                    "anthropic_version": "2024-01-01", "top_k": 5, "temperature": 0.2}},
        {"token": "gw-claude-badkey", "type": "claude", "config": {"api_base": url, "api_key": "sk-ant-wrong-key-000000"}},
    ]}
    path = tmp_path_factory.mktemp("claude") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with serve_app(create_app(path)) as base:
        yield base


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(api_key="gw-claude", base_url=f"{gateway}/v1", max_retries=0)


def user(text):
    return [{"role": "user", "content": text}]


# -- text, non-stream and stream --------------------------------------------------------------


def test_text_completion_and_what_upstream_received(client, upstream):
    fake, _ = upstream
    completion = client.chat.completions.create(
        model="claude-sonnet-4-5", messages=user("hello"), n=1, seed=7, presence_penalty=0.1, frequency_penalty=0.2,
        logprobs=False, user="user-42", temperature=0.5, stream_options=None)
    assert completion.object == "chat.completion" and completion.model == "claude-sonnet-4-5"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Echo: hello"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (INPUT_TOKENS, 2, INPUT_TOKENS + 2)
    received = fake.recorder.last
    assert received.method == "POST" and received.path == "/v1/messages"
    assert received.headers["x-api-key"] == API_KEY and received.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in received.headers
    assert received.body == {"model": "claude-sonnet-4-5", "max_tokens": 4096, "temperature": 0.5, "metadata": {"user_id": "user-42"},
                             "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}


def test_request_without_model_uses_default(gateway, upstream):
    fake, _ = upstream
    response = httpx.post(f"{gateway}/v1/chat/completions", headers={"x-api-key": "gw-claude"}, json={"messages": user("x")})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Echo: x"
    assert fake.recorder.last.body["model"] == "claude-sonnet-4-5"


def test_streamed_text(client, upstream):
    fake, _ = upstream
    chunks = list(client.chat.completions.create(model="claude-sonnet-4-5", messages=user("one two three"), stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert all(c.usage is None for c in chunks)  # no usage chunk unless asked for
    assert len({c.id for c in chunks}) == 1
    body = fake.recorder.last.body
    assert body["stream"] is True and "stream_options" not in body


def test_streamed_usage_with_include_usage(client, upstream):
    fake, _ = upstream
    chunks = list(client.chat.completions.create(model="claude-sonnet-4-5", messages=user("a b"), stream=True,
                                                 stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (INPUT_TOKENS, 3, INPUT_TOKENS + 3)
    assert not (set(fake.recorder.last.body) & OPENAI_ONLY)


def test_usage_counts_cached_input(client):
    completion = client.chat.completions.create(model="cached", messages=user("x"))
    assert completion.usage.prompt_tokens == INPUT_TOKENS + 20 + 100
    assert completion.usage.prompt_tokens_details.cached_tokens == 100


def test_async_client_stream(gateway):
    import asyncio

    async def run():
        aclient = openai.AsyncOpenAI(api_key="gw-claude", base_url=f"{gateway}/v1", max_retries=0)
        parts = []
        async for chunk in await aclient.chat.completions.create(model="claude-sonnet-4-5", messages=user("async"), stream=True):
            parts.extend(c.delta.content or "" for c in chunk.choices)
        await aclient.close()
        return "".join(parts)

    assert asyncio.run(run()) == "Echo: async"


# -- tools --------------------------------------------------------------------------------------


def test_tool_call_round_trip(client, upstream):
    fake, _ = upstream
    messages = [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "weather in Paris?"}]
    first = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=TOOLS, tool_choice="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("toolu_")
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    sent = fake.recorder.last.body
    assert sent["tools"] == [
        {"name": "get_weather", "description": "Weather for a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert sent["tool_choice"] == {"type": "auto"} and sent["system"] == "Use tools."

    messages += [choice.message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    final = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "Tool said: sunny, 21C"
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.tool_calls is None
    sent = fake.recorder.last.body
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me check."},
                                          {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}]},
    ]


def test_parallel_tool_results_merge_into_one_user_turn(client, upstream):
    fake, _ = upstream
    calls = [{"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
             {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]
    messages = [
        {"role": "user", "content": "weather and time?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "rain"}]},
        {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
        {"role": "user", "content": "thanks"},
    ]
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=TOOLS)
    assert completion.choices[0].message.content == "Tool said: rain noon"
    assert fake.recorder.last.body["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Oslo"}},
                                          {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_a", "content": [{"type": "text", "text": "rain"}]},
                                     {"type": "tool_result", "tool_use_id": "call_b", "content": "noon"},
                                     {"type": "text", "text": "thanks"}]},
    ]


def test_streamed_tool_call(client, upstream):
    fake, _ = upstream
    chunks = list(client.chat.completions.create(model="claude-sonnet-4-5", messages=user("weather?"), tools=TOOLS, stream=True,
                                                 tool_choice={"type": "function", "function": {"name": "get_time"}}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == ""  # a forced tool comes without text
    tool_deltas = [tc for d in deltas for tc in (d.tool_calls or [])]
    first, rest = tool_deltas[0], tool_deltas[1:]
    assert (first.index, first.type, first.function.name, first.function.arguments) == (0, "function", "get_time", "")
    assert first.id.startswith("toolu_")
    assert rest and all(tc.index == 0 and tc.id is None and tc.function.name is None for tc in rest)
    assert json.loads("".join(tc.function.arguments for tc in rest)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert fake.recorder.last.body["tool_choice"] == {"type": "tool", "name": "get_time"}


@pytest.mark.parametrize(("tool_choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, False, {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
])
def test_tool_choice_mapping(client, upstream, tool_choice, parallel, expected):
    fake, _ = upstream
    extra = {k: v for k, v in (("tool_choice", tool_choice), ("parallel_tool_calls", parallel)) if v is not None}
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=user("hi"), tools=TOOLS, **extra)
    assert fake.recorder.last.body["tool_choice"] == expected
    assert completion.choices[0].finish_reason == ("stop" if tool_choice == "none" else "tool_calls")


# -- messages: images, system / developer, merging ---------------------------------------------


def test_image_parts_become_image_blocks(client, upstream):
    fake, _ = upstream
    content = [{"type": "text", "text": "what is this?"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}]
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": content}])
    assert completion.choices[0].message.content == "Echo: what is this? [image] [image]"
    assert fake.recorder.last.body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_system_and_developer_hoisted_and_same_roles_merged(client, upstream):
    fake, _ = upstream
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {"role": "user", "content": "first"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
        {"role": "assistant", "content": "one"},
        {"role": "assistant", "content": [{"type": "text", "text": "two"}]},
        {"role": "system", "content": "Late rule."},
        {"role": "user", "content": "third"},
    ]
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages)
    assert completion.choices[0].message.content == "Echo: third"
    body = fake.recorder.last.body
    assert body["system"] == "You are terse.\n\nAnswer in English.\n\nLate rule."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {"role": "user", "content": [{"type": "text", "text": "third"}]},
    ]


# -- finish reasons, stop sequences, sampling ---------------------------------------------------


def test_finish_reason_length_from_max_tokens(client, upstream):
    fake, _ = upstream
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=user("one two three"), max_tokens=2)
    assert (completion.choices[0].finish_reason, completion.choices[0].message.content) == ("length", "Echo: one")
    assert fake.recorder.last.body["max_tokens"] == 2
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=user("one two three"), max_completion_tokens=3, max_tokens=50)
    assert completion.choices[0].finish_reason == "length"
    assert fake.recorder.last.body["max_tokens"] == 3
    chunks = list(client.chat.completions.create(model="claude-sonnet-4-5", messages=user("one two three"), max_tokens=2, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.parametrize("stop", ["three", ["nothing", "three"]])
def test_stop_sequences(client, upstream, stop):
    fake, _ = upstream
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=user("one two three four"), stop=stop)
    assert (completion.choices[0].finish_reason, completion.choices[0].message.content) == ("stop", "Echo: one two ")
    assert fake.recorder.last.body["stop_sequences"] == ([stop] if isinstance(stop, str) else stop)


def test_refusal_is_content_filter(client):
    completion = client.chat.completions.create(model="refusal", messages=user("x"))
    assert completion.choices[0].finish_reason == "content_filter"
    chunks = list(client.chat.completions.create(model="refusal", messages=user("x"), stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"


def test_sampling_fields_and_response_format(client, upstream):
    fake, _ = upstream
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    client.chat.completions.create(model="claude-sonnet-4-5", messages=user("x"), temperature=0.3, top_p=0.9,
                                   response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})
    body = fake.recorder.last.body
    assert body["temperature"] == 0.3 and "top_p" not in body  # Claude 4.5+ refuses both
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    client.chat.completions.create(model="claude-sonnet-4-5", messages=user("x"), top_p=0.9, response_format={"type": "json_object"})
    body = fake.recorder.last.body
    assert body["top_p"] == 0.9 and "temperature" not in body and "output_config" not in body


def test_config_forced_model_defaults_version_and_alias(gateway, upstream):
    fake, _ = upstream
    aliased = openai.OpenAI(api_key="gw-claude-api", base_url=f"{gateway}/v1", max_retries=0)
    completion = aliased.chat.completions.create(model="gpt-4o", messages=user("x"), top_p=0.5)
    assert completion.model == "claude-opus-4-1"
    received = fake.recorder.last
    assert received.path == "/v1/messages" and received.headers["anthropic-version"] == "2024-01-01"
    # the client's top_p wins over the config's default temperature: only one of them is sent
    assert received.body == {"model": "claude-opus-4-1", "max_tokens": 512, "top_p": 0.5, "top_k": 5,
                             "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}
    assert [m.id for m in aliased.models.list()] == ["claude-opus-4-1"]


def test_models_lists_default_model(client):
    assert [m.id for m in client.models.list()] == ["claude-sonnet-4-5"]
    assert client.models.retrieve("claude-sonnet-4-5").id == "claude-sonnet-4-5"


def test_requests_claude_cannot_express_are_400(client, upstream):
    fake, _ = upstream
    count = len(fake.recorder.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude-sonnet-4-5", messages=user("x"), n=2)
    assert caught.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="claude-sonnet-4-5", messages=[
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}])
    assert len(fake.recorder.requests) == count  # refused before anything was sent


# -- errors (CONTRACT §3) -----------------------------------------------------------------------


@pytest.mark.parametrize(("upstream_status", "status", "type_", "code"), [
    (400, 400, "invalid_request_error", None),
    (401, 502, "api_error", "upstream_auth_error"),
    (403, 502, "api_error", "upstream_auth_error"),
    (404, 404, "invalid_request_error", "not_found"),
    (413, 413, "invalid_request_error", "request_too_large"),
    (429, 429, "rate_limit_error", "rate_limit_exceeded"),
    (500, 502, "api_error", "upstream_error"),
    (529, 502, "api_error", "upstream_error"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_are_mapped(client, upstream_status, status, type_, code, stream):
    with pytest.raises(openai.APIStatusError) as caught:
        result = client.chat.completions.create(model=f"status-{upstream_status}", messages=user("x"), stream=stream)
        list(result) if stream else None
    error = caught.value
    assert error.status_code == status
    assert error.body["type"] == type_ and error.body["code"] == code
    if upstream_status == 400:
        assert "Scenario error 400" in error.body["message"]


def test_wrong_upstream_key_is_upstream_auth_error(gateway):
    bad = openai.OpenAI(api_key="gw-claude-badkey", base_url=f"{gateway}/v1", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        bad.chat.completions.create(model="claude-sonnet-4-5", messages=user("x"))
    assert caught.value.status_code == 502 and caught.value.body["code"] == "upstream_auth_error"


def test_upstream_translation_error_reaches_client(client):
    # the fake refuses what the API refuses: a request with only a system prompt has no turns
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "system", "content": "alone"}])
    assert caught.value.body["type"] == "invalid_request_error"


def test_secret_quoted_by_upstream_is_scrubbed(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="leak-secret", messages=user("x"))
    assert API_KEY not in json.dumps(caught.value.body) and "***" in caught.value.body["message"]


def test_error_event_mid_stream(client):
    stream = client.chat.completions.create(model="stream-error", messages=user("a b"), stream=True)
    parts = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            parts.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(parts) == "Echo: a b"  # what arrived before the error reached the client
    assert caught.value.body["type"] == "api_error" and caught.value.body["code"] == "upstream_error"
    assert "Overloaded" in caught.value.body["message"]


def test_stream_cut_short_ends_with_error_event(client):
    stream = client.chat.completions.create(model="truncated-stream", messages=user("a"), stream=True)
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert caught.value.body["code"] == "upstream_error"


def test_stream_translator_tool_call_without_argument_fragments():
    from httpx_sse import ServerSentEvent

    from adapters.claude import ClaudeStream

    def sse(data):
        return ServerSentEvent(event=data["type"], data=json.dumps(data))

    translator = ClaudeStream("claude-x")
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 3, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ]
    chunks = [c for e in events for c in translator.feed(sse(e))] + translator.finish()
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1] == {"reasoning_content": "hmm"}
    assert deltas[2]["tool_calls"][0] == {"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "get_time", "arguments": ""}}
    assert deltas[3]["tool_calls"][0] == {"index": 0, "function": {"arguments": "{}"}}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
    assert all(c["id"] == "msg_1" for c in chunks)


def test_config_requires_api_key():
    from gateway.config import ConfigError, build_config

    with pytest.raises(ConfigError) as caught:
        build_config([{"token": "t", "type": "claude-api", "config": {"model": "claude-sonnet-4-5"}}], "c.yaml", environ={})
    assert caught.value.issues[0].field == "config.api_key"
    config = build_config([{"token": "t", "type": "claude-api", "config": {"api_key": "k"}}], "c.yaml", environ={})
    assert config.entries["t"].type == "claude"
