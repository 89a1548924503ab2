"""The fake OpenAI/Azure upstream is faithful: the official `openai` SDK parses its answers,
streams and errors exactly as it would OpenAI's."""

import openai
import pytest

KEY = "sk-upstream-secret-key-0123456789"


@pytest.fixture
def client(fake_openai):
    _, url = fake_openai
    return openai.OpenAI(api_key=KEY, base_url=f"{url}/v1", max_retries=0)


@pytest.fixture
def azure_client(fake_openai):
    _, url = fake_openai
    return openai.AzureOpenAI(api_key=KEY, azure_endpoint=url, api_version="2024-10-21", max_retries=0)


def test_sdk_parses_completion(client):
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Echo: hi"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == 21


def test_sdk_parses_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a b"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: a b "
    assert chunks[-1].usage.total_tokens == 21


def test_sdk_parses_tool_calls(client):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], tools=tools)
    call = completion.choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')


def test_sdk_raises_typed_errors(client):
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="status-429", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="status-400", messages=[{"role": "user", "content": "x"}])
    bad = openai.OpenAI(api_key="sk-wrong", base_url=client.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])


def test_sdk_lists_models(client):
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "gpt-4o"]


def test_azure_sdk_parses_completion_and_stream(azure_client, fake_openai):
    fake, _ = fake_openai
    completion = azure_client.chat.completions.create(model="my-deployment", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Echo: hi"
    received = fake.recorder.last
    assert received.path == "/openai/deployments/my-deployment/chat/completions"
    assert received.query["api-version"] == "2024-10-21" and received.headers["api-key"] == KEY
    chunks = list(azure_client.chat.completions.create(model="my-deployment", messages=[{"role": "user", "content": "yo"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: yo "
