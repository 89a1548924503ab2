"""Handing out keys (CONTRACT.md §6): per-token limits, budgets, admission and settlement.

`limits` (the entry fields and calendar periods), `store` (the counters behind one interface,
in memory), `meter` (usage read off answers, estimates), `guard` (admission and settlement:
the API every surface calls), `pricing` (the price of a request), `restore` (budgets seeded
from the usage ledger at start), `views` (`/key/info`, the billing paths, `/admin/api/keys`).
"""
