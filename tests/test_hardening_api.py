"""Issue #14 items 4, 5 and the API rows of item 8 (security probe rows 6, 9, 11, 16, 17, 19,
20), against a real gateway process: malformed input is a 400 naming the field before any
member is tried, routers are not poisoned by it, 404/405 are OpenAI-shaped, two Authorization
headers are read alike everywhere, CORS changes apply live, bad names and tokens are refused
at load."""

from __future__ import annotations

import httpx
import openai
import pytest
import yaml

from tests.fakes.gemini import FakeGemini
from tests.support.servers import GatewayProcess, serve_app, wait_until

ADMIN = "gw-admin-api-hardening-0123456789"
GEMINI_KEY = "AIzaSyFakeGeminiKey-0123456789abcdefghij"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gemini():
    fake = FakeGemini(api_key=GEMINI_KEY)
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def gateway(gemini, tmp_path_factory):
    _, url = gemini
    config = {
        "settings": {"admin_token": ADMIN, "cors_allow_origins": ["https://a.example"],
                     "cooldown": {"failures": 2, "window": 60, "seconds": 30}},
        "tokens": [
            {"token": "tok-mock", "name": "mock", "type": "mock", "config": {"reply": "ok"}},
            {"token": "tok-gemini", "name": "gemini-member", "type": "gemini", "internal": True,
             "config": {"api_base": url, "api_key": GEMINI_KEY, "model": "gemini-2.0-flash"}},
            {"token": "tok-spare", "name": "spare-mock", "type": "mock", "internal": True, "config": {"reply": "spare"}},
            {"token": "tok-pool", "name": "pool", "type": "router",
             "config": {"router_strategy": "fallback", "token_pool": ["tok-gemini", "tok-spare"]}},
        ],
    }
    path = tmp_path_factory.mktemp("api-hardening") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with GatewayProcess(path) as proc:
        yield proc


def post(gateway, body, token="tok-mock", **kw) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw)


MALFORMED = [
    ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": {"a": 1}, "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": ["a"]}]}]}, "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]}, "messages[0].content[0].image_url.url"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}, "messages[0].content[0].image_url"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": "x"}]}]}, "messages[0].content[0].input_audio"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": "x"}]}]}, "messages[0].content[0].file"),
    ({"messages": HI, "tools": [{"type": "function", "function": "x"}]}, "tools[0].function"),
    ({"messages": HI, "tools": [{"type": "function", "function": {"name": 1}}]}, "tools[0].function.name"),
    ({"messages": HI, "tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}, "tools[0].function.parameters"),
    ({"messages": HI, "tools": ["x"]}, "tools[0]"),
    ({"messages": HI, "tool_choice": {"type": "function", "function": "x"}}, "tool_choice.function"),
    ({"messages": HI, "response_format": {"type": "json_schema", "json_schema": "x"}}, "response_format.json_schema"),
    ({"messages": HI, "response_format": {"type": 1}}, "response_format.type"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": {"a": 1}}, *HI]}, "messages[0].tool_calls"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": ["x"]}, *HI]}, "messages[0].tool_calls[0]"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": "x"}]}, *HI]},
     "messages[0].tool_calls[0].function"),
    ({"messages": [{"role": "tool", "tool_call_id": [1], "content": "r"}, *HI]}, "messages[0].tool_call_id"),
    ({"messages": HI, "stop": ["a", 5]}, "stop[1]"),
]


@pytest.mark.parametrize("token", ["tok-mock", "tok-pool"])
@pytest.mark.parametrize("body,param", MALFORMED, ids=[p for _, p in MALFORMED])
def test_every_malformed_field_is_a_400_naming_it(gateway, token, body, param):
    """Row 9: these were 500 (mock) or 502 through a router, with a traceback logged."""
    response = post(gateway, body, token)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_malformed_requests_never_cool_down_a_router_member(gateway):
    """Row 6: two malformed `tools` requests put a healthy gemini member in cooldown for every
    client (failures: 2 here); now they are 400s before any member is tried."""
    bad = {"messages": HI, "tools": [{"type": "function", "function": "x"}]}
    for _ in range(3):
        assert post(gateway, bad, "tok-pool").status_code == 400
    client = openai.OpenAI(api_key="tok-pool", base_url=f"{gateway.base_url}/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="m", messages=HI)
    assert raw.headers["x-gateway-served-by"] == "gemini-member"
    assert raw.parse().choices[0].message.content == "Echo: hi"


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/v1/chat/completions", 405), ("PUT", "/v1/chat/completions", 405), ("DELETE", "/v1/chat/completions", 405),
    ("GET", "/v1/unknown", 404), ("POST", "/v1/models", 405), ("GET", "/admin/api/history/" + "9" * 5000, 404),
    ("POST", "/admin/api/history/" + "9" * 5000 + "/rollback", 404),
])
def test_unknown_routes_and_methods_are_openai_shaped(gateway, method, path, status):
    """Rows 14, 19: plain-text 404/405 (and a 500 with a traceback for a 5000-digit history id)."""
    response = httpx.request(method, f"{gateway.base_url}{path}", headers={"Authorization": "Bearer tok-mock"})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models"])
@pytest.mark.parametrize("order", [("Bearer nope", "Bearer tok-mock"), ("Bearer tok-mock", "Bearer nope")])
def test_two_authorization_headers_are_refused_alike_everywhere(gateway, path, order):
    """Row 16: chat took the last header, /v1/models the first."""
    headers = [("Authorization", order[0]), ("Authorization", order[1]), ("Content-Type", "application/json")]
    with httpx.Client() as client:
        if path == "/v1/models":
            response = client.get(f"{gateway.base_url}{path}", headers=headers)
        else:
            response = client.post(f"{gateway.base_url}{path}", headers=headers, content=b'{"messages":[{"role":"user","content":"hi"}]}')
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def admin_put(gateway, data) -> httpx.Response:
    return httpx.put(f"{gateway.base_url}/admin/api/config", json=data, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)


def admin_config(gateway) -> dict:
    return httpx.get(f"{gateway.base_url}/admin/api/config", headers={"Authorization": f"Bearer {ADMIN}"}).json()


def cors_origin(gateway, origin: str) -> str | None:
    response = httpx.get(f"{gateway.base_url}/v1/models", headers={"Authorization": "Bearer tok-mock", "Origin": origin})
    return response.headers.get("access-control-allow-origin")


def test_cors_changes_apply_without_a_restart(gateway):
    """Row 11: the middleware kept the start-up allow-list after a reload."""
    assert cors_origin(gateway, "https://a.example") == "https://a.example"
    assert cors_origin(gateway, "https://b.example") is None
    data = admin_config(gateway)
    data["settings"]["cors_allow_origins"] = ["https://b.example"]
    assert admin_put(gateway, data).status_code == 200
    try:
        assert cors_origin(gateway, "https://b.example") == "https://b.example"
        assert cors_origin(gateway, "https://a.example") is None
    finally:
        data["settings"]["cors_allow_origins"] = ["https://a.example"]
        assert admin_put(gateway, data).status_code == 200
    wait_until(lambda: cors_origin(gateway, "https://a.example") == "https://a.example", what="CORS restored")


@pytest.mark.parametrize("field,value", [
    ("name", "crlf\r\nSet-Cookie: injected=1\r\nX-Evil: 1"),
    ("name", "nul\x00"),
    ("token", "tök-ünicode-1"),
    ("token", "tok with space"),
    ("token", "tok\r\nx"),
])
def test_control_characters_and_non_ascii_tokens_are_refused_at_load(gateway, field, value):
    """Rows 17, 20: a CR/LF name dropped every answer of its token (and forged log lines); a
    non-ASCII token could never be presented by a normal client."""
    data = admin_config(gateway)
    entry = {"token": "tok-new", "name": "new", "type": "mock", "config": {}}
    entry[field] = value
    data["tokens"].append(entry)
    response = admin_put(gateway, data)
    assert response.status_code == 400, response.text
    details = response.json()["error"]["details"]
    assert any(d["field"] == field for d in details)
    assert post(gateway, {"messages": HI}).status_code == 200  # nothing changed
