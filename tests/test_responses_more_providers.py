"""The Responses API through the remaining adapter types (CONTRACT.md §9: every token): azure,
zhipu-api, xunfei-spark-api, coze and coze-workflow, each against its fake upstream. A stored
turn, a chained turn (the upstream receives the first turn back as history, in its own
format) and a stream, through the official `openai` SDK."""

import openai
import pytest
import yaml

from gateway.app import create_app
from tests.fakes.coze import API_KEY as COZE_KEY
from tests.fakes.coze import FakeCoze
from tests.fakes.spark import API_KEY as SPARK_KEY
from tests.fakes.spark import API_SECRET, APP_ID, FakeSpark
from tests.fakes.zhipu import API_KEY as ZHIPU_KEY
from tests.fakes.zhipu import FakeZhipu
from tests.support.responses import check_sequence, read_events
from tests.support.servers import serve_app


@pytest.fixture(scope="module")
def upstreams():
    zhipu, spark, coze = FakeZhipu(), FakeSpark(slow_seconds=5), FakeCoze()
    with serve_app(zhipu.app) as zhipu_url, serve_app(spark.app) as spark_url, serve_app(coze.app) as coze_url:
        yield {"zhipu": (zhipu, f"{zhipu_url}{zhipu.base_path}"), "spark": (spark, spark_url.replace("http://", "ws://")), "coze": (coze, coze_url)}


@pytest.fixture(scope="module")
def gateway(fake_openai, upstreams, tmp_path_factory):
    openai_fake, openai_url = fake_openai
    tokens = [
        {"token": "gw-azure", "type": "azure", "config": {"api_base": openai_url, "api_key": openai_fake.api_key,
                                                          "deployment_id": "gpt-4o-mini", "api_version": "2024-10-21"}},
        {"token": "gw-zhipu", "type": "zhipu-api", "config": {"api_key": ZHIPU_KEY, "api_base": upstreams["zhipu"][1]}},
        {"token": "gw-spark", "type": "xunfei-spark-api",
         "config": {"app_id": APP_ID, "api_key": SPARK_KEY, "api_secret": API_SECRET, "api_base": upstreams["spark"][1]}},
        {"token": "gw-coze", "type": "coze", "config": {"api_key": COZE_KEY, "bot_id": "7379462189365198898", "api_base": upstreams["coze"][1]}},
        {"token": "gw-coze-wf", "type": "coze-workflow",
         "config": {"api_key": COZE_KEY, "workflow_id": "7397716290163736611", "api_base": upstreams["coze"][1]}},
    ]
    path = tmp_path_factory.mktemp("responses-more") / "config.yaml"
    path.write_text(yaml.safe_dump({"tokens": tokens}))
    with serve_app(create_app(path), lifespan="on") as base:
        yield base


TOKENS = ["gw-azure", "gw-zhipu", "gw-spark", "gw-coze", "gw-coze-wf"]


@pytest.mark.parametrize("token", TOKENS)
def test_stored_chained_and_streamed_turns(gateway, token):
    client = openai.OpenAI(api_key=token, base_url=f"{gateway}/v1", max_retries=0)
    first = client.responses.create(input="first question", instructions="Be brief.")
    assert first.status == "completed" and first.output_text and first.output[0].type == "message"
    assert client.responses.retrieve(first.id).output_text == first.output_text
    second = client.responses.create(input="second question", previous_response_id=first.id)
    assert second.status == "completed" and second.output_text
    assert [i.type for i in client.responses.input_items.list(second.id)] == ["message"]
    events, raw = read_events(gateway, token, {"input": "streamed question", "previous_response_id": second.id})
    check_sequence(events)
    assert events[-1][1]["response"]["status"] == "completed" and "[DONE]" not in raw


def test_the_chain_reaches_zhipu_as_its_messages(gateway, upstreams):
    fake, _ = upstreams["zhipu"]
    client = openai.OpenAI(api_key="gw-zhipu", base_url=f"{gateway}/v1", max_retries=0)
    first = client.responses.create(input="first question", instructions="Be brief.")
    client.responses.create(input="second question", previous_response_id=first.id)
    messages = fake.recorder.last.body["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "first question"), ("assistant", first.output_text), ("user", "second question")]
