"""§6 limits and usage on the Responses API (CONTRACT.md §9: "Usage, limits and metrics of §6
and §7 apply to these requests as to chat completions"): the same guard admits each turn and
settles it with the upstream's usage, `surface: "responses"`, streamed, stored or in the
background; refusals are OpenAI's 429 / 404 / 401 with their headers."""

import httpx
import openai
import pytest
import yaml

from gateway.app import create_app
from gateway.keys.guard import CLOCK_KEY
from tests.routing_harness import FakeClock
from tests.support.servers import serve_app, wait_until

T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def served(fake_openai, tmp_path_factory):
    fake, url = fake_openai
    tokens = [
        {"token": "sk-resp-limited", "name": "limited", "type": "proxy",
         "config": {"api_base": f"{url}/v1", "api_key": fake.api_key}, "rpm_limit": 3, "models": ["gpt-4o-mini"]},
        {"token": "sk-resp-counted", "name": "counted", "type": "proxy", "config": {"api_base": f"{url}/v1", "api_key": fake.api_key}},
        {"token": "sk-resp-old", "name": "old", "type": "mock", "expires": "2020-01-01"},
    ]
    path = tmp_path_factory.mktemp("responses-limits") / "config.yaml"
    path.write_text(yaml.safe_dump({"tokens": tokens}))
    app = create_app(path)
    app.state.gateway.usage_sink = RecordingSink(app.state.gateway.usage)
    with serve_app(app, lifespan="on") as base:
        yield app.state.gateway, base


class RecordingSink:
    """The gateway's usage ledger, every event also kept in `events` for the assertions."""

    def __init__(self, ledger) -> None:
        self.ledger, self.events = ledger, []

    def record(self, event) -> None:
        self.events.append(event)
        self.ledger.record(event)


def events(gateway, name):
    return [e for e in gateway.usage_sink.events if e.token_name == name]


def settled(gateway, name, count):
    wait_until(lambda: len(events(gateway, name)) >= count, what=f"usage event #{count} of {name}")
    return events(gateway, name)[count - 1]


def test_the_rpm_limit_counts_responses_turns(served):
    gateway, base = served
    gateway.runtime.state[CLOCK_KEY] = FakeClock(T0)
    try:
        client = openai.OpenAI(api_key="sk-resp-limited", base_url=f"{base}/v1", max_retries=0)
        raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input="one")
        assert raw.headers["x-ratelimit-limit-requests"] == "3" and raw.headers["x-ratelimit-remaining-requests"] == "2"
        with client.responses.stream(model="gpt-4o-mini", input="two") as stream:
            stream.get_final_response()
        client.responses.create(model="gpt-4o-mini", input="three")
        with pytest.raises(openai.RateLimitError) as caught:
            client.responses.create(model="gpt-4o-mini", input="four")
        assert caught.value.body["code"] == "rate_limit_exceeded" and caught.value.response.headers["retry-after"]
        with pytest.raises(openai.NotFoundError) as caught:
            client.responses.create(model="gpt-4o", input="not on the allowlist")
        assert caught.value.body["code"] == "model_not_found"
    finally:
        del gateway.runtime.state[CLOCK_KEY]
    expired = httpx.post(f"{base}/v1/responses", headers={"authorization": "Bearer sk-resp-old"}, json={"input": "x"})
    assert expired.status_code == 401 and expired.headers["x-should-retry"] == "false"


def test_usage_is_recorded_for_every_kind_of_turn(served):
    gateway, base = served
    client = openai.OpenAI(api_key="sk-resp-counted", base_url=f"{base}/v1", max_retries=0)
    before = len(events(gateway, "counted"))
    client.responses.create(model="gpt-4o-mini", input="json turn")
    event = settled(gateway, "counted", before + 1)
    assert event.surface == "responses" and not event.stream and event.status == 200
    assert (event.prompt_tokens, event.completion_tokens, event.estimated) == (9, 12, False)  # the fake's usage

    with client.responses.stream(model="gpt-4o-mini", input="streamed turn") as stream:
        stream.get_final_response()
    event = settled(gateway, "counted", before + 2)
    assert event.surface == "responses" and event.stream and (event.prompt_tokens, event.completion_tokens) == (9, 12)
    assert event.ttft_ms is not None

    queued = client.responses.create(model="gpt-4o-mini", input="background turn", background=True)
    event = settled(gateway, "counted", before + 3)
    assert event.surface == "responses" and event.completion_tokens == 12
    assert client.responses.retrieve(queued.id).status == "completed"

    bad = httpx.post(f"{base}/v1/responses", headers={"authorization": "Bearer sk-resp-counted"}, json={"input": 5})
    assert bad.status_code == 400
    event = settled(gateway, "counted", before + 4)
    assert event.surface == "responses" and event.status == 400
