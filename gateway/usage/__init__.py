"""Usage accounting (CONTRACT.md §6): the event every request leaves, prices, and the ledger.

`events.UsageEvent` is what the request path hands over (built by `gateway/keys/` at
settlement); `events.UsageSink` is where it goes (the batched ledger writer of
`gateway/usage/ledger.py`); `prices.cost_usd` prices a request.
"""
