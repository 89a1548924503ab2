"""Reading the usage ledger (CONTRACT.md §6 "Who sees it"): totals grouped and bucketed, and
the raw events paged, as plain data for the admin API (`gateway/admin/usage.py`).

Portable SQL (SQLite and PostgreSQL): buckets are integer division of `time_ms` by the
bucket's length in ms (UTC hours and days), written as literal constants so that the SELECT
and GROUP BY expressions are the same text on every backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import BigInteger, case, func, literal_column, select

from gateway.store import Database
from gateway.usage.ledger import EVENT_FIELDS, usage_events

GROUPS = {"token": "token_name", "model": "model", "upstream": "served_by", "status": "status"}
BUCKETS = {"hour": 3_600_000, "day": 86_400_000}
DEFAULT_DAYS = 30
MAX_EVENTS = 10_000
TOTAL_FIELDS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd")


class QueryError(ValueError):
    """A bad query parameter: `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """What to read: events with `since` ≤ time < `until` (UNIX s), of `token` (a name) only
    when given, grouped by `group_by` (a key of GROUPS) and `bucket` (a key of BUCKETS)."""

    since: float
    until: float
    group_by: str | None = None
    bucket: str | None = None
    token: str | None = None


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_time(text: str, param: str, end: bool = False) -> float:
    """An ISO 8601 date or time as a UNIX time. A time without an offset is UTC; a date alone is
    00:00 UTC of that day, or with `end` (for `to`) 00:00 of the next, so `to=` a date includes
    it. Raises QueryError."""
    text = text.strip()
    try:
        if _DATE.match(text):
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
            return (day + timedelta(days=1) if end else day).timestamp()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise QueryError(param, f"'{param}' must be an ISO 8601 date or time (e.g. 2026-12-01 or 2026-12-01T08:00:00Z), not {text!r}.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_query(params, now: float) -> UsageQuery:
    """A UsageQuery from request parameters (`from`, `to`, `group_by`, `bucket`, `token`);
    `from`/`to` default to the last 30 days up to `now`. Raises QueryError."""
    until = parse_time(params["to"], "to", end=True) if params.get("to") else now
    since = parse_time(params["from"], "from") if params.get("from") else until - DEFAULT_DAYS * 86400
    if since >= until:
        raise QueryError("from", "'from' must be before 'to'.")
    group_by = params.get("group_by") or None
    if group_by is not None and group_by not in GROUPS:
        raise QueryError("group_by", f"'group_by' must be one of {', '.join(GROUPS)}, not {group_by!r}.")
    bucket = params.get("bucket") or None
    if bucket is not None and bucket not in BUCKETS:
        raise QueryError("bucket", f"'bucket' must be one of {', '.join(BUCKETS)}, not {bucket!r}.")
    return UsageQuery(since, until, group_by, bucket, params.get("token") or None)


def iso(ms: int | float) -> str:
    """UNIX milliseconds as an ISO 8601 UTC time (`2026-12-01T08:00:00Z`, with ms when not 0)."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _window(query: UsageQuery):
    c = usage_events.c
    conditions = [c.time_ms >= int(query.since * 1000), c.time_ms < int(query.until * 1000)]
    if query.token is not None:
        conditions.append(c.token_name == query.token)
    return conditions


async def totals(database: Database, query: UsageQuery) -> list[dict]:
    """`[{"group", "bucket", "requests", "errors", "prompt_tokens", "completion_tokens",
    "cached_tokens", "cost_usd"}]` ordered by bucket then group. `group` is the grouped value
    (None without `group_by`), `bucket` the ISO start of the UTC hour/day (None without
    `bucket`). `errors` counts statuses ≥ 400."""
    c = usage_events.c
    keys = []
    group = None
    if query.group_by:
        group = getattr(c, GROUPS[query.group_by]).label("grp")
        keys.append(group)
    bucket = None
    if query.bucket:
        size = literal_column(str(BUCKETS[query.bucket]), BigInteger)
        bucket = ((c.time_ms // size) * size).label("bucket_ms")
        keys.insert(0, bucket)
    measures = [
        func.count().label("requests"),
        func.coalesce(func.sum(case((c.status >= 400, 1), else_=0)), 0).label("errors"),
        func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(c.cached_tokens), 0).label("cached_tokens"),
        func.coalesce(func.sum(c.cost_usd), 0.0).label("cost_usd"),
    ]
    statement = select(*keys, *measures).where(*_window(query))
    if keys:
        statement = statement.group_by(*keys).order_by(*keys)
    async with database.engine.connect() as conn:
        result = (await conn.execute(statement)).mappings().all()
    data = []
    for row in result:
        item = {"group": row["grp"] if group is not None else None, "bucket": iso(row["bucket_ms"]) if bucket is not None else None}
        for name in TOTAL_FIELDS:
            item[name] = float(row[name]) if name == "cost_usd" else int(row[name])
        if item["requests"]:
            data.append(item)
    return data


async def events(database: Database, query: UsageQuery, limit: int, after: int | None) -> tuple[list[dict], bool]:
    """(raw events oldest first with `id` > `after`, at most `limit`; whether more follow).
    Each event is `{"id", "time" (ISO), **the UsageEvent fields}`."""
    c = usage_events.c
    statement = select(usage_events).where(*_window(query))
    if after is not None:
        statement = statement.where(c.id > after)
    statement = statement.order_by(c.id).limit(limit + 1)
    async with database.engine.connect() as conn:
        result = (await conn.execute(statement)).mappings().all()
    data = [{"id": row["id"], "time": iso(row["time_ms"]), **{name: row[name] for name in EVENT_FIELDS}} for row in result[:limit]]
    return data, len(result) > limit


__all__ = ["BUCKETS", "GROUPS", "QueryError", "UsageQuery", "events", "iso", "parse_query", "parse_time", "totals"]
