"""The usage queries of §6 on both backends of §8: the same events written through the ledger
to SQLite and to a real PostgreSQL server give the same totals, buckets, pages and period
totals (the SQL is portable)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store import Database, database_url
from gateway.usage import query
from gateway.usage.ledger import UsageLedger, period_totals
from tests.test_usage_api import EVENTS, at

EVERYTHING = query.UsageQuery(at("2026-11-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return database_url(None, tmp_path / "config.yaml")
    server = request.getfixturevalue("postgres_server")
    server.reset()
    return database_url(server.url, None)


def run_on(url: str, *queries):
    async def go():
        db = Database(url)
        await db.start()
        ledger = UsageLedger(db, batch_max=2)
        for event in EVENTS:
            ledger.record(event)
        await ledger.flush()
        results = [await q(db) for q in queries]
        await db.close()
        return results

    return asyncio.run(go())


def slim(rows):
    return [(r["group"], r["bucket"], r["requests"], r["errors"], r["prompt_tokens"], r["completion_tokens"], r["cached_tokens"], round(r["cost_usd"], 9)) for r in rows]


def test_grouped_and_bucketed_totals(url):
    def q(**kw):
        return lambda db: query.totals(db, query.UsageQuery(EVERYTHING.since, EVERYTHING.until, **kw))

    by_token_hour, by_status_day, by_upstream, total, bob = run_on(
        url, q(group_by="token", bucket="hour"), q(group_by="status", bucket="day"), q(group_by="upstream"), q(), q(token="bob", bucket="day")
    )
    assert slim(by_token_hour) == [
        ("alice", "2026-11-30T08:00:00Z", 2, 0, 150, 25, 10, 0.015),
        ("alice", "2026-11-30T09:00:00Z", 1, 1, 0, 0, 0, 0.0),
        ("bob", "2026-11-30T09:00:00Z", 1, 0, 10, 10, 0, 0.001),
        ("bob", "2026-12-01T01:00:00Z", 1, 1, 0, 0, 0, 0.0),
    ]
    assert [(r["bucket"], r["group"], r["requests"]) for r in by_status_day] == [
        ("2026-11-30T00:00:00Z", 200, 3), ("2026-11-30T00:00:00Z", 429, 1), ("2026-12-01T00:00:00Z", 502, 1),
    ]
    assert sorted((str(r["group"]), r["requests"]) for r in by_upstream) == [("None", 1), ("openai-main", 2), ("zhipu", 2)]
    assert slim(total) == [(None, None, 5, 2, 160, 35, 10, 0.016)]
    assert [(r["bucket"], r["requests"]) for r in bob] == [("2026-11-30T00:00:00Z", 1), ("2026-12-01T00:00:00Z", 1)]


def test_event_pages_and_period_totals(url):
    first, second, totals = run_on(
        url,
        lambda db: query.events(db, EVERYTHING, 3, None),
        lambda db: query.events(db, EVERYTHING, 3, 3),
        lambda db: period_totals(db, at("2026-11-30T09:00:00Z")),
    )
    (page1, more1), (page2, more2) = first, second
    assert [e["request_id"] for e in page1] == ["r1", "r2", "r3"] and more1
    assert [e["request_id"] for e in page2] == ["r4", "r5"] and not more2
    assert page1[1]["stream"] is True and page1[1]["ttft_ms"] == 80.0 and page1[0]["time"] == "2026-11-30T08:10:00Z"
    assert {name: (round(cost, 9), tokens) for name, (cost, tokens) in totals.items()} == {"alice": (0.0, 0), "bob": (0.001, 20)}
