"""The config page's admin API (CONTRACT.md §5): auth, masking, saving, history, reload from disk.

The gateway runs as a real server on loopback (uvicorn in a thread, lifespan on so the file
watcher runs) and is driven with httpx, as the page's JavaScript or an admin's script would,
and with the official `openai` client for the traffic it serves.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from gateway.app import create_app
from gateway.config import build_config
from tests.support.servers import GatewayProcess, serve_app, wait_until

ADMIN = "admin-token-for-tests-0123456789"
BEARER = {"authorization": f"Bearer {ADMIN}"}
UPSTREAM_KEY = "sk-upstream-secret-key-0123456789"  # what tests/fakes/openai.py accepts
AZURE_KEY = "short-azure-key"

COMMENTED_YAML = """\
# Team gateway config — this header comment must survive saves.
settings:
  admin_token: {admin}   # the config page's token
  request_timeout: 60        # seconds
  cooldown: {{failures: 3, window: 60, seconds: 5, max_seconds: 300}}

tokens:
  # The local demo model.
  - token: sk-mock-1
    name: demo-mock
    type: mock
    config:
      reply: "mock one: {{prompt}}"   # keep this comment
      latency_ms: 0

  # Upstream OpenAI (the fake).
  - token: sk-openai-1
    name: openai-main
    type: openai
    config:
      api_key: {upstream}
      api_base: {base}
      model: gpt-4o-mini      # forced model

  - token: sk-azure-1
    name: azure
    type: azure
    enabled: false
    config:
      api_base: https://example.openai.azure.com
      deployment_id: gpt-4o
      api_key: {azure}
"""


# -- helpers ----------------------------------------------------------------------------------


def serve_gateway(app):
    """Serve the gateway app on loopback with its lifespan (the file watcher) running."""
    return serve_app(app, lifespan="on")


class Admin:
    """An httpx client on a served gateway, plus the config file it edits."""

    def __init__(self, url: str, path: Path, app) -> None:
        self.url, self.path, self.app = url, path, app
        self.http = httpx.Client(base_url=url, timeout=30)

    def get(self, route: str, **kw) -> httpx.Response:
        return self.http.get(route, headers={**BEARER, **kw.pop("headers", {})}, **kw)

    def put(self, route: str, json_body, **kw) -> httpx.Response:
        return self.http.put(route, json=json_body, headers={**BEARER, **kw.pop("headers", {})}, **kw)

    def post(self, route: str, json_body=None, **kw) -> httpx.Response:
        return self.http.post(route, json=json_body, headers={**BEARER, **kw.pop("headers", {})}, **kw)

    def config(self):
        response = self.get("/admin/api/config")
        assert response.status_code == 200, response.text
        return response.json()

    def chat(self, token: str, text: str = "hi") -> str:
        client = openai.OpenAI(api_key=token, base_url=f"{self.url}/v1", max_retries=0)
        return client.chat.completions.create(model="x", messages=[{"role": "user", "content": text}]).choices[0].message.content

    def history(self) -> list[dict]:
        return self.get("/admin/api/history").json()["data"]


@pytest.fixture
def gateway_config(tmp_path, fake_openai):
    """Write the commented YAML config (fake OpenAI upstream); returns its path."""
    _, base = fake_openai
    path = tmp_path / "model_config.yaml"
    path.write_text(COMMENTED_YAML.format(admin=ADMIN, upstream=UPSTREAM_KEY, base=f"{base}/v1", azure=AZURE_KEY), encoding="utf-8")
    return path


@pytest.fixture
def admin(gateway_config):
    """The gateway served on the commented config, with a fast login backoff."""
    app = create_app(gateway_config)
    app.state.admin.limiter.base_delay = 0.01
    with serve_gateway(app) as url:
        client = Admin(url, gateway_config, app)
        yield client
        client.http.close()


def login(admin: Admin, client: httpx.Client | None = None) -> tuple[httpx.Client, str]:
    """Log in with the admin token; returns (a client holding the cookie, its CSRF token)."""
    client = client or httpx.Client(base_url=admin.url, timeout=30)
    response = client.post("/admin/api/login", json={"token": ADMIN})
    assert response.status_code == 204, response.text
    return client, response.headers["x-csrf-token"]


# -- the page ---------------------------------------------------------------------------------


def test_page_and_its_assets_are_served_locally(admin):
    page = admin.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="/static/admin.js' in page.text and 'href="/static/admin.css' in page.text
    remote = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import|fetch\(\s*["'`](https?:)?//""")
    assert not remote.search(page.text)
    for asset in ("/static/admin.js", "/static/admin.css", "/static/admin-icon.svg"):
        response = admin.http.get(asset)
        assert response.status_code == 200, asset
        assert not remote.search(response.text), asset  # no CDN, nothing loaded from elsewhere
    # the page itself holds no config data
    assert "sk-mock-1" not in page.text and UPSTREAM_KEY not in page.text


def test_schema_gives_a_form_for_every_adapter_type(admin):
    from gateway import registry

    types = admin.get("/admin/api/schema").json()["types"]
    assert set(types) == {registry.canonical_type(t) for t in registry.type_names()}
    openai_fields = {f["name"]: f for f in types["openai"]["fields"]}
    assert openai_fields["api_key"]["kind"] == "secret"
    assert openai_fields["temperature"]["group"] == "sampling"
    mock_fields = {f["name"]: f for f in types["mock"]["fields"]}
    assert mock_fields["latency_ms"]["kind"] == "number" and mock_fields["chunk_count"]["kind"] == "integer"
    router = {f["name"]: f for f in types["router"]["fields"]}
    assert router["router_strategy"]["kind"] == "enum" and "fallback" in router["router_strategy"]["options"]
    assert router["token_pool"]["kind"] == "list" and router["token_pool"]["required"]
    assert {f["name"] for f in types["model-name-router"]["fields"]} == {"model-2-token"}


# -- auth -------------------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/admin/api/config"),
    ("PUT", "/admin/api/config"),
    ("POST", "/admin/api/config/validate"),
    ("GET", "/admin/api/config/raw"),
    ("PUT", "/admin/api/config/raw"),
    ("GET", "/admin/api/history"),
    ("GET", "/admin/api/history/1"),
    ("POST", "/admin/api/history/1/rollback"),
    ("POST", "/admin/api/test"),
    ("GET", "/admin/api/schema"),
    ("GET", "/admin/api/status"),
    ("GET", "/admin/api/session"),
]


def test_api_refuses_without_token_and_with_a_wrong_one(admin):
    before = admin.path.read_text()
    for method, route in PROTECTED:
        response = admin.http.request(method, route, json={"tokens": []})
        assert response.status_code == 401, (method, route)
        assert response.json()["error"]["code"] == "admin_auth_required"
        wrong = admin.http.request(method, route, json={"tokens": []}, headers={"authorization": "Bearer not-the-admin-token"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_admin_token", (method, route)
        admin.app.state.admin.limiter.succeeded("127.0.0.1")  # keep the backoff out of this loop
    # a client token of the config is not an admin token
    assert admin.http.get("/admin/api/config", headers={"authorization": "Bearer sk-mock-1"}).status_code == 401
    assert admin.path.read_text() == before


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_it(admin):
    client = httpx.Client(base_url=admin.url, timeout=30)
    assert client.post("/admin/api/login", json={"token": "wrong"}).status_code == 401
    assert client.post("/admin/api/login", json={}).status_code == 401
    response = client.post("/admin/api/login", json={"token": ADMIN})
    assert response.status_code == 204
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("gateway_admin=")
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain http on loopback; set over https
    csrf = response.headers["x-csrf-token"]
    session = client.get("/admin/api/session").json()
    assert session == {"auth": "cookie", "csrf_token": csrf, "generated_token": False}
    assert client.get("/admin/api/config").status_code == 200
    # the page embeds the CSRF token once logged in, and not before
    assert csrf in client.get("/").text and csrf not in admin.http.get("/").text

    stolen = client.cookies.get("gateway_admin")
    assert client.post("/admin/api/logout").status_code == 204
    assert client.get("/admin/api/config").status_code == 401
    replay = httpx.Client(base_url=admin.url, cookies={"gateway_admin": stolen})
    assert replay.get("/admin/api/config").status_code == 401  # a logged-out session stays dead
    forged = httpx.Client(base_url=admin.url, cookies={"gateway_admin": stolen.rsplit(".", 1)[0] + ".00"})
    assert forged.get("/admin/api/config").status_code == 401


def test_cookie_writes_need_the_csrf_token_and_bearer_writes_do_not(admin):
    client, csrf = login(admin)
    data = client.get("/admin/api/config").json()
    data["tokens"][0]["config"]["reply"] = "csrf checked: {prompt}"
    assert client.put("/admin/api/config", json=data).json()["error"]["code"] == "csrf_failed"
    assert client.put("/admin/api/config", json=data, headers={"x-csrf-token": "0" * 64}).status_code == 403
    assert client.post("/admin/api/test", json={"token": "sk-mock-1"}).status_code == 403
    saved = client.put("/admin/api/config", json=data, headers={"x-csrf-token": csrf})
    assert saved.status_code == 200 and saved.json()["changed"] is True
    data["tokens"][0]["config"]["reply"] = "bearer: {prompt}"
    assert admin.put("/admin/api/config", data).status_code == 200  # bearer: no CSRF token needed
    assert admin.chat("sk-mock-1", "x") == "bearer: x"


def test_failed_logins_back_off_without_blocking_and_then_lock_out(admin):
    limiter = admin.app.state.admin.limiter
    limiter.base_delay, limiter.max_failures, limiter.lockout = 0.4, 4, 60
    client = httpx.Client(base_url=admin.url, timeout=30)
    timings = []
    for _ in range(2):
        started = time.monotonic()
        assert client.post("/admin/api/login", json={"token": "guess"}).status_code == 401
        timings.append(time.monotonic() - started)
    assert timings[0] >= 0.4 and timings[1] >= 0.8  # the delay doubles

    # while a failed attempt waits out its delay, the gateway keeps serving
    done = threading.Event()
    thread = threading.Thread(target=lambda: (client.post("/admin/api/login", json={"token": "guess"}), done.set()))
    thread.start()
    assert admin.chat("sk-mock-1", "still serving") == "mock one: still serving"
    assert not done.is_set()
    thread.join()

    locked = client.post("/admin/api/login", json={"token": "guess"})  # 4th failure: locked out
    assert locked.status_code == 401
    response = client.post("/admin/api/login", json={"token": ADMIN})
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 0
    assert response.json()["error"]["code"] == "too_many_attempts"
    assert admin.get("/admin/api/config").status_code == 429  # bearer from the same client too


def test_generated_admin_token_is_logged_once_and_works(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"tokens": [{"token": "t1", "type": "mock", "config": {}}]}))
    with caplog.at_level("WARNING", logger="gateway.admin"):
        app = create_app(path)
    announced = [r.getMessage() for r in caplog.records if "generated one for the config page" in r.getMessage()]
    assert len(announced) == 1
    token = announced[0].rsplit(": ", 1)[1]
    assert len(token) > 30
    with serve_gateway(app) as url, httpx.Client(base_url=url) as client:
        assert client.get("/admin/api/session", headers={"authorization": f"Bearer {token}"}).json()["generated_token"] is True
        assert client.post("/admin/api/login", json={"token": token}).status_code == 204
    assert sum("generated one" in r.getMessage() for r in caplog.records) == 1


def test_open_api_prints_the_generated_admin_token_once(write_config, monkeypatch):
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN", raising=False)
    proc = GatewayProcess(write_config({"tokens": [{"token": "t1", "type": "mock", "config": {}}]})).start()
    output = proc.stop()
    lines = [line for line in output.splitlines() if "generated one for the config page" in line]
    assert len(lines) == 1, output
    assert "WARNING" in lines[0] and "gw-admin-" in lines[0]


# -- reading: masking -------------------------------------------------------------------------


def test_config_is_returned_in_the_files_shape_with_secrets_masked(admin):
    data = admin.config()
    assert list(data) == ["settings", "tokens"]
    assert data["settings"]["admin_token"] == ADMIN[:3] + "…" + ADMIN[-4:]
    assert data["settings"]["request_timeout"] == 60
    mock, oai, azure = data["tokens"]
    assert mock == {"token": "sk-mock-1", "name": "demo-mock", "type": "mock", "config": {"reply": "mock one: {prompt}", "latency_ms": 0}}
    assert oai["token"] == "sk-openai-1"  # client tokens are shown: the admin hands them out
    assert oai["config"]["api_key"] == "sk-…6789"
    assert azure["config"]["api_key"] == "••••••••"  # short: fully masked
    assert azure["enabled"] is False
    body = admin.get("/admin/api/config").text + admin.get("/admin/api/config/raw").text
    for secret in (ADMIN, UPSTREAM_KEY, AZURE_KEY):
        assert secret not in body


def test_a_list_shaped_file_comes_back_as_a_list(tmp_path):
    path = tmp_path / "seed.json"
    path.write_text(json.dumps([{"token": "a", "type": "openai", "config": {"api_key": "sk-" + "x" * 40}}]))
    os.environ["GATEWAY_ADMIN_TOKEN"] = ADMIN
    try:
        app = create_app(path)
    finally:
        del os.environ["GATEWAY_ADMIN_TOKEN"]
    with serve_gateway(app) as url, httpx.Client(base_url=url, headers=BEARER) as client:
        data = client.get("/admin/api/config").json()
        assert data == [{"token": "a", "type": "openai", "config": {"api_key": "sk-…xxxx"}}]
        data.append({"token": "b", "type": "mock", "config": {"reply": "json"}})
        assert client.put("/admin/api/config", json=data).status_code == 200
    written = json.loads(path.read_text())  # JSON files are written as JSON
    assert written[0]["config"]["api_key"] == "sk-" + "x" * 40 and written[1]["token"] == "b"


def test_env_references_are_shown_and_kept_as_written(tmp_path, fake_openai, monkeypatch):
    fake, base = fake_openai
    monkeypatch.setenv("ADMIN_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN)
    path = tmp_path / "env.yaml"
    path.write_text(
        "tokens:\n"
        "  - token: sk-env\n"
        "    type: openai\n"
        "    config:\n"
        "      api_key: ${ADMIN_TEST_UPSTREAM_KEY}\n"
        f"      api_base: {base}/v1\n"
    )
    app = create_app(path)
    with serve_gateway(app) as url, httpx.Client(base_url=url, headers=BEARER) as client:
        data = client.get("/admin/api/config").json()
        assert data["tokens"][0]["config"]["api_key"] == "${ADMIN_TEST_UPSTREAM_KEY}"
        data["tokens"][0]["config"]["model"] = "gpt-4o"
        assert client.put("/admin/api/config", json=data).status_code == 200
        text = path.read_text()
        assert "api_key: ${ADMIN_TEST_UPSTREAM_KEY}" in text and UPSTREAM_KEY not in text
        answer = openai.OpenAI(api_key="sk-env", base_url=f"{url}/v1", max_retries=0).chat.completions.create(
            messages=[{"role": "user", "content": "env"}], model="ignored"
        )
        assert answer.choices[0].message.content == "Echo: env"
        assert fake.recorder.last.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # expanded at load
        assert fake.recorder.last.body["model"] == "gpt-4o"


# -- saving -----------------------------------------------------------------------------------


def test_saving_a_masked_value_keeps_the_stored_secret(admin, fake_openai):
    fake, _ = fake_openai
    data = admin.config()
    data["tokens"][1]["config"]["model"] = "gpt-4o"
    response = admin.put("/admin/api/config", data)
    assert response.status_code == 200 and response.json()["summary"] == "changed openai-main: config.model"
    written = yaml.safe_load(admin.path.read_text())
    assert written["settings"]["admin_token"] == ADMIN
    assert written["tokens"][1]["config"]["api_key"] == UPSTREAM_KEY
    assert written["tokens"][2]["config"]["api_key"] == AZURE_KEY
    assert admin.chat("sk-openai-1", "kept") == "Echo: kept"
    assert fake.recorder.last.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"

    # a renamed token keeps its secret (matched by position); a duplicate finds it by its mask
    data = admin.config()
    data["tokens"][1]["token"] = "sk-openai-renamed"
    copy = json.loads(json.dumps(data["tokens"][1]))
    copy.update(token="sk-openai-copy", name="openai-copy")
    data["tokens"].append(copy)
    assert admin.put("/admin/api/config", data).status_code == 200
    written = yaml.safe_load(admin.path.read_text())
    assert written["tokens"][1]["token"] == "sk-openai-renamed"
    assert written["tokens"][1]["config"]["api_key"] == UPSTREAM_KEY
    assert written["tokens"][3]["config"]["api_key"] == UPSTREAM_KEY
    assert admin.chat("sk-openai-copy", "dup") == "Echo: dup"

    # a masked value that matches no stored secret is refused, not saved literally
    data = admin.config()
    data["tokens"][1]["config"]["api_key"] = "sk-…zzzz"
    response = admin.put("/admin/api/config", data)
    assert response.status_code == 400
    assert response.json()["error"]["details"] == [
        {"entry": "sk-openai-renamed", "field": "config.api_key", "message": "this is a masked value that matches no stored secret: type the secret again"}
    ]
    # a new secret replaces the old one
    data["tokens"][1]["config"]["api_key"] = "sk-a-brand-new-upstream-key-000"
    assert admin.put("/admin/api/config", data).status_code == 200
    assert yaml.safe_load(admin.path.read_text())["tokens"][1]["config"]["api_key"] == "sk-a-brand-new-upstream-key-000"


def test_invalid_save_is_rejected_with_details_and_nothing_changes(admin):
    before = admin.path.read_text()
    versions = admin.history()
    data = admin.config()
    data["tokens"][0]["config"]["latency_ms"] = -5
    data["tokens"][1]["config"]["temprature"] = 0.5
    data["tokens"].append({"token": "sk-mock-1", "type": "mock", "config": {}})
    data["tokens"].append({"token": "sk-r", "type": "router", "config": {"token_pool": ["nope"]}})
    for route in ("/admin/api/config", "/admin/api/config/validate"):
        send = admin.put if route.endswith("config") else admin.post
        response = send(route, data)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "invalid_config"
        assert "entry 'sk-mock-1'" in error["message"]
        details = error["details"]
        assert {"entry": "sk-mock-1", "field": "config.latency_ms", "message": "Input should be greater than or equal to 0"} in details
        assert {"entry": "sk-openai-1", "field": "config.temprature", "message": "unknown field"} in details
        assert {"entry": "sk-mock-1", "field": "token", "message": "duplicate token: another entry already uses it"} in details
        assert any(d["entry"] == "sk-r" and d["field"] == "config.token_pool[0]" for d in details)
    assert admin.path.read_text() == before
    assert admin.history() == versions
    assert admin.chat("sk-mock-1", "old") == "mock one: old"  # the old config still serves
    # syntax errors in the raw editor are reported the same way
    response = admin.put("/admin/api/config/raw", {"text": "tokens: [\n  - token"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_config"
    assert "invalid YAML" in response.json()["error"]["details"][0]["message"]
    # a valid config validates without being applied
    ok = admin.post("/admin/api/config/validate", admin.config())
    assert ok.status_code == 200 and ok.json()["valid"] is True
    assert admin.path.read_text() == before
    # not JSON at all
    bad = admin.http.put("/admin/api/config", content=b"{nope", headers=BEARER)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"


def test_save_writes_atomically_and_keeps_the_previous_file(admin, monkeypatch):
    os.chmod(admin.path, 0o640)
    before = admin.path.read_text()
    data = admin.config()
    data["tokens"][0]["config"]["reply"] = "second: {prompt}"
    assert admin.put("/admin/api/config", data).status_code == 200
    backup = admin.path.with_name(admin.path.name + ".bak")
    assert backup.read_text() == before
    assert stat.S_IMODE(admin.path.stat().st_mode) == 0o640
    config_files = sorted(p.name for p in admin.path.parent.iterdir() if p.is_file() and not p.name.startswith("gateway.db"))
    assert config_files == ["model_config.yaml", "model_config.yaml.bak"]  # no temp files left (the §8 store is its own)

    # when the write fails, the old file stays, nothing is applied and no version is recorded
    from gateway.admin import files

    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst) == str(admin.path):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", failing_replace)
    current, versions = admin.path.read_text(), admin.history()
    data["tokens"][0]["config"]["reply"] = "third: {prompt}"
    response = admin.put("/admin/api/config", data)
    assert response.status_code == 500 and response.json()["error"]["code"] == "write_failed"
    assert "No space left on device" in response.json()["error"]["message"]
    assert admin.path.read_text() == current and admin.history() == versions
    assert admin.chat("sk-mock-1", "x") == "second: x"
    assert not [p for p in admin.path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_yaml_comments_and_key_order_survive_a_save(admin):
    data = admin.config()
    data["tokens"][1]["config"]["model"] = "gpt-4o"
    data["tokens"].append({"token": "sk-new", "name": "new-mock", "type": "mock", "config": {"reply": "new"}})
    del data["tokens"][2]
    data["settings"]["request_timeout"] = 30
    assert admin.put("/admin/api/config", data).status_code == 200
    text = admin.path.read_text()
    for comment in (
        "# Team gateway config — this header comment must survive saves.",
        "# the config page's token",
        "# The local demo model.",
        '"mock one: {prompt}"   # keep this comment',
        "# Upstream OpenAI (the fake).",
        "# forced model",
    ):
        assert comment in text, comment
    assert re.search(r"\n  request_timeout: 30 +# seconds\n", text)
    assert re.search(r"\n      model: gpt-4o +# forced model\n", text)
    assert "cooldown: {failures: 3, window: 60, seconds: 5, max_seconds: 300}" in text  # flow style kept
    keys = [line.split(":")[0].strip() for line in text.splitlines() if line.startswith("  ") and not line.strip().startswith("#")][:3]
    assert keys == ["admin_token", "request_timeout", "cooldown"]
    assert "sk-azure-1" not in text
    assert yaml.safe_load(text)["tokens"][-1] == {"token": "sk-new", "name": "new-mock", "type": "mock", "config": {"reply": "new"}}


def test_if_match_refuses_a_save_based_on_a_stale_config(admin):
    etag = admin.get("/admin/api/config").headers["etag"]
    data = admin.config()
    data["tokens"][0]["config"]["reply"] = "first: {prompt}"
    assert admin.put("/admin/api/config", data, headers={"if-match": etag}).status_code == 200
    data["tokens"][0]["config"]["reply"] = "stale: {prompt}"
    response = admin.put("/admin/api/config", data, headers={"if-match": etag})
    assert response.status_code == 412 and response.json()["error"]["code"] == "config_changed"
    assert admin.chat("sk-mock-1", "x") == "first: x"


def test_raw_editor_round_trip_keeps_secrets_and_the_admins_comments(admin):
    raw = admin.get("/admin/api/config/raw").json()
    assert raw["format"] == "yaml"
    text = raw["text"]
    assert "# keep this comment" in text and "api_key: sk-…6789" in text and UPSTREAM_KEY not in text
    edited = text.replace("tokens:\n", "tokens:\n  # added in the raw editor\n").replace("latency_ms: 0", "latency_ms: 1")
    response = admin.put("/admin/api/config/raw", {"text": edited})
    assert response.status_code == 200 and response.json()["summary"] == "changed demo-mock: config.latency_ms"
    written = admin.path.read_text()
    assert "# added in the raw editor" in written and "latency_ms: 1" in written
    assert f"api_key: {UPSTREAM_KEY}" in written and f"admin_token: {ADMIN}" in written
    assert admin.post("/admin/api/config/raw/validate", {"text": edited}).json()["valid"] is True


def test_live_apply_under_concurrent_traffic_fails_no_request(admin):
    """100 requests in flight while the config is saved 5 times: none fails, the streams that
    started before the saves finish on the old config, new requests see the new one."""
    data = admin.config()
    data["tokens"][0]["config"].update(reply="v0 {prompt}", latency_ms=600, chunk_count=3)
    assert admin.put("/admin/api/config", data).status_code == 200

    async def scenario() -> tuple[list[str], list[str], list[int]]:
        client = openai.AsyncOpenAI(api_key="sk-mock-1", base_url=f"{admin.url}/v1", max_retries=0, timeout=30)
        started = 0
        all_started = asyncio.Event()

        async def streamed() -> str:
            nonlocal started
            stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}], stream=True)
            text = ""
            async for chunk in stream:
                if not text and started < 60 and chunk.choices and chunk.choices[0].delta.role:
                    started += 1
                    if started == 60:
                        all_started.set()
                text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
            return text

        async def plain() -> str:
            answer = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
            return answer.choices[0].message.content

        streams = [asyncio.create_task(streamed()) for _ in range(60)]
        await asyncio.wait_for(all_started.wait(), timeout=20)  # every stream is in flight
        statuses = []
        others = []
        async with httpx.AsyncClient(base_url=admin.url, headers=BEARER, timeout=30) as http:
            for version in range(1, 6):
                others += [asyncio.create_task(plain()) for _ in range(8)]
                data["tokens"][0]["config"].update(reply=f"v{version} {{prompt}}", latency_ms=10 * version)
                statuses.append((await http.put("/admin/api/config", json=data)).status_code)
        in_flight = await asyncio.gather(*streams)
        during = await asyncio.gather(*others)
        await client.close()
        return in_flight, during, statuses

    in_flight, during, statuses = asyncio.run(scenario())
    assert statuses == [200] * 5
    assert in_flight == ["v0 q"] * 60  # started on the old config, finished on it
    assert len(during) == 40 and set(during) <= {f"v{n} q" for n in range(6)}
    assert admin.chat("sk-mock-1", "q") == "v5 q"


# -- history ----------------------------------------------------------------------------------


def test_history_lists_diffs_and_rolls_back(admin):
    original = admin.path.read_text()
    data = admin.config()
    data["tokens"][0]["config"]["reply"] = "changed once: {prompt}"
    assert admin.put("/admin/api/config", data).json()["version"] == 2
    data["tokens"].append({"token": "sk-added", "name": "added", "type": "mock", "config": {}})
    del data["tokens"][2]
    assert admin.put("/admin/api/config", data).json()["summary"] == "added added (mock); removed azure"

    versions = admin.history()
    assert [(v["id"], v["source"], v["current"]) for v in versions] == [(3, "api", True), (2, "api", False), (1, "baseline", False)]
    assert versions[1]["summary"] == "changed demo-mock: config.reply"
    assert all(v["time"].endswith("Z") for v in versions)
    history_dir = admin.path.parent / ".history" / admin.path.name
    assert stat.S_IMODE(history_dir.stat().st_mode) == 0o700

    diff = admin.get("/admin/api/history/1").json()
    assert diff["id"] == 1 and diff["source"] == "baseline"
    lines = diff["diff"].splitlines()
    assert lines[0] == "--- version 1" and lines[1] == "+++ current"
    assert '-      reply: "mock one: {prompt}"   # keep this comment' in lines
    assert any(re.fullmatch(r'\+      reply: "changed once: \{prompt\}" +# keep this comment', line) for line in lines)
    assert "-      api_key: ••••••••" in lines  # secrets masked in diffs too
    assert AZURE_KEY not in diff["diff"] and UPSTREAM_KEY not in diff["diff"]
    assert admin.get("/admin/api/history/99").status_code == 404

    rolled = admin.post("/admin/api/history/1/rollback")
    assert rolled.status_code == 200
    body = rolled.json()
    assert body["version"] == 4 and body["summary"].startswith("rolled back to version 1: ")
    assert admin.path.read_text() == original
    assert admin.chat("sk-mock-1", "back") == "mock one: back"
    assert [v["source"] for v in admin.history()] == ["rollback", "api", "api", "baseline"]
    assert admin.post("/admin/api/history/99/rollback").status_code == 404
    assert admin.post("/admin/api/history/1/rollback").json()["changed"] is False  # already current


def test_rollback_is_validated_like_any_save(admin, monkeypatch):
    monkeypatch.setenv("ADMIN_TEST_TEMP_REPLY", "from env")
    data = admin.config()
    data["tokens"][0]["config"]["reply"] = "${ADMIN_TEST_TEMP_REPLY}"
    assert admin.put("/admin/api/config", data).status_code == 200
    data["tokens"][0]["config"]["reply"] = "plain"
    assert admin.put("/admin/api/config", data).status_code == 200
    monkeypatch.delenv("ADMIN_TEST_TEMP_REPLY")
    response = admin.post("/admin/api/history/2/rollback")
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["message"] == "environment variable ADMIN_TEST_TEMP_REPLY is not set"
    assert admin.chat("sk-mock-1", "x") == "plain"


# -- the test button --------------------------------------------------------------------------


def test_test_button_answers_with_latency_or_the_error(admin, fake_openai):
    ok = admin.post("/admin/api/test", {"token": "sk-mock-1"}).json()
    assert ok["ok"] is True and ok["content"].startswith("mock one: ") and ok["name"] == "demo-mock"
    assert isinstance(ok["latency_ms"], int) and ok["latency_ms"] >= 0
    upstream = admin.post("/admin/api/test", {"token": "sk-openai-1", "prompt": "ping"}).json()
    assert upstream["ok"] is True and upstream["content"] == "Echo: ping"

    data = admin.config()
    data["tokens"][1]["config"]["model"] = "leak-secret"  # the fake's 400 quotes the key it was sent
    assert admin.put("/admin/api/config", data).status_code == 200
    failed = admin.post("/admin/api/test", {"token": "sk-openai-1"})
    assert failed.status_code == 200
    result = failed.json()
    assert result["ok"] is False and result["status"] == 400 and result["error"]["type"] == "invalid_request_error"
    assert UPSTREAM_KEY not in failed.text
    missing = admin.post("/admin/api/test", {"token": "sk-azure-1"})  # disabled: not in the running config
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "token_not_found"
    assert admin.post("/admin/api/test", {}).status_code == 400


# -- no file ----------------------------------------------------------------------------------


def test_an_app_built_from_a_config_object_refuses_to_save(monkeypatch):
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", ADMIN)
    config = build_config({"tokens": [{"token": "t1", "type": "mock", "config": {"reply": "mem"}}]})
    app = create_app(config)
    with serve_gateway(app) as url, httpx.Client(base_url=url, headers=BEARER) as client:
        data = client.get("/admin/api/config").json()
        assert data == {"tokens": [{"token": "t1", "type": "mock", "config": {"reply": "mem"}}]}
        assert client.post("/admin/api/config/validate", json=data).status_code == 200
        for response in (
            client.put("/admin/api/config", json=data),
            client.put("/admin/api/config/raw", json={"text": "tokens: []"}),
            client.post("/admin/api/history/1/rollback"),
        ):
            assert response.status_code == 409
            assert response.json()["error"]["code"] == "no_config_file"
            assert "--config" in response.json()["error"]["message"]
        status = client.get("/admin/api/status").json()
        assert status["writable"] is False and status["path"] is None and status["watching"] is False
        assert client.get("/admin/api/history").json() == {"data": []}
        assert client.post("/admin/api/test", json={"token": "t1"}).json()["content"] == "mem"


# -- changes on disk --------------------------------------------------------------------------


def _replies(admin: Admin) -> str:
    return admin.config()["tokens"][0]["config"]["reply"]


def test_an_edit_on_disk_is_applied_and_recorded(admin):
    assert admin.get("/admin/api/status").json()["watching"] is True
    text = admin.path.read_text().replace("mock one: {prompt}", "edited on disk: {prompt}")
    admin.path.write_text(text)
    wait_until(lambda: _replies(admin) == "edited on disk: {prompt}", what="the on-disk edit to be applied")
    assert admin.chat("sk-mock-1", "x") == "edited on disk: x"
    versions = admin.history()
    assert [v["source"] for v in versions] == ["disk", "baseline"]
    assert versions[0]["summary"] == "edited on disk: changed demo-mock: config.reply"


def test_a_bad_edit_on_disk_is_logged_and_ignored(admin, caplog):
    good = admin.path.read_text()
    with caplog.at_level("WARNING", logger="gateway.admin"):
        admin.path.write_text(good.replace("latency_ms: 0", "latency_ms: -3"))
        status = wait_until(lambda: admin.get("/admin/api/status").json()["disk_error"], what="the bad edit to be noticed")
    assert "config.latency_ms" in status["message"] and "greater than or equal to 0" in status["message"]
    assert any("changed on disk but cannot be loaded" in r.getMessage() for r in caplog.records)
    assert admin.chat("sk-mock-1", "still") == "mock one: still"
    assert admin.history() == []
    admin.path.write_text("tokens: [ {token: broken")  # a syntax error is ignored the same way
    wait_until(lambda: "invalid YAML" in (admin.get("/admin/api/status").json()["disk_error"] or {}).get("message", ""), what="syntax error")
    assert admin.chat("sk-mock-1", "still") == "mock one: still"
    admin.path.write_text(good.replace("mock one", "fixed"))  # fixing the file applies it
    wait_until(lambda: _replies(admin) == "fixed: {prompt}", what="the fixed file to be applied")
    assert admin.get("/admin/api/status").json()["disk_error"] is None


def test_an_api_save_is_not_applied_twice_by_the_watcher(admin):
    data = admin.config()
    data["tokens"][0]["config"]["reply"] = "saved by api: {prompt}"
    assert admin.put("/admin/api/config", data).status_code == 200
    # an edit on disk afterwards: once it is applied, the watcher has seen the save's event too
    admin.path.write_text(admin.path.read_text().replace("saved by api", "then on disk"))
    wait_until(lambda: _replies(admin) == "then on disk: {prompt}", what="the on-disk edit")
    assert [v["source"] for v in admin.history()] == ["disk", "api", "baseline"]
    assert admin.get("/admin/api/status").json()["disk_error"] is None


def test_an_invalid_pool_member_is_reported_once_not_by_every_router_using_it(admin):
    data = admin.config()
    data["tokens"].append({"token": "sk-pool", "type": "router", "config": {"token_pool": ["sk-mock-1"]}})
    data["tokens"][0]["config"]["chunk_count"] = 0
    details = admin.put("/admin/api/config", data).json()["error"]["details"]
    assert details == [{"entry": "sk-mock-1", "field": "config.chunk_count", "message": "Input should be greater than or equal to 1"}]
    data["tokens"][0]["config"]["chunk_count"] = 2
    data["tokens"][-1]["config"]["token_pool"] = ["sk-gone"]
    details = admin.put("/admin/api/config", data).json()["error"]["details"]
    assert details == [{"entry": "sk-pool", "field": "config.token_pool[0]", "message": "refers to token 'sk-gone', which is not a (enabled) token of this config"}]
