"""Usage accounting end to end (§6): requests through a real gateway process (`open-api.py`, as
users run it) are settled by the limits (gateway/keys), written by the ledger and read back
through the admin usage API; budgets come back after a restart; a `kill -9` after a flush loses
nothing; events the full queue drops are counted in `/metrics`."""

from __future__ import annotations

import signal
import sqlite3

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import GatewayProcess, wait_until

ADMIN = "usage-e2e-admin-token-0123456789"
BEARER = {"authorization": f"Bearer {ADMIN}"}
ALICE = "sk-e2e-alice-0123456789"
BOB = "sk-e2e-bob-0123456789"
PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0}  # the mock model, priced so that costs show


def config(**usage) -> dict:
    return {
        "settings": {"admin_token": ADMIN, "usage": {"flush_seconds": 0.2, **usage}, "prices": {"mock": PRICE}},
        "tokens": [
            {"token": ALICE, "name": "alice", "type": "mock", "config": {"reply": "hello there"}, "max_budget": 100.0},
            {"token": BOB, "name": "bob", "type": "mock", "config": {"reply": "hi"}, "rpm_limit": 1},
        ],
    }


def client(gateway: GatewayProcess, token: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=token, base_url=f"{gateway.base_url}/v1", max_retries=0)


def chat(gateway: GatewayProcess, token: str, stream: bool = False):
    c = client(gateway, token)
    messages = [{"role": "user", "content": "count my tokens please"}]
    if stream:
        return "".join(chunk.choices[0].delta.content or "" for chunk in c.chat.completions.create(model="mock", messages=messages, stream=True) if chunk.choices)
    return c.chat.completions.with_raw_response.create(model="mock", messages=messages)


def usage(gateway: GatewayProcess, **params) -> list[dict]:
    response = httpx.get(f"{gateway.base_url}/admin/api/usage", params=params, headers=BEARER)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def rows_in(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM usage_events").fetchone()[0]


def test_requests_through_a_gateway_show_up_in_the_usage_api(gateway_process):
    gateway = gateway_process(config())
    raw = chat(gateway, ALICE)
    completion = raw.parse()
    assert chat(gateway, ALICE, stream=True) == "hello there"
    with pytest.raises(openai.RateLimitError):
        for _ in range(2):  # bob's second request within the minute is refused
            chat(gateway, BOB)

    # settlement follows the last byte sent: wait for the four events
    wait_until(lambda: sum(row["requests"] for row in usage(gateway)) == 4, what="four usage events")
    by_token = {row["group"]: row for row in usage(gateway, group_by="token")}
    alice, bob = by_token["alice"], by_token["bob"]
    assert (alice["requests"], alice["errors"], bob["requests"], bob["errors"]) == (2, 0, 2, 1)
    assert alice["prompt_tokens"] == 2 * completion.usage.prompt_tokens
    assert alice["completion_tokens"] == 2 * completion.usage.completion_tokens
    expected = 2 * (completion.usage.prompt_tokens * PRICE["input_per_mtok"] + completion.usage.completion_tokens * PRICE["output_per_mtok"]) / 1e6
    assert alice["cost_usd"] == pytest.approx(expected)
    by_status = {row["group"]: row["requests"] for row in usage(gateway, group_by="status")}
    assert by_status == {200: 3, 429: 1}

    events = httpx.get(f"{gateway.base_url}/admin/api/usage/events", params={"token": "alice"}, headers=BEARER).json()["data"]
    assert [e["stream"] for e in events] == [False, True]
    assert events[0]["request_id"] == raw.headers["x-request-id"]
    assert events[0]["served_by"] == "alice" and events[0]["provider"] == "mock" and events[0]["model"] == "mock"
    refused = httpx.get(f"{gateway.base_url}/admin/api/usage/events", params={"token": "bob"}, headers=BEARER).json()["data"][-1]
    assert (refused["status"], refused["error_code"]) == (429, "rate_limit_exceeded")
    csv_text = httpx.get(f"{gateway.base_url}/admin/api/usage/events", params={"format": "csv"}, headers=BEARER).text
    assert ALICE not in csv_text and BOB not in csv_text


def test_spend_survives_a_restart_and_a_kill_after_a_flush(write_config):
    path = write_config(config())
    with GatewayProcess(path) as gateway:
        for _ in range(3):
            chat(gateway, ALICE)
        spent = httpx.get(f"{gateway.base_url}/key/info", headers={"authorization": f"Bearer {ALICE}"}).json()["usage"]["cost_usd"]
        assert spent > 0
        wait_until(lambda: rows_in(path.parent / "gateway.db") == 3, what="the ledger's flush")
        gateway.proc.send_signal(signal.SIGKILL)  # no shutdown: only what was flushed survives
        gateway.proc.wait()
    with GatewayProcess(path) as gateway:
        [alice] = usage(gateway, token="alice")
        assert alice["requests"] == 3
        info = httpx.get(f"{gateway.base_url}/key/info", headers={"authorization": f"Bearer {ALICE}"}).json()
        assert info["usage"]["cost_usd"] == pytest.approx(spent)  # the budget's spend restored from the ledger
        assert info["remaining"]["budget_usd"] == pytest.approx(100.0 - spent)
        chat(gateway, ALICE)
    # a normal stop writes what is still queued
    with GatewayProcess(path) as gateway:
        assert usage(gateway, token="alice")[0]["requests"] == 4


def test_events_the_full_queue_drops_are_counted_in_metrics(gateway_process):
    gateway = gateway_process(config(queue_max=1, flush_seconds=3600))
    for _ in range(3):
        chat(gateway, ALICE)
    wait_until(lambda: "gateway_usage_dropped_total 2.0" in httpx.get(f"{gateway.base_url}/metrics", headers=BEARER).text, what="two dropped events")
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{gateway.base_url}/metrics", headers=BEARER).text)}
    assert families["gateway_usage_dropped"].samples[0].value == 2.0
