"""Issue #14 item 8, the config page (security probe rows 5, 7, 12, 15, 18), against a real
gateway process: forwarded headers trusted only from configured proxies, URL passwords and
declined entries' cookies masked everywhere the page shows config, logout across workers,
no pre-auth traceback on a vanished client, bounded failed-login tables."""

from __future__ import annotations

import concurrent.futures
import socket

import httpx
import pytest
import yaml

from gateway.admin.security import LoginLimiter
from tests.support.servers import GatewayProcess

ADMIN = "gw-admin-hardening-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {ADMIN}"}
PROXY_PASSWORD = "proxy-pass-SECRET-99"
BASE_PASSWORD = "base-pass-SECRET-77"
COOKIE = "claude-web-cookie-SECRET-sessionKey=sk-ant-sid01-abcdef"


def start(tmp_path, settings=None, args=()) -> GatewayProcess:
    config = {"settings": {"admin_token": ADMIN, **(settings or {})}, "tokens": [{"token": "tok-mock", "type": "mock", "config": {}}]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return GatewayProcess(path, args=list(args)).start()


def test_forwarded_for_from_loopback_does_not_escape_the_lockout(tmp_path):
    """Row 5: after the lockout, `X-Forwarded-For: 203.0.113.9` made the locked client a new one."""
    gateway = start(tmp_path)
    try:
        url = f"{gateway.base_url}/admin/api/login"
        with concurrent.futures.ThreadPoolExecutor(10) as pool:  # ten failures at once: the backoffs overlap
            statuses = list(pool.map(lambda _: httpx.post(url, json={"token": "wrong"}, timeout=30).status_code, range(10)))
        assert statuses.count(401) == 10
        spoofed = httpx.get(f"{gateway.base_url}/admin/api/status", headers={**BEARER, "X-Forwarded-For": "203.0.113.9"})
        assert spoofed.status_code == 429
        login = httpx.post(url, json={"token": ADMIN}, headers={"X-Forwarded-For": "198.51.100.7"})
        assert login.status_code == 429
    finally:
        gateway.stop()


def test_forwarded_for_is_believed_from_a_configured_proxy(tmp_path):
    """With `settings.trusted_proxies` naming the proxy, its X-Forwarded-For is the client."""
    gateway = start(tmp_path, {"trusted_proxies": ["127.0.0.1"]})
    try:
        url = f"{gateway.base_url}/admin/api/login"
        xff = {"X-Forwarded-For": "198.51.100.1"}
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda _: httpx.post(url, json={"token": "wrong"}, headers=xff, timeout=30), range(10)))
        assert httpx.post(url, json={"token": ADMIN}, headers=xff).status_code == 429  # that client is locked out
        assert httpx.post(url, json={"token": ADMIN}, headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 204
    finally:
        gateway.stop()


def test_proxy_passwords_userinfo_and_declined_cookies_are_masked(tmp_path):
    """Row 7: proxy passwords, api_base userinfo and the seed's claude-web cookie came back in
    clear from the config, the raw view and the history diffs."""
    gateway = start(tmp_path)
    try:
        api = f"{gateway.base_url}/admin/api"
        data = httpx.get(f"{api}/config", headers=BEARER).json()
        data["tokens"] += [
            {"token": "tok-px", "type": "openai", "config": {"api_key": "sk-upstream-0123456789abcdef",
                                                             "proxies": {"https": f"http://user:{PROXY_PASSWORD}@127.0.0.1:3128"}}},
            {"token": "tok-base", "type": "openai", "enabled": False,
             "config": {"api_key": "sk-upstream-0123456789abcdef", "api_base": f"http://user:{BASE_PASSWORD}@127.0.0.1:9/v1"}},
            {"token": "tok-cw", "type": "claude-web", "config": {"cookie": COOKIE}},
        ]
        assert httpx.put(f"{api}/config", json=data, headers=BEARER).status_code == 200
        shown = [httpx.get(f"{api}/config", headers=BEARER).text, httpx.get(f"{api}/config/raw", headers=BEARER).text]
        versions = httpx.get(f"{api}/history", headers=BEARER).json()["data"]
        shown += [httpx.get(f"{api}/history/{v['id']}", headers=BEARER).text for v in versions]
        for text in shown:
            for secret in (PROXY_PASSWORD, BASE_PASSWORD, COOKIE, "sk-ant-sid01"):
                assert secret not in text
        masked = httpx.get(f"{api}/config", headers=BEARER).json()
        assert masked["tokens"][1]["config"]["proxies"]["https"] == "http://••••••••@127.0.0.1:3128"
        # Saving the masked view back keeps the stored secrets.
        assert httpx.put(f"{api}/config", json=masked, headers=BEARER).status_code == 200
        on_disk = yaml.safe_load((tmp_path / "config.yaml").read_text())
        assert on_disk["tokens"][1]["config"]["proxies"]["https"].endswith(f"{PROXY_PASSWORD}@127.0.0.1:3128")
        assert on_disk["tokens"][3]["config"]["cookie"] == COOKIE
    finally:
        gateway.stop()


def test_logout_ends_the_session_in_every_worker(tmp_path):
    """Row 12: with --workers 2 the logged-out cookie still worked in the other worker."""
    gateway = start(tmp_path, args=["--workers", "2"])
    try:
        with httpx.Client(base_url=gateway.base_url) as browser:
            login = browser.post("/admin/api/login", json={"token": ADMIN})
            assert login.status_code == 204
            cookie = browser.cookies["gateway_admin"]
            seen = {httpx.get(f"{gateway.base_url}/admin/api/config", cookies={"gateway_admin": cookie}).status_code for _ in range(8)}
            assert seen == {200}
            assert browser.post("/admin/api/logout").status_code == 204
        statuses = [httpx.get(f"{gateway.base_url}/admin/api/config", cookies={"gateway_admin": cookie}).status_code for _ in range(16)]
        assert set(statuses) == {401}, statuses
    finally:
        gateway.stop()


def test_a_client_that_vanishes_mid_body_leaves_no_traceback(tmp_path):
    """Row 15: each trickled-then-abandoned login logged a ~50-line ClientDisconnect traceback."""
    gateway = start(tmp_path)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(b"POST /admin/api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"tok")
    assert httpx.get(f"{gateway.base_url}/healthz").status_code == 200
    output = gateway.stop()
    assert "Traceback" not in output and "ClientDisconnect" not in output, output


def test_failed_login_tables_stay_bounded():
    """Row 18: a spray of addresses grew `_failures` without bound (pruned only by age), and
    `_locked_until` was pruned only when that exact client came back."""
    limiter = LoginLimiter(max_failures=2)
    for i in range(30_000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
        limiter.failed(f"10.0.{i // 256}.{i % 256}")  # locked out
    assert len(limiter._failures) <= limiter.max_clients and len(limiter._locked_until) <= limiter.max_clients
    assert limiter.locked_for("10.0.117.47")  # the most recent are kept


@pytest.mark.parametrize("header", ["Authorization"])
def test_admin_api_refuses_two_authorization_headers(tmp_path, header):
    """Row 16 on the admin API: the first of two bearer headers was taken."""
    gateway = start(tmp_path)
    try:
        headers = [(header, f"Bearer {ADMIN}"), (header, "Bearer wrong")]
        assert httpx.get(f"{gateway.base_url}/admin/api/status", headers=headers).status_code == 401
    finally:
        gateway.stop()


def test_url_passwords_are_scrubbed_like_keys():
    """Row 7's passwords are secrets for the scrubber too (responses, logs), not only on the page."""
    from gateway.config import build_config

    config = build_config({"settings": {"database": "postgresql://u:db-pass-SECRET@h/db"}, "tokens": [
        {"token": "t", "type": "openai", "config": {"api_key": "sk-x", "api_base": f"http://u:{BASE_PASSWORD}@h/v1",
                                                    "proxies": {"https": f"http://u:{PROXY_PASSWORD}@h:1"}}}]})
    assert {BASE_PASSWORD, PROXY_PASSWORD, "db-pass-SECRET"} <= set(config.secrets())
