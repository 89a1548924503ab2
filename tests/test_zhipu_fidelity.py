"""`zhipu-api` fidelity (issue #9 items 2, 4 and review rows 6, 14, 15, 23, 24; issue #14 item 1):
the official `openai` client against a real gateway process (`open-api.py`) in front of the fake
Zhipu upstream. Each test asserts what GLM received and what the client got."""

import httpx
import openai
import pytest
import yaml

from tests.fakes.zhipu import API_KEY, FakeZhipu
from tests.support.servers import GatewayProcess, serve_app

MESSAGES = [{"role": "user", "content": "hi there"}]
ADMIN = "admin-token-for-zhipu-tests-0123456789"


@pytest.fixture(scope="module")
def fake_zhipu():
    fake = FakeZhipu()
    with serve_app(fake.app) as url:
        yield fake, f"{url}{fake.base_path}"


@pytest.fixture(scope="module")
def gateway(fake_zhipu, tmp_path_factory):
    _, base = fake_zhipu
    config = {"settings": {"admin_token": ADMIN}, "tokens": [
        {"token": "sk-glm", "type": "zhipu-api", "config": {"api_key": API_KEY, "api_base": base}},
        {"token": "sk-glm-256", "type": "zhipu-api", "config": {"api_key": API_KEY, "api_base": base, "max_tokens": 256}},
        {"token": "sk-glm-echo", "type": "zhipu-api", "name": "glm-echo", "config": {"api_key": API_KEY, "api_base": base, "model": "echo-key-401"}},
    ]}
    path = tmp_path_factory.mktemp("zhipu-fidelity") / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    process = GatewayProcess(path).start()
    yield process
    process.stop()


def client(gateway, token="sk-glm"):
    return openai.OpenAI(api_key=token, base_url=f"{gateway.base_url}/v1", max_retries=0)


# -- reasoning (review row 6, #9 item 4) -------------------------------------------------------


def test_reasoning_content_on_the_message(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    completion = client(gateway).chat.completions.create(model="glm-4.7", messages=MESSAGES)
    message = completion.choices[0].message
    assert message.content == "Echo: hi there"
    assert message.reasoning_content == "The user wrote 'hi there'; answer by echoing it."
    assert "thinking" not in fake.recorder.last.body  # GLM's own default when the client says nothing
    assert completion.usage.completion_tokens_details.reasoning_tokens == 5


def test_reasoning_content_streams_before_the_answer(gateway):
    chunks = list(client(gateway).chat.completions.create(model="glm-4.7", messages=MESSAGES, stream=True))
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.reasoning_content == "The "
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert reasoning == "The user wrote 'hi there'; answer by echoing it. "
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hi there "


@pytest.mark.parametrize(("effort", "thinking"), [
    ("none", {"type": "disabled"}), ("minimal", {"type": "disabled"}),
    ("low", {"type": "enabled"}), ("medium", {"type": "enabled"}), ("high", {"type": "enabled"}),
])
def test_reasoning_effort_maps_to_thinking(gateway, fake_zhipu, effort, thinking):
    fake, _ = fake_zhipu
    completion = client(gateway).chat.completions.create(model="glm-4.7", messages=MESSAGES, reasoning_effort=effort)
    body = fake.recorder.last.body
    assert body["thinking"] == thinking and "reasoning_effort" not in body
    has_reasoning = getattr(completion.choices[0].message, "reasoning_content", None) is not None
    assert has_reasoning is (thinking["type"] == "enabled")


def test_client_thinking_wins_over_reasoning_effort(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    client(gateway).chat.completions.create(model="glm-4.7", messages=MESSAGES, reasoning_effort="high", extra_body={"thinking": {"type": "disabled"}})
    assert fake.recorder.last.body["thinking"] == {"type": "disabled"}


def test_reasoning_content_goes_back_in_history(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    c = client(gateway)
    first = c.chat.completions.create(model="glm-4.7", messages=MESSAGES)
    history = MESSAGES + [first.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": "again"}]
    c.chat.completions.create(model="glm-4.7", messages=history)
    sent = fake.recorder.last.body["messages"][1]
    assert sent == {"role": "assistant", "content": "Echo: hi there", "reasoning_content": "The user wrote 'hi there'; answer by echoing it."}


# -- fields (review rows 2, 14, 15, 24) --------------------------------------------------------


def test_client_max_completion_tokens_wins_over_config_default(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    c = client(gateway, "sk-glm-256")
    c.chat.completions.create(model="glm-4", messages=MESSAGES, max_completion_tokens=4000)
    assert fake.recorder.last.body["max_tokens"] == 4000
    c.chat.completions.create(model="glm-4", messages=MESSAGES, max_tokens=1000)
    assert fake.recorder.last.body["max_tokens"] == 1000
    c.chat.completions.create(model="glm-4", messages=MESSAGES)
    assert fake.recorder.last.body["max_tokens"] == 256
    assert "max_completion_tokens" not in fake.recorder.last.body


def test_json_schema_becomes_json_object_with_the_schema_as_a_hint(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    completion = client(gateway).chat.completions.create(
        model="glm-4", messages=[{"role": "system", "content": "Be brief."}, *MESSAGES],
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}},
    )
    assert completion.choices[0].message.content == "Echo: hi there"  # the fake accepted it
    body = fake.recorder.last.body
    assert body["response_format"] == {"type": "json_object"}
    system = body["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.\n\n")
    assert '{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}' in system["content"]
    client(gateway).chat.completions.create(model="glm-4", messages=MESSAGES, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert fake.recorder.last.body["messages"][0]["role"] == "system"  # added when there was none
    assert fake.recorder.last.body["messages"][1] == MESSAGES[0]


def test_usage_details_are_copied(gateway):
    c = client(gateway)
    usage = c.chat.completions.create(model="glm-4", messages=MESSAGES).usage
    assert usage.prompt_tokens_details.cached_tokens == 4
    chunks = list(c.chat.completions.create(model="glm-4.7", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 4
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 5


def test_n_above_one_is_refused(gateway, fake_zhipu):
    fake, _ = fake_zhipu
    before = len(fake.recorder.requests)
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway).chat.completions.create(model="glm-4", messages=MESSAGES, n=2)
    assert info.value.body["param"] == "n" and info.value.body["type"] == "invalid_request_error"
    assert len(fake.recorder.requests) == before  # never sent
    assert client(gateway).chat.completions.create(model="glm-4", messages=MESSAGES, n=1).choices[0].message.content


def test_non_json_event_is_a_502(gateway):
    with pytest.raises(openai.APIStatusError) as info:
        list(client(gateway).chat.completions.create(model="bad-event", messages=MESSAGES, stream=True))
    assert info.value.status_code == 502 and info.value.body["code"] == "upstream_error"


# -- the signed JWT is a credential (#14 item 1, probe row 2) ----------------------------------


@pytest.mark.parametrize("status", [400, 401, 429, 500])
def test_signed_jwt_never_reaches_the_client(gateway, fake_zhipu, status):
    fake, _ = fake_zhipu
    c = client(gateway)
    with pytest.raises(openai.APIStatusError) as info:
        c.chat.completions.create(model=f"echo-key-{status}", messages=MESSAGES)
    jwt_sent = fake.recorder.last.headers["authorization"].removeprefix("Bearer ")
    assert jwt_sent.startswith("eyJ")
    text = str(info.value.body)
    assert "API key *** " in text and jwt_sent not in text
    with pytest.raises(openai.APIStatusError) as streamed:
        list(c.chat.completions.create(model=f"echo-key-{status}", messages=MESSAGES, stream=True))
    assert jwt_sent not in str(streamed.value.body) and "***" in str(streamed.value.body)


def test_signed_jwt_never_reaches_the_admin_test_or_the_log(fake_zhipu, tmp_path):
    fake, base = fake_zhipu
    config = {"settings": {"admin_token": ADMIN}, "tokens": [
        {"token": "sk-glm-echo", "type": "zhipu-api", "config": {"api_key": API_KEY, "api_base": base, "model": "echo-key-401"}},
        {"token": "sk-glm-429", "type": "zhipu-api", "config": {"api_key": API_KEY, "api_base": base, "model": "echo-key-429"}},
        {"token": "sk-glm-500", "type": "zhipu-api", "config": {"api_key": API_KEY, "api_base": base, "model": "echo-key-500"}},
    ]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    process = GatewayProcess(path).start()
    try:
        result = httpx.post(f"{process.base_url}/admin/api/test", json={"token": "sk-glm-echo"}, headers={"authorization": f"Bearer {ADMIN}"}).json()
        jwt_sent = fake.recorder.last.headers["authorization"].removeprefix("Bearer ")
        assert result["ok"] is False and result["error"]["code"] == "upstream_auth_error"
        assert "API key *** " in result["error"]["message"] and jwt_sent not in str(result)
        for token in ("sk-glm-429", "sk-glm-500"):
            for stream in (False, True):
                httpx.post(f"{process.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {token}"},
                           json={"messages": MESSAGES, "stream": stream})
    finally:
        log = process.stop()
    assert "chat completion failed: 429" in log and "chat completion failed: 502" in log
    assert jwt_sent not in log and "eyJ" not in log


def test_each_refreshed_jwt_is_scrubbed_and_old_ones_are_let_go(monkeypatch):
    """A JWT is re-signed 30 s before it expires; the scrubber keeps the newest two per entry
    (the previous one is still valid for those 30 s) and lets older ones go."""
    import adapters.zhipu as zhipu
    from gateway.errors import Scrubber

    scrub = Scrubber([API_KEY])
    token = zhipu.ZhipuToken(API_KEY, lambda signed: scrub.add_derived("zhipu-api#0", signed))
    now = [1_800_000_000.0]
    monkeypatch.setattr(zhipu.time, "time", lambda: now[0])
    signed = []
    for _ in range(3):
        signed.append(token())
        assert token() == signed[-1]  # cached until the refresh point
        now[0] += zhipu.JWT_TTL_SECONDS - zhipu.JWT_REFRESH_MARGIN_SECONDS
    assert len(set(signed)) == 3
    text = scrub(" | ".join(signed))
    assert text.split(" | ")[1:] == ["***", "***"] and text.split(" | ")[0] == signed[0]
    assert scrub(f"key {API_KEY}") == "key ***"


def test_prompt_too_long_is_context_length_exceeded(gateway):
    """GLM's 1261 ("Prompt 超长") gets OpenAI's code, which clients trim or summarise on (row 17)."""
    with pytest.raises(openai.BadRequestError) as info:
        client(gateway).chat.completions.create(model="error-1261", messages=MESSAGES)
    assert info.value.body["code"] == "context_length_exceeded"
