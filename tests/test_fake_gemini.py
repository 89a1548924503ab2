"""The fake Gemini upstream is faithful: the official `google-genai` SDK parses its answers,
streams, function calls, usage and errors exactly as it would Google's."""

import pytest
from google import genai
from google.genai import errors, types

from tests.fakes.gemini import PROMPT_TOKENS, SIGNATURE, THOUGHT_TOKENS, FakeGemini
from tests.support.servers import serve_app


@pytest.fixture(scope="module")
def fake():
    fake = FakeGemini()
    with serve_app(fake.app) as url:
        yield fake, url


def make_client(url: str, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=url, api_version="v1beta"))


@pytest.fixture(scope="module")
def client(fake):
    fake_, url = fake
    return make_client(url, fake_.api_key)


def test_sdk_parses_text_and_usage(client, fake):
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents="hello there",
        config=types.GenerateContentConfig(system_instruction="be brief", temperature=0.2, max_output_tokens=50),
    )
    assert response.text == "Echo: hello there"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.thoughts_token_count) == (PROMPT_TOKENS, 3, THOUGHT_TOKENS)
    assert usage.total_token_count == PROMPT_TOKENS + 3 + THOUGHT_TOKENS
    received = fake[0].recorder.last
    assert received.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert received.headers["x-goog-api-key"] == fake[0].api_key
    assert received.body["systemInstruction"]["parts"][0]["text"] == "be brief"
    assert received.body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 50}


def test_sdk_parses_function_call(client):
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description="Weather", parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}})])
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents="weather?",
        config=types.GenerateContentConfig(tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)),
    )
    call = response.function_calls[0]
    assert (call.name, call.args) == ("get_weather", {"city": "Paris"})
    assert response.candidates[0].content.parts[0].thought_signature  # bytes, base64-decoded by the SDK
    # the SDK sends the function response back; the fake answers with it
    contents = [
        types.Content(role="user", parts=[types.Part(text="weather?")]),
        response.candidates[0].content,
        types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather", response={"temp": 21})]),
    ]
    again = client.models.generate_content(model="gemini-2.5-flash", contents=contents, config=types.GenerateContentConfig(tools=[tool]))
    assert again.text == 'Result: {"temp": 21}'


def test_sdk_streams_chunks(client, fake):
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="one two three"))
    assert len(chunks) == 4
    assert "".join(c.text for c in chunks) == "Echo: one two three"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count == PROMPT_TOKENS + 4 + THOUGHT_TOKENS
    received = fake[0].recorder.last
    assert received.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent" and received.query == {"alt": "sse"}


def test_sdk_multiple_candidates_and_finish_reasons(client):
    response = client.models.generate_content(model="gemini-2.5-flash", contents="hi", config=types.GenerateContentConfig(candidate_count=2))
    assert [c.content.parts[0].text for c in response.candidates] == ["[0] Echo: hi", "[1] Echo: hi"]
    assert client.models.generate_content(model="max-tokens", contents="hi").candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    safety = client.models.generate_content(model="safety", contents="hi")
    assert safety.candidates[0].finish_reason == types.FinishReason.SAFETY and safety.text is None
    blocked = client.models.generate_content(model="blocked", contents="hi")
    assert blocked.prompt_feedback.block_reason == types.BlockedReason.SAFETY and not blocked.candidates


def test_sdk_sends_inline_image(client):
    part = types.Part.from_bytes(data=b"\x89PNG fake", mime_type="image/png")
    response = client.models.generate_content(model="gemini-2.5-flash", contents=[types.Content(role="user", parts=[types.Part(text="look"), part])])
    assert response.text == "Echo: look [inline image/png 9 bytes]"


@pytest.mark.parametrize(("status", "error_class", "status_name"), [
    (400, errors.ClientError, "INVALID_ARGUMENT"),
    (403, errors.ClientError, "PERMISSION_DENIED"),
    (429, errors.ClientError, "RESOURCE_EXHAUSTED"),
    (500, errors.ServerError, "INTERNAL"),
    (503, errors.ServerError, "UNAVAILABLE"),
])
def test_sdk_raises_typed_errors(client, status, error_class, status_name):
    with pytest.raises(error_class) as caught:
        client.models.generate_content(model=f"status-{status}", contents="x")
    assert isinstance(caught.value, errors.APIError)
    assert (caught.value.code, caught.value.status) == (status, status_name)


def test_sdk_wrong_key_is_api_key_invalid(fake):
    _, url = fake
    wrong = make_client(url, "AIza-wrong-key")
    with pytest.raises(errors.ClientError) as caught:
        wrong.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_sdk_stream_error(client):
    with pytest.raises(errors.ClientError) as caught:
        list(client.models.generate_content_stream(model="status-429", contents="x"))
    assert caught.value.code == 429


def test_signature_constant_is_base64():
    import base64

    assert base64.b64decode(SIGNATURE)


def test_fake_refuses_penalties_on_current_models(client):
    """Gemini 2.5+ refuse non-zero penalties (vercel/ai#8943); 0.0 is a no-op; 2.0 takes them."""
    with pytest.raises(errors.ClientError, match="Penalty is not enabled") as caught:
        client.models.generate_content(model="gemini-2.5-flash", contents="x", config=types.GenerateContentConfig(presence_penalty=0.5))
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert client.models.generate_content(model="gemini-2.5-flash", contents="x", config=types.GenerateContentConfig(frequency_penalty=0.0)).text
    assert client.models.generate_content(model="gemini-2.0-flash", contents="x", config=types.GenerateContentConfig(presence_penalty=0.5)).text


def test_fake_thinking_config_and_thought_parts(client, fake):
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True))
    response = client.models.generate_content(model="gemini-2.5-flash", contents="hi", config=config)
    parts = response.candidates[0].content.parts
    assert (parts[0].thought, parts[0].text) == (True, "Thinking about it.") and parts[1].text == "Echo: hi"
    assert fake[0].recorder.last.body["generationConfig"]["thinkingConfig"] == {"thinking_budget": 1024, "include_thoughts": True}
    level = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW, include_thoughts=True))
    chunks = list(client.models.generate_content_stream(model="gemini-3-flash-preview", contents="a b", config=level))
    assert chunks[0].candidates[0].content.parts[0].thought is True
    assert fake[0].recorder.last.body["generationConfig"]["thinkingConfig"] == {"thinking_level": "LOW", "include_thoughts": True}
    for model, thinking in [("gemini-2.5-flash", types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW)),
                            ("gemini-2.0-flash", types.ThinkingConfig(thinking_budget=1024)),
                            ("gemini-2.5-pro", types.ThinkingConfig(thinking_budget=0)),
                            ("gemini-3-pro-preview", types.ThinkingConfig(thinking_budget=1024, thinking_level=types.ThinkingLevel.LOW))]:
        with pytest.raises(errors.ClientError) as caught:
            client.models.generate_content(model=model, contents="x", config=types.GenerateContentConfig(thinking_config=thinking))
        assert caught.value.code == 400


def test_fake_gemini3_function_call_ids_must_be_echoed_exactly(client):
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="get_weather", parameters_json_schema={"type": "object"})])
    config = types.GenerateContentConfig(tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    response = client.models.generate_content(model="gemini-3-flash-preview", contents="weather?", config=config)
    call = response.function_calls[0]
    assert call.id
    history = [types.Content(role="user", parts=[types.Part(text="weather?")]), response.candidates[0].content]

    def answer(call_id):
        part = types.Part(function_response=types.FunctionResponse(id=call_id, name="get_weather", response={"temp": 21}))
        return client.models.generate_content(model="gemini-3-flash-preview", contents=history + [types.Content(role="user", parts=[part])], config=config)

    assert answer(call.id).text == 'Result: {"temp": 21}'
    with pytest.raises(errors.ClientError, match="functionResponse.id"):
        answer("not-" + call.id)


def test_fake_refuses_unfetchable_file_uris(client):
    def ask(model, uri):
        part = types.Part(file_data=types.FileData(file_uri=uri, mime_type="image/png"))
        return client.models.generate_content(model=model, contents=[types.Content(role="user", parts=[part])])

    assert ask("gemini-2.5-flash", "https://example.com/cat.png").text == "Echo: [file image/png https://example.com/cat.png]"
    assert ask("gemini-2.0-flash", "gs://bucket/cat.png").text
    for model, uri in [("gemini-2.5-flash", "http://example.com/cat.png"), ("gemini-2.0-flash", "https://example.com/cat.png")]:
        with pytest.raises(errors.ClientError) as caught:
            ask(model, uri)
        assert caught.value.code == 400


def test_fake_token_limit_error(client):
    with pytest.raises(errors.ClientError, match="input token count") as caught:
        client.models.generate_content(model="too-long", contents="x")
    assert caught.value.code == 400
