"""The usage ledger of §6: batched writes, the database down and back, overflow, retention,
period totals. Flushes are explicit (`flush()` / `tick()`), time is a fake clock: no sleeps."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.store import Database, database_url
from gateway.usage.events import UsageEvent
from gateway.usage.ledger import UsageLedger, period_totals, usage_events

T0 = 1_790_000_000.0  # 2026-09-21, a fixed "now"


def ev(name: str = "alice", at: float = T0, **kw) -> UsageEvent:
    base = dict(model="gpt-4o-mini", served_by=name, provider="openai", status=200, prompt_tokens=10, completion_tokens=5, cost_usd=0.001, request_id="req-1")
    base.update(kw)
    return UsageEvent(time=at, token_name=name, **base)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "config.yaml"


def database(db_path, busy_timeout: float = 30) -> Database:
    db = Database(database_url(None, db_path))
    if busy_timeout != 30:  # a short busy timeout: a locked database fails fast
        db.engine = create_async_engine(db.url, connect_args={"timeout": busy_timeout})
    return db


async def rows(db: Database) -> list:
    async with db.engine.connect() as conn:
        return (await conn.execute(select(usage_events).order_by(usage_events.c.id))).all()


def run(coro):
    return asyncio.run(coro)


def test_record_queues_and_flush_writes_in_batches(db_path):
    statements: list[int] = []

    async def go():
        db = database(db_path)
        await db.start()
        sa_event.listen(db.engine.sync_engine, "before_cursor_execute", lambda conn, cur, stmt, params, ctx, many: stmt.startswith("INSERT INTO usage_events") and statements.append(len(params) if many else 1))
        ledger = UsageLedger(db, batch_max=4)
        for i in range(10):
            ledger.record(ev(request_id=f"r{i}", prompt_tokens=i))
        assert ledger.depth == 10 and await rows(db) == []  # nothing written on the request path
        assert await ledger.flush() == 10
        stored = await rows(db)
        await db.close()
        return ledger, stored

    ledger, stored = run(go())
    assert ledger.depth == 0 and ledger.written == 10
    assert [r.request_id for r in stored] == [f"r{i}" for i in range(10)]
    assert stored[3].prompt_tokens == 3 and stored[0].time_ms == int(T0 * 1000) and stored[0].token_name == "alice"
    assert len(statements) == 3  # three transactions: 4 + 4 + 2 rows


def test_every_field_of_the_event_is_stored(db_path):
    event = ev(
        "bob", model="claude-3-5-sonnet", served_by="claude-eu", provider="claude", status=429, error_code="rate_limit_exceeded",
        stream=True, cached_tokens=3, reasoning_tokens=2, ttft_ms=12.5, duration_ms=99.0, estimated=True, surface="messages", extra={"k": 1},
    )

    async def go():
        db = database(db_path)
        await db.start()
        ledger = UsageLedger(db)
        ledger.record(event)
        await ledger.flush()
        stored = (await rows(db))[0]
        await db.close()
        return stored

    stored = run(go())
    for name, value in event.as_dict().items():
        if name != "time":
            assert getattr(stored, name) == value, name


def test_database_down_events_wait_and_are_written_when_it_is_back(db_path):
    async def go():
        db = database(db_path, busy_timeout=0.05)
        await db.start()
        ledger = UsageLedger(db, clock=Clock())
        # another process holds the database's write lock: writes fail ("database is locked")
        blocker = sqlite3.connect(db_path.parent / "gateway.db")
        blocker.execute("BEGIN EXCLUSIVE")
        for i in range(5):
            ledger.record(ev(request_id=f"r{i}"))
        await ledger.tick()  # fails, logs, does not raise
        await ledger.tick()
        assert ledger.depth == 5 and ledger.write_errors >= 2
        ledger.record(ev(request_id="r5"))
        blocker.rollback()
        blocker.close()
        await ledger.tick()
        stored = await rows(db)
        await db.close()
        return ledger, stored

    ledger, stored = run(go())
    assert [r.request_id for r in stored] == [f"r{i}" for i in range(6)]  # in order, none lost, none twice
    assert ledger.depth == 0 and ledger.dropped == 0


def test_a_full_queue_drops_and_counts_never_raises(db_path):
    db = database(db_path)
    ledger = UsageLedger(db, queue_max=3)
    for i in range(5):
        ledger.record(ev(request_id=f"r{i}"))
    assert ledger.depth == 3 and ledger.dropped == 2

    async def go():
        await db.start()
        await ledger.flush()
        ledger.record(ev(request_id="after"))  # room again once written
        await ledger.flush()
        stored = await rows(db)
        await db.close()
        return stored

    assert [r.request_id for r in run(go())] == ["r0", "r1", "r2", "after"]
    assert ledger.dropped == 2


def test_stop_writes_what_is_queued(db_path):
    async def go():
        db = database(db_path)
        await db.start()
        ledger = UsageLedger(db, flush_seconds=3600)
        ledger.start()
        await asyncio.sleep(0)  # let the task take its first (empty) round
        ledger.record(ev(request_id="last"))
        await ledger.stop()
        stored = await rows(db)
        await db.close()
        return stored

    assert [r.request_id for r in run(go())] == ["last"]


def test_retention_prunes_old_rows_when_due(db_path):
    clock = Clock()
    day = 86400

    async def go():
        db = database(db_path)
        await db.start()
        ledger = UsageLedger(db, retention_days=90, prune_seconds=3600, clock=clock)
        ledger.record(ev(request_id="old", at=T0 - 91 * day))
        ledger.record(ev(request_id="recent", at=T0 - 89 * day))
        await ledger.tick()  # first round prunes
        after_first = [r.request_id for r in await rows(db)]
        ledger.record(ev(request_id="aging", at=T0 - 90 * day + 600))
        clock.now = T0 + 1800  # "aging" is now past 90 days, but the next prune is not due yet...
        await ledger.tick()
        not_due = [r.request_id for r in await rows(db)]
        clock.now = T0 + 3600  # ...an hour after the last one it is
        await ledger.tick()
        due = [r.request_id for r in await rows(db)]
        await db.close()
        return after_first, not_due, due

    after_first, not_due, due = run(go())
    assert after_first == ["recent"]
    assert not_due == ["recent", "aging"]
    assert due == ["recent"]


def test_retention_zero_keeps_everything(db_path):
    async def go():
        db = database(db_path)
        await db.start()
        ledger = UsageLedger(db, retention_days=0, clock=Clock())
        ledger.record(ev(at=T0 - 5000 * 86400))
        await ledger.tick()
        count = len(await rows(db))
        await db.close()
        return count

    assert run(go()) == 1


def test_period_totals_sum_cost_and_tokens_per_name_since_a_time(db_path):
    async def go():
        db = database(db_path)
        await db.start()
        ledger = UsageLedger(db)
        ledger.record(ev("alice", at=T0 - 10, prompt_tokens=100, completion_tokens=50, cost_usd=0.5))  # before: not counted
        ledger.record(ev("alice", at=T0, prompt_tokens=10, completion_tokens=5, cost_usd=0.25))
        ledger.record(ev("alice", at=T0 + 60, prompt_tokens=1, completion_tokens=2, cached_tokens=1, cost_usd=0.125))
        ledger.record(ev("bob", at=T0 + 1, prompt_tokens=7, completion_tokens=0, cost_usd=0.0, status=429))
        await ledger.flush()
        totals = await period_totals(db, T0)
        empty = await period_totals(db, T0 + 3600)
        await db.close()
        return totals, empty

    totals, empty = run(go())
    assert totals == {"alice": (0.375, 18), "bob": (0.0, 7)}
    assert empty == {}


def test_table_has_time_and_token_indexes(db_path):
    async def go():
        db = database(db_path)
        await db.start()
        async with db.engine.connect() as conn:
            names = (await conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='usage_events'")).scalars().all()
            plan = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN SELECT count(*) FROM usage_events WHERE token_name='a' AND time_ms > 5")).all()
        await db.close()
        return names, plan

    names, plan = run(go())
    assert {"ix_usage_events_time", "ix_usage_events_token_time"} <= set(names)
    assert "ix_usage_events_token_time" in " ".join(str(p) for p in plan)


def test_an_event_the_database_refuses_does_not_hold_up_the_queue(db_path, caplog):
    async def go():
        db = database(db_path)
        await db.start()
        ledger = UsageLedger(db, batch_max=10)
        ledger.record(ev(request_id="before"))
        ledger.record(ev(request_id="bad", prompt_tokens=None))  # NOT NULL column
        ledger.record(ev(request_id="after"))
        await ledger.flush()
        stored = [r.request_id for r in await rows(db)]
        await db.close()
        return ledger, stored

    ledger, stored = run(go())
    assert stored == ["before", "after"]
    assert (ledger.depth, ledger.rejected, ledger.written, ledger.write_errors) == (0, 1, 2, 0)
    assert "refused an event of 'alice'" in caplog.text
