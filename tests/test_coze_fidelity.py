"""`coze` / `coze-workflow` fidelity (issue #9 item 10, review rows 21, 22, 24): the official
`openai` client against a real gateway process in front of the fake Coze upstream."""

import openai
import pytest
import yaml

from tests.fakes.coze import API_KEY, FakeCoze
from tests.support.servers import GatewayProcess, serve_app

MESSAGES = [{"role": "user", "content": "hi there"}]

# Coze's error code table (https://www.coze.cn/open/docs/developer_guides/coze_error_codes) → §3.
CODES = [
    (4000, 400, None),  # request parameter error
    (4006, 502, "upstream_auth_error"),  # invalid bot: the config's bot_id is wrong or not the token's
    (4015, 502, "upstream_auth_error"),  # bot not published to the API channel: config
    (4010, 400, "context_length_exceeded"),  # prompt tokens above the model's limit
    (4012, 502, "upstream_error"),  # invalid model (taken off the platform): the bot is broken
    (4013, 502, "upstream_error"),  # model service error, retry later
    (4008, 429, "rate_limit_exceeded"),  # daily bot uses exceeded
    (4009, 429, "rate_limit_exceeded"),  # system request limit
    (4011, 429, "rate_limit_exceeded"),  # Coze token balance too low
    (4016, 429, "rate_limit_exceeded"),  # a chat is already running in this conversation
    (4019, 429, "rate_limit_exceeded"),  # pay-as-you-go balance too low
    (4020, 429, "rate_limit_exceeded"),  # RPM above the purchased quota
    (4022, 429, "rate_limit_exceeded"),  # model service in arrears
    (4100, 502, "upstream_auth_error"),  # token invalid
    (4101, 502, "upstream_auth_error"),  # token lacks permission
    (700012006, 502, "upstream_auth_error"),  # access token invalid (OAuth)
    (4102, 502, "upstream_error"),  # risk control interception
    (4105, 400, "content_filter"),
    (5000, 502, "upstream_error"),
]


@pytest.fixture(scope="module")
def fake_coze():
    fake = FakeCoze()
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def gateway(fake_coze, tmp_path_factory):
    _, url = fake_coze
    tokens = [
        {"token": "sk-bot", "type": "coze", "config": {"api_key": API_KEY, "bot_id": "bot-1", "api_base": url}},
        {"token": "sk-reasoning", "type": "coze", "config": {"api_key": API_KEY, "bot_id": "reasoning", "api_base": url}},
        {"token": "sk-wf", "type": "coze-workflow", "config": {"api_key": API_KEY, "workflow_id": "wf-1", "api_base": url}},
        {"token": "sk-interrupt", "type": "coze-workflow", "config": {"api_key": API_KEY, "workflow_id": "interrupt", "api_base": url}},
    ]
    tokens += [{"token": f"sk-error-{code}", "type": "coze", "config": {"api_key": API_KEY, "bot_id": f"error-{code}", "api_base": url}} for code, _, _ in CODES]
    tokens += [{"token": f"sk-failed-{code}", "type": "coze", "config": {"api_key": API_KEY, "bot_id": f"failed-{code}", "api_base": url}} for code, _, _ in CODES]
    path = tmp_path_factory.mktemp("coze-fidelity") / "config.yaml"
    path.write_text(yaml.safe_dump({"tokens": tokens}), encoding="utf-8")
    process = GatewayProcess(path).start()
    yield process
    process.stop()


def client(gateway, token):
    return openai.OpenAI(api_key=token, base_url=f"{gateway.base_url}/v1", max_retries=0)


@pytest.mark.parametrize(("code", "status", "expected"), CODES)
def test_error_codes_follow_the_published_table(gateway, code, status, expected):
    for token in (f"sk-error-{code}", f"sk-failed-{code}"):  # a JSON error body, and conversation.chat.failed
        with pytest.raises(openai.APIStatusError) as info:
            client(gateway, token).chat.completions.create(model="m", messages=MESSAGES)
        assert (info.value.status_code, info.value.body["code"]) == (status, expected), token
        assert f"Coze error {code}" in info.value.body["message"]


def test_workflow_interrupt_tells_the_user_why_it_stopped(gateway):
    chunks = list(client(gateway, "sk-interrupt").chat.completions.create(model="wf", messages=MESSAGES, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Which city?\n\n")
    assert "'Question'" in text and "waiting for input" in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_reasoning_content_streams_as_deltas(gateway):
    chunks = list(client(gateway, "sk-reasoning").chat.completions.create(model="m", messages=MESSAGES, stream=True))
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.reasoning_content == "The "
    assert "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices) == "The user greets me; I echo. "
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hi there "


def test_reasoning_content_on_the_message(gateway):
    message = client(gateway, "sk-reasoning").chat.completions.create(model="m", messages=MESSAGES).choices[0].message
    assert message.content == "Echo: hi there "
    assert message.reasoning_content == "The user greets me; I echo. "


@pytest.mark.parametrize("token", ["sk-bot", "sk-wf"])
def test_n_above_one_is_refused(gateway, fake_coze, token):
    fake, _ = fake_coze
    before = len(fake.recorder.requests)
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            client(gateway, token).chat.completions.create(model="m", messages=MESSAGES, n=2, stream=stream)
        assert info.value.body["param"] == "n"
    assert len(fake.recorder.requests) == before
