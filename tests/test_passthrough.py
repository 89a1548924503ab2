"""Native pass-through (CONTRACT.md §10) with the providers' own SDKs (google-genai at `/gemini`,
openai at `/v1` and `/openai`, anthropic at `/anthropic`), and its refusals: traversal and
encoded paths, client credentials, upstream redirects. Each test checks what the upstream got."""

import hashlib
import http.client
from urllib.parse import urlsplit

import anthropic
import httpx
import openai
import pytest
import yaml
from google import genai
from google.genai import types
from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from gateway.app import create_app
from tests.fakes.anthropic import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.support.recorder import Recorder
from tests.support.servers import serve_app

OPENAI_KEY = "sk-upstream-secret-key-0123456789"
GEMINI_KEY = "AIzaSyFakeGeminiKey-0123456789abcdefghij"


class Redirector:
    """An upstream that answers every request with a redirect to `target`."""

    def __init__(self) -> None:
        self.target = ""
        self.app = Starlette(routes=[Route("/{p:path}", self.redirect, methods=["GET", "POST"])])

    async def redirect(self, request):
        return RedirectResponse(f"{self.target}/stolen", status_code=307)


class Target:
    """Where a redirect would lead: records anything that arrives."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.app = Starlette(routes=[Route("/{p:path}", self.any, methods=["GET", "POST"])])

    async def any(self, request):
        await self.recorder.record(request)
        return JSONResponse({"stolen": True})


@pytest.fixture(scope="module")
def upstreams():
    fakes = {"openai": FakeOpenAI(api_key=OPENAI_KEY), "gemini": FakeGemini(api_key=GEMINI_KEY), "anthropic": FakeAnthropic(),
             "redirector": Redirector(), "target": Target()}
    with (serve_app(fakes["openai"].app) as o, serve_app(fakes["gemini"].app) as g, serve_app(fakes["anthropic"].app) as a,
          serve_app(fakes["redirector"].app) as r, serve_app(fakes["target"].app) as t):
        fakes["redirector"].target = t
        yield fakes, {"openai": o, "gemini": g, "anthropic": a, "redirector": r}


@pytest.fixture(scope="module")
def gateway(upstreams, tmp_path_factory):
    _, urls = upstreams
    config = {"tokens": [
        {"token": "gw-openai", "type": "openai", "name": "openai",
         "config": {"api_base": f"{urls['openai']}/v1", "api_key": OPENAI_KEY, "model": "forced-but-not-here"}},
        {"token": "gw-azure", "type": "azure", "config": {"api_base": urls["openai"], "api_key": OPENAI_KEY, "deployment_id": "dep", "api_version": "2024-10-21"}},
        {"token": "gw-gemini", "type": "gemini", "name": "gemini", "config": {"api_base": urls["gemini"], "api_key": GEMINI_KEY}},
        {"token": "gw-claude", "type": "claude", "config": {"api_base": urls["anthropic"], "api_key": ANTHROPIC_KEY}},
        {"token": "gw-redirect", "type": "proxy", "config": {"api_base": f"{urls['redirector']}/v1", "api_key": "sk-redirected-key-0000"}},
        {"token": "gw-router", "type": "router", "config": {"token_pool": ["gw-openai"]}},
        {"token": "gw-mock", "type": "mock", "config": {}},
    ]}
    path = tmp_path_factory.mktemp("passthrough") / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with serve_app(create_app(path)) as base:
        yield base


def test_google_genai_through_gemini_route(gateway, upstreams):
    fakes, _ = upstreams
    client = genai.Client(api_key="gw-gemini", http_options=types.HttpOptions(base_url=f"{gateway}/gemini", api_version="v1beta"))
    response = client.models.generate_content(model="gemini-2.5-flash", contents="hello native")
    assert response.text == "Echo: hello native"
    received = fakes["gemini"].recorder.last
    assert received.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert received.headers["x-goog-api-key"] == GEMINI_KEY and "gw-gemini" not in str(received.headers)
    text = "".join(chunk.text for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="a b c"))
    assert text == "Echo: a b c" and fakes["gemini"].recorder.last.query == {"alt": "sse"}


def test_openai_sdk_fim_completions_moderations_through_v1(gateway, upstreams):
    fakes, _ = upstreams
    client = openai.OpenAI(api_key="gw-openai", base_url=f"{gateway}/v1", max_retries=0)
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="def add(a, b):", suffix="\n", max_tokens=5)
    assert completion.choices[0].text == "[completion of: def add(a, b):|\n]"
    assert fakes["openai"].recorder.last.body["model"] == "gpt-3.5-turbo-instruct"  # relayed as sent: no forced model
    pieces = [c.choices[0].text for c in client.completions.create(model="m", prompt="p", stream=True)]
    assert "".join(pieces) == "[completion of: p|]" and len(pieces) == 3
    images = client.images.generate(model="dall-e-3", prompt="a cat", response_format="b64_json", n=2)
    assert len(images.data) == 2 and images.data[0].b64_json.startswith("iVBOR") and images.data[0].revised_prompt == "a cat"
    moderation = client.moderations.create(input=["one", "two"])
    assert [r.flagged for r in moderation.results] == [False, False]
    assert fakes["openai"].recorder.last.headers["authorization"] == f"Bearer {OPENAI_KEY}"


@pytest.mark.parametrize("size", [1000, 3 * 1024 * 1024 + 17])
def test_multipart_audio_upload_relayed_intact(gateway, upstreams, size):
    fakes, _ = upstreams
    audio = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    client = openai.OpenAI(api_key="gw-openai", base_url=f"{gateway}/v1", max_retries=0)
    result = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", audio, "audio/wav"))
    assert result.text == f"<{size} bytes of speech.wav>"
    received = fakes["openai"].recorder.last
    assert received.body == {"model": "whisper-1", "filename": "speech.wav", "size": size, "sha256": hashlib.sha256(audio).hexdigest()}
    assert received.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert "transfer-encoding" not in received.headers and int(received.headers["content-length"]) > size


def test_openai_and_azure_routes_and_stream_cancelled_with_client(gateway, upstreams):
    fakes, _ = upstreams
    client = openai.OpenAI(api_key="gw-openai", base_url=f"{gateway}/openai", max_retries=0)
    completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "via /openai"}], extra_body={"custom": 1})
    assert completion.choices[0].message.content == "Echo: via /openai"
    assert fakes["openai"].recorder.last.body == {"model": "gpt-4o", "messages": [{"role": "user", "content": "via /openai"}], "custom": 1}
    response = httpx.post(f"{gateway}/openai/chat/completions", headers={"api-key": "gw-azure"},
                          json={"model": "x", "messages": [{"role": "user", "content": "az"}]})
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "Echo: az"
    received = fakes["openai"].recorder.last
    assert received.path == "/openai/deployments/dep/chat/completions" and received.query == {"api-version": "2024-10-21"}
    assert received.headers["api-key"] == OPENAI_KEY
    stream = client.chat.completions.create(model="slow-stream", messages=[{"role": "user", "content": "s"}], stream=True)
    first = [next(stream), next(stream)]
    assert first[1].choices[0].delta.content == "0 "
    stream.close()
    assert fakes["openai"].recorder.wait_for_event("disconnect")


def test_anthropic_sdk_through_anthropic_route(gateway, upstreams):
    fakes, _ = upstreams
    client = anthropic.Anthropic(api_key="gw-claude", base_url=f"{gateway}/anthropic", max_retries=0)
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "nat"}],
                                     extra_headers={"anthropic-beta": "files-api-2025-04-14"})
    assert message.content[0].text == "Echo: nat"
    received = fakes["anthropic"].recorder.last
    assert received.path == "/v1/messages" and received.headers["x-api-key"] == ANTHROPIC_KEY
    assert received.headers["anthropic-beta"] == "files-api-2025-04-14"


def test_client_credentials_and_hop_by_hop_headers_are_not_forwarded(gateway, upstreams):
    fakes, _ = upstreams
    response = httpx.post(f"{gateway}/v1/moderations?key=sk-client-query-key&keep=1", json={"input": "x"}, headers={
        "authorization": "Bearer gw-openai", "x-api-key": "sk-client-xapi", "api-key": "sk-client-azure",
        "x-goog-api-key": "sk-client-goog", "cookie": "session=secret", "proxy-authorization": "Basic abc",
        "forwarded": "for=1.2.3.4", "x-forwarded-for": "1.2.3.4", "connection": "keep-alive, x-hop", "x-hop": "1",
        "openai-organization": "org-client", "openai-project": "proj-client",
        "x-custom": "kept", "openai-beta": "assistants=v2"})
    assert response.status_code == 200
    received = fakes["openai"].recorder.last
    assert received.query == {"keep": "1"}
    assert received.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    for name in ("x-api-key", "api-key", "x-goog-api-key", "cookie", "proxy-authorization", "forwarded", "x-forwarded-for", "x-hop",
                 "openai-organization", "openai-project"):
        assert name not in received.headers, name
    assert received.headers["x-custom"] == "kept" and received.headers["openai-beta"] == "assistants=v2"
    assert "sk-client" not in str(received.headers)
    assert response.headers["x-gateway-token-name"] == "openai"


def raw_request(base: str, method: str, path: str, token: str = "gw-openai") -> tuple[int, bytes]:
    """A request whose path goes on the wire exactly as written (no client-side normalisation)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.putrequest(method, path, skip_accept_encoding=True)
    connection.putheader("authorization", f"Bearer {token}")
    connection.putheader("content-length", "2")
    connection.endheaders(b"{}")
    response = connection.getresponse()
    status, body = response.status, response.read()
    connection.close()
    return status, body


@pytest.mark.parametrize("path", [
    "/v1/../admin", "/v1/files/../../etc/passwd", "/v1/files/%2e%2e/x", "/v1/files%2Fx", "/gemini/v1beta%2f..%2fmodels",
    "/openai//evil.example/x", "/v1/files\\..\\x", "/v1/http://evil.example/x", "/v1/http:x", "/v1/files/%252e%252e/x",
    "/v1/files/a@evil.example", "/anthropic/v1/./messages", "/v1/files/%00",
])
def test_traversal_and_encoded_paths_are_refused_and_nothing_is_sent(gateway, upstreams, path):
    fakes, _ = upstreams
    before = {name: len(fake.recorder.requests) for name, fake in fakes.items() if hasattr(fake, "recorder")}
    status, body = raw_request(gateway, "POST", path, "gw-claude" if path.startswith("/anthropic") else "gw-gemini" if path.startswith("/gemini") else "gw-openai")
    assert status == 400 and b"pass-through path is refused" in body, (status, body)
    assert {name: len(fake.recorder.requests) for name, fake in fakes.items() if hasattr(fake, "recorder")} == before


def test_redirects_are_not_followed(gateway, upstreams):
    fakes, _ = upstreams
    response = httpx.post(f"{gateway}/v1/moderations", headers={"authorization": "Bearer gw-redirect"}, json={"input": "x"})
    assert response.status_code == 502 and "redirect" in response.json()["error"]["message"]
    assert "location" not in response.headers
    assert fakes["target"].recorder.requests == []


def test_wrong_token_kinds_and_served_paths(gateway):
    headers = {"authorization": "Bearer gw-router"}
    response = httpx.post(f"{gateway}/v1/moderations", headers=headers, json={"input": "x"})
    assert response.status_code == 404 and "'router'" in response.json()["error"]["message"]
    response = httpx.post(f"{gateway}/openai/moderations", headers=headers, json={"input": "x"})
    assert response.status_code == 400 and "'router'" in response.json()["error"]["message"]
    response = httpx.post(f"{gateway}/openai/moderations", headers={"authorization": "Bearer gw-gemini"}, json={"input": "x"})
    assert response.status_code == 400 and "'gemini'" in response.json()["error"]["message"]
    response = httpx.post(f"{gateway}/anthropic/v1/messages", headers={"x-api-key": "gw-openai"}, json={})
    assert response.status_code == 400 and response.json()["type"] == "error"
    assert httpx.post(f"{gateway}/v1/moderations", json={"input": "x"}).status_code == 401
    response = httpx.get(f"{gateway}/v1/chat/completions", headers={"authorization": "Bearer gw-openai"})
    assert response.status_code == 405 and response.headers["allow"] == "POST" and response.json()["error"]["code"] == "method_not_allowed"
    response = httpx.post(f"{gateway}/v1/chat/other", headers={"authorization": "Bearer gw-openai"}, json={})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_gemini_key_query_parameter_authenticates_and_is_not_forwarded(gateway, upstreams):
    fakes, _ = upstreams
    response = httpx.post(f"{gateway}/gemini/v1beta/models/gemini-2.5-flash:generateContent?key=gw-gemini",
                          json={"contents": [{"role": "user", "parts": [{"text": "q"}]}]})
    assert response.status_code == 200 and response.json()["candidates"][0]["content"]["parts"][0]["text"] == "Echo: q"
    received = fakes["gemini"].recorder.last
    assert received.query == {} and received.headers["x-goog-api-key"] == GEMINI_KEY
