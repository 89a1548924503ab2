"""Prices of §6: the genai-prices table (its own `calc_price` as the oracle), `settings.prices`
overrides, unpriced models costing 0 with one warning, and the per-model cache."""

from __future__ import annotations

import logging
from decimal import Decimal

import genai_prices
import pytest

from gateway.config import build_config
from gateway.usage import prices


@pytest.fixture(autouse=True)
def fresh():
    prices.configure({})
    yield
    prices.configure({})


@pytest.mark.parametrize(
    ("model", "provider", "provider_id", "usage"),
    [
        ("gpt-4o-mini", "openai", "openai", (1000, 500, 200)),
        ("gpt-4o", "azure", "azure", (12345, 678, 0)),
        ("claude-3-5-sonnet-20241022", "claude", "anthropic", (2000, 1000, 0)),
        ("gemini-2.5-pro", "gemini", "google", (250_000, 1000, 50_000)),  # above the 200k tier
        ("gemini-2.5-pro", "gemini", "google", (1000, 1000, 0)),
    ],
)
def test_table_prices_match_genai_prices_own_calculation(model, provider, provider_id, usage):
    prompt, completion, cached = usage
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=prompt, output_tokens=completion, cache_read_tokens=cached), model, provider_id=provider_id
    ).total_price
    got = prices.cost_usd(model, provider, prompt, completion, cached)
    assert got > 0
    assert Decimal(str(got)).quantize(Decimal("1e-12")) == expected.quantize(Decimal("1e-12"))


def test_unknown_provider_type_prices_by_model_name():
    assert prices.cost_usd("gpt-4o-mini", "proxy", 1_000_000, 0) == pytest.approx(0.15)
    assert prices.cost_usd("gpt-4o-mini", None, 0, 1_000_000) == pytest.approx(0.6)


def test_overrides_from_settings_win_over_the_table():
    config = build_config(
        {"settings": {"prices": {"gpt-4o-mini": {"input_per_mtok": 1, "output_per_mtok": 2, "cached_input_per_mtok": 0.5}, "glm-4": {"input_per_mtok": 0.1, "output_per_mtok": 0.1}}}, "tokens": []}
    )
    prices.configure(config.settings.prices)
    # 1000 prompt (400 of them cached) + 100 completion
    assert prices.cost_usd("gpt-4o-mini", "openai", 1000, 100, 400) == pytest.approx((600 * 1 + 400 * 0.5 + 100 * 2) / 1e6)
    assert prices.cost_usd("GPT-4o-mini", "openai", 1_000_000, 0) == pytest.approx(1.0)  # case-insensitive
    # no cached price: cached tokens cost the input price
    assert prices.cost_usd("glm-4", "zhipu-api", 1_000_000, 1_000_000, 500_000) == pytest.approx(0.2)


def test_bad_override_is_a_load_error_naming_the_field():
    from gateway.config import ConfigError

    with pytest.raises(ConfigError) as info:
        build_config({"settings": {"prices": {"m": {"input_per_mtok": -1, "output_per_mtok": 1}}}, "tokens": []})
    assert info.value.issues[0].field == "settings.prices.m.input_per_mtok"


def test_unpriced_model_costs_zero_and_is_warned_about_once(caplog):
    caplog.set_level(logging.WARNING, logger="gateway.usage")
    assert prices.cost_usd("spark-lite-4.0", "xunfei-spark-api", 1000, 1000) == 0.0
    assert prices.cost_usd("spark-lite-4.0", "xunfei-spark-api", 5, 5) == 0.0
    assert prices.cost_usd(None, "coze", 5, 5) == 0.0
    warnings = [r for r in caplog.records if "spark-lite-4.0" in r.getMessage()]
    assert len(warnings) == 1 and "settings.prices" in warnings[0].getMessage()
    assert ("spark-lite-4.0", "xunfei-spark-api") in prices.unpriced


def test_prices_are_looked_up_once_per_model(monkeypatch):
    calls: list[str] = []
    real = prices._from_table

    def counting(model, provider):
        calls.append(model)
        return real(model, provider)

    monkeypatch.setattr(prices, "_from_table", counting)
    for _ in range(100):
        prices.cost_usd("gpt-4o-mini", "openai", 10, 10)
        prices.cost_usd("not-a-model", "openai", 10, 10)
    assert calls == ["gpt-4o-mini", "not-a-model"]


def test_client_chosen_model_names_do_not_grow_memory(caplog):
    """Requested model names are the client's: the lookup cache and the warned-about set stay
    bounded however many made-up names arrive; a mock model is free without a warning."""
    from gateway.usage import prices as module

    for i in range(module.CACHE_MAX * 2 + 10):
        module.cost_usd(f"made-up-model-{i}", "proxy", 10, 10)
    assert len(module._cache) <= module.CACHE_MAX and len(module.unpriced) <= module.CACHE_MAX
    caplog.clear()
    with caplog.at_level("WARNING", logger="gateway.usage"):
        assert module.cost_usd("mock", "mock", 5, 5) == 0.0
    assert not caplog.records
