"""Anthropic Messages ingress (CONTRACT.md §10), driven with the official `anthropic` SDK against
the gateway, in front of the fake Anthropic, OpenAI and Gemini upstreams. Each test checks what
the upstream received as well as what the client got."""

import base64
import json

import anthropic
import httpx
import pytest
import yaml

from gateway.app import create_app
from tests.fakes import zhipu as zhipu_fake
from tests.fakes.anthropic import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.support.servers import serve_app

OPENAI_KEY = "sk-upstream-secret-key-0123456789"
GEMINI_KEY = "AIzaSyFakeGeminiKey-0123456789abcdefghij"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def upstreams():
    fakes = {"anthropic": FakeAnthropic(), "openai": FakeOpenAI(api_key=OPENAI_KEY), "gemini": FakeGemini(api_key=GEMINI_KEY),
             "zhipu": zhipu_fake.FakeZhipu()}
    with (serve_app(fakes["anthropic"].app) as a, serve_app(fakes["openai"].app) as o, serve_app(fakes["gemini"].app) as g,
          serve_app(fakes["zhipu"].app) as z):
        yield fakes, {"anthropic": a, "openai": o, "gemini": g, "zhipu": f"{z}{zhipu_fake.FakeZhipu.base_path}"}


@pytest.fixture(scope="module")
def gateway(upstreams, tmp_path_factory):
    _, urls = upstreams
    config = {"tokens": [
        {"token": "gw-claude", "type": "claude", "name": "claude", "config": {"api_base": urls["anthropic"], "api_key": ANTHROPIC_KEY}},
        {"token": "gw-claude-forced", "type": "claude", "config": {"api_base": urls["anthropic"], "api_key": ANTHROPIC_KEY, "model": "claude-forced-1"}},
        {"token": "gw-openai", "type": "openai", "name": "openai", "config": {"api_base": f"{urls['openai']}/v1", "api_key": OPENAI_KEY}},
        {"token": "gw-gemini", "type": "gemini", "name": "gemini", "config": {"api_base": urls["gemini"], "api_key": GEMINI_KEY}},
        {"token": "gw-zhipu", "type": "zhipu-api", "config": {"api_base": urls["zhipu"], "api_key": zhipu_fake.API_KEY}},
        {"token": "gw-mock", "type": "mock", "name": "mock", "config": {"reply": "Mock says hi"}},
        {"token": "gw-dead", "type": "proxy", "name": "dead", "internal": True, "config": {"api_base": "http://127.0.0.1:9/v1"}},
        {"token": "gw-router", "type": "router", "name": "router", "config": {"router_strategy": "fallback", "token_pool": ["gw-dead", "gw-openai"]}},
        {"token": "gw-by-model", "type": "model-name-router", "config": {"model-2-token": {
            "claude-sonnet-4-5": "gw-openai", "claude-native": "gw-claude", "default": "gw-mock"}}},
    ]}
    path = tmp_path_factory.mktemp("messages") / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with serve_app(create_app(path)) as base:
        yield base


def client(gateway, token, **kw):
    return anthropic.Anthropic(api_key=token, base_url=gateway, max_retries=0, **kw)


def ask(text):
    return [{"role": "user", "content": text}]


# -- claude tokens: native ------------------------------------------------------------------


def test_claude_token_is_relayed_natively_with_betas_and_unknown_fields(gateway, upstreams):
    fakes, _ = upstreams
    c = client(gateway, "gw-claude")
    message = c.beta.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=ask("hi"), betas=["context-management-2025-06-27", "claude-code-20250219"],
        extra_body={"context_management": {"edits": []}})
    assert message.content[0].text == "Echo: hi"
    received = fakes["anthropic"].recorder.last
    assert received.path == "/v1/messages"
    assert received.headers["anthropic-beta"] == "context-management-2025-06-27,claude-code-20250219"
    assert received.headers["anthropic-version"] == c.default_headers["anthropic-version"]
    assert received.headers["x-api-key"] == ANTHROPIC_KEY and "authorization" not in received.headers
    assert received.body == {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": ask("hi"), "context_management": {"edits": []}}


def test_claude_token_keeps_beta_query(gateway, upstreams):
    fakes, _ = upstreams
    response = httpx.post(f"{gateway}/v1/messages?beta=true", headers={"x-api-key": "gw-claude", "anthropic-version": "2023-06-01"},
                          json={"model": "m", "max_tokens": 5, "messages": ask("q")})
    assert response.status_code == 200 and response.json()["content"][0]["text"] == "Echo: q"
    assert fakes["anthropic"].recorder.last.query == {"beta": "true"}
    assert fakes["anthropic"].recorder.last.headers["anthropic-version"] == "2023-06-01"
    assert response.headers["x-gateway-token-name"] == "claude"


def test_claude_token_streams_natively_and_forced_model_is_written_in(gateway, upstreams):
    fakes, _ = upstreams
    c = client(gateway, "gw-claude-forced")
    with c.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=ask("stream me")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: stream me" and final.stop_reason == "end_turn"
    assert fakes["anthropic"].recorder.last.body["model"] == "claude-forced-1"


def test_claude_token_tool_round_trip_natively(gateway, upstreams):
    fakes, _ = upstreams
    c = client(gateway, "gw-claude")
    with c.messages.stream(model="claude-sonnet-4-5", max_tokens=50, tools=[WEATHER], messages=ask("Weather?")) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use" and [b.type for b in first.content] == ["text", "tool_use"]
    call = first.content[1]
    assert call.input == {"city": "Paris"} and call.id.startswith("toolu_")
    followup = [*ask("Weather?"), {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]}]
    second = c.messages.create(model="claude-sonnet-4-5", max_tokens=50, tools=[WEATHER], messages=followup)
    assert second.content[0].text == "Tool said: Sunny"
    assert fakes["anthropic"].recorder.last.body["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}


def test_claude_upstream_errors_are_forwarded_unmodified_but_scrubbed(gateway):
    c = client(gateway, "gw-claude")
    with pytest.raises(anthropic.RateLimitError) as caught:
        c.messages.create(model="status-429", max_tokens=8, messages=ask("x"))
    assert caught.value.body["error"] == {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}
    with pytest.raises(anthropic.BadRequestError) as caught:
        c.messages.create(model="leak-secret", max_tokens=8, messages=ask("x"))
    assert ANTHROPIC_KEY not in json.dumps(caught.value.body) and "***" in caught.value.body["error"]["message"]
    response = httpx.post(f"{gateway}/v1/messages", headers={"x-api-key": "gw-claude", "anthropic-version": "2023-06-01"},
                          json={"model": "claude-sonnet-4-5", "messages": ask("x")})
    assert response.status_code == 400  # Anthropic's own check and wording, not the gateway's
    assert response.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}


def test_count_tokens_forwarded_for_claude_and_404_otherwise(gateway, upstreams):
    fakes, _ = upstreams
    counted = client(gateway, "gw-claude").messages.count_tokens(model="claude-sonnet-4-5", messages=ask("count me"))
    assert counted.input_tokens == len(json.dumps(ask("count me"))) // 4
    assert fakes["anthropic"].recorder.last.path == "/v1/messages/count_tokens"
    with pytest.raises(anthropic.NotFoundError) as caught:
        client(gateway, "gw-openai").messages.count_tokens(model="gpt-4o", messages=ask("count me"))
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "not_found_error"


def test_model_name_router_sends_mapped_claude_model_natively(gateway, upstreams):
    fakes, _ = upstreams
    before = len(fakes["anthropic"].recorder.requests)
    message = client(gateway, "gw-by-model").messages.create(model="claude-native", max_tokens=8, messages=ask("n"))
    assert message.content[0].text == "Echo: n" and len(fakes["anthropic"].recorder.requests) == before + 1


# -- translated: openai ----------------------------------------------------------------------


def test_openai_token_translated_request_and_answer(gateway, upstreams):
    fakes, _ = upstreams
    message = client(gateway, "gw-openai").messages.create(
        model="gpt-4o", max_tokens=100, extra_body={"top_k": 5, "temperature": 0.3}, stop_sequences=["END"], metadata={"user_id": "u-1"},
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}])
    assert message.type == "message" and message.role == "assistant" and message.model == "gpt-4o"
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "Echo: What is this? [image_url]"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 12)
    received = fakes["openai"].recorder.last
    assert received.path == "/v1/chat/completions" and received.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert received.body == {
        "model": "gpt-4o", "max_completion_tokens": 100, "temperature": 0.3, "stop": ["END"], "user": "u-1",
        "messages": [{"role": "system", "content": "Be brief.\n\nBe kind."},
                     {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                                  {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]}


def test_openai_token_tool_round_trip_streamed(gateway, upstreams):
    fakes, _ = upstreams
    c = client(gateway, "gw-openai")
    with c.messages.stream(model="gpt-4o", max_tokens=100, tools=[WEATHER], tool_choice={"type": "any", "disable_parallel_tool_use": True},
                           messages=ask("Weather in Paris?")) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == {"city": "Paris"} and call.id == "call_fake1"
    sent = fakes["openai"].recorder.last.body
    assert sent["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": WEATHER["input_schema"]}}]
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert first.usage.output_tokens == 12
    followup = [*ask("Weather in Paris?"), {"role": "assistant", "content": first.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21C"},
                                             {"type": "text", "text": "Thanks"}]}]
    with c.messages.stream(model="gpt-4o", max_tokens=100, tools=[WEATHER], messages=followup) as stream:
        second = stream.get_final_message()
    assert second.content[0].text.strip() == "Echo: Thanks" and second.stop_reason == "end_turn"
    sent = fakes["openai"].recorder.last.body["messages"]
    assert sent[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_fake1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert sent[2:] == [{"role": "tool", "tool_call_id": "call_fake1", "content": "Sunny, 21C"}, {"role": "user", "content": "Thanks"}]


def test_event_stream_frames_have_event_lines_in_order(gateway):
    with httpx.stream("POST", f"{gateway}/v1/messages?beta=true", headers={"authorization": "Bearer gw-openai", "anthropic-version": "2023-06-01"},
                      json={"model": "gpt-4o", "max_tokens": 50, "stream": True, "messages": ask("a b")}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in response.read().decode().split("\n\n") if f]
    names = [f.split("\n")[0] for f in frames]
    assert all(n.startswith("event: ") for n in names)
    assert [n[7:] for n in names] == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
                                      "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    start = json.loads(frames[0].split("data: ", 1)[1])
    assert start["message"]["usage"]["input_tokens"] > 0


def test_reasoning_content_becomes_a_thinking_block(gateway):
    c = client(gateway, "gw-openai")
    with c.messages.stream(model="reasoning", max_tokens=50, messages=ask("think")) as stream:
        streamed = stream.get_final_message()
    plain = c.messages.create(model="reasoning", max_tokens=50, messages=ask("think"))
    for message in (streamed, plain):
        assert [b.type for b in message.content] == ["thinking", "text"]
        assert message.content[0].thinking == "Thinking it over." and message.content[1].text.strip() == "Echo: think"


def test_router_token_fails_over_for_messages(gateway):
    message = client(gateway, "gw-router").messages.create(model="gpt-4o", max_tokens=10, messages=ask("fo"))
    assert message.content[0].text == "Echo: fo"


def test_model_name_router_maps_claude_names_to_other_providers(gateway, upstreams):
    fakes, _ = upstreams
    message = client(gateway, "gw-by-model").messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=ask("mapped"))
    assert message.content[0].text == "Echo: mapped" and fakes["openai"].recorder.last.body["model"] == "claude-sonnet-4-5"
    assert client(gateway, "gw-by-model").messages.create(model="claude-haiku-4-5", max_tokens=10, messages=ask("x")).content[0].text == "Mock says hi"


# -- translated: gemini ----------------------------------------------------------------------


def test_gemini_token_create_stream_and_tool_round_trip(gateway, upstreams):
    fakes, _ = upstreams
    c = client(gateway, "gw-gemini")
    message = c.messages.create(model="gemini-2.5-flash", max_tokens=20, extra_body={"top_k": 3}, system="Be brief.", messages=ask("hello"))
    assert message.content[0].text == "Echo: hello" and message.usage.input_tokens == 9
    received = fakes["gemini"].recorder.last
    assert received.path == "/v1beta/models/gemini-2.5-flash:generateContent" and received.headers["x-goog-api-key"] == GEMINI_KEY
    assert received.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert received.body["generationConfig"] == {"maxOutputTokens": 20, "topK": 3}
    with c.messages.stream(model="gemini-2.5-flash", max_tokens=20, tools=[WEATHER], messages=ask("Weather?")) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use" and first.content[0].input == {"city": "Paris"}
    followup = [*ask("Weather?"), {"role": "assistant", "content": first.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[0].id, "content": '{"sky": "clear"}'}]}]
    second = c.messages.create(model="gemini-2.5-flash", max_tokens=20, tools=[WEATHER], messages=followup)
    assert second.content[0].text == 'Result: {"sky": "clear"}'
    parts = fakes["gemini"].recorder.last.body["contents"][-1]["parts"]
    assert parts == [{"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}}]


@pytest.mark.parametrize("token, model", [("gw-gemini", "midstream-error"), ("gw-openai", "truncated-stream")])
def test_error_after_stream_started_is_an_error_event(gateway, token, model):
    c = client(gateway, token)
    with pytest.raises(anthropic.APIStatusError) as caught:
        with c.messages.stream(model=model, max_tokens=20, messages=ask("x")) as stream:
            for _ in stream:
                pass
    assert caught.value.body["error"]["type"] == "api_error"


# -- errors, auth, models ----------------------------------------------------------------------


def test_errors_are_anthropic_shaped(gateway):
    headers = {"x-api-key": "gw-openai", "anthropic-version": "2023-06-01"}
    response = httpx.post(f"{gateway}/v1/messages", headers=headers, json={"model": "gpt-4o", "messages": ask("x")})
    assert response.status_code == 400
    assert response.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required (an integer greater than 0)."}}
    response = httpx.post(f"{gateway}/v1/messages", headers=headers, content=b"{nope")
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client(gateway, "not-a-token").messages.create(model="x", max_tokens=5, messages=ask("x"))
    assert caught.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.RateLimitError):
        client(gateway, "gw-openai").messages.create(model="status-429", max_tokens=5, messages=ask("x"))


def test_bearer_auth_token_and_models_in_anthropic_shape(gateway):
    c = anthropic.Anthropic(auth_token="gw-by-model", base_url=gateway, max_retries=0)
    page = c.models.list()
    assert [m.id for m in page.data] == ["claude-sonnet-4-5", "claude-native"]
    assert page.data[0].type == "model" and page.data[0].display_name == "claude-sonnet-4-5"
    assert page.has_more is False and page.first_id == "claude-sonnet-4-5" and page.last_id == "claude-native"
    assert c.models.retrieve("claude-native").id == "claude-native"
    plain = httpx.get(f"{gateway}/v1/models", headers={"authorization": "Bearer gw-by-model"}).json()
    assert set(plain["data"][0]) == {"id", "object", "created", "owned_by"}


def test_documents_and_tool_result_images_are_translated(gateway, upstreams):
    fakes, _ = upstreams
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    message = client(gateway, "gw-gemini").messages.create(model="gemini-2.5-flash", max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},
        {"type": "text", "text": "Summarise"}]}])
    assert message.content[0].text == f"Echo: [inline application/pdf {len(b'%PDF-1.4 fake')} bytes] Summarise"
    history = [{"role": "user", "content": "Screenshot?"},
               {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "sig"},
                                                 {"type": "text", "text": "Taking it."},
                                                 {"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                   {"type": "text", "text": "here"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]}]
    client(gateway, "gw-openai").messages.create(model="gpt-4o", max_tokens=20, messages=history)
    sent = fakes["openai"].recorder.last.body["messages"]
    assert sent[1] == {"role": "assistant", "content": "Taking it.", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]}
    assert sent[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "here"}
    assert sent[3] == {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}


def test_zhipu_token_thinking_blocks_tool_call_and_usage_in_the_finish_chunk(gateway, upstreams):
    fakes, _ = upstreams
    c = client(gateway, "gw-zhipu")
    with c.messages.stream(model="glm-4.6", max_tokens=64000, tools=[WEATHER], messages=ask("天气?"),
                           extra_body={"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}) as stream:
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "tool_use"] and message.stop_reason == "tool_use"
    assert message.content[0].thinking.strip() == "The user wrote '天气?'; answer by echoing it."
    call = message.content[1]
    assert (call.name, call.input, call.id) == ("get_weather", {"city": "北京"}, "call_9026283482761")
    usage = message.usage  # GLM: prompt 11 of which 4 cached, completion 7
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (7, 4, 7)
    sent = fakes["zhipu"].recorder.last.body
    assert sent["model"] == "glm-4.6" and sent["stream"] is True and sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["thinking"] == {"type": "enabled"}
    followup = [*ask("天气?"), {"role": "assistant", "content": message.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "晴"}]}]
    answer = c.messages.create(model="glm-4.6", max_tokens=100, tools=[WEATHER], messages=followup, extra_body={"thinking": {"type": "disabled"}})
    assert [b.type for b in answer.content] == ["text"] and answer.content[0].text == "Tool said: 晴"
    sent = fakes["zhipu"].recorder.last.body
    assert sent["thinking"] == {"type": "disabled"}
    assert sent["messages"][1]["reasoning_content"] == message.content[0].thinking


def test_thinking_is_not_sent_to_openai_tokens(gateway, upstreams):
    fakes, _ = upstreams
    client(gateway, "gw-by-model").messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[
        *ask("a"), {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "b"}]},
        *ask("c")], extra_body={"thinking": {"type": "enabled", "budget_tokens": 2000}})
    sent = fakes["openai"].recorder.last.body
    assert "reasoning_effort" not in sent and sent["messages"][1] == {"role": "assistant", "content": "b"}
    assert sent["max_completion_tokens"] == 10  # the model-name-router's target is an openai entry
