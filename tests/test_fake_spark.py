"""The fake Spark upstream is faithful: iFlytek's official Python SDK (`spark_ai_python`, module
`sparkai`) signs its URL, sends its request frames and parses the fake's answers, streams,
function calls, usage and errors exactly as it does against wss://spark-api.xf-yun.com."""

from __future__ import annotations

import datetime as dt

import pytest
import websocket  # websocket-client, the transport the official SDK uses
from sparkai.core.messages import ChatMessage
from sparkai.errors import SparkAIConnectionError
from sparkai.llm import llm as sparkai_llm
from sparkai.llm.llm import ChatSparkLLM

from tests.fakes.spark import API_KEY, API_SECRET, APP_ID, FakeSpark
from tests.support.servers import serve_app

WEATHER = [{
    "name": "get_weather",
    "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]


@pytest.fixture(scope="module")
def fake_spark():
    fake = FakeSpark()
    with serve_app(fake.app) as url:
        yield fake, url.replace("http://", "ws://")


def sdk(base: str, path: str = "/v3.5/chat", domain: str = "generalv3.5", **kwargs) -> ChatSparkLLM:
    options = {"spark_app_id": APP_ID, "spark_api_key": API_KEY, "spark_api_secret": API_SECRET, **kwargs}
    return ChatSparkLLM(spark_api_url=f"{base}{path}", spark_llm_domain=domain, request_timeout=10, **options)


def user(text: str) -> list:
    return [ChatMessage(role="user", content=text)]


def test_sdk_signed_request_is_accepted_and_recorded(fake_spark):
    fake, base = fake_spark
    result = sdk(base).generate([user("hello there")])
    assert result.generations[0][0].text == "Echo: hello there"
    received = fake.recorder.last
    assert received.path == "/v3.5/chat"
    assert set(received.query) == {"authorization", "date", "host"}
    assert received.body["header"]["app_id"] == APP_ID
    assert received.body["parameter"]["chat"]["domain"] == "generalv3.5"
    assert received.body["payload"]["message"]["text"] == [{"role": "user", "content": "hello there"}]


def test_sdk_reads_usage_from_the_last_frame(fake_spark):
    _, base = fake_spark
    result = sdk(base).generate([[ChatMessage(role="system", content="be brief"), *user("a b c")]])
    usage = result.llm_output["token_usage"]
    assert usage == {"question_tokens": 3, "prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def test_sdk_streams_frames(fake_spark):
    _, base = fake_spark
    chunks = list(sdk(base, streaming=True).stream(user("one two three")))
    assert "".join(c.content for c in chunks) == "Echo: one two three"
    assert len([c for c in chunks if c.content]) == 4  # one frame per word
    assert chunks[-1].additional_kwargs["token_usage"]["completion_tokens"] == 4


def test_sdk_parses_function_call(fake_spark):
    fake, base = fake_spark
    result = sdk(base).generate([user("[function] weather in Paris?")], function_definition=WEATHER)
    message = result.generations[0][0].message
    assert message.function_call == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert fake.recorder.last.body["payload"]["functions"] == {"text": WEATHER}


@pytest.mark.parametrize("path,domain", [
    ("/v1.1/chat", "lite"), ("/v2.1/chat", "generalv2"), ("/v3.1/chat", "generalv3"), ("/v4.0/chat", "4.0Ultra"),
    ("/chat/pro-128k", "pro-128k"), ("/chat/max-32k", "max-32k"),
])
def test_every_version_path_answers_its_domain(fake_spark, path, domain):
    _, base = fake_spark
    assert sdk(base, path, domain).generate([user("hi")]).generations[0][0].text == "Echo: hi"
    with pytest.raises(SparkAIConnectionError) as info:
        sdk(base, path, "not-" + domain).generate([user("hi")])
    assert info.value.error_code == 10163


@pytest.mark.parametrize("code", [11202, 10013, 10163])
def test_sdk_raises_error_frames_with_their_code(fake_spark, code):
    _, base = fake_spark
    with pytest.raises(SparkAIConnectionError) as info:
        sdk(base).generate([user(f"[error {code}]")])
    assert info.value.error_code == code


def test_out_of_range_parameters_are_refused_like_spark(fake_spark):
    _, base = fake_spark
    for kwargs in ({"temperature": 1.5}, {"top_k": 9}, {"max_tokens": 9000}):
        with pytest.raises(SparkAIConnectionError) as info:
            sdk(base, **kwargs).generate([user("hi")])
        assert info.value.error_code == 10163


def test_bad_signature_is_refused_at_the_handshake(fake_spark):
    fake, base = fake_spark
    with pytest.raises(SparkAIConnectionError, match="Handshake status 401"):
        sdk(base, spark_api_secret="not-the-secret").generate([user("hi")])
    assert fake.recorder.last.body is None
    with pytest.raises(SparkAIConnectionError, match="Handshake status 401"):
        sdk(base, spark_api_key="not-the-key").generate([user("hi")])


def test_stale_date_is_refused_with_403(fake_spark, monkeypatch):
    _, base = fake_spark

    class TenMinutesAgo(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime.now(tz) - dt.timedelta(minutes=10)

    monkeypatch.setattr(sparkai_llm, "datetime", TenMinutesAgo)
    url = sparkai_llm._SparkLLMClient._create_url(f"{base}/v3.5/chat", API_KEY, API_SECRET)
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(url, timeout=10)
    assert info.value.status_code == 403
    monkeypatch.undo()
    fresh = sparkai_llm._SparkLLMClient._create_url(f"{base}/v3.5/chat", API_KEY, API_SECRET)
    websocket.create_connection(fresh, timeout=10).close()
