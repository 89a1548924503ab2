"""The OpenAI-compatible API (CONTRACT.md §3) driven as users drive it: the official `openai`
client (sync, async, streaming) against the gateway running as a real process, in front of a fake
OpenAI/Azure upstream."""

import asyncio

import httpx
import openai
import pytest

from tests.fakes.openai import FakeOpenAI
from tests.support.servers import GatewayProcess, serve_app

UPSTREAM_KEY = "sk-upstream-secret-key-0123456789"
IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def upstream():
    fake = FakeOpenAI(api_key=UPSTREAM_KEY)
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    _, url = upstream
    config = {
        "tokens": [
            {"token": "gw-openai", "name": "openai-main", "type": "openai", "config": {"api_base": f"{url}/v1", "api_key": UPSTREAM_KEY}},
            {"token": "gw-forced", "name": "forced", "type": "proxy",
             "config": {"api_base": f"{url}/v1/", "api_key": UPSTREAM_KEY, "model": "gpt-4o", "temperature": 0.3}},
            {"token": "gw-azure", "name": "azure", "type": "azure",
             "config": {"api_base": url, "deployment_id": "dep-1", "api_version": "2024-10-21", "api_key": UPSTREAM_KEY}},
            {"token": "gw-mock", "name": "mock", "type": "mock", "config": {"reply": "mocked: {prompt}"}},
            {"token": "gw-internal", "name": "inner", "type": "mock", "internal": True, "config": {}},
            {"token": "gw-off", "type": "mock", "enabled": False, "config": {}},
        ]
    }
    import yaml

    path = tmp_path_factory.mktemp("api") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with GatewayProcess(path) as proc:
        yield proc


def client(gateway, token="gw-openai", **kw):
    return openai.OpenAI(api_key=token, base_url=f"{gateway.base_url}/v1", max_retries=0, **kw)


def test_sync_completion_through_openai_token(gateway, upstream):
    fake, _ = upstream
    completion = client(gateway).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    assert completion.choices[0].message.content == "Echo: hello"
    assert completion.usage.total_tokens == 21
    received = fake.recorder.last
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_streaming_completion(gateway):
    stream = client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: one two "
    assert chunks[-1].usage.total_tokens == 21


def test_async_client_completion_and_stream(gateway):
    async def run():
        aclient = openai.AsyncOpenAI(api_key="gw-openai", base_url=f"{gateway.base_url}/v1", max_retries=0)
        completion = await aclient.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "async"}])
        parts = []
        async for chunk in await aclient.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "s"}], stream=True):
            parts.extend(c.delta.content or "" for c in chunk.choices)
        await aclient.close()
        return completion.choices[0].message.content, "".join(parts)

    assert asyncio.run(run()) == ("Echo: async", "Echo: s ")


def test_tool_calls_pass_through_both_ways(gateway, upstream):
    fake, _ = upstream
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    first = client(gateway).chat.completions.create(model="gpt-4o", messages=messages, tools=tools, tool_choice="auto")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert fake.recorder.last.body["tools"] == tools and fake.recorder.last.body["tool_choice"] == "auto"
    messages += [first.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    final = client(gateway).chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    assert final.choices[0].message.content.startswith("Echo:")
    assert fake.recorder.last.body["messages"][1]["tool_calls"][0]["id"] == call.id
    assert fake.recorder.last.body["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}


def test_streamed_tool_calls(gateway):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    chunks = list(client(gateway).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], tools=tools, stream=True))
    args = "".join(c.choices[0].delta.tool_calls[0].function.arguments or "" for c in chunks if c.choices and c.choices[0].delta.tool_calls)
    assert args == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_image_parts_and_unknown_fields_pass_through_untouched(gateway, upstream):
    fake, _ = upstream
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": IMAGE, "detail": "low"}}]
    client(gateway).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": content}], extra_body={"reasoning_effort": "low", "x_custom": {"a": [1, 2]}},
        seed=7, user="u-1", response_format={"type": "json_object"},
    )
    body = fake.recorder.last.body
    assert body["messages"][0]["content"] == content
    assert body["reasoning_effort"] == "low" and body["x_custom"] == {"a": [1, 2]}
    assert (body["seed"], body["user"], body["response_format"]) == (7, "u-1", {"type": "json_object"})


def test_forced_model_and_sampling_defaults(gateway, upstream):
    fake, _ = upstream
    client(gateway, "gw-forced").chat.completions.create(model="whatever", messages=[{"role": "user", "content": "x"}])
    assert fake.recorder.last.body["model"] == "gpt-4o" and fake.recorder.last.body["temperature"] == 0.3
    client(gateway, "gw-forced").chat.completions.create(model="x", messages=[{"role": "user", "content": "x"}], temperature=1.5)
    assert fake.recorder.last.body["temperature"] == 1.5


def test_request_without_model_uses_adapter_default(gateway, upstream):
    fake, _ = upstream
    r = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"Authorization": "Bearer gw-openai"}, json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200 and fake.recorder.last.body["model"] == "gpt-4o-mini"


def test_azure_deployment_via_gateway(gateway, upstream):
    fake, _ = upstream
    completion = client(gateway, "gw-azure").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "az"}])
    assert completion.choices[0].message.content == "Echo: az"
    received = fake.recorder.last
    assert received.path == "/openai/deployments/dep-1/chat/completions"
    assert received.query == {"api-version": "2024-10-21"} and received.headers["api-key"] == UPSTREAM_KEY
    assert "authorization" not in received.headers
    chunks = list(client(gateway, "gw-azure").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "s"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: s "


def test_mock_token_answers_locally(gateway):
    completion = client(gateway, "gw-mock").chat.completions.create(model="anything", messages=[{"role": "user", "content": "ping"}])
    assert completion.choices[0].message.content == "mocked: ping" and completion.usage.completion_tokens == 2
    chunks = list(client(gateway, "gw-mock").chat.completions.create(model="m", messages=[{"role": "user", "content": "p"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "mocked: p"
    assert all(c.usage is None for c in chunks), "usage chunk only when include_usage is set"


@pytest.mark.parametrize("header", [{"Authorization": "Bearer gw-mock"}, {"api-key": "gw-mock"}, {"x-api-key": "gw-mock"}, {"authorization": "bearer gw-mock"}])
def test_every_auth_header_is_accepted(gateway, header):
    r = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers=header, json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("token", ["gw-internal", "gw-off", "gw-mock-typo"])
def test_internal_disabled_and_unknown_tokens_are_refused(gateway, token):
    r = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {token}"}, json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_models_endpoints(gateway):
    assert [m.id for m in client(gateway).models.list()] == ["gpt-4o-mini", "gpt-4o"]  # the upstream's own list
    assert [m.id for m in client(gateway, "gw-forced").models.list()] == ["gpt-4o"]
    assert [m.id for m in client(gateway, "gw-azure").models.list()] == ["dep-1"]
    assert [m.id for m in client(gateway, "gw-mock").models.list()] == ["mock"]
    assert client(gateway, "gw-forced").models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        client(gateway, "gw-forced").models.retrieve("gpt-3")
    with pytest.raises(openai.AuthenticationError):
        client(gateway, "nope").models.list()


def test_healthz_needs_no_auth(gateway):
    r = httpx.get(f"{gateway.base_url}/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_cors_preflight_without_auth(gateway):
    r = httpx.options(
        f"{gateway.base_url}/v1/chat/completions",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os, x-stainless-retry-count",
        },
    )
    assert r.status_code == 200
    allowed = r.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "x-stainless-os", "x-stainless-retry-count"):
        assert header in allowed
    assert r.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")
    simple = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"Origin": "http://localhost:3000", "Authorization": "Bearer gw-mock"},
                        json={"messages": [{"role": "user", "content": "x"}]})
    assert simple.headers["access-control-allow-origin"] == "*"


def test_stream_format_does_not_depend_on_accept_header(gateway):
    body = {"messages": [{"role": "user", "content": "x"}], "stream": True}
    r = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"Authorization": "Bearer gw-mock", "Accept": "application/json"}, json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.rstrip().endswith("data: [DONE]")
    plain = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"Authorization": "Bearer gw-mock", "Accept": "text/event-stream"},
                       json={**body, "stream": False})
    assert plain.headers["content-type"] == "application/json" and plain.json()["object"] == "chat.completion"


def test_every_role_is_accepted(gateway, upstream):
    fake, _ = upstream
    messages = [
        {"role": "system", "content": "s"}, {"role": "developer", "content": "d"}, {"role": "user", "content": "u"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r"}, {"role": "user", "content": "again"},
    ]
    completion = client(gateway).chat.completions.create(model="gpt-4o", messages=messages)
    assert completion.choices[0].message.content == "Echo: again"
    assert [m["role"] for m in fake.recorder.last.body["messages"]] == [m["role"] for m in messages]
