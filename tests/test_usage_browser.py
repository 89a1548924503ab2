"""The config page's Usage tab and the token form's limit fields, in a real browser (Debian's
headless Chromium driven by Playwright, as tests/test_admin_browser.py).

Usage events go in through the gateway's own sink (`gateway.usage.record`, what settlement
calls); the page reads them back through the admin usage API and draws them with the vendored
Chart.js.

`python -m tests.test_usage_browser` refreshes the screenshot in docs/img/usage-tab.png.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from playwright.sync_api import expect

from gateway.app import create_app
from gateway.store import Database, database_url
from gateway.usage.events import UsageEvent
from gateway.usage.ledger import UsageLedger
from tests.support.servers import wait_until
from tests.test_admin_api import serve_gateway
from tests.test_admin_browser import ADMIN, CHROMIUM, CHROMIUM_ARGS, browser  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

CONFIG = {
    "settings": {"admin_token": ADMIN, "prices": {"mock": {"input_per_mtok": 10000, "output_per_mtok": 20000}}},
    "tokens": [
        {"token": "sk-alice-0123456789", "name": "alice", "type": "mock", "config": {"reply": "hi"},
         "models": ["mock", "gpt-4o-mini"], "rpm_limit": 60, "tpm_limit": 200000, "max_budget": 20.0, "budget_duration": "1mo"},
        {"token": "sk-bob-0123456789", "name": "bob", "type": "mock", "config": {"reply": "hi"},
         "max_parallel_requests": 4, "token_budget": 5000000, "budget_duration": "1w", "expires": "2099-01-31T00:00:00Z"},
        {"token": "sk-carol-0123456789", "name": "carol", "type": "mock", "config": {"reply": "hi"}, "max_budget": 5.0, "expires": "2026-01-01"},
        {"token": "member-x", "name": "member", "type": "mock", "internal": True, "config": {}},
    ],
}


def event(name: str, ago: float, status: int = 200, prompt: int = 0, completion: int = 0, cost: float = 0.0, model: str = "gpt-4o-mini") -> UsageEvent:
    return UsageEvent(
        time.time() - ago, name, model, name, "openai", status,
        error_code=None if status < 400 else ("rate_limit_exceeded" if status == 429 else "upstream_error"),
        prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost, request_id=f"req-{name}-{int(ago)}",
    )


FED = [
    event("alice", 600, prompt=1000, completion=200, cost=0.25),
    event("alice", 1800, prompt=500, completion=100, cost=0.125),
    event("alice", 3 * 86400, prompt=4000, completion=1000, cost=1.0),  # only in the 7- and 30-day views
    event("bob", 900, status=429),
    event("bob", 1200, prompt=10, completion=10, cost=0.001),
    event("bob", 2000, status=502),
]


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "model_config.yaml"
    path.write_text(yaml.safe_dump(CONFIG, sort_keys=False), encoding="utf-8")
    app = create_app(path)
    for item in FED:
        app.state.gateway.usage.record(item)
    with serve_gateway(app) as url:
        yield url, path, app


@pytest.fixture
def page(browser, site):  # noqa: F811
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))

    def console(message) -> None:
        # API refusals the page handles (the 404 of a gateway without /admin/api/keys, a 400 for
        # an invalid form) are logged by the browser; script errors and CSP violations count
        answered = message.text.startswith("Failed to load resource") and "/admin/api/" in message.location.get("url", "")
        if message.type == "error" and not answered:
            problems.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", console)
    page.set_default_timeout(10_000)
    yield page
    context.close()
    assert problems == [], problems  # no script errors, no CSP violations


def log_in(page, url: str) -> None:
    page.goto(url + "/")
    page.fill("#login-token", ADMIN)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#tokens-body tr.entry")


def open_usage(page) -> None:
    page.click(".tab[data-tab=usage]")
    page.wait_for_selector("#tab-usage[data-loaded]")


def cell(page, name: str, col: str) -> str:
    return page.locator(f"#usage-body tr[data-name='{name}'] td[data-col='{col}']").inner_text()


def reload_usage(page) -> None:
    before = page.get_attribute("#tab-usage", "data-loaded")
    page.click("#usage-refresh")
    expect(page.locator("#tab-usage")).not_to_have_attribute("data-loaded", before)


def without_keys_api(app) -> None:
    """Make the gateway look like one that does not serve /admin/api/keys (404)."""
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/admin/api/keys"]


def test_usage_tab_table_and_charts(page, site):
    url, _, app = site
    without_keys_api(app)
    log_in(page, url)
    open_usage(page)

    # every client token has a row (internal members do not), with what it used
    names = page.locator("#usage-body tr").evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert names == ["alice", "bob", "carol"]
    assert (cell(page, "alice", "requests"), cell(page, "alice", "errors"), cell(page, "alice", "tokens"), cell(page, "alice", "cost")) == ("3", "0", "6,800", "$1.38")
    assert (cell(page, "bob", "requests"), cell(page, "bob", "errors"), cell(page, "bob", "cost")) == ("3", "2", "$0.0010")
    assert cell(page, "carol", "requests") == "0"
    assert page.locator("[data-stat=cost] .stat-value").inner_text() == "$1.38"
    # no /admin/api/keys on this gateway: usage, and limits as written in the config, but not
    # what is used and left of the budgets; the page says why
    assert page.locator("#usage-keys-note").is_visible()
    assert cell(page, "alice", "budget") == "$20.00 / 1mo"
    assert cell(page, "alice", "limits").split() == ["60", "rpm", "200K", "tpm", "models:", "mock,", "gpt-4o-mini"]

    # the charts are drawn by the vendored Chart.js, served by the gateway itself
    assert page.evaluate("typeof window.Chart") == "function"
    assert page.evaluate("window.Chart.version") == "4.6.1"
    for chart in ("requests", "tokens", "cost", "errors"):
        assert int(page.get_attribute(f"#chart-{chart}", "data-points")) > 0, chart
    legend = page.evaluate("Chart.getChart('chart-errors').data.datasets.map(d => d.label)")
    assert legend == ["429", "502"]
    datasets = page.evaluate("Chart.getChart('chart-requests').data.datasets.map(d => [d.label, d.data.reduce((a, b) => a + b, 0)])")
    assert datasets == [["alice", 3], ["bob", 3]]

    # the last 24 hours leave out alice's request of three days ago
    page.select_option("#usage-range", "24h")
    expect(page.locator("#usage-body tr[data-name='alice'] td[data-col='requests']")).to_have_text("2")
    assert cell(page, "alice", "cost") == "$0.38"
    labels = page.evaluate("Chart.getChart('chart-requests').data.labels")
    assert len(labels) == 24 and all(label.endswith(":00") for label in labels)

    # new events show up on refresh
    app.state.gateway.usage.record(event("bob", 60, prompt=1, completion=1))
    reload_usage(page)
    assert cell(page, "bob", "requests") == "4"

    # the CSV download: the raw events of the range, with the session cookie
    href = page.get_attribute("#usage-csv", "href")
    assert "format=csv" in href
    csv_text = page.request.get(url + href).text()
    assert csv_text.splitlines()[0].startswith("id,time,token_name,model")
    assert "req-alice-600" in csv_text and "req-alice-259200" not in csv_text
    assert "sk-alice-0123456789" not in csv_text


def test_usage_tab_shows_budgets_and_limits_from_the_keys_api(page, site):
    url, _, _ = site
    client = openai.OpenAI(api_key="sk-alice-0123456789", base_url=f"{url}/v1", max_retries=0)
    for _ in range(2):
        client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hello"}])
    keys = lambda: httpx.get(f"{url}/admin/api/keys", headers={"authorization": f"Bearer {ADMIN}"}).json()["data"]
    wait_until(lambda: next(k for k in keys() if k["name"] == "alice")["usage"]["requests"] == 2, what="alice's two settled requests")
    alice = next(k for k in keys() if k["name"] == "alice")
    spent, left = alice["usage"]["cost_usd"], alice["remaining"]["budget_usd"]
    assert spent > 0.01

    log_in(page, url)
    open_usage(page)
    assert not page.locator("#usage-keys-note").is_visible()
    assert cell(page, "alice", "budget") == f"${spent:.2f} used · ${left:.2f} left of $20.00 / 1mo"
    assert float(page.get_attribute("#usage-body tr[data-name='alice'] .meter span", "data-share")) == pytest.approx(spent / 20.0)
    # (bob's tokens this week: what the start restored of the events fed before it, if any)
    bob_tokens = next(k for k in keys() if k["name"] == "bob")["usage"]["tokens"]
    assert bob_tokens < 10_000
    assert cell(page, "bob", "budget") == f"{bob_tokens} used · 5M left of 5M tokens / 1w"
    assert cell(page, "bob", "limits") == "4 parallel"
    assert cell(page, "bob", "expires") == "2099-01-31"
    assert cell(page, "carol", "expires") == "expired 2026-01-01"
    # router members (internal entries) are listed by /admin/api/keys but have no row without usage
    assert page.locator("#usage-body tr[data-name='member']").count() == 0


def test_token_form_has_an_input_per_limit_field_with_its_error_next_to_it(page, site):
    url, path, _ = site
    original = path.read_text()
    log_in(page, url)
    page.locator("#tokens-body tr.entry[data-token='sk-alice-0123456789']").get_by_role("button", name="Edit").click()
    page.wait_for_selector("#editor[open]")
    assert page.get_attribute("#limits", "open") is not None  # unfolded: alice has limits
    for field in ("models", "expires", "rpm_limit", "tpm_limit", "max_parallel_requests", "max_budget", "token_budget", "budget_duration"):
        assert page.locator(f"#editor .field[data-field='{field}'] #f-{field}").is_visible(), field
    page.fill("#f-rpm_limit", "-5")
    page.click("#editor-save")
    error = page.locator("#editor .field[data-field='rpm_limit'] .field-error")
    error.wait_for()
    assert error.inner_text() == "must be greater than 0, got -5"  # the gateway's own validation message
    assert page.locator("#editor .field[data-field='rpm_limit']").get_attribute("class").count("invalid") == 1
    assert path.read_text() == original  # nothing saved

    # valid values are saved into the entry as typed, and shown again when it is edited
    page.fill("#f-rpm_limit", "30")
    page.fill("#f-models", "mock\nglm-4*")
    page.fill("#f-budget_duration", "1w")
    page.fill("#f-max_budget", "")
    page.click("#editor-save")
    page.wait_for_selector("#editor", state="hidden")
    alice = next(e for e in yaml.safe_load(path.read_text())["tokens"] if e["name"] == "alice")
    assert (alice["rpm_limit"], alice["models"], alice["budget_duration"], "max_budget" in alice) == (30, ["mock", "glm-4*"], "1w", False)
    page.locator("#tokens-body tr.entry[data-token='sk-alice-0123456789']").get_by_role("button", name="Edit").click()
    page.wait_for_selector("#editor[open]")
    assert page.get_attribute("#limits", "open") is not None
    assert (page.input_value("#f-rpm_limit"), page.input_value("#f-models"), page.input_value("#f-tpm_limit")) == ("30", "mock\nglm-4*", "200000")


def take_screenshot(out: Path) -> None:
    """A week of three teammates' traffic, photographed on the Usage tab. The events are
    written to the database before the gateway starts, so their budgets are restored from it."""
    from playwright.sync_api import sync_playwright

    rng = random.Random(7)
    profile = {"alice": (40, 1800, 500, 0.6e-6), "bob": (25, 900, 300, 2.5e-6), "carol": (10, 3000, 900, 10e-6)}
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            Path("configs").mkdir()
            Path("configs/model_config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False), encoding="utf-8")
            ledger = UsageLedger(Database(database_url(None, "configs/model_config.yaml")))
            for day in range(7):
                for name, (per_day, prompt, completion, price) in profile.items():
                    for _ in range(rng.randint(per_day // 2, per_day)):
                        ago = day * 86400 + rng.uniform(0, 86400)
                        status = rng.choices([200, 429, 502], weights=[94, 4, 2])[0]
                        p, c = (rng.randint(prompt // 2, prompt), rng.randint(completion // 2, completion)) if status == 200 else (0, 0)
                        ledger.record(event(name, ago, status, p, c, (p + 4 * c) * price))

            async def write() -> None:
                await ledger.database.start()
                await ledger.flush()
                await ledger.database.close()

            asyncio.run(write())
            app = create_app("configs/model_config.yaml")
            with serve_gateway(app) as url, sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 1020}, device_scale_factor=1)
                log_in(page, url)
                open_usage(page)
                before = page.get_attribute("#tab-usage", "data-loaded")
                page.select_option("#usage-range", "7d")
                expect(page.locator("#tab-usage")).not_to_have_attribute("data-loaded", before)
                page.mouse.move(0, 0)
                page.screenshot(path=str(out), full_page=True)
                browser.close()
        finally:
            os.chdir(here)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs/img/usage-tab.png")
    take_screenshot(target.resolve())
    print(target)
