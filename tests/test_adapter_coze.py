"""The `coze` and `coze-workflow` adapters, driven as users do: the official `openai` client
against the gateway (served on loopback) in front of the fake Coze upstream. Checks the translated
requests, answers, streams, usage and the §3 mapping of Coze's error codes (HTTP 200 with
`{"code": N}`, failed chats, error events) on both the streamed and the non-streamed path."""

import json

import openai
import pytest
import yaml

from gateway.app import create_app
from tests.fakes.coze import API_KEY, FakeCoze
from tests.support.servers import serve_app

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def fake_coze():
    fake = FakeCoze()
    with serve_app(fake.app) as url:
        yield fake, url


def _bot(token: str, bot_id: str, base: str, **extra) -> dict:
    return {"token": token, "type": "coze", "config": {"api_key": API_KEY, "bot_id": bot_id, "api_base": base, **extra}}


def _workflow(token: str, workflow_id: str, base: str, **extra) -> dict:
    return {"token": token, "type": "coze-workflow", "config": {"api_key": API_KEY, "workflow_id": workflow_id, "api_base": base, **extra}}


BOT_SCENARIOS = ["error-4100", "error-4101", "error-4008", "error-4006", "error-4200", "error-4000", "error-4105", "error-5000",
                 "failed-4013", "failed-4011", "event-error-4100", "http-502", "completed-only", "partial-failed-4013"]
WORKFLOW_SCENARIOS = ["error-4100", "error-4200", "error-4020", "event-error-4200", "event-error-4009", "wf-text", "wf-json", "interrupt", "http-502"]


@pytest.fixture(scope="module")
def gateway(fake_coze, tmp_path_factory):
    _, base = fake_coze
    tokens = [
        _bot("sk-bot", "7379462189365198898", base),
        _bot("sk-bot-user", "7379462189365198898", base, user_id="alice-42"),
        {"token": "sk-bot-badkey", "type": "coze", "config": {"api_key": "pat_wrong_key_000000", "bot_id": "b", "api_base": base}},
        _workflow("sk-wf", "7397716290163736611", base),
        _workflow("sk-wf-query", "7397716290163736611", base, input_parameter="query", parameters={"lang": "en"}, app_id="app-1"),
        *(_bot(f"sk-bot-{s}", s, base) for s in BOT_SCENARIOS),
        *(_workflow(f"sk-wf-{s}", s, base) for s in WORKFLOW_SCENARIOS),
    ]
    path = tmp_path_factory.mktemp("coze") / "config.yaml"
    path.write_text(yaml.safe_dump({"tokens": tokens}), encoding="utf-8")
    with serve_app(create_app(path)) as url:
        yield url


def client(gateway, token):
    return openai.OpenAI(api_key=token, base_url=f"{gateway}/v1", max_retries=0)


def content_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -- coze (bot) ------------------------------------------------------------------------------------


def test_bot_completion_and_translated_request(gateway, fake_coze):
    fake, _ = fake_coze
    history = [*MESSAGES[:1], {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"}, MESSAGES[1]]
    completion = client(gateway, "sk-bot").chat.completions.create(model="my-bot", messages=history)
    assert completion.object == "chat.completion" and completion.model == "my-bot"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Echo: hi there "
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (20, 10, 30)
    received = fake.recorder.last
    assert received.path == "/v3/chat" and received.method == "POST"
    assert received.headers["authorization"] == f"Bearer {API_KEY}"
    assert received.body == {
        "bot_id": "7379462189365198898", "user_id": "gateway", "stream": True, "auto_save_history": False,
        "additional_messages": [
            {"role": "user", "type": "question", "content": "Be brief.", "content_type": "text"},
            {"role": "user", "type": "question", "content": "first", "content_type": "text"},
            {"role": "assistant", "type": "answer", "content": "ok", "content_type": "text"},
            {"role": "user", "type": "question", "content": "hi there", "content_type": "text"},
        ],
    }


def test_bot_user_id_from_config_or_request(gateway, fake_coze):
    fake, _ = fake_coze
    client(gateway, "sk-bot-user").chat.completions.create(model="m", messages=MESSAGES)
    assert fake.recorder.last.body["user_id"] == "alice-42"
    client(gateway, "sk-bot-user").chat.completions.create(model="m", messages=MESSAGES, user="bob-7")
    assert fake.recorder.last.body["user_id"] == "bob-7"


def test_bot_images_become_object_string(gateway, fake_coze):
    fake, _ = fake_coze
    parts = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    completion = client(gateway, "sk-bot").chat.completions.create(model="m", messages=[{"role": "user", "content": parts}])
    assert completion.choices[0].message.content == "Echo: what is this [image https://example.com/cat.png] "
    sent = fake.recorder.last.body["additional_messages"][0]
    assert sent["content_type"] == "object_string"
    assert json.loads(sent["content"]) == [{"type": "text", "text": "what is this"}, {"type": "image", "file_url": "https://example.com/cat.png"}]


def test_bot_stream_with_usage(gateway):
    chunks = list(client(gateway, "sk-bot").chat.completions.create(model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert content_of(chunks) == "Echo: hi there "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 30
    assert len({c.id for c in chunks}) == 1
    plain = list(client(gateway, "sk-bot").chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert all(c.choices for c in plain)


def test_bot_answer_only_in_completed_message(gateway):
    c = client(gateway, "sk-bot-completed-only")
    assert c.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "Echo: hi there"
    assert content_of(c.chat.completions.create(model="m", messages=MESSAGES, stream=True)) == "Echo: hi there"


@pytest.mark.parametrize(("scenario", "status", "code"), [
    ("error-4100", 502, "upstream_auth_error"),
    ("error-4101", 502, "upstream_auth_error"),
    ("error-4008", 429, "rate_limit_exceeded"),
    ("error-4006", 502, "upstream_auth_error"),
    ("error-4200", 400, None),
    ("error-4000", 400, None),
    ("error-4105", 400, "content_filter"),
    ("error-5000", 502, "upstream_error"),
    ("failed-4013", 502, "upstream_error"),
    ("failed-4011", 429, "rate_limit_exceeded"),
    ("event-error-4100", 502, "upstream_auth_error"),
    ("http-502", 502, "upstream_error"),
])
def test_bot_errors_mapped(gateway, scenario, status, code):
    c = client(gateway, f"sk-bot-{scenario}")
    with pytest.raises(openai.APIStatusError) as info:
        c.chat.completions.create(model="m", messages=MESSAGES)
    assert (info.value.status_code, info.value.body["code"]) == (status, code)
    with pytest.raises(openai.APIStatusError) as streamed:
        list(c.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert (streamed.value.status_code, streamed.value.body["code"]) == (status, code)


def test_bot_failure_after_stream_started(gateway):
    c = client(gateway, "sk-bot-partial-failed-4013")
    with pytest.raises(openai.APIStatusError) as info:
        c.chat.completions.create(model="m", messages=MESSAGES)
    assert (info.value.status_code, info.value.body["code"]) == (502, "upstream_error")
    stream = c.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    first = next(stream)
    assert first.choices[0].delta.content == "Echo: "
    with pytest.raises(openai.APIError) as streamed:
        list(stream)
    assert streamed.value.body["code"] == "upstream_error"


def test_bot_wrong_key_is_upstream_auth_error_without_the_key(gateway, fake_coze):
    fake, _ = fake_coze
    with pytest.raises(openai.APIStatusError) as info:
        client(gateway, "sk-bot-badkey").chat.completions.create(model="m", messages=MESSAGES)
    assert fake.recorder.last.headers["authorization"] == "Bearer pat_wrong_key_000000"
    assert info.value.status_code == 502 and info.value.body["type"] == "api_error"
    assert info.value.body["code"] == "upstream_auth_error"
    assert "pat_wrong_key" not in json.dumps(info.value.body)


# -- coze-workflow -------------------------------------------------------------------------------


def test_workflow_completion_and_translated_request(gateway, fake_coze):
    fake, _ = fake_coze
    completion = client(gateway, "sk-wf").chat.completions.create(model="wf", messages=MESSAGES)
    assert completion.choices[0].message.content == "Echo: hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == 30
    received = fake.recorder.last
    assert received.path == "/v1/workflow/run" and received.headers["authorization"] == f"Bearer {API_KEY}"
    assert received.body == {"workflow_id": "7397716290163736611", "parameters": {"input": "hi there"}}
    client(gateway, "sk-wf-query").chat.completions.create(model="wf", messages=MESSAGES)
    assert fake.recorder.last.body == {"workflow_id": "7397716290163736611", "parameters": {"lang": "en", "query": "hi there"}, "app_id": "app-1"}


def test_workflow_stream_with_usage(gateway, fake_coze):
    fake, _ = fake_coze
    chunks = list(client(gateway, "sk-wf").chat.completions.create(model="wf", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert fake.recorder.last.path == "/v1/workflow/stream_run"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert content_of(chunks) == "Echo: hi there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.prompt_tokens == 20 and chunks[-1].usage.completion_tokens == 10


def test_workflow_outputs(gateway):
    text = client(gateway, "sk-wf-wf-text")
    assert text.chat.completions.create(model="wf", messages=MESSAGES).choices[0].message.content == "Echo: hi there"
    json_stream = client(gateway, "sk-wf-wf-json").chat.completions.create(model="wf", messages=MESSAGES, stream=True)
    assert content_of(json_stream) == "Echo: hi there"
    interrupted = list(client(gateway, "sk-wf-interrupt").chat.completions.create(model="wf", messages=MESSAGES, stream=True))
    assert content_of(interrupted).startswith("Which city?\n\n[The Coze workflow paused at its 'Question' node")
    assert [c.choices[0].finish_reason for c in interrupted if c.choices][-1] == "stop"


@pytest.mark.parametrize(("scenario", "status", "code", "paths"), [
    ("error-4100", 502, "upstream_auth_error", ("run", "stream")),
    ("error-4200", 400, None, ("run", "stream")),
    ("error-4020", 429, "rate_limit_exceeded", ("run", "stream")),
    ("event-error-4200", 400, None, ("stream",)),
    ("event-error-4009", 429, "rate_limit_exceeded", ("stream",)),
    ("http-502", 502, "upstream_error", ("run", "stream")),
])
def test_workflow_errors_mapped(gateway, scenario, status, code, paths):
    c = client(gateway, f"sk-wf-{scenario}")
    if "run" in paths:
        with pytest.raises(openai.APIStatusError) as info:
            c.chat.completions.create(model="wf", messages=MESSAGES)
        assert (info.value.status_code, info.value.body["code"]) == (status, code)
    with pytest.raises(openai.APIStatusError) as streamed:
        list(c.chat.completions.create(model="wf", messages=MESSAGES, stream=True))
    assert (streamed.value.status_code, streamed.value.body["code"]) == (status, code)


def test_models_lists_defaults(gateway):
    assert [m.id for m in client(gateway, "sk-bot").models.list()] == ["coze"]
    assert [m.id for m in client(gateway, "sk-wf").models.list()] == ["coze-workflow"]
