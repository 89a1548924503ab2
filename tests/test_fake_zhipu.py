"""The fake Zhipu upstream is faithful: the official `zhipuai` SDK (plain key and its own JWT
auth) parses its answers, streams, tool calls, usage and errors as it would Zhipu's."""

import pytest
import zhipuai
from zhipuai.core._errors import APIAuthenticationError, APIReachLimitError, APIRequestFailedError, APIResponseError

from tests.fakes.zhipu import API_KEY, FakeZhipu
from tests.support.servers import serve_app

MESSAGES = [{"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def fake_zhipu():
    fake = FakeZhipu()
    with serve_app(fake.app) as url:
        yield fake, f"{url}{fake.base_path}"


@pytest.fixture(params=["plain-key", "sdk-jwt"])
def client(request, fake_zhipu):
    _, base = fake_zhipu
    return zhipuai.ZhipuAI(api_key=API_KEY, base_url=base, max_retries=0, disable_token_cache=request.param == "plain-key")


def test_sdk_parses_completion(client):
    completion = client.chat.completions.create(model="glm-4-flash", messages=MESSAGES)
    assert completion.choices[0].message.content == "Echo: hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.total_tokens) == (11, 18)


def test_sdk_parses_stream_with_usage(client):
    chunks = list(client.chat.completions.create(model="glm-4-flash", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: hi there "
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens == 7


def test_sdk_parses_tool_calls(client, fake_zhipu):
    fake, _ = fake_zhipu
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    completion = client.chat.completions.create(model="glm-4", messages=MESSAGES, tools=tools, tool_choice="auto")
    call = completion.choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "北京"}')
    assert completion.choices[0].finish_reason == "tool_calls"
    assert fake.recorder.last.body["tool_choice"] == "auto"
    followup = MESSAGES + [
        {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
        {"role": "tool", "content": "sunny", "tool_call_id": call.id},
    ]
    answer = client.chat.completions.create(model="glm-4", messages=followup, tools=tools)
    assert answer.choices[0].message.content == "Tool said: sunny"
    streamed = list(client.chat.completions.create(model="glm-4", messages=MESSAGES, tools=tools, stream=True))
    assert streamed[-1].choices[0].delta.tool_calls[0].function.name == "get_weather"


def test_sdk_raises_typed_errors(client, fake_zhipu):
    _, base = fake_zhipu
    with pytest.raises(APIReachLimitError):
        client.chat.completions.create(model="error-1302", messages=MESSAGES)
    with pytest.raises(APIRequestFailedError):
        client.chat.completions.create(model="error-1261", messages=MESSAGES)
    with pytest.raises(APIResponseError):
        list(client.chat.completions.create(model="stream-error", messages=MESSAGES, stream=True))
    for bad in (zhipuai.ZhipuAI(api_key="4f2a9c61b0d84e7f.wrong-secret", base_url=base, max_retries=0, disable_token_cache=False),
                zhipuai.ZhipuAI(api_key="not-the-key", base_url=base, max_retries=0)):
        with pytest.raises(APIAuthenticationError):
            bad.chat.completions.create(model="glm-4", messages=MESSAGES)


def test_sdk_jwt_reaches_fake_as_documented(fake_zhipu):
    import jwt

    fake, base = fake_zhipu
    zhipuai.ZhipuAI(api_key=API_KEY, base_url=base, max_retries=0, disable_token_cache=False).chat.completions.create(model="glm-4", messages=MESSAGES)
    received = fake.recorder.last
    assert received.path == "/api/paas/v4/chat/completions"
    token = received.headers["authorization"].removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["sign_type"] == "SIGN"


def test_sdk_parses_reasoning_and_usage_details(client, fake_zhipu):
    """GLM-4.5+ think by default: the SDK's `CompletionMessage.reasoning_content` and
    `ChoiceDelta.reasoning_content` carry it, `usage.completion_tokens_details.reasoning_tokens`
    counts it; `thinking: {"type": "disabled"}` turns it off."""
    fake, _ = fake_zhipu
    completion = client.chat.completions.create(model="glm-4.7", messages=MESSAGES)
    message = completion.choices[0].message
    assert message.reasoning_content.startswith("The user wrote 'hi there'")
    assert message.content == "Echo: hi there"
    chunks = list(client.chat.completions.create(model="glm-4.7", messages=MESSAGES, stream=True))
    reasoning = "".join(c.choices[0].delta.reasoning_content or "" for c in chunks)
    assert reasoning.strip() == message.reasoning_content
    assert chunks[0].choices[0].delta.reasoning_content and not chunks[0].choices[0].delta.content
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 5
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 4
    plain = client.chat.completions.create(model="glm-4.7", messages=MESSAGES, thinking={"type": "disabled"})
    assert plain.choices[0].message.reasoning_content is None
    assert fake.recorder.last.body["thinking"] == {"type": "disabled"}


def test_sdk_sees_refused_enums(client):
    """The documented enums are checked: `thinking.type` and `response_format.type`."""
    with pytest.raises(APIRequestFailedError):
        client.chat.completions.create(model="glm-4.7", messages=MESSAGES, thinking={"type": "auto"})
    with pytest.raises(APIRequestFailedError):
        client.chat.completions.create(model="glm-4", messages=MESSAGES, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}})
    assert client.chat.completions.create(model="glm-4", messages=MESSAGES, response_format={"type": "json_object"}).choices[0].message.content


def test_sdk_sees_echoed_credential(fake_zhipu):
    """`echo-key-STATUS` quotes the bearer credential it received, as an echoing upstream does."""
    _, base = fake_zhipu
    sdk = zhipuai.ZhipuAI(api_key=API_KEY, base_url=base, max_retries=0, disable_token_cache=False)
    with pytest.raises(APIRequestFailedError) as info:
        sdk.chat.completions.create(model="echo-key-400", messages=MESSAGES)
    assert "eyJ" in str(info.value)
