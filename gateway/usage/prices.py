"""What a request cost in USD (CONTRACT.md §6): the `genai-prices` table plus `settings.prices`.

`cost_usd(model, provider, prompt_tokens, completion_tokens, cached_tokens)` is called once per
request at settlement, so it must be cheap: the price of each (model, provider) pair is looked
up once in `genai-prices` (https://github.com/pydantic/genai-prices; `DataSnapshot.
find_provider_model` and `ModelInfo.get_prices`) and kept as floats; each call is then a few
multiplications. The arithmetic is `genai_prices.types.ModelPrice.calc_price`'s for the three
token prices the gateway counts: `input_mtok` for prompt tokens that were not cached,
`cache_read_mtok` (else `input_mtok`) for cached ones, `output_mtok` for completion tokens,
all per million; a tiered price (e.g. Gemini above 200k prompt tokens) takes the highest tier
whose `start` the prompt exceeds, for every token of the request.

Overrides (`settings.prices`, installed by `configure`) win over the table and are matched by
model name (case-insensitive), whatever the provider. A model priced by neither costs 0 and is
logged once at WARNING; `unpriced` holds the (model, provider) pairs seen so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("gateway.usage")

# The gateway's adapter types → genai-prices provider ids. Types not listed (proxy, spark,
# coze, mock) are priced by model name alone (genai-prices picks the provider that has it).
PROVIDER_IDS = {
    "openai": "openai",
    "azure": "azure",
    "claude": "anthropic",
    "claude-api": "anthropic",
    "gemini": "google",
    "zhipu-api": "zhipuai",
}
# Prices are looked up again after this long (genai-prices has prices that start at a date).
CACHE_MAX = 4096  # (model, provider) pairs remembered
CACHE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Rate:
    """One token price in USD per million: `base`, or `tiers` ((start, price), ascending) for
    requests whose prompt has more than `start` tokens."""

    base: float
    tiers: tuple[tuple[int, float], ...] = ()

    def at(self, prompt_tokens: int) -> float:
        for start, price in reversed(self.tiers):
            if prompt_tokens > start:
                return price
        return self.base


@dataclass(frozen=True, slots=True)
class ModelRates:
    """The prices of one model: input, cached input (None: the input price) and output."""

    input: Rate
    cached_input: Rate | None
    output: Rate

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> float:
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_rate = self.cached_input or self.input
        total = (
            (prompt_tokens - cached) * self.input.at(prompt_tokens)
            + cached * cached_rate.at(prompt_tokens)
            + completion_tokens * self.output.at(prompt_tokens)
        )
        return total / 1_000_000


_overrides: dict[str, ModelRates] = {}
_cache: dict[tuple[str, str | None], tuple[ModelRates | None, float]] = {}
unpriced: set[tuple[str | None, str | None]] = set()


def configure(prices: Mapping) -> None:
    """Install `settings.prices` (`{model: PriceOverride or dict}`), replacing earlier ones.
    Called whenever a config is applied; clears the per-model cache."""
    overrides: dict[str, ModelRates] = {}
    for model, price in (prices or {}).items():
        get = price.get if isinstance(price, Mapping) else lambda k, p=price: getattr(p, k, None)
        cached = get("cached_input_per_mtok")
        overrides[str(model).lower()] = ModelRates(
            Rate(float(get("input_per_mtok"))),
            Rate(float(cached)) if cached is not None else None,
            Rate(float(get("output_per_mtok"))),
        )
    global _overrides
    _overrides = overrides
    _cache.clear()
    unpriced.clear()


def _rate(value) -> Rate | None:
    """A genai-prices price (Decimal or TieredPrices) as a Rate."""
    if value is None:
        return None
    tiers = getattr(value, "tiers", None)
    if tiers is not None:
        return Rate(float(value.base), tuple((int(t.start), float(t.price)) for t in tiers))
    return Rate(float(value))


def _from_table(model: str, provider: str | None) -> ModelRates | None:
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    provider_id = PROVIDER_IDS.get(provider or "")
    attempts = [provider_id, None] if provider_id else [None]
    for pid in attempts:
        try:
            _, info = snapshot.find_provider_model(model, None, pid, None)
        except LookupError:
            continue
        price = info.get_prices(datetime.now(tz=UTC))
        input_rate = _rate(getattr(price, "input_mtok", None))
        output_rate = _rate(getattr(price, "output_mtok", None))
        if input_rate is None and output_rate is None:
            return None
        return ModelRates(input_rate or Rate(0.0), _rate(getattr(price, "cache_read_mtok", None)), output_rate or Rate(0.0))
    return None


def rates(model: str | None, provider: str | None) -> ModelRates | None:
    """The prices used for `model` served by an entry of adapter type `provider`, or None when
    unpriced (warned about once per pair). Cached per pair."""
    if not model:
        return None
    override = _overrides.get(model.lower())
    if override is not None:
        return override
    key = (model, provider)
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and hit[1] > now:
        return hit[0]
    try:
        found = _from_table(model, provider)
    except Exception:  # a broken price table must not break settlement
        log.exception("price lookup failed for model %r", model)
        found = None
    if len(_cache) >= CACHE_MAX:  # model names come from clients: never let them grow memory
        _cache.clear()
    _cache[key] = (found, now + CACHE_SECONDS)
    if len(unpriced) >= CACHE_MAX:
        unpriced.clear()
    if found is None and key not in unpriced:
        unpriced.add(key)
        if provider == "mock":  # answers locally: free by nature, nothing to warn about
            return found
        log.warning("no price for model %r (provider %s): its requests cost 0; add it to settings.prices", model, provider or "unknown")
    return found


def cost_usd(model: str | None, provider: str | None, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
    """The cost in USD of a request: `prompt_tokens` (including `cached_tokens`, as OpenAI counts
    them) and `completion_tokens` of `model`, served by an entry of adapter type `provider`
    (`openai`, `claude`, ...; None when unknown). 0.0 for an unpriced model. Never raises."""
    found = rates(model, provider)
    if found is None:
        return 0.0
    return found.cost(max(prompt_tokens or 0, 0), max(completion_tokens or 0, 0), cached_tokens or 0)


__all__ = ["configure", "cost_usd", "rates", "unpriced", "ModelRates", "Rate"]
