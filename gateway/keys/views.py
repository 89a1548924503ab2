"""What key holders and the admin see of limits and usage (CONTRACT.md §6, §7).

- `GET /key/info` (the holder's own token): `{"name", "models", "expires", "expired",
  "rpm_limit", "tpm_limit", "max_parallel_requests", "max_budget", "token_budget",
  "budget_duration", "period": {"start", "end"}, "usage": {"requests", "tokens", "cost_usd",
  "in_flight"}, "remaining": {"budget_usd", "tokens"}}` (None where not set). Also `/v1/key/info`.
- `GET /dashboard/billing/subscription` (and `/v1/...`): OpenAI's legacy billing object that
  ChatGPT-Next-Web's balance panel reads: `hard_limit_usd` = `max_budget` (no budget:
  100000000, "unlimited" as one-api reports it), `access_until` = `expires` (UNIX s, 0: never).
- `GET /dashboard/billing/usage?start_date=YYYY-MM-DD&end_date=YYYY-MM-DD` (and `/v1/...`):
  `{"object": "list", "total_usage": CENTS}`: spend since `start_date` from the usage ledger
  when it is present, else this period's spend counted in memory.
- `GET /admin/api/keys` (admin token, as the config page's API): `{"data": [report, ...]}`, every
  entry (internal ones included, flagged) with `type`, `internal` and the report above.
- `GET /metrics` (admin token, or public with `settings.metrics.public: true`): Prometheus text.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import presented_token, same_secret
from gateway.errors import GatewayError, error_response, invalid_request
from gateway.observability.metrics import CONTENT_TYPE

log = logging.getLogger("gateway.keys")

UNLIMITED_USD = 100000000.0


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _holder(request: Request):
    runtime = request.app.state.gateway.runtime
    adapter = runtime.authenticate(presented_token(request.headers))
    runtime.guard.check_expiry(adapter)
    return runtime, adapter


async def key_info(request: Request) -> Response:
    try:
        runtime, adapter = _holder(request)
    except GatewayError as error:
        return error_response(error)
    return _json(await runtime.guard.report(adapter))


async def billing_subscription(request: Request) -> Response:
    try:
        runtime, adapter = _holder(request)
    except GatewayError as error:
        return error_response(error)
    limits = adapter.entry.limits
    hard = limits.max_budget if limits is not None and limits.max_budget is not None else UNLIMITED_USD
    until = int(limits.expires) if limits is not None and limits.expires is not None else 0
    return _json({
        "object": "billing_subscription", "has_payment_method": True, "hard_limit_usd": hard,
        "soft_limit_usd": hard, "system_hard_limit_usd": hard, "access_until": until,
    })


def _date(value: str | None, name: str) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise invalid_request(f"'{name}' must be a date (YYYY-MM-DD).", param=name) from None


async def billing_usage(request: Request) -> Response:
    try:
        runtime, adapter = _holder(request)
        since = _date(request.query_params.get("start_date"), "start_date")
        _date(request.query_params.get("end_date"), "end_date")
    except GatewayError as error:
        return error_response(error)
    guard = runtime.guard
    cost = None
    if since is not None:
        from gateway.keys.restore import _period_totals

        period_totals = _period_totals()
        if period_totals is not None:
            try:
                totals = await period_totals(request.app.state.gateway.database, since)
                cost = float((totals.get(adapter.entry.name) or (0.0, 0))[0])
            except Exception as exc:
                log.warning("could not read usage totals: %s", type(exc).__name__)
    if cost is None:
        cost = (await guard.report(adapter))["usage"]["cost_usd"]
    return _json({"object": "list", "total_usage": round(cost * 100, 4)})


async def _admin_refusal(request: Request) -> Response | None:
    """None when the request carries the admin token (or the config page's session)."""
    if getattr(request.app.state, "admin", None) is not None:
        from gateway.admin.api import authorize

        return await authorize(request, False)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and same_secret(value.strip(), request.app.state.gateway.runtime.settings.admin_token):
        return None
    return _json({"error": {"message": "The admin token is required.", "type": "invalid_request_error",
                            "param": None, "code": "invalid_admin_token"}}, 401)


async def admin_keys(request: Request) -> Response:
    if (refused := await _admin_refusal(request)) is not None:
        return refused
    runtime = request.app.state.gateway.runtime
    guard = runtime.guard
    now = guard.clock()
    data = []
    for adapter in runtime.adapters.values():
        report = await guard.report(adapter, now)
        report["type"] = adapter.entry.type
        report["internal"] = adapter.entry.internal
        data.append(report)
    return _json({"data": data})


async def metrics(request: Request) -> Response:
    runtime = request.app.state.gateway.runtime
    if not runtime.settings.metrics.public and (refused := await _admin_refusal(request)) is not None:
        return refused
    return Response(runtime.guard.metrics.render(), media_type=CONTENT_TYPE)


def routes() -> list[Route]:
    """The routes above, for `gateway.app.create_app`."""
    out = [Route("/admin/api/keys", admin_keys, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]
    for prefix in ("", "/v1"):
        out += [
            Route(f"{prefix}/key/info", key_info, methods=["GET"]),
            Route(f"{prefix}/dashboard/billing/subscription", billing_subscription, methods=["GET"]),
            Route(f"{prefix}/dashboard/billing/usage", billing_usage, methods=["GET"]),
        ]
    return out
