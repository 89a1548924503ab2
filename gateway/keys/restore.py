"""Budgets across restarts (CONTRACT.md §6): at start, each budgeted entry's counters for the
current period are seeded from the usage ledger.

The ledger (`gateway/usage/ledger.py`, the usage-ledger work) provides
`async period_totals(database, since: float) -> {token_name: (cost_usd, tokens)}`; until it is
present this does nothing (and says so at debug level). One query per distinct period start.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.keys")


def _period_totals():
    try:
        from gateway.usage import ledger
    except ImportError:
        return None
    return getattr(ledger, "period_totals", None)


async def restore_budgets(gateway: Gateway, period_totals=None) -> int:
    """Seed every entry's current-period totals from the ledger; returns how many entries were
    seeded. `period_totals` defaults to the ledger's (tests pass a fake). Never raises: a ledger
    that cannot be read leaves the counters at zero, with a warning."""
    period_totals = period_totals or _period_totals()
    if period_totals is None:
        log.debug("no usage ledger: budgets start from zero")
        return 0
    runtime = gateway.runtime
    guard = runtime.guard
    now = guard.clock()
    by_start: dict[float, list] = {}
    for adapter in runtime.adapters.values():
        entry = guard.entry(adapter)
        by_start.setdefault(guard.period(entry, now)[0], []).append(entry)
    seeded = 0
    for since, entries in by_start.items():
        try:
            totals = await period_totals(gateway.database, since)
        except Exception as exc:  # a broken ledger must not stop the gateway
            log.warning("could not read usage totals to restore budgets: %s", type(exc).__name__)
            return seeded
        for entry in entries:
            found = totals.get(entry.name)
            if found:
                cost, tokens = found[0], found[1]
                done = guard.store.seed(entry.key, since, int(tokens or 0), float(cost or 0.0))
                if inspect.isawaitable(done):
                    await done
                seeded += 1
    return seeded
