"""Router member health: failure counting and cooldown (CONTRACT.md §2 `settings.cooldown`, §4).

Health is kept per member *token* (so a member shared by two routers has one record) in a
`HealthBook` that lives in `Runtime.state` and therefore survives config reloads.

The rules, with `policy = settings.cooldown` (`failures`, `window`, `seconds`, `max_seconds`):

- Only failover-type failures count (`GatewayError.failover`: connection errors, timeouts, 429,
  5xx, the upstream refusing the member's credentials); a request error (400-class) does not.
- A member that fails `policy.failures` times within `policy.window` seconds is skipped for
  `policy.seconds`. A member that fails again after its cooldown ended (with no success since,
  and within `policy.window` of the cooldown's end) goes straight back into cooldown for twice
  as long as last time, capped at `policy.max_seconds`. Failures of attempts that were already
  under way when the cooldown began do not double it.
- A 429 carrying `Retry-After` (`GatewayError.retry_after`, seconds) cools the member down for
  that long at once (capped at `policy.max_seconds`), whatever its failure count.
- A success clears the failure count, the backoff and any cooldown.
- `policy.seconds == 0` turns cooldown off entirely (failures are then not even counted).
- Cooldown orders, it never excludes (`plan`): a cooling member is tried after the others.

Times are `time.monotonic()` seconds; pass `clock=` to `HealthBook` to control time in tests.

With `settings.redis_url` (§8) the book has a `listener` (`gateway/store/shared_health.py`) that
publishes each cooldown it starts and each one a success ends, and applies other processes'
(`apply_remote`), so every worker and replica skips a member another one found failing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Cooldown
from gateway.errors import GatewayError

STATE_KEY = "gateway.health"

Clock = Callable[[], float]


@dataclass(slots=True)
class MemberHealth:
    """One member's record: recent failure times, current cooldown end and backoff level.

    `failures`: monotonic times of failover-type failures inside the window; `cooling_until`:
    monotonic time the current (or last) cooldown ends, 0 when it never cooled down;
    `strikes`: cooldowns entered since the last success (the next one lasts
    `seconds * 2**strikes`, capped).
    """

    failures: deque[float] = field(default_factory=deque)
    cooling_until: float = 0.0
    strikes: int = 0


class HealthBook:
    """Member health by token, shared by every router of every config generation.

    All methods take the current cooldown `policy` (the settings may change on reload while the
    records stay). Not thread-safe by design: one book per event loop (per worker process).
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._members: dict[str, MemberHealth] = {}
        # Told of cooldowns started (`cooled(token, seconds)`) and ended by a success (`cleared(token)`).
        self.listener: Any = None

    def apply_remote(self, token: str, until: float) -> None:
        """Another process cooled `token` down until monotonic time `until` (0: it answered again)."""
        record = self._get(token)
        if until <= 0:
            record.failures.clear()
            record.cooling_until = 0.0
            record.strikes = 0
        elif until > record.cooling_until:
            record.cooling_until = until

    def _get(self, token: str) -> MemberHealth:
        record = self._members.get(token)
        if record is None:
            record = self._members[token] = MemberHealth()
        return record

    def cooling_until(self, token: str, policy: Cooldown) -> float | None:
        """Monotonic time at which the member's cooldown ends, or None when it is available now."""
        if policy.seconds <= 0:
            return None
        record = self._members.get(token)
        if record is None or record.cooling_until <= self.clock():
            return None
        return record.cooling_until

    def is_cooling(self, token: str, policy: Cooldown) -> bool:
        """True while the member is in cooldown (skipped by routers)."""
        return self.cooling_until(token, policy) is not None

    def plan(self, tokens: Iterable[str], policy: Cooldown) -> list[str]:
        """Every member to try, duplicates dropped (CONTRACT.md §4: cooldown orders, it never
        excludes): those not cooling down first, in the given order, then the cooling ones,
        the one whose cooldown ends first first (the earlier in `tokens` on a tie)."""
        ordered = list(dict.fromkeys(tokens))
        if policy.seconds <= 0 or not self._members:
            return ordered
        ready, cooling = [], []
        for token in ordered:
            until = self.cooling_until(token, policy)
            if until is None:
                ready.append(token)
            else:
                cooling.append((until, len(cooling), token))
        cooling.sort()
        return ready + [token for _, _, token in cooling]

    def record_success(self, token: str) -> None:
        """The member answered: forget its failures, backoff and cooldown."""
        record = self._members.get(token)
        if record is not None:
            was_cooling = record.strikes > 0 or record.cooling_until > 0
            record.failures.clear()
            record.cooling_until = 0.0
            record.strikes = 0
            if was_cooling and self.listener is not None:
                self.listener.cleared(token)

    def record_failure(self, token: str, error: GatewayError, policy: Cooldown) -> float | None:
        """Count a member's failure; returns the cooldown's length in seconds when this failure
        started one (None otherwise). Non-failover errors and disabled cooldown count nothing."""
        if not error.failover or policy.seconds <= 0:
            return None
        now = self.clock()
        cap = max(policy.max_seconds, policy.seconds)
        record = self._get(token)
        if record.cooling_until > now:
            # An attempt that began before the cooldown: only a longer Retry-After extends it.
            if error.retry_after is not None:
                record.cooling_until = max(record.cooling_until, now + min(error.retry_after, cap))
            return None
        window_start = now - policy.window
        while record.failures and record.failures[0] < window_start:
            record.failures.popleft()
        record.failures.append(now)
        still_failing = record.strikes > 0 and now - record.cooling_until <= policy.window
        if not still_failing:
            record.strikes = 0
        if error.retry_after is not None:
            seconds = min(error.retry_after, cap)
        elif still_failing or len(record.failures) >= policy.failures:
            seconds = min(policy.seconds * 2 ** min(record.strikes, 32), cap)
        else:
            return None
        record.strikes += 1
        record.failures.clear()
        record.cooling_until = now + seconds
        if self.listener is not None:
            self.listener.cooled(token, seconds)
        return seconds


def book(state: dict[str, Any]) -> HealthBook:
    """The `HealthBook` kept in a runtime's `state` (created on first use)."""
    found = state.get(STATE_KEY)
    if found is None:
        found = state[STATE_KEY] = HealthBook()
    return found


def install(state: dict[str, Any], clock: Clock) -> HealthBook:
    """Replace the runtime state's book with a fresh one reading `clock` (tests: a fake clock)."""
    state[STATE_KEY] = HealthBook(clock)
    return state[STATE_KEY]
