"""Usage accounting (CONTRACT.md §6): the event every request leaves, prices, and the ledger.

`events.UsageEvent` is what the request path hands over (built by `gateway/keys/` at
settlement); `events.UsageSink` is where it goes: `ledger.UsageLedger`, the batched writer of
the `usage_events` table (`ledger.period_totals` restores budgets at start); `prices.cost_usd`
prices a request; `query` reads the table for the admin usage API (`gateway/admin/usage.py`).
"""
