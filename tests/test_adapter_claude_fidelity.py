"""Issue #9 for the `claude` adapter: what a real Anthropic API refuses is translated into a
request it accepts, and reasoning comes back as `reasoning_content`. Driven with the official
`openai` client through the gateway in front of the fake Anthropic upstream (which refuses what
the real API refuses, see tests/fakes/anthropic.py and tests/test_fake_anthropic.py)."""

import base64
import json

import httpx
import openai
import pytest
import yaml

from gateway.app import create_app
from gateway.tool_ids import ANTHROPIC_TOOL_ID
from tests.fakes.anthropic import API_KEY, INPUT_TOKENS, THINKING_SIGNATURE, THINKING_TEXT, THINKING_TOKENS, FakeAnthropic
from tests.support.servers import serve_app

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
GEMINI_ID = "call_0123456789abcdef01234567__ts__Cv8B+x/y/ZmFrZS10aG91Z2h0LXNpZ25hdHVyZQ=="


@pytest.fixture(scope="module")
def upstream():
    fake = FakeAnthropic()
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    _, url = upstream
    config = {"tokens": [
        {"token": "gw-claude", "type": "claude", "config": {"api_base": url, "api_key": API_KEY}},
        {"token": "gw-claude-hot", "type": "claude", "config": {"api_base": url, "api_key": API_KEY, "temperature": 1.8, "stop": ["\n"]}},
    ]}
    path = tmp_path_factory.mktemp("claude-fidelity") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with serve_app(create_app(path)) as base:
        yield base


@pytest.fixture(scope="module")
def client(gateway):
    return openai.OpenAI(api_key="gw-claude", base_url=f"{gateway}/v1", max_retries=0)


def user(text):
    return {"role": "user", "content": text}


def tool_history(call_id, name="get_weather"):
    return [
        user("weather in Paris?"),
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
    ]


# -- row 1: tool call ids ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("call_id", [GEMINI_ID, "functions.get_weather:3", "call_" + "x" * 90])
def test_foreign_tool_ids_are_mapped_consistently(client, upstream, call_id, stream):
    fake, _ = upstream
    result = client.chat.completions.create(model="claude-sonnet-4-5", messages=tool_history(call_id), tools=TOOLS, stream=stream)
    text = "".join(c.choices[0].delta.content or "" for c in result if c.choices) if stream else result.choices[0].message.content
    assert text == "Tool said: sunny"
    messages = fake.recorder.last.body["messages"]
    sent_id = messages[1]["content"][0]["id"]
    assert ANTHROPIC_TOOL_ID.match(sent_id) and len(sent_id) <= 64
    assert messages[2]["content"][0]["tool_use_id"] == sent_id
    # deterministic: the same client id maps to the same upstream id on the next request
    client.chat.completions.create(model="claude-sonnet-4-5", messages=tool_history(call_id), tools=TOOLS)
    assert fake.recorder.last.body["messages"][1]["content"][0]["id"] == sent_id


def test_valid_tool_ids_are_sent_unchanged(client, upstream):
    fake, _ = upstream
    client.chat.completions.create(model="claude-sonnet-4-5", messages=tool_history("toolu_01AbC-d_e"), tools=TOOLS)
    assert fake.recorder.last.body["messages"][1]["content"][0]["id"] == "toolu_01AbC-d_e"


def test_distinct_ids_stay_distinct(client, upstream):
    fake, _ = upstream
    calls = [{"id": i, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}} for i in ("a.b", "a:b")]
    client.chat.completions.create(model="claude-sonnet-4-5", tools=TOOLS, messages=[
        user("two"), {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "a.b", "content": "1"}, {"role": "tool", "tool_call_id": "a:b", "content": "2"}])
    ids = [b["id"] for b in fake.recorder.last.body["messages"][1]["content"]]
    assert len(set(ids)) == 2 and all(ANTHROPIC_TOOL_ID.match(i) for i in ids)


# -- row 3: temperature -----------------------------------------------------------------------


def test_temperature_is_clamped_to_anthropic_range(client, upstream, gateway):
    fake, _ = upstream
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("x")], temperature=1.5)
    assert completion.choices[0].message.content == "Echo: x"
    assert fake.recorder.last.body["temperature"] == 1
    client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("x")], temperature=0.7)
    assert fake.recorder.last.body["temperature"] == 0.7
    hot = openai.OpenAI(api_key="gw-claude-hot", base_url=f"{gateway}/v1", max_retries=0)
    assert hot.chat.completions.create(model="claude-sonnet-4-5", messages=[user("y")]).choices[0].message.content == "Echo: y"
    assert fake.recorder.last.body["temperature"] == 1 and "stop_sequences" not in fake.recorder.last.body


# -- row 8: stop sequences --------------------------------------------------------------------


def test_whitespace_only_stop_sequences_are_dropped(client, upstream):
    fake, _ = upstream
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("one two END three")], stop=["\n", " ", "END"])
    assert completion.choices[0].message.content == "Echo: one two "
    assert fake.recorder.last.body["stop_sequences"] == ["END"]
    client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("x")], stop="\n\n")
    assert "stop_sequences" not in fake.recorder.last.body


# -- row 9: whitespace-only text, trailing whitespace of a prefill ----------------------------


def test_whitespace_only_text_blocks_are_dropped(client, upstream):
    fake, _ = upstream
    messages = [user("first"), {"role": "assistant", "content": "\n"},
                {"role": "user", "content": [{"type": "text", "text": "  "}, {"type": "text", "text": "second"}]}]
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages)
    assert completion.choices[0].message.content == "Echo: first second"  # the two user turns merged
    assert fake.recorder.last.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]}]


def test_final_assistant_turn_is_rstripped(client, upstream):
    fake, _ = upstream
    messages = [user("Greek sun?"), {"role": "assistant", "content": [{"type": "text", "text": "The answer is "}]}]
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages)
    assert completion.choices[0].message.content == "Echo: The answer is"
    assert fake.recorder.last.body["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": "The answer is"}]}
    # an earlier assistant turn keeps its whitespace
    client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("a"), {"role": "assistant", "content": "b \n"}, user("c")])
    assert fake.recorder.last.body["messages"][1]["content"] == [{"type": "text", "text": "b \n"}]


# -- row 10: tool history without tools -------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_tool_history_without_tools_gets_stub_tools(client, upstream, stream):
    fake, _ = upstream
    messages = tool_history("call_1") + [user("summarise")]
    result = client.chat.completions.create(model="claude-sonnet-4-5", messages=messages, stream=stream)
    if stream:
        chunks = list(result)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Tool said: sunny")
        assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    else:
        assert result.choices[0].message.tool_calls is None
    body = fake.recorder.last.body
    assert body["tools"] == [{"name": "get_weather", "description": "No longer available: do not call it.",
                              "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "none"}


# -- row 11: response_format json_object ------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_json_object_is_answered_through_a_forced_tool(client, upstream, stream):
    fake, _ = upstream
    result = client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("weather as JSON")], stream=stream,
                                            response_format={"type": "json_object"})
    if stream:
        chunks = list(result)
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
        reason = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        content, reason = result.choices[0].message.content, [result.choices[0].finish_reason]
        assert result.choices[0].message.tool_calls is None
    assert json.loads(content) == {"city": "Paris"} and reason == ["stop"]
    body = fake.recorder.last.body
    assert body["tools"] == [{"name": "json_response", "description": "Give the complete answer as one JSON object.",
                              "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "tool", "name": "json_response"} and "output_config" not in body


def test_json_object_with_tools_or_thinking_asks_in_the_system_prompt(client, upstream):
    fake, _ = upstream
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "system", "content": "Be terse."}, user("list")],
                                                response_format={"type": "json_object"}, tools=TOOLS)
    body = fake.recorder.last.body
    assert body["system"].startswith("Be terse.\n\n") and "JSON object" in body["system"]
    assert [t["name"] for t in body["tools"]] == ["get_weather"]
    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"
    client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("list")], response_format={"type": "json_object"},
                                   reasoning_effort="low")
    body = fake.recorder.last.body
    assert "JSON object" in body["system"] and "tools" not in body and body["thinking"]["type"] == "enabled"


# -- row 16: documents ------------------------------------------------------------------------


def test_text_files_become_plain_text_documents(client, upstream):
    fake, _ = upstream
    csv = base64.b64encode("a,b\n1,2\n".encode()).decode()
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    content = [{"type": "file", "file": {"filename": "t.csv", "file_data": f"data:text/csv;base64,{csv}"}},
               {"type": "file", "file": {"filename": "d.pdf", "file_data": f"data:application/pdf;base64,{pdf}"}},
               {"type": "text", "text": "sum it"}]
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": content}])
    assert completion.choices[0].message.content == "Echo: sum it"
    assert fake.recorder.last.body["messages"][0]["content"][:2] == [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a,b\n1,2\n"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},
    ]


def test_other_file_types_are_refused_naming_the_type(client, upstream):
    fake, _ = upstream
    count = len(fake.recorder.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": [
            {"type": "file", "file": {"file_data": "data:application/zip;base64,UEsDBA=="}}]}])
    assert "application/zip" in caught.value.body["message"] and caught.value.body["param"] == "messages[0].content[0]"
    assert len(fake.recorder.requests) == count


# -- row 13: thinking -------------------------------------------------------------------------


@pytest.mark.parametrize(("effort", "max_tokens", "thinking", "sent_max"), [
    ("low", None, {"type": "enabled", "budget_tokens": 1024}, 4096),
    ("medium", 10000, {"type": "enabled", "budget_tokens": 4096}, 10000),
    ("high", None, {"type": "enabled", "budget_tokens": 16384}, 16384 + 4096),
    ("high", 2000, {"type": "enabled", "budget_tokens": 1999}, 2000),
])
def test_reasoning_effort_maps_to_thinking_budget(client, upstream, effort, max_tokens, thinking, sent_max):
    fake, _ = upstream
    extra = {"max_tokens": max_tokens} if max_tokens else {}
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("x")], reasoning_effort=effort,
                                                temperature=0.2, **extra)
    body = fake.recorder.last.body
    assert body["thinking"] == thinking and body["max_tokens"] == sent_max
    assert "temperature" not in body  # thinking refuses a temperature other than 1
    message = completion.choices[0].message
    assert message.content == "Echo: x" and message.reasoning_content == THINKING_TEXT
    assert completion.usage.completion_tokens_details.reasoning_tokens == THINKING_TOKENS


def test_reasoning_effort_on_adaptive_models_uses_effort(client, upstream):
    fake, _ = upstream
    client.chat.completions.create(model="claude-opus-4-6", messages=[user("x")], reasoning_effort="medium")
    body = fake.recorder.last.body
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "medium"}
    client.chat.completions.create(model="claude-opus-4-6", messages=[user("x")], reasoning_effort="none")
    body = fake.recorder.last.body
    assert body["thinking"] == {"type": "disabled"} and "output_config" not in body
    client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("x")], reasoning_effort="none")
    assert "thinking" not in fake.recorder.last.body


def test_thinking_streams_as_reasoning_content(client):
    chunks = list(client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("a b")], reasoning_effort="low", stream=True,
                                                 stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == THINKING_TEXT
    assert "".join(d.content or "" for d in deltas) == "Echo: a b"
    assert THINKING_SIGNATURE not in json.dumps([c.model_dump() for c in chunks])
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == THINKING_TOKENS


def test_thinking_is_left_off_where_anthropic_refuses_it(client, upstream):
    fake, _ = upstream
    # a forced tool choice refuses thinking
    client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("x")], tools=TOOLS, tool_choice="required", reasoning_effort="high")
    assert "thinking" not in fake.recorder.last.body and fake.recorder.last.body["tool_choice"] == {"type": "any"}
    # continuing a tool loop needs the signed thinking block back, which an OpenAI client does not keep
    completion = client.chat.completions.create(model="claude-sonnet-4-5", messages=tool_history("toolu_1"), tools=TOOLS, reasoning_effort="high")
    assert completion.choices[0].message.content == "Tool said: sunny"
    assert "thinking" not in fake.recorder.last.body


# -- row 17: context length -------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_too_long_is_context_length_exceeded(client, stream):
    with pytest.raises(openai.BadRequestError) as caught:
        result = client.chat.completions.create(model="too-long", messages=[user("x")], stream=stream)
        list(result) if stream else None
    assert caught.value.body["code"] == "context_length_exceeded" and "prompt is too long" in caught.value.body["message"]


def test_unknown_fields_still_not_sent(gateway, upstream):
    fake, _ = upstream
    response = httpx.post(f"{gateway}/v1/chat/completions", headers={"authorization": "Bearer gw-claude"},
                          json={"messages": [user("x")], "reasoning_effort": "minimal", "frequency_penalty": 1})
    assert response.status_code == 200, response.text
    assert set(fake.recorder.last.body) == {"model", "max_tokens", "messages", "thinking"}
    assert response.json()["usage"]["prompt_tokens"] == INPUT_TOKENS


@pytest.mark.parametrize("model", ["claude-opus-4-7", "claude-sonnet-5"])
def test_sampling_fields_are_left_out_where_the_model_removed_them(client, upstream, model):
    fake, _ = upstream
    completion = client.chat.completions.create(model=model, messages=[user("x")], temperature=0.3, top_p=0.9, extra_body={"top_k": 5})
    assert completion.choices[0].message.content == "Echo: x"
    assert not {"temperature", "top_p", "top_k"} & set(fake.recorder.last.body)
    client.chat.completions.create(model="claude-opus-4-6", messages=[user("x")], temperature=0.3)
    assert fake.recorder.last.body["temperature"] == 0.3


def test_thinking_keeps_only_a_top_p_it_accepts(client, upstream):
    fake, _ = upstream
    client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("x")], reasoning_effort="low", top_p=0.97, extra_body={"top_k": 3})
    body = fake.recorder.last.body
    assert body["top_p"] == 0.97 and "top_k" not in body
    client.chat.completions.create(model="claude-sonnet-4-5", messages=[user("x")], reasoning_effort="low", top_p=0.5)
    assert "top_p" not in fake.recorder.last.body
