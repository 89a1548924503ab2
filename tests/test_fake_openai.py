"""The fake OpenAI/Azure upstream is faithful: the official `openai` SDK parses its answers,
streams and errors exactly as it would OpenAI's."""

import httpx
import openai
import pytest

from tests.fakes.openai import FakeOpenAI
from tests.support.servers import serve_app

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


def test_fake_refuses_what_openai_refuses(client, fake_openai):
    """No `model` (OpenAI's 400, as vLLM's), and `max_tokens` on a reasoning model."""
    _, url = fake_openai
    r = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"] == {
        "message": "you must provide a model parameter", "type": "invalid_request_error", "param": None, "code": None}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="o3-mini", messages=[{"role": "user", "content": "x"}], max_tokens=10)
    assert caught.value.code == "unsupported_parameter" and caught.value.param == "max_tokens"
    ok = client.chat.completions.create(model="o3-mini", messages=[{"role": "user", "content": "x"}], max_completion_tokens=10)
    assert ok.choices[0].message.content == "Echo: x"


def test_sdk_raises_on_an_in_stream_error_event(client):
    """openai-python's Stream raises APIError on a `data: {"error": ...}` event (`_streaming.py`)."""
    parts = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="midstream-rate", messages=[{"role": "user", "content": "x"}], stream=True):
            parts.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(parts) == "Partial" and KEY in caught.value.message  # the raw upstream quotes the key


def test_sdk_sees_nothing_in_a_json_answer_to_a_stream(client):
    """What a client gets when an upstream answers `stream: true` with a JSON body: no chunks, no error."""
    assert list(client.chat.completions.create(model="json-completion", messages=[{"role": "user", "content": "x"}], stream=True)) == []


def test_azure_stream_opens_with_the_prompt_filter_chunk(azure_client):
    chunks = list(azure_client.chat.completions.create(model="dep", messages=[{"role": "user", "content": "x"}], stream=True))
    first = chunks[0]
    assert (first.id, first.object, first.model, first.created, first.choices) == ("", "", "", 0, [])
    assert first.model_extra["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    completion = azure_client.chat.completions.create(model="dep", messages=[{"role": "user", "content": "x"}])
    assert completion.model_extra["prompt_filter_results"][0]["prompt_index"] == 0


def test_strict_fake_is_a_vllm_serving_its_models():
    fake = FakeOpenAI(api_key=None, models=["served-llama"], strict_models=True)
    with serve_app(fake.app) as url:
        sdk = openai.OpenAI(api_key="none", base_url=f"{url}/v1", max_retries=0)
        assert [m.id for m in sdk.models.list()] == ["served-llama"]
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
