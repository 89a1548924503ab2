"""`xunfei-spark-api` through `proxies` (issue #9 item 8): the WebSocket goes through the
configured HTTP proxy with the HTTP adapters' rules (`wss://` → the `https` entry, tunnelled with
CONNECT; `ws://` → the `http` entry; one URL → both; userinfo → `Proxy-Authorization`). Driven
with the official `openai` client against a real gateway process; the fake Spark serves TLS with a
test CA (trustme) that the gateway process trusts through `SSL_CERT_FILE`."""

import base64

import httpx
import openai
import pytest
import trustme
import yaml

from tests.fakes.spark import API_KEY, API_SECRET, APP_ID, FakeSpark
from tests.support.http_proxy import HTTPProxy
from tests.support.servers import GatewayProcess, free_port, serve_app

MESSAGES = [{"role": "user", "content": "hello spark"}]


def spark_entry(token, base, **config):
    return {"token": token, "type": "xunfei-spark-api",
            "config": {"app_id": APP_ID, "api_key": API_KEY, "api_secret": API_SECRET, "api_base": base, **config}}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(folder / "server.pem")
    return folder


@pytest.fixture(scope="module")
def fake_spark(tls):
    fake = FakeSpark()
    with serve_app(fake.app, ssl_certfile=str(tls / "server.pem")) as tls_url, serve_app(fake.app) as plain_url:
        yield fake, tls_url.replace("http://127.0.0.1", "wss://localhost"), plain_url.replace("http://", "ws://")


@pytest.fixture(scope="module")
def proxy():
    with HTTPProxy.running(auth="gw:proxy-pass") as running:
        yield running


@pytest.fixture(scope="module")
def gateway(fake_spark, proxy, tls, tmp_path_factory):
    _, wss, ws = fake_spark
    tokens = [
        spark_entry("spark-wss", wss, proxies={"https": proxy.url}),
        spark_entry("spark-ws", ws, proxies={"http": proxy.url}),
        spark_entry("spark-one-url", ws, proxies=proxy.url),
        spark_entry("spark-other-scheme", ws, proxies={"https": proxy.url}),  # no `http` entry: direct
        spark_entry("spark-proxy-down", wss, proxies={"https": f"http://127.0.0.1:{free_port()}"}),
        spark_entry("spark-no-proxy-auth", wss, proxies={"https": proxy.url.replace("gw:proxy-pass@", "")}),
    ]
    path = tmp_path_factory.mktemp("spark-proxy") / "config.yaml"
    path.write_text(yaml.safe_dump({"tokens": tokens}), encoding="utf-8")
    process = GatewayProcess(path, env={"SSL_CERT_FILE": str(tls / "ca.pem")}).start()
    yield process
    process.stop()


def client(gateway, token):
    return openai.OpenAI(api_key=token, base_url=f"{gateway.base_url}/v1", max_retries=0)


CREDENTIALS = f"Basic {base64.b64encode(b'gw:proxy-pass').decode()}"


def test_wss_goes_through_a_connect_tunnel(gateway, fake_spark, proxy):
    fake, wss, _ = fake_spark
    before = len(proxy.tunnels)
    completion = client(gateway, "spark-wss").chat.completions.create(model="spark", messages=MESSAGES)
    assert completion.choices[0].message.content == "Echo: hello spark"
    chunks = list(client(gateway, "spark-wss").chat.completions.create(model="spark", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: hello spark"
    target = wss.removeprefix("wss://")
    assert proxy.tunnels[before:] == [("CONNECT", target, CREDENTIALS)] * 2
    received = fake.recorder.last
    assert received.headers["host"] == target  # signed for the origin, not the proxy
    assert received.body["payload"]["message"]["text"] == MESSAGES


@pytest.mark.parametrize("token", ["spark-ws", "spark-one-url"])
def test_ws_goes_through_the_proxy_in_absolute_form(gateway, fake_spark, proxy, token):
    _, _, ws = fake_spark
    before = len(proxy.tunnels)
    assert client(gateway, token).chat.completions.create(model="spark", messages=MESSAGES).choices[0].message.content == "Echo: hello spark"
    [(method, target, credentials)] = proxy.tunnels[before:]
    assert method == "GET" and target.startswith(f"{ws}/v3.5/chat?authorization=")  # aiohttp's absolute form keeps ws://
    assert credentials == CREDENTIALS


def test_a_proxy_for_another_scheme_is_not_used(gateway, proxy):
    before = len(proxy.tunnels)
    assert client(gateway, "spark-other-scheme").chat.completions.create(model="spark", messages=MESSAGES).choices[0].message.content
    assert proxy.tunnels[before:] == []


@pytest.mark.parametrize("token", ["spark-proxy-down", "spark-no-proxy-auth"])
def test_a_failing_proxy_is_upstream_error(gateway, token):
    for stream in (False, True):
        response = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {token}"},
                              json={"messages": MESSAGES, "stream": stream}, timeout=30)
        assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_error"
        assert "proxy-pass" not in response.text
