"""The config page in a real browser: Debian's headless Chromium driven by Playwright.

Log in, edit an entry, see the validation error next to its field, save, test the token, look
at the history's diff and roll back; disable, duplicate and delete entries.

`python -m tests.test_admin_browser` refreshes the screenshot in docs/img/config-page.png.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import openai
import pytest
import yaml
from playwright.sync_api import expect

from gateway.app import create_app
from tests.test_admin_api import serve_gateway

pytestmark = pytest.mark.browser

ADMIN = "browser-admin-token-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CONFIG = {
    "settings": {"admin_token": ADMIN, "request_timeout": 60},
    "tokens": [
        {"token": "sk-mock-demo", "name": "demo-mock", "type": "mock", "config": {"reply": "original: {prompt}"}},
        {
            "token": "sk-team-openai",
            "name": "openai-gpt4o",
            "type": "openai",
            "config": {"api_key": "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789", "model": "gpt-4o"},
        },
        {
            "token": "member-azure",
            "name": "azure-eu",
            "type": "azure",
            "internal": True,
            "config": {"api_base": "https://contoso.openai.azure.com", "deployment_id": "gpt-4o", "api_key": "0123456789abcdef0123456789abcdef"},
        },
        {"token": "member-mock", "name": "mock-backup", "type": "mock", "internal": True, "config": {"reply": "backup"}},
        {
            "token": "sk-team-pool",
            "name": "team-pool",
            "type": "router",
            "config": {"router_strategy": "fallback", "token_pool": ["member-azure", "member-mock"]},
        },
        {
            "token": "sk-by-model",
            "name": "by-model",
            "type": "model-name-router",
            "config": {"model-2-token": {"gpt-4o": "member-azure", "default": "sk-mock-demo"}},
        },
        {"token": "sk-old-gemini", "name": "gemini-legacy", "type": "gemini", "enabled": False, "config": {"api_key": "AIza-dummy-key-0123456789abcdef", "model": "gemini-1.5-pro"}},
    ],
}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "model_config.yaml"
    path.write_text("# the team's gateway\n" + yaml.safe_dump(CONFIG, sort_keys=False, allow_unicode=True), encoding="utf-8")
    app = create_app(path)
    app.state.admin.limiter.base_delay = 0.01
    with serve_gateway(app) as url:
        yield url, path


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1440, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())  # confirm() for delete and rollback
    page.set_default_timeout(10_000)
    yield page
    context.close()
    assert errors == [], errors


def log_in(page, url: str) -> None:
    page.goto(url + "/")
    page.fill("#login-token", "not-the-token")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:has-text('Wrong admin token.')")
    page.fill("#login-token", ADMIN)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#tokens-body tr.entry")


def row(page, token: str):
    return page.locator(f"#tokens-body tr.entry[data-token='{token}']")


def chat(url: str, token: str, text: str) -> str:
    client = openai.OpenAI(api_key=token, base_url=f"{url}/v1", max_retries=0)
    return client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}]).choices[0].message.content


def test_log_in_edit_see_the_error_save_test_and_roll_back(page, site):
    url, path = site
    original = path.read_text()
    log_in(page, url)
    assert page.locator("#tokens-body tr.entry").count() == 7
    assert row(page, "sk-team-pool").locator("td").nth(4).inner_text() == "fallback"
    assert "sk-…6789" not in page.content()  # masked secrets only appear inside the editor form
    cookie = next(c for c in page.context.cookies() if c["name"] == "gateway_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # edit an entry with a bad value: the error shows next to the field, nothing is saved
    row(page, "sk-mock-demo").get_by_role("button", name="Edit").click()
    page.wait_for_selector("#editor[open]")
    page.fill("#c-latency_ms", "-1")
    page.fill("#c-reply", "edited in the browser: {prompt}")
    page.click("#editor-save")
    error = page.locator(".field[data-field='config.latency_ms'] .field-error")
    error.wait_for()
    assert "greater than or equal to 0" in error.inner_text()
    assert path.read_text() == original

    # fix it and save: applied at once, comments kept
    page.fill("#c-latency_ms", "5")
    page.click("#editor-save")
    page.wait_for_selector("#editor", state="hidden")
    page.wait_for_selector("#toast:has-text('Saved and applied')")
    assert "edited in the browser: {prompt}" in path.read_text() and path.read_text().startswith("# the team's gateway")
    assert chat(url, "sk-mock-demo", "hi") == "edited in the browser: hi"

    # the test button sends a prompt through the token and shows the answer and latency
    row(page, "sk-mock-demo").get_by_role("button", name="Test").click()
    result = page.locator("tr.test-result")
    result.wait_for()
    assert "edited in the browser" in result.inner_text() and re.search(r"\d+ ms", result.inner_text())

    # history: the diff of the first version against the current file, then roll back
    page.click(".tab[data-tab=history]")
    page.wait_for_selector("#history-list li[data-version='2']")
    assert "changed demo-mock: config.reply, config.latency_ms" in page.locator("#history-list li[data-version='2']").inner_text()
    page.click("#history-list li[data-version='1']")
    page.wait_for_selector("#diff span.add")
    assert "edited in the browser" in page.locator("#diff span.add").all_inner_texts()[0]
    page.click("#rollback")
    page.wait_for_selector("#toast:has-text('Rolled back')")
    assert path.read_text() == original
    assert chat(url, "sk-mock-demo", "hi") == "original: hi"
    page.wait_for_selector("#history-list li[data-version='3']:has-text('rolled back to version 1')")

    # the raw editor reports a broken file and saves a fixed one
    page.click(".tab[data-tab=raw]")
    expect(page.locator("#raw-text")).to_have_value(re.compile("sk-mock-demo"))
    text = page.input_value("#raw-text")
    assert "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789" not in text and "api_key: sk-…6789" in text
    page.fill("#raw-text", text.replace("reply: 'original: {prompt}'", "reply: 'raw edit: {prompt}'").replace("request_timeout: 60", "request_timeout: -1"))
    page.click("#raw-validate")
    page.wait_for_selector("#raw-result.banner-error:has-text('settings.request_timeout')")
    page.fill("#raw-text", page.input_value("#raw-text").replace("request_timeout: -1", "request_timeout: 60"))
    page.click("#raw-save")
    page.wait_for_selector("#raw-result.banner-ok:has-text('Saved and applied')")
    assert chat(url, "sk-mock-demo", "x") == "raw edit: x"
    assert "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789" in path.read_text()  # masked value kept the secret

    page.click("#logout")
    page.wait_for_selector("#login-form")
    assert not [c for c in page.context.cookies() if c["name"] == "gateway_admin"]


def test_add_duplicate_disable_and_delete_entries(page, site):
    url, path = site
    log_in(page, url)

    # add a token with the form generated for its type
    page.click("#add-token")
    page.wait_for_selector("#editor[open]")
    page.select_option("#f-type", "router")
    page.fill("#f-name", "new-pool")
    page.fill("#f-token", "sk-new-pool")
    page.select_option("#c-router_strategy", '"round-robin"')
    page.fill("#c-token_pool", "member-mock\nsk-mock-demo")
    page.click("#editor-save")
    page.wait_for_selector("#editor", state="hidden")
    row(page, "sk-new-pool").wait_for()
    assert chat(url, "sk-new-pool", "pool") in {"backup", "original: pool"}

    # duplicate keeps the upstream secret (the page only ever saw it masked)
    row(page, "sk-team-openai").get_by_role("button", name="Duplicate").click()
    page.wait_for_selector("#editor[open]")
    assert page.input_value("#c-api_key") == "sk-…6789"
    page.fill("#f-token", "sk-team-openai-2")
    page.click("#editor-save")
    page.wait_for_selector("#editor", state="hidden")
    row(page, "sk-team-openai-2").wait_for()
    written = {e["token"]: e for e in yaml.safe_load(path.read_text())["tokens"]}
    assert written["sk-team-openai-2"]["config"]["api_key"] == "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
    assert written["sk-team-openai-2"]["name"] == "openai-gpt4o-copy"

    # disable, then delete (a deleted pool member is refused with the router's error)
    row(page, "sk-team-openai").get_by_role("button", name="Disable").click()
    row(page, "sk-team-openai").locator(".pill:has-text('disabled')").wait_for()
    assert yaml.safe_load(path.read_text())["tokens"][1]["enabled"] is False
    with pytest.raises(openai.AuthenticationError):
        chat(url, "sk-team-openai", "off")
    row(page, "sk-old-gemini").get_by_role("button", name="Delete").click()
    row(page, "sk-old-gemini").wait_for(state="detached")
    assert "sk-old-gemini" not in path.read_text()
    row(page, "member-mock").get_by_role("button", name="Delete").click()
    page.wait_for_selector("#banner.banner-error:has-text('member-mock')")
    assert row(page, "sk-team-pool").get_attribute("class").count("has-error") == 1
    assert "member-mock" in path.read_text()


def take_screenshot(out: Path) -> None:
    """Serve CONFIG from `configs/model_config.yaml` in a scratch folder and photograph the page."""
    from playwright.sync_api import sync_playwright

    here = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright:
        os.chdir(scratch)
        try:
            Path("configs").mkdir()
            Path("configs/model_config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False), encoding="utf-8")
            app = create_app("configs/model_config.yaml")
            with serve_gateway(app) as url:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 650}, device_scale_factor=1)
                page.goto(url + "/")
                page.fill("#login-token", ADMIN)
                page.click("#login-form button[type=submit]")
                page.wait_for_selector("#tokens-body tr.entry")
                row(page, "sk-mock-demo").get_by_role("button", name="Test").click()
                page.wait_for_selector("tr.test-result")
                page.mouse.move(0, 0)
                page.screenshot(path=str(out))
                browser.close()
        finally:
            os.chdir(here)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs/img/config-page.png")
    take_screenshot(target.resolve())
    print(target)
