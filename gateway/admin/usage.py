"""The admin usage API (CONTRACT.md §6 "Who sees it"), beside the config page's API.

| route | answers |
|---|---|
| `GET /admin/api/usage?from=&to=&group_by=token\|model\|upstream\|status&bucket=hour\|day&token=NAME` | `{"data": [{"group", "bucket", "requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd"}]}` |
| `GET /admin/api/usage/events?from=&to=&token=&limit=&after=` | `{"data": [event...], "has_more", "last_id"}`: oldest first; pass `last_id` as `after` for the next page |

`from`/`to`: ISO 8601 dates or times (UTC unless an offset is given; `to=` a date includes that
day), default the last 30 days. `&format=csv` answers `text/csv` with the same fields, one row
each. `limit` defaults to 100 (at most 10,000). Bad parameters: 400 `invalid_request_error`
naming the `param`; the database unreachable: 503 `store_unavailable`.

Events still queued in the ledger are written before a query reads, so what a request just did
is visible at once. Auth as every admin route (`gateway.admin.api.authorize`).
"""

from __future__ import annotations

import csv
import io
import logging
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.api import SECURITY_HEADERS, _error, _guarded, _json
from gateway.usage import query as usage_query
from gateway.usage.ledger import EVENT_FIELDS

log = logging.getLogger("gateway.admin")

DEFAULT_LIMIT = 100
TOTAL_COLUMNS = ("group", "bucket", *usage_query.TOTAL_FIELDS)
EVENT_COLUMNS = ("id", "time", *EVENT_FIELDS)


def _csv(rows: list[dict], columns: tuple[str, ...], filename: str) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else orjson.dumps(row[c]).decode() if isinstance(row.get(c), dict) else row[c] for c in columns])
    headers = {**SECURITY_HEADERS, "content-disposition": f'attachment; filename="{filename}"'}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def _bad(exc: usage_query.QueryError) -> Response:
    return _error(400, str(exc), "invalid_parameter", param=exc.param)


async def _ready(request: Request):
    """The gateway's database, with the ledger's queue written first (best effort; not while
    the ledger's writes fail, so that a query does not wait on a database that is down)."""
    gateway = request.app.state.gateway
    if gateway.usage.failing:
        return gateway.database
    try:
        await gateway.usage.flush()
    except Exception as exc:  # the read below reports the outage
        log.warning("usage: could not write queued events before a query: %s", type(exc).__name__)
    return gateway.database


def _unavailable(exc: Exception) -> Response:
    log.warning("usage query failed: %s: %s", type(exc).__name__, exc)
    return _error(503, "The usage database cannot be read right now; try again later.", "store_unavailable")


def _want_csv(request: Request) -> bool:
    return request.query_params.get("format", "json").lower() == "csv"


async def usage(request: Request) -> Response:
    try:
        query = usage_query.parse_query(request.query_params, time.time())
    except usage_query.QueryError as exc:
        return _bad(exc)
    database = await _ready(request)
    try:
        data = await usage_query.totals(database, query)
    except Exception as exc:
        return _unavailable(exc)
    if _want_csv(request):
        return _csv(data, TOTAL_COLUMNS, "usage.csv")
    return _json({"data": data})


def _int_param(request: Request, name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    text = request.query_params.get(name)
    if not text:
        return default
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        bound = f" and at most {high}" if high is not None else ""
        raise usage_query.QueryError(name, f"'{name}' must be an integer of at least {low}{bound}, not {text!r}.")
    return int(text)


async def usage_events(request: Request) -> Response:
    try:
        query = usage_query.parse_query(request.query_params, time.time())
        limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, usage_query.MAX_EVENTS)
        after = _int_param(request, "after", None, 0)
    except usage_query.QueryError as exc:
        return _bad(exc)
    database = await _ready(request)
    try:
        data, more = await usage_query.events(database, query, limit, after)
    except Exception as exc:
        return _unavailable(exc)
    if _want_csv(request):
        return _csv(data, EVENT_COLUMNS, "usage-events.csv")
    return _json({"data": data, "has_more": more, "last_id": data[-1]["id"] if data else None})


def routes() -> list[Route]:
    """The usage routes (added next to the admin API by `gateway.admin.mount`)."""
    return [
        Route("/admin/api/usage", _guarded(usage, False), methods=["GET"]),
        Route("/admin/api/usage/events", _guarded(usage_events, False), methods=["GET"]),
    ]
