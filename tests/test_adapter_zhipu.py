"""The `zhipu-api` adapter, driven as users do: the official `openai` client against the gateway
(served on loopback) in front of the fake Zhipu upstream. Checks the translated request, the JWT
auth, answers, streams, tool-call round trips, usage and the §3 error mapping."""

import time

import jwt
import openai
import pytest

from gateway.app import create_app
from tests.fakes.zhipu import API_KEY, API_KEY_ID, API_KEY_SECRET, FakeZhipu
from tests.support.servers import serve_app

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def fake_zhipu():
    fake = FakeZhipu()
    with serve_app(fake.app) as url:
        yield fake, f"{url}{fake.base_path}"


@pytest.fixture(scope="module")
def gateway(fake_zhipu, tmp_path_factory):
    import yaml

    _, base = fake_zhipu
    config = {"tokens": [
        {"token": "sk-zhipu", "type": "zhipu-api", "config": {"api_key": API_KEY, "api_base": base}},
        {"token": "sk-zhipu-plain", "type": "zhipu-api", "config": {"api_key": "not-the-key", "api_base": base, "model": "glm-4-plus"}},
        {"token": "sk-zhipu-badsecret", "type": "zhipu-api", "config": {"api_key": f"{API_KEY_ID}.wrong-secret-0000", "api_base": base}},
    ]}
    path = tmp_path_factory.mktemp("zhipu") / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with serve_app(create_app(path)) as url:
        yield url


def client(gateway, token="sk-zhipu"):
    return openai.OpenAI(api_key=token, base_url=f"{gateway}/v1", max_retries=0)


def test_completion_and_translated_request(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    completion = client(gateway).chat.completions.create(
        model="glm-4-flash", messages=MESSAGES, temperature=0, top_p=1, max_completion_tokens=64, stop="END",
        user="user-12345", presence_penalty=0.5, n=1,
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Echo: hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (11, 7, 18)
    received = fake.recorder.last
    assert received.path == "/api/paas/v4/chat/completions"
    body = received.body
    assert body["model"] == "glm-4-flash" and body["stream"] is False
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]
    assert (body["temperature"], body["do_sample"], body["top_p"]) == (0.01, False, 0.99)
    assert (body["max_tokens"], body["stop"], body["user_id"]) == (64, ["END"], "user-12345")
    assert "presence_penalty" not in body and "n" not in body and "max_completion_tokens" not in body


def test_jwt_auth_verifies_with_the_secret_and_is_cached(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    c = client(gateway)
    c.chat.completions.create(model="glm-4", messages=MESSAGES)
    c.chat.completions.create(model="glm-4", messages=MESSAGES)
    first, second = (r.headers["authorization"] for r in fake.recorder.requests[-2:])
    assert first == second  # cached, not re-signed per request
    token = first.removeprefix("Bearer ")
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "sign_type": "SIGN", "typ": "JWT"}
    claims = jwt.decode(token, API_KEY_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    now_ms = time.time() * 1000
    assert claims["api_key"] == API_KEY_ID
    assert claims["timestamp"] <= now_ms < claims["exp"]
    assert API_KEY_SECRET not in first


def test_plain_key_sent_as_given_and_forced_model(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    with pytest.raises(openai.APIStatusError) as info:
        client(gateway, "sk-zhipu-plain").chat.completions.create(model="whatever", messages=MESSAGES)
    received = fake.recorder.last
    assert received.headers["authorization"] == "Bearer not-the-key"
    assert received.body["model"] == "glm-4-plus"
    assert info.value.status_code == 502 and info.value.body["code"] == "upstream_auth_error"
    assert "not-the-key" not in str(info.value.body)


def test_stream_with_usage(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    chunks = list(client(gateway).chat.completions.create(model="glm-4", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert fake.recorder.last.body["stream"] is True and "stream_options" not in fake.recorder.last.body
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hi there "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 18
    plain = list(client(gateway).chat.completions.create(model="glm-4", messages=MESSAGES, stream=True))
    assert all(c.choices for c in plain)  # no usage chunk unless asked


def test_tool_call_round_trip(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    c = client(gateway)
    completion = c.chat.completions.create(model="glm-4", messages=MESSAGES, tools=TOOLS, tool_choice="required")
    assert fake.recorder.last.body["tools"] == TOOLS and fake.recorder.last.body["tool_choice"] == "auto"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.type, call.function.name, call.function.arguments) == ("function", "get_weather", '{"city": "北京"}')
    followup = MESSAGES + [choice.message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    answer = c.chat.completions.create(model="glm-4", messages=followup, tools=TOOLS)
    assert answer.choices[0].message.content == "Tool said: sunny"
    sent = fake.recorder.last.body["messages"]
    assert sent[2]["tool_calls"][0] == {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}
    assert sent[3] == {"role": "tool", "content": "sunny", "tool_call_id": call.id}
    chunks = list(c.chat.completions.create(model="glm-4", messages=MESSAGES, tools=TOOLS, stream=True))
    calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert calls[0].index == 0 and calls[0].id == call.id and calls[0].function.name == "get_weather"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    c.chat.completions.create(model="glm-4", messages=MESSAGES, tools=TOOLS, tool_choice="none")
    assert "tools" not in fake.recorder.last.body


def test_image_parts_go_to_glm_4v(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    parts = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
    client(gateway).chat.completions.create(model="glm-4v", messages=[{"role": "user", "content": parts}])
    assert fake.recorder.last.body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "iVBORw0KGgo="}}]


def test_finish_reasons_normalised(gateway):
    c = client(gateway)
    assert c.chat.completions.create(model="sensitive", messages=MESSAGES).choices[0].finish_reason == "content_filter"
    chunks = list(c.chat.completions.create(model="sensitive", messages=MESSAGES, stream=True))
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "content_filter"
    with pytest.raises(openai.APIStatusError) as info:
        c.chat.completions.create(model="network-error", messages=MESSAGES)
    assert info.value.status_code == 502 and info.value.body["code"] == "upstream_error"


@pytest.mark.parametrize(("model", "status", "code"), [
    ("error-1302", 429, "rate_limit_exceeded"),
    ("error-1305", 429, "rate_limit_exceeded"),
    ("error-1113", 429, "rate_limit_exceeded"),
    ("error-1261", 400, "context_length_exceeded"),
    ("error-1211", 400, None),
    ("error-1301", 400, "content_filter"),
    ("error-1002", 502, "upstream_auth_error"),
    ("error-500", 502, "upstream_error"),
])
def test_errors_mapped(gateway, model, status, code):
    with pytest.raises(openai.APIStatusError) as info:
        client(gateway).chat.completions.create(model=model, messages=MESSAGES)
    assert info.value.status_code == status
    assert info.value.body["code"] == code
    with pytest.raises(openai.APIStatusError) as streamed:
        list(client(gateway).chat.completions.create(model=model, messages=MESSAGES, stream=True))
    assert streamed.value.status_code == status


def test_bad_secret_is_upstream_auth_error(gateway):
    with pytest.raises(openai.APIStatusError) as info:
        client(gateway, "sk-zhipu-badsecret").chat.completions.create(model="glm-4", messages=MESSAGES)
    assert info.value.status_code == 502 and info.value.body["code"] == "upstream_auth_error"
    assert info.value.body["type"] == "api_error"
    assert "wrong-secret-0000" not in str(info.value.body)


def test_error_after_stream_started(gateway):
    stream = client(gateway).chat.completions.create(model="stream-error", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert "upstream_error" in str(info.value.body) or "502" in str(info.value)


def test_models_lists_default(gateway):
    assert [m.id for m in client(gateway).models.list()] == ["glm-4-flash"]
    assert [m.id for m in client(gateway, "sk-zhipu-plain").models.list()] == ["glm-4-plus"]
