"""`xunfei-spark-api` through the gateway, driven with the official `openai` client: text and
streams, function calls, usage, sampling parameters clamped into Spark's ranges, the version
table, error codes mapped to CONTRACT.md §3, timeouts, and client disconnects closing the
websocket. The fake (tests/fakes/spark.py) checks the signed URL and the request frame."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest
import yaml

from adapters.spark import VERSIONS, signed_url, spark_messages
from gateway.app import create_app
from gateway.config import ConfigError, build_config
from tests.fakes.spark import API_KEY, API_SECRET, APP_ID, FakeSpark, sign
from tests.support.servers import free_port, serve_app

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def spark_entry(token: str, base: str, **config) -> dict:
    return {"token": token, "type": "xunfei-spark-api",
            "config": {"app_id": APP_ID, "api_key": API_KEY, "api_secret": API_SECRET, "api_base": base, **config}}


@pytest.fixture(scope="module")
def fake_spark():
    fake = FakeSpark(slow_seconds=5)
    with serve_app(fake.app) as url:
        yield fake, url.replace("http://", "ws://")


@pytest.fixture(scope="module")
def gateway(fake_spark, tmp_path_factory):
    """The gateway app on loopback with Spark tokens; yields its base URL."""
    _, base = fake_spark
    tokens = [
        spark_entry("spark", base),
        spark_entry("spark-defaults", base, api_model_version="v1.1", top_k=5, temperature=0.3, max_tokens=100000),
        spark_entry("spark-bad-secret", base, api_secret="not-the-secret"),
        spark_entry("spark-down", f"ws://127.0.0.1:{free_port()}"),
        *(spark_entry(f"spark-{version}", base, api_model_version=version) for version in VERSIONS),
    ]
    path = tmp_path_factory.mktemp("spark") / "config.yaml"
    settings = {"connect_timeout": 5, "request_timeout": 20, "stream_idle_timeout": 1}
    path.write_text(yaml.safe_dump({"settings": settings, "tokens": tokens}), encoding="utf-8")
    with serve_app(create_app(path)) as url:
        yield url


def client(gateway: str, token: str = "spark") -> openai.OpenAI:
    return openai.OpenAI(api_key=token, base_url=f"{gateway}/v1", max_retries=0)


def frame(fake) -> dict:
    return fake.recorder.last.body


# -- text, streams, usage ---------------------------------------------------------------------


def test_text_completion(gateway, fake_spark):
    fake, _ = fake_spark
    completion = client(gateway).chat.completions.create(
        model="spark-max",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
        user="alice",
    )
    assert completion.choices[0].message.content == "Echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "spark-max"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (4, 3, 7)
    received = fake.recorder.last
    assert received.path == "/v3.5/chat"
    assert frame(fake)["header"] == {"app_id": APP_ID, "uid": "alice"}
    assert frame(fake)["parameter"]["chat"] == {"domain": "generalv3.5"}
    assert frame(fake)["payload"] == {"message": {"text": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"},
    ]}}


def test_stream_and_usage_chunk(gateway):
    stream = client(gateway).chat.completions.create(
        model="spark",
        messages=[{"role": "user", "content": "one two three"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert content == ["Echo: ", "one ", "two ", "three"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 7
    assert chunks[0].model == "spark"


def test_stream_without_include_usage_has_no_usage_chunk(gateway):
    chunks = list(client(gateway).chat.completions.create(model="spark", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_images_are_refused(gateway):
    with pytest.raises(openai.BadRequestError):
        client(gateway).chat.completions.create(model="spark", messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]}])


# -- function calls -----------------------------------------------------------------------------


def test_function_call_round_trip(gateway, fake_spark):
    fake, _ = fake_spark
    api = client(gateway)
    messages = [{"role": "user", "content": "[function] weather in Paris?"}]
    completion = api.chat.completions.create(model="spark", messages=messages, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == ("function", "get_weather", {"city": "Paris"})
    assert frame(fake)["payload"]["functions"] == {"text": [{
        "name": "get_weather", "description": "Current weather of a city", "parameters": WEATHER_TOOL["function"]["parameters"],
    }]}

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    answer = api.chat.completions.create(model="spark", messages=messages, tools=[WEATHER_TOOL])
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == 'Echo: [function result] get_weather: {"temp_c": 21}'
    assert frame(fake)["payload"]["message"]["text"] == [
        {"role": "user", "content": "[function] weather in Paris?"},
        {"role": "assistant", "content": '[function call] get_weather({"city": "Paris"})'},
        {"role": "user", "content": '[function result] get_weather: {"temp_c": 21}'},
    ]


def test_function_call_stream(gateway):
    chunks = list(client(gateway).chat.completions.create(
        model="spark",
        messages=[{"role": "user", "content": "[function] weather?"}], tools=[WEATHER_TOOL], stream=True,
    ))
    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(deltas) == 1
    call = deltas[0].tool_calls[0]
    assert (call.index, call.function.name, call.function.arguments) == (0, "get_weather", '{"city": "Paris"}')
    assert call.id.startswith("call_")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_sends_no_functions(gateway, fake_spark):
    fake, _ = fake_spark
    client(gateway).chat.completions.create(model="spark", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL], tool_choice="none")
    assert "functions" not in frame(fake)["payload"]


# -- sampling parameters ------------------------------------------------------------------------


def test_sampling_parameters_are_clamped(gateway, fake_spark):
    fake, _ = fake_spark
    api = client(gateway)
    api.chat.completions.create(
        model="spark",
        messages=[{"role": "user", "content": "hi"}], temperature=1.7, max_tokens=100000, top_p=0.5,
        frequency_penalty=1, seed=3, stop=["x"], extra_body={"top_k": 10},
    )
    assert frame(fake)["parameter"]["chat"] == {"domain": "generalv3.5", "temperature": 1.0, "max_tokens": 8192, "top_k": 6}
    api.chat.completions.create(model="spark", messages=[{"role": "user", "content": "hi"}], temperature=0, max_completion_tokens=0,
                                extra_body={"top_k": 0})
    assert frame(fake)["parameter"]["chat"] == {"domain": "generalv3.5", "temperature": 0.01, "max_tokens": 1, "top_k": 1}


def test_config_defaults_apply_and_lite_limit(gateway, fake_spark):
    fake, _ = fake_spark
    api = client(gateway, "spark-defaults")
    api.chat.completions.create(model="spark", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    received = fake.recorder.last
    assert received.path == "/v1.1/chat"
    assert received.body["parameter"]["chat"] == {"domain": "lite", "temperature": 0.3, "max_tokens": 4096, "top_k": 5}
    # lite takes no system role: the system text goes in front of the first user text
    assert received.body["payload"]["message"]["text"] == [{"role": "user", "content": "Be brief.\n\nhi"}]
    api.chat.completions.create(model="spark", messages=[{"role": "user", "content": "hi"}], temperature=0.9, max_tokens=50)
    assert frame(fake)["parameter"]["chat"] == {"domain": "lite", "temperature": 0.9, "max_tokens": 50, "top_k": 5}


def test_finish_reason_length_when_max_tokens_used_up(gateway):
    completion = client(gateway).chat.completions.create(model="spark", messages=[{"role": "user", "content": "a b c"}], max_tokens=4)
    assert completion.choices[0].finish_reason == "length"


# -- version table ------------------------------------------------------------------------------

VERSION_TABLE = {  # CONTRACT.md §4
    "v1.1": ("/v1.1/chat", "lite"), "v2.0": ("/v2.1/chat", "generalv2"), "v3.0": ("/v3.1/chat", "generalv3"),
    "v3.5": ("/v3.5/chat", "generalv3.5"), "v4.0": ("/v4.0/chat", "4.0Ultra"),
    "pro-128k": ("/chat/pro-128k", "pro-128k"), "max-32k": ("/chat/max-32k", "max-32k"),
}


@pytest.mark.parametrize("version", list(VERSION_TABLE))
def test_version_path_and_domain(gateway, fake_spark, version):
    fake, _ = fake_spark
    response = httpx.post(f"{gateway}/v1/chat/completions", headers={"authorization": f"Bearer spark-{version}"},
                          json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30)  # no model: the version's domain
    completion = response.json()
    assert completion["choices"][0]["message"]["content"] == "Echo: hi"
    path, domain = VERSION_TABLE[version]
    assert fake.recorder.last.path == path
    assert frame(fake)["parameter"]["chat"]["domain"] == domain
    assert completion["model"] == domain
    assert [m.id for m in client(gateway, f"spark-{version}").models.list()] == [domain]


# -- errors ---------------------------------------------------------------------------------------


def error_of(gateway, text: str, token: str = "spark") -> httpx.Response:
    return httpx.post(f"{gateway}/v1/chat/completions", headers={"authorization": f"Bearer {token}"},
                      json={"messages": [{"role": "user", "content": text}]}, timeout=30)


@pytest.mark.parametrize("code,status,type_,error_code", [
    (11202, 429, "rate_limit_error", "rate_limit_exceeded"),
    (11201, 429, "rate_limit_error", "rate_limit_exceeded"),
    (11200, 502, "api_error", "upstream_auth_error"),
    (10013, 400, "invalid_request_error", "content_filter"),
    (10163, 400, "invalid_request_error", None),
    (10907, 400, "invalid_request_error", "context_length_exceeded"),
    (10012, 502, "api_error", "upstream_error"),
])
def test_error_codes_are_mapped(gateway, code, status, type_, error_code):
    response = error_of(gateway, f"[error {code}]")
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (type_, error_code)
    assert str(code) in error["message"]


def test_openai_client_raises_typed_errors(gateway):
    api = client(gateway)
    with pytest.raises(openai.RateLimitError):
        api.chat.completions.create(model="spark", messages=[{"role": "user", "content": "[error 11202]"}])
    with pytest.raises(openai.BadRequestError) as info:
        api.chat.completions.create(model="spark", messages=[{"role": "user", "content": "[error 10013]"}])
    assert info.value.code == "content_filter"


def test_bad_signature_is_upstream_auth_error(gateway, fake_spark):
    fake, _ = fake_spark
    response = error_of(gateway, "hi", token="spark-bad-secret")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth_error"
    assert fake.recorder.last.body is None  # refused at the handshake
    assert API_SECRET not in response.text and "not-the-secret" not in response.text


def test_secrets_quoted_by_the_upstream_are_scrubbed(gateway):
    response = error_of(gateway, "[leak]")
    assert response.status_code == 400
    assert API_KEY not in response.text and API_SECRET not in response.text


def test_unreachable_upstream(gateway):
    response = error_of(gateway, "hi", token="spark-down")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


def test_connection_closed_before_the_end(gateway):
    response = error_of(gateway, "[hangup]")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


def test_error_after_the_stream_started_is_an_sse_error_event(gateway):
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", headers={"authorization": "Bearer spark"},
                      json={"messages": [{"role": "user", "content": "[error-after 10012]"}], "stream": True}, timeout=30) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert response.status_code == 200
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Partial "
    assert json.loads(events[-2])["error"]["code"] == "upstream_error"
    assert events[-1] == "[DONE]"


def test_moderation_after_output_ends_with_content_filter(gateway):
    chunks = list(client(gateway).chat.completions.create(
        model="spark",
        messages=[{"role": "user", "content": "[error-after 10014]"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Partial answer "
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    completion = client(gateway).chat.completions.create(model="spark", messages=[{"role": "user", "content": "[error-after 10014]"}])
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == "Partial answer "


def test_stream_idle_timeout(gateway):
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", headers={"authorization": "Bearer spark"},
                      json={"messages": [{"role": "user", "content": "[stall]"}], "stream": True}, timeout=30) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert json.loads(events[-2])["error"]["code"] == "upstream_timeout"


def test_client_disconnect_closes_the_websocket(gateway, fake_spark):
    fake, _ = fake_spark
    stream = client(gateway).chat.completions.create(model="spark", messages=[{"role": "user", "content": "[slow]"}], stream=True)
    received = [next(stream), next(stream)]
    assert received[0].choices[0].delta.content == "slow "
    stream.close()
    assert fake.recorder.wait_for_event("disconnect", timeout=10)


# -- config and signing -------------------------------------------------------------------------


def test_config_errors():
    def load(**config):
        entry = {"token": "t", "type": "xunfei-spark-api", "config": {"app_id": "a", "api_key": "k", "api_secret": "s", **config}}
        return build_config([entry], environ={})

    assert load().entries["t"].config.api_model_version == "v3.5"
    assert load(api_model_version="v2.1").entries["t"].config.api_model_version == "v2.0"
    assert load(api_base="https://spark.example/").entries["t"].config.api_base == "wss://spark.example"
    assert load(proxies={"https": "http://p:1"}).entries["t"].config.proxies == {"https": "http://p:1"}
    for bad, field in [({"api_model_version": "v9"}, "config.api_model_version"),
                       ({"top_k": 7}, "config.top_k"), ({"api_base": "ftp://x"}, "config.api_base"), ({"api_secret": ""}, "config.api_secret")]:
        with pytest.raises(ConfigError) as info:
            load(**bad)
        assert info.value.issues[0].field == field
    with pytest.raises(ConfigError) as info:
        build_config([{"token": "t", "type": "xunfei-spark-api", "config": {"api_key": "k", "api_secret": "s"}}], environ={})
    assert info.value.issues[0].field == "config.app_id"


def test_signed_url_follows_the_documented_recipe():
    date = "Sat, 21 Nov 2026 16:13:24 GMT"
    url = signed_url("wss://spark-api.xf-yun.com/v3.5/chat", "KEY", "SECRET", date)
    query = httpx.URL(url).params
    assert (query["host"], query["date"]) == ("spark-api.xf-yun.com", date)
    authorization = base64.b64decode(query["authorization"]).decode()
    signature = sign("SECRET", "spark-api.xf-yun.com", date, "/v3.5/chat")
    assert authorization == f'api_key="KEY", algorithm="hmac-sha256", headers="host date request-line", signature="{signature}"'


def test_message_mapping_merges_and_renders():
    text = spark_messages([
        {"role": "developer", "content": "rule one"},
        {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "ok"},
        {"role": "system", "content": "rule two"},
        {"role": "user", "content": "third"},
    ], VERSIONS["v4.0"])
    assert text == [
        {"role": "system", "content": "rule one\n\nrule two"},
        {"role": "user", "content": "first\n\nsecond"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "third"},
    ]
