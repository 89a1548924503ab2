"""The price of a request, as the limits see it: `cost_usd(model, provider, prompt_tokens,
completion_tokens, cached_tokens) -> float` (US dollars).

It is `gateway.usage.prices.cost_usd` (genai-prices plus `settings.prices` overrides) when that
module is present. SHIM: until it lands on this branch, a stand-in with the same signature that
prices everything at 0.0 (token budgets and rate limits still apply). The merge removes the shim.
"""

from __future__ import annotations

try:  # pragma: no cover - depends on the usage-ledger branch
    from gateway.usage.prices import cost_usd
except ImportError:  # SHIM (see the docstring): remove once gateway/usage/prices.py exists

    def cost_usd(
        model: str | None, provider: str | None, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
    ) -> float:
        """Stand-in price: 0.0 USD for everything."""
        return 0.0


__all__ = ["cost_usd"]
