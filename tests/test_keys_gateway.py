"""Keys done right (CONTRACT.md §6, §7) through the gateway app served on loopback: limits and
their errors and headers (fake clock), the 50-simultaneous-requests budget case, usage of every
adapter type and of streams (with and without include_usage, cut, upstream refusing
stream_options), the key holder's and admin's views, /metrics parsed with prometheus_client's
parser, x-request-id, and that no token or key leaks into metrics, logs or usage events."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from gateway.app import create_app
from gateway.keys import pricing
from gateway.keys.guard import CLOCK_KEY
from gateway.keys.meter import estimate_prompt
from gateway.keys.restore import restore_budgets
from tests.fakes.anthropic import API_KEY as ANTHROPIC_KEY, FakeAnthropic
from tests.fakes.coze import API_KEY as COZE_KEY, FakeCoze
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.fakes.spark import API_KEY as SPARK_KEY, API_SECRET as SPARK_SECRET, APP_ID as SPARK_APP, FakeSpark
from tests.fakes.zhipu import API_KEY as ZHIPU_KEY, FakeZhipu
from tests.support.servers import run_in_server, serve_app, wait_until

ADMIN = "admin-secret-token-123"
UPSTREAM_KEY = "sk-upstream-secret-key-0123456789"
T0 = 1_800_000_000.0
BUDGET_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 96}
RESERVE = estimate_prompt(BUDGET_BODY) + 96  # what one such request reserves, in tokens
PRICE = 0.001  # USD per token, patched in for the max_budget case


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class GatedOpenAI:
    """An OpenAI-wire upstream that holds every request until `release()`; counts arrivals."""

    def __init__(self) -> None:
        self.arrived = 0
        self.open = False
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request):
        await request.body()
        self.arrived += 1
        while not self.open:
            await asyncio.sleep(0.01)
        return JSONResponse({"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})


class NoStreamOptions:
    """An OpenAI-compatible server that rejects `stream_options` (some do, e.g. older vLLM/Ollama
    builds): 400 naming the field, as such servers answer."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request):
        body = json.loads(await request.body())
        self.bodies.append(body)
        if "stream_options" in body:
            return JSONResponse({"error": {"message": "Unrecognized request argument supplied: stream_options",
                                           "type": "invalid_request_error", "param": None, "code": None}}, status_code=400)

        async def events():
            for word in ("one ", "two ", "three"):
                yield ("data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                              "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}) + "\n\n").encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def upstreams():
    fakes = {"openai": FakeOpenAI(slow_seconds=30), "gated": GatedOpenAI(), "strict": NoStreamOptions(),
             "claude": FakeAnthropic(), "gemini": FakeGemini(), "zhipu": FakeZhipu(), "coze": FakeCoze(),
             "spark": FakeSpark(slow_seconds=5)}
    urls = {}
    from contextlib import ExitStack

    with ExitStack() as stack:
        for name, fake in fakes.items():
            urls[name] = stack.enter_context(serve_app(fake.app))
        yield fakes, urls


def _config(urls, fakes) -> dict:
    oa = {"api_key": UPSTREAM_KEY}
    tokens = [
        {"token": "sk-team-alice", "name": "alice", "type": "proxy", "config": {"api_base": f"{urls['openai']}/v1", **oa},
         "models": ["gpt-4o-mini"], "rpm_limit": 3},
        {"token": "sk-team-bob", "name": "bob", "type": "proxy", "config": {"api_base": f"{urls['openai']}/v1", **oa}},
        {"token": "sk-team-carol", "name": "carol", "type": "proxy", "config": {"api_base": f"{urls['openai']}/v1", **oa},
         "rpm_limit": 1000},
        {"token": "sk-team-old", "name": "old", "type": "mock", "expires": "2020-01-01"},
        {"token": "sk-team-tokens", "name": "tight", "type": "proxy", "config": {"api_base": f"{urls['gated']}/v1"},
         "token_budget": 5 * RESERVE},
        {"token": "sk-team-usd", "name": "usd", "type": "proxy", "config": {"api_base": f"{urls['gated']}/v1"},
         "max_budget": (5 * RESERVE + 0.5) * PRICE, "budget_duration": "1mo"},
        {"token": "sk-team-strict", "name": "strict", "type": "proxy", "config": {"api_base": f"{urls['strict']}/v1"}},
        {"token": "sk-team-monthly", "name": "monthly", "type": "mock", "max_budget": 10.0, "token_budget": 1000, "budget_duration": "1mo"},
        {"token": "sk-ad-azure", "name": "azure", "type": "azure",
         "config": {"api_base": urls["openai"], "deployment_id": "gpt-4o-mini", "api_key": UPSTREAM_KEY}},
        {"token": "sk-ad-claude", "name": "claude", "type": "claude", "config": {"api_base": urls["claude"], "api_key": ANTHROPIC_KEY}},
        {"token": "sk-ad-gemini", "name": "gemini", "type": "gemini", "config": {"api_base": urls["gemini"], "api_key": fakes["gemini"].api_key}},
        {"token": "sk-ad-zhipu", "name": "zhipu", "type": "zhipu-api", "config": {"api_base": f"{urls['zhipu']}{fakes['zhipu'].base_path}", "api_key": ZHIPU_KEY}},
        {"token": "sk-ad-coze", "name": "coze", "type": "coze", "config": {"api_base": urls["coze"], "api_key": COZE_KEY, "bot_id": "bot-1"}},
        {"token": "sk-ad-spark", "name": "spark", "type": "xunfei-spark-api",
         "config": {"api_base": urls["spark"].replace("http://", "ws://"), "app_id": SPARK_APP, "api_key": SPARK_KEY, "api_secret": SPARK_SECRET}},
        {"token": "sk-ad-mock", "name": "mock", "type": "mock"},
        {"token": "sk-ad-pool", "name": "pool", "type": "router", "config": {"router_strategy": "fallback", "token_pool": ["sk-ad-mock"]},
         "rpm_limit": 1000, "tpm_limit": 1000000},
    ]
    return {"settings": {"admin_token": ADMIN}, "tokens": tokens}


@pytest.fixture(scope="module", params=["memory", "redis"])
def served(upstreams, tmp_path_factory, request):
    """The gateway with its counters in memory, then the same tests with them in a real Redis
    (§8; the store reads the tests' fake clock instead of Redis TIME)."""
    fakes, urls = upstreams
    config = _config(urls, fakes)
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis_server")
        redis_server.flush()
        config["settings"]["redis_url"] = redis_server.url
        # In-process, 50 simultaneous requests share one loaded event loop with the test: give
        # each Redis call room (a call that times out falls back to local counters, by design).
        config["settings"]["redis_timeout"] = 10
    path = tmp_path_factory.mktemp("keys") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    app = create_app(path)
    if request.param == "redis":
        from gateway.keys.guard import STORE_KEY
        from gateway.keys.redis_store import RedisCounterStore

        gateway = app.state.gateway
        gateway.runtime.state[STORE_KEY] = RedisCounterStore(gateway.redis, caller_clock=True)
        gateway.apply(gateway.runtime.config)  # a runtime whose guard holds that store
        assert isinstance(gateway.runtime.guard.store, RedisCounterStore)
    app.state.gateway.usage_sink = RecordingSink(app.state.gateway.usage)
    with serve_app(app, lifespan="on") as base:
        yield app, base


class RecordingSink:
    """The gateway's usage ledger, with every event also kept in `events` for the assertions."""

    def __init__(self, ledger) -> None:
        self.ledger, self.events = ledger, []

    def record(self, event) -> None:
        self.events.append(event)
        self.ledger.record(event)


@pytest.fixture
def gateway(served):
    app, base = served
    return app.state.gateway, base


def events(gateway, name):
    return [e for e in gateway.usage_sink.events if e.token_name == name]


def settled(gateway, name, count):
    """The usage event of `name` once `count` are recorded (settling follows the last byte sent)."""
    wait_until(lambda: len(events(gateway, name)) >= count, what=f"usage event #{count} of {name}")
    return events(gateway, name)[count - 1]


def chat(base, token, model="gpt-4o-mini", **extra):
    return httpx.post(f"{base}/v1/chat/completions", headers={"authorization": f"Bearer {token}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}, timeout=30)


# -- limits: errors, headers, fake clock ------------------------------------------------------


def test_rpm_limit_headers_429_and_wait_on_a_fake_clock(gateway):
    gw, base = gateway
    clock = gw.runtime.state[CLOCK_KEY] = FakeClock()
    try:
        answers = [chat(base, "sk-team-alice") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0"]
        assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
        assert answers[0].headers["x-ratelimit-reset-requests"] == "20s"
        refused = chat(base, "sk-team-alice")
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert "requests per min (RPM): Limit 3" in error["message"] and "try again in 20s" in error["message"]
        assert refused.headers["retry-after"] == "20" and refused.headers["retry-after-ms"] == "20000"
        clock.now += 19.9
        assert chat(base, "sk-team-alice").status_code == 429
        clock.now += 0.1
        assert chat(base, "sk-team-alice").status_code == 200
    finally:
        del gw.runtime.state[CLOCK_KEY]


def test_expired_token_is_401_not_to_be_retried(gateway):
    _, base = gateway
    answer = chat(base, "sk-team-old", model="mock")
    assert answer.status_code == 401 and answer.headers["x-should-retry"] == "false"
    error = answer.json()["error"]
    assert error["code"] == "invalid_api_key" and "expired at 2020-01-01T00:00:00Z" in error["message"]
    assert httpx.get(f"{base}/v1/models", headers={"authorization": "Bearer sk-team-old"}).status_code == 401


def test_model_allowlist_and_models_list_filtered(gateway):
    gw, base = gateway
    answer = chat(base, "sk-team-bob", model="gpt-4o")  # bob: no allowlist
    assert answer.status_code == 200
    gw.runtime.state[CLOCK_KEY] = FakeClock(T0 + 3600)  # away from the rpm test's window
    try:
        refused = chat(base, "sk-team-alice", model="gpt-4o")
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
    finally:
        del gw.runtime.state[CLOCK_KEY]
    listed = httpx.get(f"{base}/v1/models", headers={"authorization": "Bearer sk-team-alice"}).json()
    assert [m["id"] for m in listed["data"]] == ["gpt-4o-mini"]
    every = httpx.get(f"{base}/v1/models", headers={"authorization": "Bearer sk-team-bob"}).json()
    assert {m["id"] for m in every["data"]} == {"gpt-4o-mini", "gpt-4o"}
    assert httpx.get(f"{base}/v1/models/gpt-4o", headers={"authorization": "Bearer sk-team-alice"}).status_code == 404


@pytest.mark.parametrize("token, field", [("sk-team-tokens", "token_budget"), ("sk-team-usd", "max_budget")])
def test_fifty_simultaneous_requests_against_a_budget_worth_five(gateway, upstreams, monkeypatch, token, field):
    gw, base = gateway
    gated = upstreams[0]["gated"]
    gated.arrived, gated.open = 0, False
    body = BUDGET_BODY
    # PRICE per token: each request reserves RESERVE tokens' worth; each budget holds five of them.
    monkeypatch.setattr(pricing, "cost_usd", lambda model, provider, p, c, cached=0: (p + c) * PRICE)

    async def scenario():
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=60)) as client:
            tasks = [asyncio.ensure_future(client.post("/v1/chat/completions", headers={"authorization": f"Bearer {token}"}, json=body))
                     for _ in range(50)]
            for _ in range(1000):
                if sum(t.done() for t in tasks) >= 45:
                    break
                await asyncio.sleep(0.01)
            reached_while_held = gated.arrived
            gated.open = True
            answers = await asyncio.gather(*tasks)
            return reached_while_held, answers

    reached, answers = asyncio.run(scenario())
    statuses = sorted(a.status_code for a in answers)
    assert reached == 5 and gated.arrived == 5
    assert statuses == [200] * 5 + [429] * 45
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "insufficient_quota" and refused.headers["x-should-retry"] == "false"
    # settled with the real usage (10 tokens each): the reservations were given back
    settled(gw, {"sk-team-tokens": "tight", "sk-team-usd": "usd"}[token], 50)
    report = httpx.get(f"{base}/key/info", headers={"authorization": f"Bearer {token}"}).json()
    assert report["usage"]["requests"] == 5 and report["usage"]["tokens"] == 50 and report["usage"]["in_flight"] == 0


# -- usage of streams and of every adapter ----------------------------------------------------


def test_stream_without_include_usage_is_counted_and_the_usage_chunk_hidden(gateway, upstreams):
    gw, base = gateway
    fake = upstreams[0]["openai"]
    client = openai.OpenAI(api_key="sk-team-bob", base_url=f"{base}/v1", max_retries=0)
    before = len(events(gw, "bob"))
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c"}], stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert fake.recorder.last.body["stream_options"] == {"include_usage": True}
    event = settled(gw, "bob", before + 1)
    assert (event.prompt_tokens, event.completion_tokens, event.estimated, event.stream, event.status) == (9, 12, False, True, 200)
    assert event.served_by == "bob" and event.provider == "proxy" and event.ttft_ms is not None


def test_stream_with_include_usage_keeps_the_usage_chunk(gateway):
    gw, base = gateway
    client = openai.OpenAI(api_key="sk-team-bob", base_url=f"{base}/v1", max_retries=0)
    before = len(events(gw, "bob"))
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}], stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert settled(gw, "bob", before + 1).completion_tokens == 12


def test_upstream_refusing_stream_options_still_streams_estimated(gateway, upstreams):
    gw, base = gateway
    strict = upstreams[0]["strict"]
    client = openai.OpenAI(api_key="sk-team-strict", base_url=f"{base}/v1", max_retries=0)
    before = len(events(gw, "strict"))
    sent = len(strict.bodies)  # the fake serves both counter backends' runs
    for _ in range(2):
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "count"}], stream=True))
        assert text == "one two three"
    assert ["stream_options" in b for b in strict.bodies[sent:]] == [True, False, False]  # asked once, then not again
    event = settled(gw, "strict", before + 2)
    assert event.estimated and event.completion_tokens > 0 and event.prompt_tokens > 0


def test_cut_stream_is_counted_from_the_text_sent(gateway, upstreams):
    gw, base = gateway
    fake = upstreams[0]["openai"]
    before = len(events(gw, "bob"))
    with httpx.stream("POST", f"{base}/v1/chat/completions", headers={"authorization": "Bearer sk-team-bob"},
                      json={"model": "slow-stream", "stream": True, "messages": [{"role": "user", "content": "go"}]}, timeout=30) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(12)]
    assert any(line.startswith("data:") for line in got)
    assert fake.recorder.wait_for_event("disconnect")
    event = settled(gw, "bob", before + 1)
    assert event.estimated and event.completion_tokens >= 3 and event.status == 499


ADAPTERS = ["azure", "claude", "gemini", "zhipu", "coze", "spark", "mock", "pool"]
MODELS = {"azure": "gpt-4o-mini", "claude": "claude-sonnet-4-5", "gemini": "gemini-2.0-flash", "zhipu": "glm-4-flash",
          "coze": "bot", "spark": "spark", "mock": "mock", "pool": "mock"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("name", ADAPTERS)
def test_usage_of_every_adapter_type(gateway, name, stream):
    gw, base = gateway
    client = openai.OpenAI(api_key=f"sk-ad-{name}", base_url=f"{base}/v1", max_retries=0)
    messages = [{"role": "user", "content": "hello there"}]
    before = len(events(gw, name))
    if stream:
        chunks = list(client.chat.completions.create(model=MODELS[name], messages=messages, stream=True))
        assert all(c.usage is None for c in chunks)  # not asked for: not shown
    else:
        usage = client.chat.completions.create(model=MODELS[name], messages=messages).usage
    event = settled(gw, name, before + 1)
    assert event.status == 200 and event.stream is stream and not event.estimated
    assert event.prompt_tokens > 0 and event.completion_tokens > 0
    if not stream:
        assert (event.prompt_tokens, event.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert event.served_by == ("mock" if name == "pool" else name)


# -- views ------------------------------------------------------------------------------------


def test_key_info_billing_paths_and_admin_keys(gateway):
    gw, base = gateway
    for _ in range(2):
        assert chat(base, "sk-team-monthly", model="mock").status_code == 200
    settled(gw, "monthly", 2)
    auth = {"authorization": "Bearer sk-team-monthly"}
    info = httpx.get(f"{base}/key/info", headers=auth).json()
    assert info["name"] == "monthly" and info["max_budget"] == 10.0 and info["token_budget"] == 1000
    assert info["budget_duration"] == "1mo" and info["period"]["start"].endswith("-01T00:00:00Z")
    assert info["usage"]["requests"] == 2 and info["remaining"]["tokens"] == 1000 - info["usage"]["tokens"]
    assert "sk-team" not in json.dumps(info)
    for prefix in ("", "/v1"):
        sub = httpx.get(f"{base}{prefix}/dashboard/billing/subscription", headers=auth).json()
        assert sub["hard_limit_usd"] == 10.0
        used = httpx.get(f"{base}{prefix}/dashboard/billing/usage?start_date=2026-01-01&end_date=2026-02-01", headers=auth).json()
        assert used["object"] == "list" and "total_usage" in used
    assert httpx.get(f"{base}/key/info").status_code == 401
    assert httpx.get(f"{base}/admin/api/keys", headers=auth).status_code == 401
    keys = httpx.get(f"{base}/admin/api/keys", headers={"authorization": f"Bearer {ADMIN}"}).json()["data"]
    by_name = {k["name"]: k for k in keys}
    assert by_name["alice"]["rpm_limit"] == 3 and by_name["old"]["expired"] is True
    assert by_name["monthly"]["usage"]["requests"] == 2
    assert "sk-team" not in json.dumps(keys) and UPSTREAM_KEY not in json.dumps(keys)


def test_budgets_restored_from_the_ledger_at_start(gateway):
    gw, base = gateway
    calls = []

    async def period_totals(database, since):
        calls.append(since)
        return {"monthly": (9.5, 990)}

    run_in_server(base, restore_budgets(gw, period_totals))  # as at start, on the gateway's own loop
    assert 0.0 in calls and max(calls) > 0  # lifetime budgets and this month's
    info = httpx.get(f"{base}/key/info", headers={"authorization": "Bearer sk-team-monthly"}).json()
    assert info["usage"]["tokens"] >= 990 and info["remaining"]["budget_usd"] <= 0.5
    # the monthly token budget (1000) is now nearly spent: one more fits alone, then none
    chat(base, "sk-team-monthly", model="mock")
    refused = chat(base, "sk-team-monthly", model="mock")
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "insufficient_quota"


# -- metrics, logs, request ids ---------------------------------------------------------------


def test_metrics_parse_and_hold_only_config_labels(gateway, caplog):
    gw, base = gateway
    chat(base, "sk-team-bob", model="made-up-model-xyz")
    assert httpx.get(f"{base}/metrics").status_code == 401
    text = httpx.get(f"{base}/metrics", headers={"authorization": f"Bearer {ADMIN}"}).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("gateway_requests", "gateway_request_duration_seconds", "gateway_time_to_first_token_seconds", "gateway_tokens",
                 "gateway_spend_usd", "gateway_limit_rejections", "gateway_in_flight_requests", "gateway_upstream_cooling",
                 "gateway_usage_dropped"):
        assert name in families, name
    requests = [s for s in families["gateway_requests"].samples if s.name == "gateway_requests_total"]
    assert set(requests[0].labels) == {"token_name", "model", "upstream", "provider", "status_code"}
    assert any(s.labels["token_name"] == "bob" and s.labels["model"] == "other" for s in requests)
    assert not any("made-up" in s.labels["model"] for s in requests)
    rejections = {(s.labels["token_name"], s.labels["reason"]) for s in families["gateway_limit_rejections"].samples}
    assert ("old", "expired") in rejections and ("alice", "rpm") in rejections
    types = {s.labels["type"] for s in families["gateway_tokens"].samples}
    assert {"prompt", "completion"} <= types <= {"prompt", "completion", "cached"}
    cooling = {s.labels["upstream"] for s in families["gateway_upstream_cooling"].samples}
    assert cooling == {"mock"}
    assert "sk-" not in text and ADMIN not in text


def test_access_log_and_usage_events_hold_no_secret(gateway, caplog):
    gw, base = gateway
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        before = len(events(gw, "bob"))
        chat(base, "sk-team-bob")
        settled(gw, "bob", before + 1)
        chat(base, "sk-team-old", model="mock")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "gateway.access"]
    assert len(lines) == 2
    assert lines[0]["token_name"] == "bob" and lines[0]["path"] == "/v1/chat/completions" and lines[0]["client"] == "127.0.0.1"
    assert lines[1]["status"] == 401 and lines[1]["error_code"] == "invalid_api_key"
    everything = caplog.text + json.dumps([e.as_dict() for e in gw.usage_sink.events])
    for secret in ("sk-team-bob", "sk-team-old", "sk-team-alice", UPSTREAM_KEY, ADMIN):
        assert secret not in everything


def test_every_response_carries_a_request_id(gateway):
    gw, base = gateway
    before = len(events(gw, "bob"))
    sane = httpx.post(
        f"{base}/v1/chat/completions", headers={"authorization": "Bearer sk-team-bob", "x-request-id": "my-trace.42"},
        json={"messages": [{"role": "user", "content": "x"}]})
    assert sane.headers["x-request-id"] == "my-trace.42"
    assert settled(gw, "bob", before + 1).request_id == "my-trace.42"
    odd = httpx.post(f"{base}/v1/chat/completions", headers={"authorization": "Bearer sk-team-bob", "x-request-id": "bad id\t<script>"},
                     json={"messages": [{"role": "user", "content": "x"}]})
    assert odd.headers["x-request-id"].startswith("req_")
    for response in (httpx.get(f"{base}/healthz"), httpx.get(f"{base}/v1/models"), chat(base, "nope")):
        assert response.headers["x-request-id"].startswith("req_")
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}


def test_counters_survive_a_config_reload(gateway):
    gw, base = gateway
    before = httpx.get(f"{base}/key/info", headers={"authorization": "Bearer sk-team-monthly"}).json()["usage"]
    gw.apply(gw.runtime.config)  # what the config page and the file watcher do on a save
    after = httpx.get(f"{base}/key/info", headers={"authorization": "Bearer sk-team-monthly"}).json()["usage"]
    assert after == before and after["requests"] > 0


def test_upstream_error_after_admission_keeps_the_rate_limit_headers(gateway):
    gw, base = gateway
    gw.runtime.state[CLOCK_KEY] = FakeClock(T0 + 7200)
    try:
        _carol_errors(gw, base)
    finally:
        del gw.runtime.state[CLOCK_KEY]


def _carol_errors(gw, base):
    failed = chat(base, "sk-team-carol", model="status-500")
    assert failed.status_code == 502 and failed.headers["x-ratelimit-limit-requests"] == "1000"
    assert settled(gw, "carol", 1).status == 502 and events(gw, "carol")[0].error_code == "upstream_error"
    malformed = httpx.post(f"{base}/v1/chat/completions", headers={"authorization": "Bearer sk-team-carol"},
                           json={"messages": [{"role": "user", "content": "x"}], "stream": "yes"})
    assert malformed.status_code == 400  # refused before admission: recorded, nothing reserved
    assert settled(gw, "carol", 2).error_code is None and events(gw, "carol")[1].status == 400
    assert chat(base, "sk-team-carol").headers["x-ratelimit-remaining-requests"] == "998"


def test_usage_dropped_follows_the_sinks_own_count(gateway):
    gw, base = gateway
    original = gw.usage_sink

    class Overflowing:
        dropped = 7

        def record(self, event):
            self.dropped += 1

    sink = gw.usage_sink = Overflowing()
    try:
        chat(base, "sk-team-bob")
        wait_until(lambda: sink.dropped == 8, what="the event to reach the sink")
        text = httpx.get(f"{base}/metrics", headers={"authorization": f"Bearer {ADMIN}"}).text
    finally:
        gw.usage_sink = original
    dropped = [s.value for f in text_string_to_metric_families(text) if f.name == "gateway_usage_dropped" for s in f.samples]
    assert dropped == [8.0]


class AsyncStore:
    """A shared-backend stand-in: the memory store's operations as coroutines (as Redis's are)."""

    def __init__(self) -> None:
        from gateway.keys.store import MemoryCounterStore

        self.inner = MemoryCounterStore()
        self.calls: list[str] = []

    def __getattr__(self, name):
        method = getattr(self.inner, name)
        if name == "health":
            return method

        async def call(*args):
            self.calls.append(name)
            await asyncio.sleep(0)
            return method(*args)

        return call


def test_an_async_counter_store_is_awaited(gateway):
    from gateway.keys.guard import STORE_KEY

    gw, base = gateway
    original = gw.runtime.state[STORE_KEY]
    store = gw.runtime.state[STORE_KEY] = AsyncStore()
    gw.apply(gw.runtime.config)
    gw.runtime.state[CLOCK_KEY] = FakeClock(T0 + 10_000)
    try:
        answers = [chat(base, "sk-team-alice") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[2].headers["x-ratelimit-remaining-requests"] == "0"
        wait_until(lambda: store.calls.count("settle") == 3, what="settlements on the async store")
        info = httpx.get(f"{base}/key/info", headers={"authorization": "Bearer sk-team-alice"}).json()
        assert info["usage"]["requests"] == 3 and "usage" in store.calls
    finally:
        del gw.runtime.state[CLOCK_KEY]
        gw.runtime.state[STORE_KEY] = original
        gw.apply(gw.runtime.config)


# -- the other surfaces go through the same guard ---------------------------------------------


def test_embeddings_are_limited_and_counted(gateway):
    gw, base = gateway
    gw.runtime.state[CLOCK_KEY] = FakeClock(T0 + 20_000)
    try:
        before = len(events(gw, "carol"))
        answers = [httpx.post(f"{base}/v1/embeddings", headers={"authorization": "Bearer sk-team-carol"},
                              json={"model": "text-embedding-3-small", "input": ["hello world", "again"]}) for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[1].headers["x-ratelimit-limit-requests"] == "1000"
        event = settled(gw, "carol", before + 1)
        assert event.surface == "embeddings" and event.prompt_tokens > 0 and event.completion_tokens == 0
    finally:
        del gw.runtime.state[CLOCK_KEY]
    expired = httpx.post(f"{base}/v1/embeddings", headers={"authorization": "Bearer sk-team-old"}, json={"input": "x"})
    assert expired.status_code == 401 and expired.headers["x-should-retry"] == "false"


def test_anthropic_messages_are_limited_and_counted(gateway):
    gw, base = gateway
    gw.runtime.state[CLOCK_KEY] = FakeClock(T0 + 30_000)
    body = {"model": "mock", "max_tokens": 50, "messages": [{"role": "user", "content": "hi there"}]}
    try:
        before = len(events(gw, "pool"))
        ok = httpx.post(f"{base}/v1/messages", headers={"x-api-key": "sk-ad-pool", "anthropic-version": "2023-06-01"}, json=body)
        assert ok.status_code == 200 and ok.headers["x-ratelimit-limit-requests"] == "1000"
        event = settled(gw, "pool", before + 1)
        assert event.surface == "messages" and event.prompt_tokens > 0 and event.completion_tokens > 0 and not event.estimated
        streamed = httpx.post(f"{base}/v1/messages", headers={"x-api-key": "sk-ad-pool", "anthropic-version": "2023-06-01"},
                              json={**body, "stream": True})
        assert "message_stop" in streamed.text
        event = settled(gw, "pool", before + 2)
        assert event.stream and event.completion_tokens > 0 and not event.estimated
    finally:
        del gw.runtime.state[CLOCK_KEY]
    refused = httpx.post(f"{base}/v1/messages", headers={"x-api-key": "sk-team-alice", "anthropic-version": "2023-06-01"},
                         json={**body, "model": "claude-opus-4-1"})
    assert refused.status_code == 404 and refused.json()["type"] == "error"


def test_native_pass_through_respects_the_keys_limits(gateway):
    gw, base = gateway
    gw.runtime.state[CLOCK_KEY] = FakeClock(T0 + 40_000)
    try:
        before = len(events(gw, "carol"))
        passed = httpx.get(f"{base}/openai/models", headers={"authorization": "Bearer sk-team-carol"})
        assert passed.status_code == 200 and passed.headers["x-ratelimit-limit-requests"] == "1000"
        event = settled(gw, "carol", before + 1)
        assert event.surface == "passthrough" and event.estimated
    finally:
        del gw.runtime.state[CLOCK_KEY]
    assert httpx.get(f"{base}/openai/models", headers={"authorization": "Bearer sk-team-alice"}).status_code == 404  # has an allowlist
