"""The usage ledger (CONTRACT.md §6): usage events written in batches, off the request path.

`UsageLedger.record(event)` (the `UsageSink` of `gateway.usage.events`) only appends to a
bounded in-memory queue: it never blocks, never awaits and never raises. A background task
(`run`, started by `start()`) writes the queue every `settings.usage.flush_seconds` in batches
of up to `batch_max` rows, one multi-row INSERT per batch, through the SQLAlchemy async
engine of `gateway.store.Database`. A batch leaves the queue only once its transaction
committed, so with the database down events wait (up to `queue_max`; what arrives beyond that
is counted in `dropped`, read by `/metrics` as `gateway_usage_dropped_total`) and are written
when it is back. A crash loses what was queued since the last flush, at most one interval's
batch. `stop()` writes what is left (bounded by a timeout). Rows older than
`retention_days` are deleted every `prune_seconds`.

The design follows what went wrong elsewhere (research/keys.md §1): an unbounded spend buffer
(LiteLLM #21514) and batches dropped on a failed write (LiteLLM #33873).

Table `usage_events` (on `gateway.store.metadata`): one row per event, `time_ms` a UNIX time in
integer milliseconds (so that hour/day buckets are integer division on SQLite and PostgreSQL
alike), indexed by time and by (token_name, time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import time
from collections import deque
from collections.abc import Callable
from itertools import islice

import orjson
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, Index, Integer, String, Table, func, select

from gateway.store import Database, metadata
from gateway.usage.events import UsageEvent

log = logging.getLogger("gateway.usage")

usage_events = Table(
    "usage_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time_ms", BigInteger, nullable=False),
    Column("token_name", String(200), nullable=False),
    Column("model", String(200)),
    Column("served_by", String(200)),
    Column("provider", String(64)),
    Column("status", Integer, nullable=False),
    Column("error_code", String(100)),
    Column("stream", Boolean, nullable=False, default=False),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("reasoning_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("ttft_ms", Float),
    Column("duration_ms", Float, nullable=False, default=0.0),
    Column("request_id", String(100), nullable=False, default=""),
    Column("estimated", Boolean, nullable=False, default=False),
    Column("surface", String(32), nullable=False, default="chat"),
    Column("extra", JSON(none_as_null=True)),
    Index("ix_usage_events_time", "time_ms"),
    Index("ix_usage_events_token_time", "token_name", "time_ms"),
)

# Columns of an event row, in the order of `UsageEvent` (besides `time`, stored as `time_ms`).
EVENT_FIELDS = tuple(str(c.name) for c in usage_events.columns if c.name not in ("id", "time_ms"))
_SCALARS = operator.attrgetter(*(f for f in EVENT_FIELDS if f != "extra"))
_INSERT_COLUMNS = ("time_ms", *(f for f in EVENT_FIELDS if f != "extra"), "extra")


def row_of(event: UsageEvent) -> tuple:
    """The `usage_events` row for an event, as a tuple in `_INSERT_COLUMNS` order (`time` s →
    `time_ms`; `extra` as JSON text, empty → NULL)."""
    return (int(round(event.time * 1000)), *_SCALARS(event), orjson.dumps(event.extra).decode() if event.extra else None)


def insert_statement(paramstyle: str) -> str:
    """The driver-level multi-row INSERT for `usage_events` in the DBAPI's `paramstyle`.

    Batches are written with the driver's own `executemany` (through SQLAlchemy's connection,
    `exec_driver_sql`): the compiled-statement path re-processes every parameter of every row
    in Python (~20 µs a row), which the ledger does not need for plain ints, floats, strings
    and booleans. Supported: `qmark` (sqlite3/aiosqlite), `numeric_dollar` (asyncpg),
    `format`/`pyformat` (psycopg), `numeric`; `named` drivers take the compiled path."""
    n = len(_INSERT_COLUMNS)
    if paramstyle == "qmark":
        marks = ["?"] * n
    elif paramstyle == "numeric_dollar":
        marks = [f"${i + 1}" for i in range(n)]
    elif paramstyle == "numeric":
        marks = [f":{i + 1}" for i in range(n)]
    elif paramstyle in ("format", "pyformat"):
        marks = ["%s"] * n
    else:
        raise ValueError(f"unsupported DBAPI paramstyle {paramstyle!r}")
    return f"INSERT INTO usage_events ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join(marks)})"


class UsageLedger:
    """The batched writer of usage events (a `UsageSink`).

    `database`: the `Database` whose engine the rows go to (it must be started before the
    first flush). `flush_seconds`, `queue_max`, `batch_max`, `retention_days` as
    `settings.usage` (`gateway.config.UsageSettings`). `clock` (UNIX seconds) decides what
    retention deletes; tests pass a fake one.

    Counters for `/metrics`: `dropped` (events refused because the queue was full),
    `written` (rows committed), `write_errors` (failed batch writes), `rejected` (events the
    database refused as invalid, dropped so that they do not hold up the queue); `depth` is the
    queue's length now.
    """

    def __init__(
        self,
        database: Database,
        *,
        flush_seconds: float = 1.0,
        queue_max: int = 50_000,
        batch_max: int = 500,
        retention_days: float = 90.0,
        prune_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.flush_seconds = flush_seconds
        self.queue_max = queue_max
        self.batch_max = batch_max
        self.retention_days = retention_days
        self.prune_seconds = prune_seconds
        self.clock = clock
        self.dropped = 0
        self.written = 0
        self.write_errors = 0
        self.rejected = 0
        self._queue: deque[UsageEvent] = deque()
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task | None = None
        self._failing = False
        self._last_prune: float | None = None
        self._statements: dict[str, str] = {}

    @classmethod
    def from_settings(cls, database: Database, usage, **kwargs) -> UsageLedger:
        """A ledger configured from `settings.usage` (a `UsageSettings`)."""
        return cls(
            database,
            flush_seconds=usage.flush_seconds,
            queue_max=usage.queue_max,
            batch_max=usage.batch_max,
            retention_days=usage.retention_days,
            **kwargs,
        )

    def configure(self, usage) -> None:
        """Take new `settings.usage` values (a config reload); the queue is kept."""
        self.flush_seconds = usage.flush_seconds
        self.queue_max = usage.queue_max
        self.batch_max = usage.batch_max
        self.retention_days = usage.retention_days

    # -- the request path -------------------------------------------------------------------

    def record(self, event: UsageEvent) -> None:
        """Queue `event` for the next flush; when `queue_max` events already wait, count it in
        `dropped` instead. O(1), never blocks or raises (also safe from another thread)."""
        if len(self._queue) >= self.queue_max:
            self.dropped += 1
            return
        self._queue.append(event)

    @property
    def depth(self) -> int:
        """Events waiting to be written."""
        return len(self._queue)

    @property
    def failing(self) -> bool:
        """True from a failed background write until the next one succeeds."""
        return self._failing

    # -- writing ----------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write everything queued now (in batches of `batch_max`); returns the events taken
        from the queue (written, or refused by the database as invalid: `rejected`).

        A batch leaves the queue only after its transaction committed. Raises the database's
        error when a batch cannot be written (the events stay queued)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            total = 0
            target = len(self._queue)  # what arrives meanwhile waits for the next flush
            while total < target and self._queue:
                batch = list(islice(self._queue, min(self.batch_max, target - total)))
                written = len(batch)
                try:
                    async with self.database.engine.begin() as conn:
                        await self._insert(conn, batch)
                except (IntegrityError, DataError):
                    # an event the database refuses (not an outage): write the others one by
                    # one, so that one bad row never holds up the queue
                    written = await self._insert_each(batch)
                except Exception:
                    self.write_errors += 1
                    raise
                for _ in batch:
                    self._queue.popleft()
                total += len(batch)
                self.written += written
            return total

    async def _insert(self, conn, batch: list[UsageEvent]) -> None:
        style = conn.dialect.paramstyle
        if style == "named":  # no positional style: the compiled path
            rows = [{**dict(zip(_INSERT_COLUMNS, row_of(e))), "extra": e.extra or None} for e in batch]
            await conn.execute(usage_events.insert(), rows)
            return
        statement = self._statements.get(style) or self._statements.setdefault(style, insert_statement(style))
        await conn.exec_driver_sql(statement, [row_of(e) for e in batch])

    async def _insert_each(self, batch: list[UsageEvent]) -> int:
        written = 0
        for event in batch:
            try:
                async with self.database.engine.begin() as conn:
                    await self._insert(conn, [event])
                written += 1
            except (IntegrityError, DataError) as exc:
                self.rejected += 1
                log.warning("usage: the database refused an event of %r (%s); it is dropped", event.token_name, type(exc.orig or exc).__name__)
        return written

    async def prune(self) -> int:
        """Delete rows older than `retention_days` (by `clock`); returns how many. 0 days: none."""
        self._last_prune = self.clock()
        if not self.retention_days:
            return 0
        cutoff = int((self.clock() - self.retention_days * 86400) * 1000)
        async with self.database.engine.begin() as conn:
            result = await conn.execute(usage_events.delete().where(usage_events.c.time_ms < cutoff))
        if result.rowcount:
            log.info("usage: deleted %d event(s) older than %g days", result.rowcount, self.retention_days)
        return result.rowcount or 0

    async def tick(self) -> None:
        """One round of the background task: flush, and prune when it is due. Logs a failing
        database once per outage (and its recovery), never raises."""
        try:
            written = await self.flush()
            if self._last_prune is None or self.clock() - self._last_prune >= self.prune_seconds:
                await self.prune()
        except Exception as exc:
            if not self._failing:
                self._failing = True
                log.warning("usage: cannot write to the database (%s: %s); %d event(s) wait in the queue", type(exc).__name__, exc, self.depth)
            return
        if self._failing:
            self._failing = False
            log.info("usage: the database is back; %d queued event(s) written", written)

    async def run(self) -> None:
        """The background task: `tick()` every `flush_seconds` until cancelled."""
        while True:
            await self.tick()
            await asyncio.sleep(self.flush_seconds)

    def start(self) -> None:
        """Start the background task (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="gateway-usage-ledger")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the background task and write what is still queued (giving up after `timeout`
        seconds, e.g. with the database down; what is lost is logged)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        if not self._queue:
            return
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except Exception as exc:
            log.warning("usage: %d event(s) could not be written at shutdown (%s)", self.depth, type(exc).__name__)


async def period_totals(database: Database, since: float) -> dict[str, tuple[float, int]]:
    """`{token_name: (cost_usd, prompt_tokens + completion_tokens)}` over the events recorded
    at or after `since` (a UNIX time in seconds): what restores budgets at start. Raises the
    database's error when it cannot be read."""
    tokens = func.coalesce(func.sum(usage_events.c.prompt_tokens + usage_events.c.completion_tokens), 0)
    query = (
        select(usage_events.c.token_name, func.coalesce(func.sum(usage_events.c.cost_usd), 0.0), tokens)
        .where(usage_events.c.time_ms >= int(since * 1000))
        .group_by(usage_events.c.token_name)
    )
    async with database.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {name: (float(cost), int(count)) for name, cost, count in rows}


__all__ = ["UsageLedger", "period_totals", "usage_events", "row_of"]
