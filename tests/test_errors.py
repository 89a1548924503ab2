"""Every row of CONTRACT.md §3's error table, over raw HTTP, plus timeouts, errors after a stream
started, client disconnects and secrets quoted by upstreams."""

import socket

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.openai import FakeOpenAI
from tests.support.recorder import Recorder
from tests.support.servers import GatewayProcess, serve_app

KEY = "sk-upstream-secret-key-0123456789"
USER_MSG = {"messages": [{"role": "user", "content": "x"}]}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def upstream():
    fake = FakeOpenAI(api_key=KEY, slow_seconds=3)
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    _, url = upstream
    config = {
        "settings": {"request_timeout": 1, "stream_idle_timeout": 1, "connect_timeout": 1},
        "tokens": [
            {"token": "ok", "type": "openai", "config": {"api_base": f"{url}/v1", "api_key": KEY}},
            {"token": "wrong-key", "type": "openai", "config": {"api_base": f"{url}/v1", "api_key": "sk-wrong-config-key-999999"}},
            {"token": "down", "type": "proxy", "config": {"api_base": f"http://127.0.0.1:{closed_port()}/v1", "api_key": KEY}},
            {"token": "mock", "type": "mock", "config": {}},
        ],
    }
    path = tmp_path_factory.mktemp("errors") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with GatewayProcess(path) as proc:
        yield proc


def post(gateway, token="ok", body=None, content=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", headers=headers, json=body, content=content, timeout=20, **kw)


def assert_error(response, status, type_, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    if code is not None:
        assert error["code"] == code
    assert error["message"]
    return error


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_no_or_unknown_token_401(gateway, token):
    assert_error(post(gateway, token, USER_MSG), 401, "invalid_request_error", "invalid_api_key")


@pytest.mark.parametrize(
    "content, param",
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"model": "gpt-4o"}', "messages"),
        (b'{"messages": []}', "messages"),
        (b'{"messages": [{"role": "robot", "content": "x"}]}', "messages[0].role"),
        (b'{"messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}', "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "model": 4}', "model"),
    ],
)
def test_bad_body_400(gateway, content, param):
    error = assert_error(post(gateway, content=content), 400, "invalid_request_error")
    assert error["param"] == param


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_upstream_rejected_request_keeps_status(gateway, status):
    error = assert_error(post(gateway, body={**USER_MSG, "model": f"status-{status}"}), status, "invalid_request_error")
    assert "Scenario error" in error["message"]


@pytest.mark.parametrize("token, model", [("wrong-key", "gpt-4o"), ("ok", "status-401"), ("ok", "status-403")])
def test_upstream_refused_our_credentials_502(gateway, token, model):
    assert_error(post(gateway, token, {**USER_MSG, "model": model}), 502, "api_error", "upstream_auth_error")


def test_upstream_rate_limit_429(gateway):
    assert_error(post(gateway, body={**USER_MSG, "model": "status-429"}), 429, "rate_limit_error", "rate_limit_exceeded")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_upstream_5xx_502(gateway, status):
    assert_error(post(gateway, body={**USER_MSG, "model": f"status-{status}"}), 502, "api_error", "upstream_error")


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_unreachable_502(gateway, stream):
    assert_error(post(gateway, "down", {**USER_MSG, "stream": stream}), 502, "api_error", "upstream_error")


@pytest.mark.parametrize("stream", [False, True])
def test_first_byte_timeout_504(gateway, stream):
    assert_error(post(gateway, body={**USER_MSG, "model": "slow-first-byte", "stream": stream}), 504, "api_error", "upstream_timeout")


def test_stream_idle_timeout_is_an_sse_error_event(gateway):
    r = post(gateway, body={**USER_MSG, "model": "stall-stream", "stream": True})
    assert r.status_code == 200
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    import json

    error = json.loads(events[-2])["error"]
    assert (error["type"], error["code"]) == ("api_error", "upstream_timeout")
    assert events[-1] == "[DONE]"


def test_connect_timeout_504(tmp_path):
    # A listener whose accept queue is full: the SYN is never answered, so connecting hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    config = {"settings": {"connect_timeout": 0.5, "request_timeout": 5}, "tokens": [
        {"token": "t", "type": "proxy", "config": {"api_base": f"http://127.0.0.1:{port}/v1"}}]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        with GatewayProcess(path) as gw:
            error = assert_error(post(gw, "t", USER_MSG), 504, "api_error", "upstream_timeout")
            assert "connect" in error["message"]
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_secrets_quoted_by_upstream_never_reach_the_client(gateway):
    r = post(gateway, "wrong-key", USER_MSG)
    assert "sk-wrong-config-key-999999" not in r.text and "sk-wrong" not in r.text
    r = post(gateway, body={**USER_MSG, "model": "leak-secret"})
    assert r.status_code == 400 and KEY not in r.text and "***" in r.json()["error"]["message"]


def test_secrets_never_reach_the_log(upstream, tmp_path):
    _, url = upstream
    config = {"tokens": [{"token": "w", "type": "openai", "config": {"api_base": f"{url}/v1", "api_key": "sk-log-secret-abcdef123"}}]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    gw = GatewayProcess(path).start()
    post(gw, "w", USER_MSG)
    post(gw, "w", {**USER_MSG, "stream": True})
    output = gw.stop()
    assert "upstream_auth_error" in output  # the failure is logged ...
    assert "sk-log-secret-abcdef123" not in output  # ... without the key


def test_client_disconnect_cancels_the_upstream_request(gateway, upstream):
    fake, _ = upstream
    with httpx.stream("POST", f"{gateway.base_url}/v1/chat/completions", headers={"Authorization": "Bearer ok"},
                      json={**USER_MSG, "model": "slow-stream", "stream": True}, timeout=20) as r:
        lines = r.iter_lines()
        received = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in received)
    assert fake.recorder.wait_for_event("disconnect", timeout=10), "the upstream stream was not closed"


def test_outbound_proxy_setting_is_used(tmp_path):
    """`proxies` sends upstream traffic through the configured HTTP proxy."""
    recorder = Recorder()

    async def proxy(request: Request):
        await recorder.record(request)
        return JSONResponse({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "via proxy"}, "finish_reason": "stop"}]})

    app = Starlette(routes=[Route("/{path:path}", proxy, methods=["POST"])])
    with serve_app(app) as proxy_url:
        config = {"tokens": [{"token": "p", "type": "openai",
                              "config": {"api_base": "http://upstream.example/v1", "api_key": "k", "proxies": {"http": proxy_url}}}]}
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        with GatewayProcess(path) as gw:
            r = post(gw, "p", USER_MSG)
    assert r.json()["choices"][0]["message"]["content"] == "via proxy"
    assert recorder.last.headers["host"] == "upstream.example" and recorder.last.path == "/v1/chat/completions"
