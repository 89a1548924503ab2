"""The OpenAI wire (`openai`, `proxy`, `azure`) as users meet it (issues #9 and #14): the official
`openai` client (sync, async, streaming) and raw HTTP against the gateway as a real process, in
front of fake OpenAI / Azure / vLLM upstreams. Each test checks what the upstream received and
what the client got."""

import asyncio
import json

import httpx
import openai
import pytest
import yaml

from tests.fakes.openai import AZURE_PROMPT_FILTER_CHUNK, FakeOpenAI
from tests.fakes.zhipu import API_KEY as ZHIPU_KEY
from tests.fakes.zhipu import FakeZhipu
from tests.support.servers import GatewayProcess, serve_app

KEY = "sk-upstream-secret-key-0123456789"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def upstream():
    fake = FakeOpenAI(api_key=KEY)
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def vllm():
    """A vLLM-like server: keyless, serves exactly one model, refuses requests without `model`."""
    fake = FakeOpenAI(api_key=None, models=["served-llama"], strict_models=True)
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def zhipu():
    fake = FakeZhipu()
    with serve_app(fake.app) as url:
        yield fake, f"{url}{fake.base_path}"


@pytest.fixture(scope="module")
def gateway(upstream, vllm, zhipu, tmp_path_factory):
    _, url = upstream
    _, vllm_url = vllm
    _, zhipu_base = zhipu
    oai = {"api_base": f"{url}/v1", "api_key": KEY}
    config = {
        "tokens": [
            {"token": "gw-plain", "name": "plain", "type": "openai", "config": oai},
            {"token": "gw-openai", "name": "openai-256", "type": "openai", "config": {**oai, "max_tokens": 256}},
            {"token": "gw-proxy", "name": "proxy-256", "type": "proxy", "config": {**oai, "max_tokens": 256}},
            {"token": "gw-proxy-mct", "type": "proxy", "config": {**oai, "max_tokens": 256, "max_tokens_field": "max_completion_tokens"}},
            {"token": "gw-azure", "name": "azure", "type": "azure",
             "config": {"api_base": url, "deployment_id": "dep-1", "api_key": KEY, "max_tokens": 256}},
            {"token": "gw-azure-old", "type": "azure",
             "config": {"api_base": url, "deployment_id": "dep-1", "api_key": KEY, "api_version": "2024-02-01", "max_tokens": 256}},
            {"token": "gw-forced", "name": "forced", "type": "openai", "config": {**oai, "model": "gpt-4o-mini"}},
            {"token": "gw-vllm", "name": "vllm", "type": "proxy", "config": {"api_base": f"{vllm_url}/v1"}},
            {"token": "gw-zhipu", "type": "zhipu-api", "config": {"api_key": ZHIPU_KEY, "api_base": zhipu_base, "max_tokens": 256}},
            {"token": "m-openai", "name": "member-openai", "type": "openai", "internal": True, "config": oai},
            {"token": "m-mock", "name": "member-mock", "type": "mock", "internal": True, "config": {"reply": "from the mock"}},
            {"token": "gw-router", "name": "router", "type": "router",
             "config": {"router_strategy": "fallback", "token_pool": ["m-openai", "m-mock"]}},
        ]
    }
    path = tmp_path_factory.mktemp("wire") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with GatewayProcess(path) as proc:
        yield proc


def client(gateway, token="gw-plain"):
    return openai.OpenAI(api_key=token, base_url=f"{gateway.base_url}/v1", max_retries=0)


def post(gateway, token, body=None, content=None, **kw):
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                      json=body, content=content, timeout=20, **kw)


def stream_events(gateway, token, body) -> tuple[httpx.Response, list[str]]:
    """A streamed request over raw HTTP: the response and its `data:` payloads."""
    with httpx.stream("POST", f"{gateway.base_url}/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                      json={**body, "stream": True}, timeout=20) as r:
        r.read()
    return r, [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]


def text_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- 1. max_tokens and max_completion_tokens are one field -------------------------------------


def test_client_max_completion_tokens_wins_over_config_default(gateway, upstream):
    fake, _ = upstream
    completion = client(gateway, "gw-openai").chat.completions.create(model="o3-mini", messages=HI, max_completion_tokens=4000)
    assert completion.choices[0].message.content == "Echo: hi"
    body = fake.recorder.last.body
    assert body["max_completion_tokens"] == 4000 and "max_tokens" not in body


def test_config_default_goes_as_max_completion_tokens_on_openai_and_azure(gateway, upstream):
    fake, _ = upstream
    chunks = list(client(gateway, "gw-openai").chat.completions.create(model="gpt-5-mini", messages=HI, stream=True))
    assert text_of(chunks) == "Echo: hi "
    assert fake.recorder.last.body["max_completion_tokens"] == 256 and "max_tokens" not in fake.recorder.last.body
    client(gateway, "gw-azure").chat.completions.create(model="o4-mini", messages=HI)
    assert fake.recorder.last.body["max_completion_tokens"] == 256 and "max_tokens" not in fake.recorder.last.body
    client(gateway, "gw-azure-old").chat.completions.create(model="gpt-4o", messages=HI)  # api-version before 2024-09-01
    assert fake.recorder.last.body["max_tokens"] == 256 and "max_completion_tokens" not in fake.recorder.last.body


def test_proxy_default_goes_as_max_tokens_unless_configured(gateway, upstream):
    fake, _ = upstream
    client(gateway, "gw-proxy").chat.completions.create(model="gpt-4o", messages=HI)
    assert fake.recorder.last.body["max_tokens"] == 256 and "max_completion_tokens" not in fake.recorder.last.body
    client(gateway, "gw-proxy-mct").chat.completions.create(model="gpt-4o", messages=HI)
    assert fake.recorder.last.body["max_completion_tokens"] == 256 and "max_tokens" not in fake.recorder.last.body


def test_client_max_tokens_is_kept_as_sent(gateway, upstream):
    fake, _ = upstream
    client(gateway, "gw-openai").chat.completions.create(model="gpt-4o", messages=HI, max_tokens=100)
    body = fake.recorder.last.body
    assert body["max_tokens"] == 100 and "max_completion_tokens" not in body


def test_zhipu_gets_the_clients_max_completion_tokens(gateway, zhipu):
    fake, _ = zhipu
    client(gateway, "gw-zhipu").chat.completions.create(model="glm-4-flash", messages=HI, max_completion_tokens=4000)
    assert fake.recorder.last.body["max_tokens"] == 4000
    client(gateway, "gw-zhipu").chat.completions.create(model="glm-4-flash", messages=HI)
    assert fake.recorder.last.body["max_tokens"] == 256


# --- 2. pass-through answers: JSON to a stream, mid-stream errors, secrets ----------------------


def test_json_completion_to_a_stream_becomes_chunks(gateway):
    stream = client(gateway).chat.completions.create(model="json-completion", messages=[{"role": "user", "content": "a b"}],
                                                     stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert text_of(chunks) == "Echo: a b"
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == ["stop"]
    assert all(c.object == "chat.completion.chunk" for c in chunks) and chunks[-1].usage.total_tokens == 21
    r, events = stream_events(gateway, "gw-plain", {"model": "json-completion", "messages": HI})
    assert r.headers["content-type"].startswith("text/event-stream") and events[-1] == "[DONE]"


@pytest.mark.parametrize("kind, status, type_, code", [
    ("auth", 502, "api_error", "upstream_auth_error"),
    ("rate", 429, "rate_limit_error", "rate_limit_exceeded"),
    ("context", 400, "invalid_request_error", "context_length_exceeded"),
    ("server", 502, "api_error", "upstream_error"),
])
def test_json_error_body_with_200_is_the_mapped_error(gateway, kind, status, type_, code):
    for stream in (True, False):
        r = post(gateway, "gw-plain", {"model": f"json-{kind}", "messages": HI, "stream": stream})
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        error = r.json()["error"]
        assert (error["type"], error["code"]) == (type_, code)
        assert KEY not in r.text and "***" in error["message"]


def test_json_error_to_a_stream_fails_over_in_a_router(gateway):
    chunks = list(client(gateway, "gw-router").chat.completions.create(model="json-server", messages=HI, stream=True))
    assert text_of(chunks) == "from the mock"
    r = post(gateway, "gw-router", {"model": "first-server", "messages": HI, "stream": True})
    assert r.headers["x-gateway-served-by"] == "member-mock"


@pytest.mark.parametrize("kind, type_, code", [
    ("auth", "api_error", "upstream_auth_error"),
    ("rate", "rate_limit_error", "rate_limit_exceeded"),
    ("context", "invalid_request_error", "context_length_exceeded"),
    ("server", "api_error", "upstream_error"),
])
def test_mid_stream_error_event_is_the_contract_error_scrubbed(gateway, kind, type_, code):
    r, events = stream_events(gateway, "gw-plain", {"model": f"midstream-{kind}", "messages": HI})
    assert r.status_code == 200 and KEY not in r.text
    chunks, error, done = events[:-2], json.loads(events[-2]), events[-1]
    assert [json.loads(c)["choices"][0]["delta"].get("content") for c in chunks] == ["", "Partial"]
    assert set(error) == {"error"} and (error["error"]["type"], error["error"]["code"]) == (type_, code)
    assert "***" in error["error"]["message"] and done == "[DONE]"


def test_mid_stream_error_split_across_reads_is_still_caught(gateway):
    r, events = stream_events(gateway, "gw-plain", {"model": "midstream-split", "messages": HI})
    assert KEY not in r.text and KEY[:20] not in r.text
    assert json.loads(events[-2])["error"]["code"] == "upstream_auth_error" and events[-1] == "[DONE]"


def test_mid_stream_error_raises_in_the_sdk_after_the_partial_text(gateway):
    parts = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client(gateway).chat.completions.create(model="midstream-auth", messages=HI, stream=True):
            parts.append(text_of([chunk]))
    assert "".join(parts) == "Partial"
    assert KEY not in str(caught.value) and caught.value.code == "upstream_auth_error"


def test_error_as_first_event_is_a_plain_http_error(gateway):
    r = post(gateway, "gw-plain", {"model": "first-rate", "messages": HI, "stream": True})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded" and KEY not in r.text


def test_normal_chunks_pass_byte_for_byte(gateway, upstream):
    _, url = upstream
    for model in ("gpt-4o", "logprobs-error"):  # the second carries the bytes "error" in a normal chunk
        body = {"model": model, "messages": [{"role": "user", "content": "x y"}], "stream": True, "stream_options": {"include_usage": True}}
        direct = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, json=body, timeout=20)
        via = post(gateway, "gw-plain", body)
        assert via.status_code == 200 and via.content == direct.content


def test_async_stream_with_error_bytes_in_a_normal_chunk(gateway):
    async def run():
        aclient = openai.AsyncOpenAI(api_key="gw-plain", base_url=f"{gateway.base_url}/v1", max_retries=0)
        chunks = [c async for c in await aclient.chat.completions.create(model="logprobs-error", messages=HI, stream=True)]
        await aclient.close()
        return chunks

    chunks = asyncio.run(run())
    assert text_of(chunks) == "errorEcho: hi "
    assert chunks[1].choices[0].logprobs.content[0].token == "error"


def test_an_event_stream_labelled_text_plain_still_streams(gateway):
    chunks = list(client(gateway).chat.completions.create(model="plain-gpt-4o", messages=HI, stream=True))
    assert text_of(chunks) == "Echo: hi "
    r = post(gateway, "gw-plain", {"model": "plain-first-rate", "messages": HI, "stream": True})
    assert r.status_code == 429 and KEY not in r.text


def test_a_200_body_quoting_the_key_is_scrubbed(gateway):
    completion = client(gateway).chat.completions.create(model="leak-secret-200", messages=HI)
    assert completion.choices[0].message.content == "The key I was called with is ***."
    r = post(gateway, "gw-plain", {"model": "leak-secret-200", "messages": HI, "stream": True})
    assert KEY not in r.text and "The key I was called with is ***." in r.text


# --- 3. Azure's annotation-only first chunk ------------------------------------------------------


def test_azure_filter_only_chunk_is_dropped(gateway, upstream):
    fake, url = upstream
    direct = openai.AzureOpenAI(api_key=KEY, azure_endpoint=url, api_version="2024-10-21", max_retries=0)
    first = next(iter(direct.chat.completions.create(model="dep-1", messages=HI, stream=True)))
    assert (first.choices, first.id, first.object) == ([], "", "")  # what Azure sends first
    chunks = list(client(gateway, "gw-azure").chat.completions.create(model="gpt-4o", messages=HI, stream=True))
    assert text_of(chunks) == "Echo: hi "
    assert all(c.object == "chat.completion.chunk" and c.id and c.choices for c in chunks)
    r, events = stream_events(gateway, "gw-azure", {"messages": HI})
    assert AZURE_PROMPT_FILTER_CHUNK.decode().strip()[6:] not in events and events[-1] == "[DONE]"
    assert all(json.loads(e)["object"] == "chat.completion.chunk" for e in events[:-1])


# --- 4. proxy without a model --------------------------------------------------------------------


def test_proxy_without_model_uses_the_upstreams_first_model(gateway, vllm):
    fake, _ = vllm
    before = sum(r.path == "/v1/models" for r in fake.recorder.requests)
    r = post(gateway, "gw-vllm", {"messages": HI})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Echo: hi" and fake.recorder.last.body["model"] == "served-llama"
    r, events = stream_events(gateway, "gw-vllm", {"messages": HI})
    assert r.status_code == 200 and events[-1] == "[DONE]" and fake.recorder.last.body["model"] == "served-llama"
    completion = client(gateway, "gw-vllm").chat.completions.create(model="served-llama", messages=HI)
    assert completion.choices[0].message.content == "Echo: hi"
    assert sum(r.path == "/v1/models" for r in fake.recorder.requests) - before <= 1  # fetched once, then kept


def test_proxy_refetches_models_when_its_model_is_gone(gateway, vllm):
    fake, _ = vllm
    assert post(gateway, "gw-vllm", {"messages": HI}).status_code == 200
    fake.models = ["served-llama-2"]
    try:
        r = post(gateway, "gw-vllm", {"messages": HI})
        assert r.status_code == 200, r.text
        assert fake.recorder.last.body["model"] == "served-llama-2"
        r, events = stream_events(gateway, "gw-vllm", {"messages": HI})
        assert r.status_code == 200 and fake.recorder.last.body["model"] == "served-llama-2"
    finally:
        fake.models = ["served-llama"]


# --- 5. a forced model cannot be overridden ------------------------------------------------------


def test_forced_model_is_sent_in_a_body_the_gateway_built(gateway, upstream):
    fake, _ = upstream
    raw = b'{"model":"gpt-4o-EXPENSIVE","messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini"}'
    r = post(gateway, "gw-forced", content=raw)
    assert r.status_code == 200
    sent = fake.recorder.last.raw
    assert sent.count(b'"model"') == 1 and json.loads(sent)["model"] == "gpt-4o-mini"
    raw = b'{"stream":true,"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":false}'
    r = post(gateway, "gw-forced", content=raw)
    assert r.json()["object"] == "chat.completion"
    assert fake.recorder.last.raw.count(b'"stream"') == 1 and json.loads(fake.recorder.last.raw)["stream"] is False


def test_unchanged_body_goes_upstream_byte_for_byte(gateway, upstream):
    fake, _ = upstream
    raw = b'{ "model" : "gpt-4o",  "messages":[{"role":"user","content":"hi"}], "x_extra": [1,2.50] }'
    assert post(gateway, "gw-plain", content=raw).status_code == 200
    assert fake.recorder.last.raw == raw


# --- 6. retry-after reaches the client -----------------------------------------------------------


def test_retry_after_headers_on_429(gateway):
    for stream in (False, True):
        r = post(gateway, "gw-plain", {"model": "status-429", "messages": HI, "stream": stream})
        assert r.status_code == 429
        assert (r.headers["retry-after"], r.headers["retry-after-ms"]) == ("7", "7000")
    with pytest.raises(openai.RateLimitError) as caught:
        client(gateway).chat.completions.create(model="status-429", messages=HI)
    assert caught.value.response.headers["retry-after"] == "7"
    assert "retry-after" not in post(gateway, "gw-plain", {"model": "status-500", "messages": HI}).headers
