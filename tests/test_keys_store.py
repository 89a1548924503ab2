"""The counters of CONTRACT.md §6 on a fake clock: GCRA rpm/tpm with exact waits and refunds,
requests in flight, calendar budgets, all-or-nothing reservations; and the limit fields'
validation at load."""

from datetime import datetime, timezone

import pytest

from gateway.config import ConfigError, build_config
from gateway.keys.guard import go_duration
from gateway.keys.limits import parse_duration, period_end, period_start, zone
from gateway.keys.meter import SSEUsageTap, UsageMeter, estimate_tokens, usage_in_json
from gateway.keys.store import Ask, Grant, MemoryCounterStore, Refusal

T0 = 1_800_000_000.0


def test_rpm_admits_the_limit_at_once_then_one_per_interval_with_exact_wait():
    store = MemoryCounterStore()
    ask = Ask("k", rpm_limit=6)  # one request per 10 s after the burst of 6
    grants = [store.reserve(Ask("k", rpm_limit=6), T0) for _ in range(6)]
    assert all(isinstance(g, Grant) for g in grants)
    assert grants[0].requests.remaining == 5 and grants[-1].requests.remaining == 0
    assert grants[-1].requests.reset == pytest.approx(60.0)
    refused = store.reserve(ask, T0 + 1)
    assert isinstance(refused, Refusal) and refused.reason == "rpm"
    assert refused.retry_after == pytest.approx(9.0)
    assert isinstance(store.reserve(ask, T0 + 1 + 8.999), Refusal)
    assert isinstance(store.reserve(ask, T0 + 10), Grant)


def test_a_refused_request_counts_nothing():
    store = MemoryCounterStore()
    first = store.reserve(Ask("k", tokens=60, tpm_limit=100, rpm_limit=10), T0)
    assert isinstance(first, Grant)
    # tpm refuses: the rpm counter must not move either (all or nothing)
    for _ in range(20):
        assert isinstance(store.reserve(Ask("k", tokens=60, tpm_limit=100, rpm_limit=10), T0), Refusal)
    after = store.reserve(Ask("k", tokens=40, tpm_limit=100, rpm_limit=10), T0)
    assert isinstance(after, Grant) and after.requests.remaining == 8


def test_tpm_settle_refunds_unused_reservation():
    store = MemoryCounterStore()
    grant = store.reserve(Ask("k", tokens=100, tpm_limit=100), T0)
    assert isinstance(store.reserve(Ask("k", tokens=10, tpm_limit=100), T0), Refusal)
    store.settle(grant, 20, 0.0, T0)
    again = store.reserve(Ask("k", tokens=80, tpm_limit=100), T0)
    assert isinstance(again, Grant) and again.tokens.remaining == 0
    refused = store.reserve(Ask("k", tokens=30, tpm_limit=100), T0)
    assert refused.retry_after == pytest.approx(18.0)  # 30 tokens at 0.6 s each


def test_request_larger_than_the_tpm_limit_is_refused_without_a_wait():
    refused = MemoryCounterStore().reserve(Ask("k", tokens=101, tpm_limit=100), T0)
    assert refused.reason == "tpm" and refused.retry_after is None


def test_parallel_slots_are_released_by_settle_once():
    store = MemoryCounterStore()
    a = store.reserve(Ask("k", max_parallel=2), T0)
    b = store.reserve(Ask("k", max_parallel=2), T0)
    assert isinstance(store.reserve(Ask("k", max_parallel=2), T0), Refusal)
    store.settle(a, 0, 0.0, T0)
    store.settle(a, 0, 0.0, T0)  # twice: still one slot
    assert isinstance(store.reserve(Ask("k", max_parallel=2), T0), Grant)
    assert isinstance(store.reserve(Ask("k", max_parallel=2), T0), Refusal)
    store.settle(b, 0, 0.0, T0)


def test_budget_reservations_in_flight_count_and_settle_to_real_cost():
    store = MemoryCounterStore()
    ask = lambda: Ask("k", tokens=10, cost_usd=1.0, max_budget=5.0)  # noqa: E731
    grants = [store.reserve(ask(), T0) for _ in range(5)]
    assert all(isinstance(g, Grant) for g in grants)
    refused = store.reserve(ask(), T0)
    assert refused.reason == "budget" and refused.quota and refused.retry_after is None
    for g in grants:
        store.settle(g, 5, 0.5, T0)
    assert store.usage("k", 0.0).cost_usd == pytest.approx(2.5)
    assert isinstance(store.reserve(ask(), T0), Grant)


def test_spent_budget_refuses_until_the_next_period():
    store = MemoryCounterStore()
    g = store.reserve(Ask("k", tokens=50, token_budget=40, period_start=100.0), T0)
    assert isinstance(g, Grant)  # alone, a request may use what is left
    store.settle(g, 45, 0.0, T0)
    assert store.reserve(Ask("k", tokens=1, token_budget=40, period_start=100.0), T0).reason == "tokens"
    assert isinstance(store.reserve(Ask("k", tokens=1, token_budget=40, period_start=200.0), T0), Grant)


def test_seed_restores_spend_of_the_current_period():
    store = MemoryCounterStore()
    store.seed("k", 100.0, 30, 4.5)
    assert store.usage("k", 100.0).cost_usd == pytest.approx(4.5)
    ask = lambda: Ask("k", cost_usd=1.0, max_budget=5.0, period_start=100.0)  # noqa: E731
    assert isinstance(store.reserve(ask(), T0), Grant)  # alone, it may use the 0.5 left
    assert store.reserve(ask(), T0).reason == "budget"  # beside it, nothing fits
    store.seed("j", 100.0, 0, 5.0)
    assert store.reserve(Ask("j", cost_usd=0.0, max_budget=5.0, period_start=100.0), T0).reason == "budget"


def test_calendar_periods_in_the_configured_time_zone():
    berlin = zone("Europe/Berlin")
    now = datetime(2026, 3, 15, 0, 30, tzinfo=timezone.utc).timestamp()  # 01:30 in Berlin
    day = period_start(parse_duration("1d"), now, berlin)
    assert datetime.fromtimestamp(day, berlin).isoformat() == "2026-03-15T00:00:00+01:00"
    month = period_start(parse_duration("1mo"), now, berlin)
    assert datetime.fromtimestamp(month, berlin).isoformat() == "2026-03-01T00:00:00+01:00"
    # the month ends at local midnight of April 1st, after the DST switch
    assert datetime.fromtimestamp(period_end(parse_duration("1mo"), month, berlin), berlin).isoformat() == "2026-04-01T00:00:00+02:00"
    week = period_start(parse_duration("1w"), now, berlin)
    assert datetime.fromtimestamp(week, berlin).weekday() == 0
    hour = period_start(parse_duration("1h"), now, zone("UTC"))
    assert hour == datetime(2026, 3, 15, 0, 0, tzinfo=timezone.utc).timestamp()
    assert period_start(None, now, berlin) == 0.0


@pytest.mark.parametrize("field, value, says", [
    ("budget_duration", "1y", "unknown duration"),
    ("rpm_limit", -1, "greater than 0"),
    ("tpm_limit", 0, "greater than 0"),
    ("max_budget", -5, "0 or more"),
    ("token_budget", 1.5, "integer"),
    ("expires", "next tuesday", "ISO 8601"),
    ("models", [1, 2], "list of model names"),
])
def test_bad_limit_values_are_load_errors_naming_entry_and_field(field, value, says):
    with pytest.raises(ConfigError) as info:
        build_config([{"token": "t-1", "type": "mock", field: value}])
    issue = info.value.issues[0]
    assert (issue.entry, issue.field) == ("t-1", field) and says in issue.message


def test_limit_fields_load_and_unknown_timezone_is_an_error():
    config = build_config({"settings": {"timezone": "Asia/Shanghai", "limits": {"default_output_reserve": 64, "on_store_error": "closed"}},
                           "tokens": [{"token": "t", "type": "mock", "expires": "2027-01-31", "models": "gpt-*", "budget_duration": "1mo"}]})
    limits = config.entries["t"].limits
    assert limits.expires == datetime(2027, 1, 31, tzinfo=timezone.utc).timestamp()
    assert limits.models == ("gpt-*",) and not limits.counters
    assert build_config([{"token": "u", "type": "mock"}]).entries["u"].limits is None
    with pytest.raises(ConfigError, match="settings.timezone"):
        build_config({"settings": {"timezone": "Mars/Olympus"}, "tokens": []})
    with pytest.raises(ConfigError, match="on_store_error"):
        build_config({"settings": {"limits": {"on_store_error": "open-wide"}}, "tokens": []})


def test_openai_duration_format():
    assert [go_duration(s) for s in (0.012, 1, 17.5, 360, 59.9999)] == ["12ms", "1s", "17.5s", "6m0s", "1m0s"]


def test_usage_read_from_json_bytes_and_sse_tap_hides_usage_chunk():
    body = b'{"id":"x","choices":[{"message":{"content":"{usage}"}}],"usage":{"prompt_tokens":9,"completion_tokens":12,"prompt_tokens_details":{"cached_tokens":3}}}'
    assert usage_in_json(body)["prompt_tokens"] == 9
    big = body.replace(b'"{usage}"', b'"' + b'usage: {"prompt_tokens": 1} ' * 300 + b'"')
    assert len(big) > 4096 and usage_in_json(big)["prompt_tokens_details"] == {"cached_tokens": 3}
    meter = UsageMeter()
    tap = SSEUsageTap(meter, hide_usage=True)
    stream = (b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
              b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"prompt_tokens_details":{"cached_tokens":3}}}\n\n'
              b'data: [DONE]\n\n')
    out = b"".join(tap.feed(stream[i:i + 7]) for i in range(0, len(stream), 7)) + tap.flush()
    assert out == stream.replace(stream.split(b"\n\n")[1] + b"\n\n", b"")
    assert meter.final() == (9, 12, 3, 0, False)
    shown = UsageMeter()
    assert SSEUsageTap(shown, hide_usage=False).feed(stream) == stream and shown.reported


def test_estimates_are_rough_but_sane():
    assert estimate_tokens("hello world, this is text") == 7
    assert estimate_tokens("你好世界") == 4
