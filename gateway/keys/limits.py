"""A token entry's limits (CONTRACT.md §6): the fields, their validation, and calendar periods.

Fields on any token entry (all optional)::

    models: [gpt-4o-mini, "glm-4*"]   # allowlist, shell-style globs (fnmatch, case-sensitive)
    expires: 2027-01-31T00:00:00Z     # ISO 8601; a date alone means 00:00 UTC; naive times are UTC
    rpm_limit: 60                     # requests per minute (> 0)
    tpm_limit: 200000                 # tokens per minute, prompt + completion (> 0)
    max_parallel_requests: 4          # requests in flight at once (> 0)
    max_budget: 20.0                  # USD per budget_duration (>= 0)
    token_budget: 5000000             # tokens per budget_duration (>= 0)
    budget_duration: 1mo              # 1h | 1d | 1w | 1mo (also 2h, 7d, 3mo ...); absent: lifetime

`KeyLimits.from_fields` turns the raw values into a `KeyLimits` (raising `ValueError` with the
field name in `.field` semantics via `FieldError`); `KeyLimits.counters` is False when only the
allowlist / expiry are set, which lets the request path skip the counter store entirely.

Periods are calendar-aligned in `settings.timezone` (IANA name, default UTC): an hour starts at
:00, a day at local midnight, a week on Monday, a month on the 1st. `period_start(duration, now,
tz)` is the UNIX time the current period began (0.0 for a lifetime budget).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LIMIT_FIELDS = (
    "models",
    "expires",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "max_budget",
    "token_budget",
    "budget_duration",
)

_DURATION = re.compile(r"^\s*(\d+)\s*(h|d|w|mo)\s*$")


class FieldError(ValueError):
    """A bad limit value; `field` names the entry field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Duration:
    """A budget period: `count` units of `unit` (`h`, `d`, `w`, `mo`)."""

    count: int
    unit: str

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


def parse_duration(value: Any) -> Duration:
    """`1h`, `1d`, `1w`, `1mo` (any positive count). Raises ValueError."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"unknown duration {value!r}: expected 1h, 1d, 1w or 1mo (a positive count and h, d, w or mo)")
    return Duration(int(match.group(1)), match.group(2))


def parse_expires(value: Any) -> float:
    """An ISO 8601 time or date (YAML may hand over `datetime`/`date` objects) as a UNIX time.
    A date alone is 00:00 UTC; a time without an offset is UTC. Raises ValueError."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date or time (e.g. 2027-01-31 or 2027-01-31T00:00:00Z)") from None
    else:
        raise ValueError(f"{value!r} is not an ISO 8601 date or time (e.g. 2027-01-31 or 2027-01-31T00:00:00Z)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`. Raises ValueError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as UTC or Europe/Berlin)") from None


def period_start(duration: Duration | None, now: float, tz: ZoneInfo) -> float:
    """The UNIX time at which the calendar period containing `now` began (0.0: lifetime)."""
    if duration is None:
        return 0.0
    local = datetime.fromtimestamp(now, tz)
    n = duration.count
    if duration.unit == "h":
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day.replace(hour=local.hour - local.hour % n)
    elif duration.unit == "d":
        # Days counted from the epoch's local date so that `2d` periods do not depend on `now`.
        day = local.date()
        offset = (day - date(1970, 1, 1)).days % n
        start = datetime.combine(day - timedelta(days=offset), datetime.min.time(), tz)
    elif duration.unit == "w":
        monday = local.date() - timedelta(days=local.weekday())
        offset = ((monday - date(1969, 12, 29)).days // 7) % n  # 1969-12-29 was a Monday
        start = datetime.combine(monday - timedelta(weeks=offset), datetime.min.time(), tz)
    else:
        months = local.year * 12 + local.month - 1
        months -= months % n
        start = datetime(months // 12, months % 12 + 1, 1, tzinfo=tz)
    return start.timestamp()


def period_end(duration: Duration | None, start: float, tz: ZoneInfo) -> float | None:
    """The UNIX time the period beginning at `start` ends (None: lifetime)."""
    if duration is None:
        return None
    local = datetime.fromtimestamp(start, tz)
    n = duration.count
    if duration.unit == "h":
        return start + 3600 * n
    if duration.unit in ("d", "w"):
        days = n * (7 if duration.unit == "w" else 1)
        return datetime.combine(local.date() + timedelta(days=days), datetime.min.time(), tz).timestamp()
    months = local.year * 12 + local.month - 1 + n
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=tz).timestamp()


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """The validated limit fields of one entry (None: not set).

    `expires` is a UNIX time; `max_budget` USD; `token_budget` tokens; `budget_duration` a
    `Duration` or None (a lifetime budget). `counters` is True when any counter-backed limit is
    set (rpm, tpm, parallel, budgets): only then does a request go through the counter store.
    """

    models: tuple[str, ...] | None = None
    expires: float | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    max_budget: float | None = None
    token_budget: int | None = None
    budget_duration: Duration | None = None

    @property
    def counters(self) -> bool:
        return any(
            v is not None
            for v in (self.rpm_limit, self.tpm_limit, self.max_parallel_requests, self.max_budget, self.token_budget)
        )

    @property
    def budgeted(self) -> bool:
        return self.max_budget is not None or self.token_budget is not None

    def allows(self, model: str | None) -> bool:
        """True when `model` may be used (no allowlist, or it matches a pattern of it)."""
        if self.models is None or model is None:
            return True
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    def model_label(self, model: str | None) -> str | None:
        """The allowlist entry `model` matched (the pattern itself for a glob), for metric labels."""
        if self.models is None or model is None:
            return None
        if model in self.models:
            return model
        for pattern in self.models:
            if fnmatch.fnmatchcase(model, pattern):
                return pattern
        return None

    def as_dict(self) -> dict[str, Any]:
        """The limits as JSON-ready values (`expires` as ISO 8601 UTC), for `/key/info` and the admin API."""
        return {
            "models": list(self.models) if self.models is not None else None,
            "expires": iso(self.expires),
            "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit,
            "max_parallel_requests": self.max_parallel_requests,
            "max_budget": self.max_budget,
            "token_budget": self.token_budget,
            "budget_duration": str(self.budget_duration) if self.budget_duration else None,
        }

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> KeyLimits | None:
        """Validate the raw limit fields of an entry (missing or None: not set); None when no
        field is set. Raises FieldError naming the first bad field."""
        if all(values.get(name) is None for name in LIMIT_FIELDS):
            return None
        out: dict[str, Any] = {}
        models = values.get("models")
        if models is not None:
            if isinstance(models, str):
                models = [models]
            if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
                raise FieldError("models", "must be a list of model names (shell-style globs allowed)")
            out["models"] = tuple(models)
        if values.get("expires") is not None:
            try:
                out["expires"] = parse_expires(values["expires"])
            except ValueError as exc:
                raise FieldError("expires", str(exc)) from None
        for name in ("rpm_limit", "tpm_limit", "max_parallel_requests"):
            out[name] = _number(values, name, int, positive=True)
        out["token_budget"] = _number(values, "token_budget", int, positive=False)
        budget = _number(values, "max_budget", float, positive=False)
        out["max_budget"] = float(budget) if budget is not None else None
        if values.get("budget_duration") is not None:
            try:
                out["budget_duration"] = parse_duration(values["budget_duration"])
            except ValueError as exc:
                raise FieldError("budget_duration", str(exc)) from None
        return cls(**out)


def _number(values: dict[str, Any], name: str, kind: type, positive: bool) -> Any:
    value = values.get(name)
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and kind is int and isinstance(value, float):
        ok = value.is_integer()
    if not ok:
        raise FieldError(name, f"must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise FieldError(name, f"must be {'greater than 0' if positive else '0 or more'}, got {value!r}")
    return kind(value)


def iso(moment: float | None) -> str | None:
    """A UNIX time as ISO 8601 UTC (`2027-01-31T00:00:00Z`), None for None."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, timezone.utc).isoformat().replace("+00:00", "Z")
