"""The admin usage API of §6 against a served gateway: totals grouped by token, model, upstream
and status, bucketed by hour and day, filtered by token and time; raw events paged; CSV of both;
bad parameters and auth. Events go in through the gateway's own sink (`gateway.usage.record`,
what settlement calls), or, for the gateway run as a child process, through a ledger on the
same database file."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import UTC, datetime

import httpx
import pytest

from gateway.app import create_app
from gateway.store import Database, database_url
from gateway.usage.events import UsageEvent
from gateway.usage.ledger import UsageLedger
from tests.support.servers import GatewayProcess, serve_app

ADMIN = "usage-admin-token-0123456789"
BEARER = {"authorization": f"Bearer {ADMIN}"}
TOKENS = ["sk-alice-secret-token-1111", "sk-bob-secret-token-2222"]


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


EVENTS = [
    UsageEvent(at("2026-11-30T08:10:00Z"), "alice", "gpt-4o-mini", "openai-main", "openai", 200, prompt_tokens=100, completion_tokens=20, cached_tokens=10, cost_usd=0.01, request_id="r1"),
    UsageEvent(at("2026-11-30T08:50:00Z"), "alice", "gpt-4o-mini", "openai-main", "openai", 200, stream=True, prompt_tokens=50, completion_tokens=5, cost_usd=0.005, ttft_ms=80.0, request_id="r2"),
    UsageEvent(at("2026-11-30T09:05:00Z"), "alice", "gpt-4o", None, None, 429, error_code="rate_limit_exceeded", request_id="r3"),
    UsageEvent(at("2026-11-30T09:30:00Z"), "bob", "glm-4", "zhipu", "zhipu-api", 200, prompt_tokens=10, completion_tokens=10, cost_usd=0.001, request_id="r4"),
    UsageEvent(at("2026-12-01T01:00:00Z"), "bob", "glm-4", "zhipu", "zhipu-api", 502, error_code="upstream_error", request_id="r5"),
]
DAY = {"from": "2026-11-30", "to": "2026-11-30"}


def config_text() -> str:
    return (
        f"settings:\n  admin_token: {ADMIN}\ntokens:\n"
        f"  - {{token: {TOKENS[0]}, name: alice, type: mock, config: {{reply: hi}}}}\n"
        f"  - {{token: {TOKENS[1]}, name: bob, type: mock, config: {{reply: hi}}}}\n"
    )


@pytest.fixture
def served(tmp_path):
    path = tmp_path / "model_config.yaml"
    path.write_text(config_text(), encoding="utf-8")
    app = create_app(path)
    with serve_app(app, lifespan="on") as url:
        for event in EVENTS:
            app.state.gateway.usage.record(event)
        with httpx.Client(base_url=url, headers=BEARER, timeout=30) as client:
            yield client, app


def usage(client, **params) -> list[dict]:
    response = client.get("/admin/api/usage", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["data"]


def test_totals_by_token_per_hour(served):
    client, _ = served
    data = usage(client, group_by="token", bucket="hour", **DAY)
    assert data == [
        {"group": "alice", "bucket": "2026-11-30T08:00:00Z", "requests": 2, "errors": 0, "prompt_tokens": 150, "completion_tokens": 25, "cached_tokens": 10, "cost_usd": pytest.approx(0.015)},
        {"group": "alice", "bucket": "2026-11-30T09:00:00Z", "requests": 1, "errors": 1, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0, "cost_usd": 0.0},
        {"group": "bob", "bucket": "2026-11-30T09:00:00Z", "requests": 1, "errors": 0, "prompt_tokens": 10, "completion_tokens": 10, "cached_tokens": 0, "cost_usd": pytest.approx(0.001)},
    ]


def test_groupings_and_day_buckets(served):
    client, _ = served
    everything = {"from": "2026-11-01", "to": "2026-12-31"}
    by_model = {row["group"]: row["requests"] for row in usage(client, group_by="model", **everything)}
    assert by_model == {"gpt-4o": 1, "gpt-4o-mini": 2, "glm-4": 2}
    by_upstream = {row["group"]: row["requests"] for row in usage(client, group_by="upstream", **everything)}
    assert by_upstream == {None: 1, "openai-main": 2, "zhipu": 2}
    by_status = [(row["bucket"], row["group"], row["requests"], row["errors"]) for row in usage(client, group_by="status", bucket="day", **everything)]
    assert by_status == [("2026-11-30T00:00:00Z", 200, 3, 0), ("2026-11-30T00:00:00Z", 429, 1, 1), ("2026-12-01T00:00:00Z", 502, 1, 1)]
    [total] = usage(client, **everything)
    assert (total["group"], total["bucket"], total["requests"], total["errors"]) == (None, None, 5, 2)
    assert total["cost_usd"] == pytest.approx(0.016)


def test_filters_by_token_and_time(served):
    client, _ = served
    [bob] = usage(client, token="bob", **DAY)
    assert bob["requests"] == 1 and bob["prompt_tokens"] == 10
    # times, with offsets: 09:00-10:00 UTC written as +08:00
    window = usage(client, group_by="token", **{"from": "2026-11-30T17:00:00+08:00", "to": "2026-11-30T18:00:00+08:00"})
    assert [(r["group"], r["requests"]) for r in window] == [("alice", 1), ("bob", 1)]
    assert usage(client, token="nobody", **DAY) == []


def test_default_window_is_the_last_30_days(served):
    client, app = served
    now = time.time()
    app.state.gateway.usage.record(UsageEvent(now - 86400, "carol", "m", None, None, 200, request_id="recent"))
    app.state.gateway.usage.record(UsageEvent(now - 31 * 86400, "carol", "m", None, None, 200, request_id="old"))
    [carol] = usage(client, token="carol")
    assert carol["requests"] == 1


def test_csv_of_totals(served):
    client, _ = served
    response = client.get("/admin/api/usage", params={"group_by": "token", "bucket": "hour", "format": "csv", **DAY})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["group", "bucket", "requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd"]
    assert [(r["group"], r["bucket"], r["requests"], r["errors"]) for r in rows] == [
        ("alice", "2026-11-30T08:00:00Z", "2", "0"),
        ("alice", "2026-11-30T09:00:00Z", "1", "1"),
        ("bob", "2026-11-30T09:00:00Z", "1", "0"),
    ]
    assert float(rows[0]["cost_usd"]) == pytest.approx(0.015)


def test_raw_events_paged_and_as_csv(served):
    client, _ = served
    window = {"from": "2026-11-01", "to": "2026-12-31"}
    pages, after = [], None
    while True:
        params = {"limit": 2, **window, **({"after": after} if after is not None else {})}
        body = client.get("/admin/api/usage/events", params=params).json()
        pages.append([e["request_id"] for e in body["data"]])
        if not body["has_more"]:
            break
        after = body["last_id"]
    assert pages == [["r1", "r2"], ["r3", "r4"], ["r5"]]
    first = client.get("/admin/api/usage/events", params={"limit": 1, **window}).json()["data"][0]
    assert first["time"] == "2026-11-30T08:10:00Z"
    assert {k: first[k] for k in ("token_name", "model", "served_by", "provider", "status", "stream", "prompt_tokens", "cached_tokens")} == {
        "token_name": "alice", "model": "gpt-4o-mini", "served_by": "openai-main", "provider": "openai", "status": 200, "stream": False, "prompt_tokens": 100, "cached_tokens": 10,
    }
    response = client.get("/admin/api/usage/events", params={"format": "csv", "token": "bob", **window})
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["request_id"], r["status"], r["error_code"]) for r in rows] == [("r4", "200", ""), ("r5", "502", "upstream_error")]
    assert "ttft_ms" in rows[0] and "duration_ms" in rows[0]
    for text in (response.text, client.get("/admin/api/usage/events", params=window).text):
        assert not any(token in text for token in TOKENS)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "from"),
        ({"group_by": "user"}, "group_by"),
        ({"bucket": "minute"}, "bucket"),
    ],
)
def test_bad_parameters_are_400_naming_the_param(served, params, param):
    client, _ = served
    response = client.get("/admin/api/usage", params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and param in error["message"]


def test_bad_paging_parameters(served):
    client, _ = served
    for params, param in (({"limit": "0"}, "limit"), ({"limit": "100001"}, "limit"), ({"after": "x"}, "after")):
        response = client.get("/admin/api/usage/events", params=params)
        assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_admin_auth_required(served):
    client, _ = served
    for route in ("/admin/api/usage", "/admin/api/usage/events"):
        assert httpx.get(str(client.base_url) + route).status_code == 401
        # a client token is not an admin token
        refused = httpx.get(str(client.base_url) + route, headers={"authorization": f"Bearer {TOKENS[0]}"})
        assert refused.status_code == 401


def test_a_gateway_process_reads_what_a_ledger_on_its_database_wrote(tmp_path):
    """`open-api.py` as users run it; the events are written to its database file (the default
    `gateway.db` beside the config) by a ledger in this process, as a second replica would."""
    path = tmp_path / "model_config.yaml"
    path.write_text(config_text(), encoding="utf-8")

    async def write():
        db = Database(database_url(None, path))
        await db.start()
        ledger = UsageLedger(db)
        for event in EVENTS:
            ledger.record(event)
        await ledger.flush()
        await db.close()

    asyncio.run(write())
    with GatewayProcess(path) as gateway:
        response = httpx.get(f"{gateway.base_url}/admin/api/usage", params={"group_by": "token", **DAY}, headers=BEARER)
    assert response.status_code == 200, response.text
    assert [(r["group"], r["requests"], r["errors"]) for r in response.json()["data"]] == [("alice", 3, 1), ("bob", 1, 0)]
