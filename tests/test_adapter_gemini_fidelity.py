"""Issue #9 for the `gemini` adapter: penalties, thinking (`reasoning_effort` →
`thinkingConfig`, thoughts → `reasoning_content`), Gemini's own function call ids, external
URLs, the token-limit error, and a Gemini tool call continued on Claude. Driven with the
official `openai` client through the gateway in front of the fakes (which refuse what the real
APIs refuse: tests/test_fake_gemini.py, tests/test_fake_anthropic.py)."""


import openai
import pytest
import yaml

from gateway.app import create_app
from gateway.tool_ids import ANTHROPIC_TOOL_ID
from tests.fakes.anthropic import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import SIGNATURE, THOUGHT_TEXT, FakeGemini
from tests.support.servers import serve_app

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def fakes():
    gemini, claude = FakeGemini(), FakeAnthropic()
    with serve_app(gemini.app) as gemini_url, serve_app(claude.app) as claude_url:
        yield gemini, gemini_url, claude, claude_url


@pytest.fixture(scope="module")
def gateway(fakes, tmp_path_factory):
    gemini, gemini_url, _, claude_url = fakes
    config = {"tokens": [
        {"token": "sk-gemini", "type": "gemini", "config": {"api_key": gemini.api_key, "api_base": gemini_url, "presence_penalty": 0.2}},
        {"token": "sk-claude", "type": "claude", "config": {"api_key": ANTHROPIC_KEY, "api_base": claude_url}},
    ]}
    path = tmp_path_factory.mktemp("gemini-fidelity") / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with serve_app(create_app(path)) as url:
        yield url


def client(gateway, token="sk-gemini"):
    return openai.OpenAI(api_key=token, base_url=f"{gateway}/v1", max_retries=0)


def user(text):
    return {"role": "user", "content": text}


def last_body(fakes):
    return fakes[0].recorder.last.body


# -- row 4: penalties ---------------------------------------------------------------------------


def test_penalties_are_dropped_on_models_that_refuse_them(gateway, fakes):
    completion = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("x")], presence_penalty=0.5,
                                                         frequency_penalty=0.3)
    assert completion.choices[0].message.content == "Echo: x"
    assert "presencePenalty" not in last_body(fakes).get("generationConfig", {})
    assert "frequencyPenalty" not in last_body(fakes).get("generationConfig", {})
    client(gateway).chat.completions.create(model="gemini-2.0-flash", messages=[user("x")], frequency_penalty=0.3)
    assert last_body(fakes)["generationConfig"] == {"presencePenalty": 0.2, "frequencyPenalty": 0.3}


# -- row 5: thinking ----------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "effort", "expected"), [
    ("gemini-2.5-flash", "low", {"thinkingBudget": 1024, "includeThoughts": True}),
    ("gemini-2.5-flash", "medium", {"thinkingBudget": 8192, "includeThoughts": True}),
    ("gemini-2.5-flash", "high", {"thinkingBudget": 24576, "includeThoughts": True}),
    ("gemini-2.5-flash", "minimal", {"thinkingBudget": 512, "includeThoughts": True}),
    ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
    ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),
    ("gemini-3-flash-preview", "medium", {"thinkingLevel": "MEDIUM", "includeThoughts": True}),
    ("gemini-3-flash-preview", "none", {"thinkingLevel": "MINIMAL"}),
    ("gemini-3-pro-preview", "minimal", {"thinkingLevel": "LOW", "includeThoughts": True}),
    ("gemini-2.0-flash", "high", None),
])
def test_reasoning_effort_maps_to_thinking_config(gateway, fakes, model, effort, expected):
    completion = client(gateway).chat.completions.create(model=model, messages=[user("x")], reasoning_effort=effort, max_tokens=5000)
    config = last_body(fakes)["generationConfig"]
    assert config.get("thinkingConfig") == expected and config["maxOutputTokens"] == 5000
    message = completion.choices[0].message
    assert message.content == "Echo: x"
    assert getattr(message, "reasoning_content", None) == (THOUGHT_TEXT if expected and expected.get("includeThoughts") else None)


def test_thoughts_stream_as_reasoning_content(gateway):
    chunks = list(client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("a b")], reasoning_effort="low", stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == THOUGHT_TEXT
    assert "".join(d.content or "" for d in deltas) == "Echo: a b"


def test_unknown_reasoning_effort_is_400(gateway, fakes):
    count = len(fakes[0].recorder.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[user("x")], reasoning_effort="extreme")
    assert caught.value.body["param"] == "reasoning_effort" and len(fakes[0].recorder.requests) == count


# -- rows 1 and 19: tool call ids -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_gemini3_function_call_id_is_reused_and_echoed(gateway, fakes, stream):
    c = client(gateway)
    messages = [user("weather?")]
    result = c.chat.completions.create(model="gemini-3-flash-preview", messages=messages, tools=TOOLS, stream=stream)
    if stream:
        deltas = [tc for ch in result if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
        call_id, name, arguments = deltas[0].id, deltas[0].function.name, deltas[0].function.arguments
    else:
        call = result.choices[0].message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    base, _, signature = call_id.partition("__ts__")
    assert signature == SIGNATURE and base.startswith("gcall_") and len(base) <= 40
    gemini_id = base.removeprefix("gcall_")
    messages += [{"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
                 {"role": "tool", "tool_call_id": call_id, "content": '{"temp": 21}'}]
    again = c.chat.completions.create(model="gemini-3-flash-preview", messages=messages, tools=TOOLS)
    assert again.choices[0].message.content == 'Result: {"temp": 21}'
    contents = last_body(fakes)["contents"]
    assert contents[1]["parts"] == [{"functionCall": {"id": gemini_id, "name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIGNATURE}]
    assert contents[2]["parts"] == [{"functionResponse": {"id": gemini_id, "name": "get_weather", "response": {"temp": 21}}}]


def test_calls_without_gemini_id_send_no_id(gateway, fakes):
    c = client(gateway)
    first = c.chat.completions.create(model="gemini-2.5-flash", messages=[user("weather?")], tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert call.id.startswith("call_") and len(call.id.partition("__ts__")[0]) <= 40
    c.chat.completions.create(model="gemini-2.5-flash", tools=TOOLS, messages=[
        user("weather?"), first.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "1"}])
    contents = last_body(fakes)["contents"]
    assert "id" not in contents[1]["parts"][0]["functionCall"] and "id" not in contents[2]["parts"][0]["functionResponse"]


def test_signature_from_extra_content_is_restored(gateway, fakes):
    # Google's OpenAI-compatible layer carries the signature in `extra_content.google.thought_signature`
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"},
            "extra_content": {"google": {"thought_signature": "c2lnbmVk"}}}
    client(gateway).chat.completions.create(model="gemini-2.5-flash", tools=TOOLS, messages=[
        user("w"), {"role": "assistant", "content": None, "tool_calls": [call]}, {"role": "tool", "tool_call_id": "call_1", "content": "1"}])
    assert last_body(fakes)["contents"][1]["parts"][0]["thoughtSignature"] == "c2lnbmVk"


def test_gemini_tool_call_continues_on_claude(gateway, fakes):
    """Issue #9 item 1: after a Gemini tool call, the same conversation sent to Claude (a router
    member, or a user switching model) is accepted: the signed id is mapped for Anthropic."""
    first = client(gateway).chat.completions.create(model="gemini-3-flash-preview", messages=[user("weather?")], tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert "+" in call.id or "/" in call.id or "=" in call.id  # the signature is not a valid Anthropic id
    messages = [user("weather?"), first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"}, user("and tomorrow?")]
    answer = client(gateway, "sk-claude").chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=TOOLS)
    assert answer.choices[0].message.content == "Tool said: sunny"
    sent = fakes[2].recorder.last.body["messages"]
    assert ANTHROPIC_TOOL_ID.match(sent[1]["content"][0]["id"]) and sent[2]["content"][0]["tool_use_id"] == sent[1]["content"][0]["id"]
    # and back on Gemini, the signature is still restored
    client(gateway).chat.completions.create(model="gemini-3-flash-preview", messages=messages, tools=TOOLS)
    assert last_body(fakes)["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE


# -- row 12: external URLs ----------------------------------------------------------------------


def image(url):
    return {"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": url}}]}


def test_https_urls_with_known_type_are_passed(gateway, fakes):
    completion = client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=[image("https://example.com/cat.png?x=1")])
    assert completion.choices[0].message.content == "Echo: see [file image/png https://example.com/cat.png?x=1]"
    client(gateway).chat.completions.create(model="gemini-2.0-flash", messages=[image("gs://bucket/cat.webp")])
    assert last_body(fakes)["contents"][0]["parts"][1] == {"fileData": {"mimeType": "image/webp", "fileUri": "gs://bucket/cat.webp"}}


@pytest.mark.parametrize(("model", "url", "says"), [
    ("gemini-2.5-flash", "http://example.com/cat.png", "https"),
    ("gemini-2.5-flash", "https://example.com/cat", "MIME type"),
    ("gemini-2.0-flash", "https://example.com/cat.png", "gemini-2.0-flash"),
])
def test_urls_gemini_cannot_fetch_are_400(gateway, fakes, model, url, says):
    count = len(fakes[0].recorder.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model=model, messages=[image(url)])
    assert says in caught.value.body["message"] and caught.value.body["param"] == "messages[0].content[1]"
    assert len(fakes[0].recorder.requests) == count


# -- row 17: token limit ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_token_limit_is_context_length_exceeded(gateway, stream):
    with pytest.raises(openai.BadRequestError) as caught:
        result = client(gateway).chat.completions.create(model="too-long", messages=[user("x")], stream=stream)
        list(result) if stream else None
    assert caught.value.body["code"] == "context_length_exceeded" and "input token count" in caught.value.body["message"]
