"""The fake Anthropic upstream is faithful: the official `anthropic` SDK parses its messages,
streams (raw events and the `messages.stream` helper), tool calls, usage and errors exactly as
it would Anthropic's."""

import anthropic
import pytest

from tests.fakes.anthropic import API_KEY, INPUT_TOKENS, FakeAnthropic
from tests.support.servers import serve_app

TOOLS = [{"name": "get_weather", "description": "Weather for a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


@pytest.fixture(scope="module")
def fake():
    fake = FakeAnthropic()
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture
def client(fake):
    _, url = fake
    return anthropic.Anthropic(api_key=API_KEY, base_url=url, max_retries=0)


def test_sdk_parses_text_message_and_usage(client, fake):
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, system="Be brief.",
                                     messages=[{"role": "user", "content": "hello there"}])
    assert message.content[0].type == "text" and message.content[0].text == "Echo: hello there"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (INPUT_TOKENS, 3)
    received = fake[0].recorder.last
    assert received.path == "/v1/messages"
    # This SDK sends its key as a bearer token (the gateway uses `x-api-key`); the fake takes both.
    assert received.headers["authorization"] == f"Bearer {API_KEY}" and received.headers["anthropic-version"]


def test_sdk_parses_tool_use_and_round_trip(client):
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, tools=TOOLS,
                                     messages=[{"role": "user", "content": "weather in Paris?"}])
    assert message.stop_reason == "tool_use"
    tool_use = message.content[1]
    assert (tool_use.type, tool_use.name, tool_use.input) == ("tool_use", "get_weather", {"city": "Paris"})
    final = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, tools=TOOLS, messages=[
        {"role": "user", "content": "weather in Paris?"},
        message.to_param(),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]},
    ])
    assert final.content[0].text == "Tool said: sunny" and final.stop_reason == "end_turn"


def test_sdk_stream_helper_text_and_usage(client):
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "a b c"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: a b c"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4 and final.usage.input_tokens == INPUT_TOKENS


def test_sdk_stream_tool_input_json_delta(client):
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, tools=TOOLS,
                                messages=[{"role": "user", "content": "weather?"}]) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert any(e.type == "content_block_delta" and e.delta.type == "input_json_delta" for e in events)
    assert final.content[1].type == "tool_use" and final.content[1].input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


def test_sdk_raw_stream_events(client):
    events = list(client.messages.create(model="claude-sonnet-4-5", max_tokens=100, stream=True,
                                         messages=[{"role": "user", "content": "hi"}]))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert events[-2].delta.stop_reason == "end_turn"
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == "Echo: hi"


def test_sdk_stream_error_event_raises(client):
    with pytest.raises(anthropic.APIStatusError) as caught:
        list(client.messages.create(model="stream-error", max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi"}]))
    assert "overloaded_error" in str(caught.value)


def test_sdk_stop_sequence_and_max_tokens(client):
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, stop_sequences=["three"],
                                     messages=[{"role": "user", "content": "one two three four"}])
    assert (message.stop_reason, message.stop_sequence, message.content[0].text) == ("stop_sequence", "three", "Echo: one two ")
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=2, messages=[{"role": "user", "content": "one two three"}])
    assert (message.stop_reason, message.content[0].text) == ("max_tokens", "Echo: one")


def test_sdk_raises_typed_errors(client, fake):
    _, url = fake
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="status-429", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert caught.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="status-400", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(model="status-529", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anthropic.Anthropic(api_key="sk-ant-wrong", base_url=url, max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_fake_refuses_what_the_api_refuses(client):
    with pytest.raises(anthropic.BadRequestError, match="alternate"):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[
            {"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(anthropic.BadRequestError, match="Extra inputs"):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "a"}],
                               extra_body={"n": 1})
    with pytest.raises(anthropic.BadRequestError, match="role"):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "system", "content": "a"}])


def _bad(client, match, **kwargs):
    kwargs.setdefault("model", "claude-sonnet-4-5")
    kwargs.setdefault("max_tokens", 10)
    with pytest.raises(anthropic.BadRequestError, match=match) as caught:
        client.messages.create(**kwargs)
    assert caught.value.body["error"]["type"] == "invalid_request_error"


TOOL_TURNS = [
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
]


def test_fake_refuses_ranges_and_fields_the_api_refuses(client):
    """The refusals of issue #9 item 3, each with the source cited in tests/fakes/anthropic.py.
    The installed SDK no longer has a `temperature` argument, so it goes in `extra_body`."""
    hi = [{"role": "user", "content": "hi"}]
    _bad(client, "temperature", messages=hi, extra_body={"temperature": 1.5})
    _bad(client, "non-whitespace", messages=hi, stop_sequences=["\n"])
    _bad(client, "non-whitespace text", messages=[{"role": "user", "content": [{"type": "text", "text": "  "}]}])
    _bad(client, "trailing whitespace", messages=hi + [{"role": "assistant", "content": "The answer is "}])
    _bad(client, "must define tools", messages=TOOL_TURNS)
    _bad(client, "should match pattern", tools=TOOLS, messages=[
        TOOL_TURNS[0],
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1__ts__Cv8B+x/y==", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1__ts__Cv8B+x/y==", "content": "sunny"}]},
    ])
    _bad(client, "application/pdf", messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "text/csv", "data": "YSxi"}}]}])
    # what the gateway sends instead is accepted
    ok = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, tools=TOOLS, tool_choice={"type": "none"}, messages=TOOL_TURNS,
                                extra_body={"temperature": 1})
    assert ok.content[0].text == "Tool said: sunny"
    ok = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a,b"}}, {"type": "text", "text": "sum"}]}])
    assert ok.content[0].text == "Echo: sum"


def test_fake_thinking_blocks_and_refusals(client):
    hi = [{"role": "user", "content": "hi"}]
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=2000, messages=hi,
                                     thinking={"type": "enabled", "budget_tokens": 1024})
    assert (message.content[0].type, message.content[0].thinking) == ("thinking", "Let me think.") and message.content[0].signature
    assert message.usage.output_tokens_details.thinking_tokens == 3
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=2000, messages=hi, thinking={"type": "adaptive"},
                                output_config={"effort": "low"}) as stream:
        final = stream.get_final_message()
    assert final.content[0].thinking == "Let me think." and final.content[0].signature and final.content[1].text == "Echo: hi"
    _bad(client, "budget_tokens", max_tokens=2000, messages=hi, thinking={"type": "enabled", "budget_tokens": 500})
    _bad(client, "max_tokens", max_tokens=1024, messages=hi, thinking={"type": "enabled", "budget_tokens": 1024})
    _bad(client, "temperature", max_tokens=2000, messages=hi, thinking={"type": "adaptive"}, extra_body={"temperature": 0.5})
    _bad(client, "top_p", max_tokens=2000, messages=hi, thinking={"type": "adaptive"}, extra_body={"top_p": 0.5})
    assert client.messages.create(model="claude-sonnet-4-5", max_tokens=2000, messages=hi, thinking={"type": "adaptive"},
                                  extra_body={"top_p": 0.97}).content[1].text == "Echo: hi"
    _bad(client, "tool_choice", max_tokens=2000, messages=hi, thinking={"type": "adaptive"}, tools=TOOLS, tool_choice={"type": "any"})
    _bad(client, "effort", messages=hi, output_config={"effort": "extreme"})


def test_fake_prompt_too_long(client):
    _bad(client, "prompt is too long", model="too-long", messages=[{"role": "user", "content": "x"}])


def test_fake_refuses_sampling_on_models_that_removed_it(client):
    hi = [{"role": "user", "content": "hi"}]
    for model in ("claude-opus-4-7", "claude-sonnet-5"):
        _bad(client, "deprecated for this model", model=model, messages=hi, extra_body={"temperature": 0.3})
        _bad(client, "deprecated for this model", model=model, messages=hi, extra_body={"top_p": 0.9})
        assert client.messages.create(model=model, max_tokens=10, messages=hi).content[0].text == "Echo: hi"
    assert client.messages.create(model="claude-opus-4-6", max_tokens=10, messages=hi, extra_body={"temperature": 0.3}).content
