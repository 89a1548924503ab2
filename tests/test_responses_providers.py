"""The Responses API in front of real provider protocols (CONTRACT.md §9): openai, claude and
gemini tokens and a router, each against its fake upstream. A function-tool round trip goes
through `previous_response_id` and through a conversation, and each upstream is checked for
what it received: the history in its own format, the tool call and its result paired, and
never an earlier turn's `instructions`. Reasoning state (a DeepSeek-style `reasoning_content`)
comes back as `reasoning` items and round-trips, stored or sealed in `encrypted_content`."""

import httpx
import openai
import pytest
import yaml

from gateway.app import create_app
from tests.fakes.anthropic import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import SIGNATURE, FakeGemini
from tests.support.responses import check_sequence, read_events
from tests.support.servers import free_port, serve_app

TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
QUESTION = "What is the weather in Paris?"
RESULT = "sunny, 21C"


@pytest.fixture(scope="module")
def upstreams():
    claude, gemini = FakeAnthropic(), FakeGemini()
    with serve_app(claude.app) as claude_url, serve_app(gemini.app) as gemini_url:
        yield {"claude": (claude, claude_url), "gemini": (gemini, gemini_url)}


@pytest.fixture(scope="module")
def gateway(fake_openai, upstreams, tmp_path_factory):
    openai_fake, openai_url = fake_openai
    claude, claude_url = upstreams["claude"]
    gemini, gemini_url = upstreams["gemini"]
    config = {"tokens": [
        {"token": "gw-openai", "type": "openai", "config": {"api_base": f"{openai_url}/v1", "api_key": openai_fake.api_key}},
        {"token": "gw-claude", "type": "claude", "config": {"api_base": claude_url, "api_key": ANTHROPIC_KEY}},
        {"token": "gw-gemini", "type": "gemini", "config": {"api_base": gemini_url, "api_key": gemini.api_key}},
        {"token": "member-down", "type": "openai", "internal": True,
         "config": {"api_base": f"http://127.0.0.1:{free_port()}/v1", "api_key": "sk-unused-0000000000"}},
        {"token": "member-claude", "name": "member-claude", "type": "claude", "internal": True, "config": {"api_base": claude_url, "api_key": ANTHROPIC_KEY}},
        {"token": "gw-router", "name": "router", "type": "router", "config": {"router_strategy": "fallback", "token_pool": ["member-down", "member-claude"]}},
    ]}
    path = tmp_path_factory.mktemp("responses-providers") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with serve_app(create_app(path), lifespan="on") as base:
        yield base


PROVIDERS = {  # token → (model, which fake answers)
    "gw-openai": ("gpt-4o-mini", "openai"),
    "gw-claude": ("claude-sonnet-4-5", "claude"),
    "gw-gemini": ("gemini-2.5-flash", "gemini"),
    "gw-router": ("claude-sonnet-4-5", "claude"),
}


def fake_of(kind, fake_openai, upstreams):
    return fake_openai[0] if kind == "openai" else upstreams[kind][0]


def create(client, stream, **kwargs):
    """responses.create, or the same through the streaming helper (its final response)."""
    if not stream:
        return client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as events:
        for _ in events:
            pass
        return events.get_final_response()


def check_upstream_history(kind, body, call_id):
    """What the upstream got on the second turn: question, the call, its result, paired, in
    the provider's own format; no instructions (they were the first turn's only)."""
    if kind == "openai":
        messages = body["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
        assert messages[0]["content"] == QUESTION
        assert messages[1]["tool_calls"] == [{"id": call_id, "type": "function",
                                              "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
        assert messages[2] == {"role": "tool", "tool_call_id": call_id, "content": RESULT}
    elif kind == "claude":
        assert "system" not in body
        messages = body["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert messages[1]["content"] == [{"type": "text", "text": "Let me check."},
                                          {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"city": "Paris"}}]
        result = messages[2]["content"][0]
        assert result["type"] == "tool_result" and result["tool_use_id"] == call_id
    else:
        assert "systemInstruction" not in body
        contents = body["contents"]
        assert [c["role"] for c in contents] == ["user", "model", "user"]
        call_part = contents[1]["parts"][0]
        assert call_part["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
        assert call_part["thoughtSignature"] == SIGNATURE  # Gemini's signature came back unmodified
        assert contents[2]["parts"][0]["functionResponse"]["name"] == "get_weather"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("token", list(PROVIDERS))
def test_tool_round_trip_through_previous_response_id(gateway, fake_openai, upstreams, token, stream):
    model, kind = PROVIDERS[token]
    client = openai.OpenAI(api_key=token, base_url=f"{gateway}/v1", max_retries=0)
    first = create(client, stream, model=model, input=QUESTION, instructions="Use the tools.", tools=[TOOL])
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].id.startswith("fc_")
    assert calls[0].call_id != calls[0].id and '"Paris"' in calls[0].arguments and calls[0].status == "completed"
    assert first.status == "completed"

    second = create(client, stream, model=model, previous_response_id=first.id, tools=[TOOL],
                    input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": RESULT}])
    assert second.status == "completed" and second.previous_response_id == first.id and second.instructions is None
    check_upstream_history(kind, fake_of(kind, fake_openai, upstreams).recorder.last.body, calls[0].call_id)
    if kind == "claude":
        assert second.output_text == f"Tool said: {RESULT}"
    items = client.responses.input_items.list(second.id).data
    assert [i.type for i in items] == ["function_call_output"]


@pytest.mark.parametrize("token", list(PROVIDERS))
def test_tool_round_trip_through_a_conversation(gateway, fake_openai, upstreams, token):
    model, kind = PROVIDERS[token]
    client = openai.OpenAI(api_key=token, base_url=f"{gateway}/v1", max_retries=0)
    conversation = client.conversations.create()
    first = client.responses.create(model=model, input=QUESTION, tools=[TOOL], conversation=conversation.id)
    call = next(o for o in first.output if o.type == "function_call")
    client.responses.create(model=model, conversation=conversation.id, tools=[TOOL],
                            input=[{"type": "function_call_output", "call_id": call.call_id, "output": RESULT}])
    check_upstream_history(kind, fake_of(kind, fake_openai, upstreams).recorder.last.body, call.call_id)
    kinds = [i.type for i in client.conversations.items.list(conversation.id, order="asc")]
    assert kinds[0] == "message" and kinds[-1] == "message"
    assert kinds[kinds.index("function_call") + 1] == "function_call_output"


@pytest.mark.parametrize("token", list(PROVIDERS))
def test_streamed_tool_call_events(gateway, token):
    model, _ = PROVIDERS[token]
    events, raw = read_events(gateway, token, {"model": model, "input": QUESTION, "tools": [TOOL]})
    check_sequence(events)
    added = [d["item"] for _, d in events if d["type"] == "response.output_item.added" and d["item"]["type"] == "function_call"]
    assert len(added) == 1 and added[0]["arguments"] == "" and added[0]["status"] == "in_progress"
    fc_id = added[0]["id"]
    deltas = "".join(d["delta"] for _, d in events if d["type"] == "response.function_call_arguments.delta")
    done = next(d for _, d in events if d["type"] == "response.function_call_arguments.done")
    assert done["item_id"] == fc_id and done["name"] == "get_weather" and done["arguments"] == deltas
    assert '"Paris"' in deltas
    for marker in ("chatcmpl", "fakeResponse123", "[DONE]"):
        assert marker not in raw


def test_router_answers_say_which_member_served(gateway):
    response = httpx.post(f"{gateway}/v1/responses", headers={"authorization": "Bearer gw-router"},
                          json={"model": "claude-sonnet-4-5", "input": "hi"}, timeout=30)
    assert response.status_code == 200 and response.headers["x-gateway-served-by"] == "member-claude"
    assert response.headers["x-gateway-token-name"] == "router"
    with httpx.stream("POST", f"{gateway}/v1/responses", headers={"authorization": "Bearer gw-router"},
                      json={"model": "claude-sonnet-4-5", "input": "hi", "stream": True}, timeout=30) as streamed:
        assert streamed.headers["x-gateway-served-by"] == "member-claude"
        streamed.read()


def test_incomplete_on_length(gateway):
    client = openai.OpenAI(api_key="gw-claude", base_url=f"{gateway}/v1", max_retries=0)
    response = client.responses.create(model="claude-sonnet-4-5", input="one two three four five", max_output_tokens=2)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"
    events, _ = read_events(gateway, "gw-claude", {"model": "claude-sonnet-4-5", "input": "one two three four", "max_output_tokens": 2})
    check_sequence(events)
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_upstream_failure_mid_stream_is_response_failed(gateway):
    events, raw = read_events(gateway, "gw-claude", {"model": "stream-error", "input": "hi"})
    check_sequence(events)
    final = events[-1][1]["response"]
    assert events[-1][0] == "response.failed" and final["status"] == "failed"
    assert final["error"]["code"] and final["error"]["message"]
    client = openai.OpenAI(api_key="gw-claude", base_url=f"{gateway}/v1", max_retries=0)
    assert client.responses.retrieve(final["id"]).status == "failed"


def test_upstream_error_before_streaming_is_a_plain_http_error(gateway):
    client = openai.OpenAI(api_key="gw-claude", base_url=f"{gateway}/v1", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="status-429", input="hi", stream=True)
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="status-429", input="hi")


def test_reasoning_items_round_trip(gateway, fake_openai):
    fake, _ = fake_openai
    client = openai.OpenAI(api_key="gw-openai", base_url=f"{gateway}/v1", max_retries=0)
    first = client.responses.create(model="reasoner", input=QUESTION, tools=[TOOL])
    reasoning, call = first.output[0], first.output[1]
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert reasoning.summary[0].text == "Thinking it over." and reasoning.encrypted_content is None
    assert call.type == "function_call"
    # stored: the next turn gives the upstream its reasoning_content back on the same assistant turn
    client.responses.create(model="reasoner", previous_response_id=first.id, tools=[TOOL],
                            input=[{"type": "function_call_output", "call_id": call.call_id, "output": RESULT}])
    assistant = fake.recorder.last.body["messages"][1]
    assert assistant["reasoning_content"] == "Thinking it over." and assistant["tool_calls"][0]["id"] == call.call_id

    # store: false, as Codex: the sealed state comes back in the client's own history
    stateless = client.responses.create(model="reasoner", input=QUESTION, tools=[TOOL], store=False,
                                        include=["reasoning.encrypted_content"])
    sealed = stateless.output[0].encrypted_content
    assert sealed and "Thinking" not in sealed
    history = [{"role": "user", "content": QUESTION}, *[o.model_dump(exclude_none=True) for o in stateless.output],
               {"type": "function_call_output", "call_id": stateless.output[1].call_id, "output": RESULT}]
    client.responses.create(model="reasoner", input=history, tools=[TOOL], store=False)
    assert fake.recorder.last.body["messages"][1]["reasoning_content"] == "Thinking it over."
    # a blob that is not the gateway's (or was altered) is dropped, not forwarded
    history[1]["encrypted_content"] = sealed[:-4] + "AAAA"
    client.responses.create(model="reasoner", input=history, tools=[TOOL], store=False)
    assert "reasoning_content" not in fake.recorder.last.body["messages"][1]


def test_streamed_reasoning_summary_events(gateway):
    events, _ = read_events(gateway, "gw-openai", {"model": "reasoner", "input": "think", "include": ["reasoning.encrypted_content"]})
    check_sequence(events)
    types = [d["type"] for _, d in events]
    assert types[2:5] == ["response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta"]
    text = "".join(d["delta"] for _, d in events if d["type"] == "response.reasoning_summary_text.delta")
    assert text.strip() == "Thinking it over."
    reasoning = events[-1][1]["response"]["output"][0]
    assert reasoning["type"] == "reasoning" and reasoning["encrypted_content"].startswith("gw1.")
    assert events[-1][1]["response"]["output"][1]["type"] == "message"


def test_client_sent_history_with_parallel_calls_is_one_assistant_turn(gateway, fake_openai, upstreams):
    """Items as a stateless client (Codex, LobeChat) sends them: developer text mid-history,
    an assistant message followed by two calls, then both outputs. Claude gets one assistant
    turn with text and both tool_use blocks, then one user turn with both tool_result blocks
    (its API refuses anything else; the fake checks); OpenAI gets one assistant message with
    both tool_calls, then the two tool messages."""
    history = [
        {"role": "developer", "content": "Be exact."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking both."}]},
        {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "call_b", "name": "get_weather", "arguments": '{"city": "Rome"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "rainy"}]},
    ]
    claude = openai.OpenAI(api_key="gw-claude", base_url=f"{gateway}/v1", max_retries=0)
    answer = claude.responses.create(model="claude-sonnet-4-5", input=history, tools=[TOOL], store=False)
    assert answer.output_text == "Tool said: sunny rainy"
    body = upstreams["claude"][0].recorder.last.body
    assert body["system"] == "Be exact."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [b["type"] for b in body["messages"][1]["content"]] == ["text", "tool_use", "tool_use"]
    assert [b["tool_use_id"] for b in body["messages"][2]["content"]] == ["call_a", "call_b"]

    client = openai.OpenAI(api_key="gw-openai", base_url=f"{gateway}/v1", max_retries=0)
    client.responses.create(model="gpt-4o-mini", input=history, tools=[TOOL], store=False)
    messages = fake_openai[0].recorder.last.body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert messages[2]["content"] == "Checking both." and [c["id"] for c in messages[2]["tool_calls"]] == ["call_a", "call_b"]
    assert [m["content"] for m in messages[3:]] == ["sunny", "rainy"]


def test_images_and_files_become_chat_parts(gateway, fake_openai):
    client = openai.OpenAI(api_key="gw-openai", base_url=f"{gateway}/v1", max_retries=0)
    png = "data:image/png;base64,iVBORw0KGgo="
    client.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": png, "detail": "low"},
        {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}]}])
    content = fake_openai[0].recorder.last.body["messages"][0]["content"]
    assert content == [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": png, "detail": "low"}},
                       {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}]
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}])


def test_request_settings_map_to_chat_fields(gateway, fake_openai):
    client = openai.OpenAI(api_key="gw-openai", base_url=f"{gateway}/v1", max_retries=0)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
    response = client.responses.create(
        model="gpt-4o-mini", input="json please", max_output_tokens=50, temperature=0.2, top_p=0.9,
        reasoning={"effort": "low", "summary": "auto"}, parallel_tool_calls=False, tools=[TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}, "verbosity": "low"})
    body = fake_openai[0].recorder.last.body
    assert body["max_completion_tokens"] == 50 and body["temperature"] == 0.2 and body["top_p"] == 0.9
    assert body["reasoning_effort"] == "low" and body["parallel_tool_calls"] is False
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    for echoed in ("text", "reasoning", "tool_choice", "max_output_tokens", "top_p"):
        assert getattr(response, echoed) is not None
    assert response.parallel_tool_calls is False and response.text.format.type == "json_schema"
    client.responses.create(model="gpt-4o-mini", input="obj", text={"format": {"type": "json_object"}})
    assert fake_openai[0].recorder.last.body["response_format"] == {"type": "json_object"}


def test_parallel_interleaved_tool_calls_stream_one_item_at_a_time(gateway, fake_openai):
    events, _ = read_events(gateway, "gw-openai", {"model": "parallel", "input": QUESTION, "tools": [TOOL]})
    check_sequence(events)  # item 0 done before item 1 is added, whatever the upstream's order
    done = [d["item"] for _, d in events if d["type"] == "response.output_item.done"]
    assert [(i["call_id"], i["arguments"]) for i in done] == [("call_fake1", '{"city": "Paris"}'), ("call_fake2", '{"city": "Rome"}')]
    for item in done:
        deltas = "".join(d["delta"] for _, d in events if d["type"] == "response.function_call_arguments.delta" and d["item_id"] == item["id"])
        assert deltas == item["arguments"]
    client = openai.OpenAI(api_key="gw-openai", base_url=f"{gateway}/v1", max_retries=0)
    with client.responses.stream(model="parallel", input=QUESTION, tools=[TOOL]) as stream:
        final = stream.get_final_response()
    assert [o.arguments for o in final.output] == ['{"city": "Paris"}', '{"city": "Rome"}']
    follow = client.responses.create(model="parallel", previous_response_id=final.id, tools=[TOOL], input=[
        {"type": "function_call_output", "call_id": "call_fake1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_fake2", "output": "rainy"}])
    messages = fake_openai[0].recorder.last.body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_fake1", "call_fake2"]
    assert follow.status == "completed"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_provider_signatures_come_back_unmodified(gateway, fake_openai, stream):
    """OpenRouter-style `reasoning_details` (with a signature Claude needs back) are provider
    fields of the assistant message: kept with the stored reasoning item and given back on the
    same assistant turn, byte for byte."""
    from tests.fakes.openai import REASONING_DETAILS

    client = openai.OpenAI(api_key="gw-openai", base_url=f"{gateway}/v1", max_retries=0)
    first = create(client, stream, model="reasoner-signed", input=QUESTION, tools=[TOOL])
    assert first.output[0].type == "reasoning" and first.output[0].summary[0].text == "Thinking it over."
    call = first.output[1]
    client.responses.create(model="reasoner-signed", previous_response_id=first.id, tools=[TOOL],
                            input=[{"type": "function_call_output", "call_id": call.call_id, "output": RESULT}])
    assistant = fake_openai[0].recorder.last.body["messages"][1]
    assert assistant["reasoning_details"] == REASONING_DETAILS and assistant["reasoning"] == "Thinking it over."
    assert assistant["tool_calls"][0]["id"] == call.call_id


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_claude_thinking_is_a_reasoning_item(gateway, upstreams, stream):
    client = openai.OpenAI(api_key="gw-claude", base_url=f"{gateway}/v1", max_retries=0)
    response = create(client, stream, model="claude-sonnet-4-5", input=QUESTION, tools=[TOOL], reasoning={"effort": "low"})
    assert upstreams["claude"][0].recorder.last.body["thinking"]["type"] == "enabled"
    assert [o.type for o in response.output] == ["reasoning", "message", "function_call"]
    assert response.output[0].summary[0].text == "Let me think."
    assert response.usage.output_tokens_details.reasoning_tokens == 3


@pytest.mark.parametrize("kind, code", [("rate", "rate_limit_exceeded"), ("server", "upstream_error")])
def test_an_openai_error_event_mid_stream_is_response_failed_with_its_code(gateway, kind, code):
    events, raw = read_events(gateway, "gw-openai", {"model": f"midstream-{kind}", "input": "hi"})
    check_sequence(events)
    final = events[-1][1]["response"]
    assert events[-1][0] == "response.failed" and final["error"]["code"] == code
    assert final["output"][0]["content"][0]["text"] == "Partial"
    assert "sk-upstream-secret" not in raw  # the fake quotes the key in its error: scrubbed
