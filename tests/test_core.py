"""Small pieces of the core whose behaviour the API relies on."""

import asyncio

import pytest

from gateway.auth import TokenTable, presented_token
from gateway.config import Settings
from gateway.errors import GatewayError, Scrubber, from_upstream_status
from gateway.http import UpstreamHTTP


def test_one_pooled_client_per_proxy_setting():
    async def check():
        http = UpstreamHTTP(Settings())
        assert http.client(None) is http.client(None)
        assert http.client({"https": "http://p:1"}) is http.client({"https": "http://p:1"})
        assert http.client({"https": "http://p:1"}) is not http.client(None)
        await http.aclose()

    asyncio.run(check())


def test_token_table_and_header_precedence():
    table = TokenTable([("a-token", 1), ("b-token", 2)])
    assert (table.get("a-token"), table.get("b-token"), table.get("a-toke"), table.get(None)) == (1, 2, None, None)
    assert presented_token({"authorization": "Bearer x", "x-api-key": "y"}) == "x"
    assert presented_token({"authorization": "Basic zzz", "api-key": "y"}) == "y"
    assert presented_token({}) is None


def test_scrubber_removes_config_secrets_and_key_shapes():
    scrub = Scrubber(["my-config-secret", "abc"])
    text = scrub("key my-config-secret and sk-proj-ABCDEF123456 and Bearer abcdefghijk and AIzaSyA1234567890123456789012 task-abcdefgh")
    assert "my-config-secret" not in text and "sk-proj" not in text and "abcdefghijk" not in text and "AIza" not in text
    assert "task-abcdefgh" in text  # not a key shape
    assert scrub("abc is short") == "abc is short"  # secrets under 4 characters are not scrubbed


def test_upstream_status_mapping_sets_failover():
    assert (from_upstream_status(400, "m").status, from_upstream_status(400, "m").failover) == (400, False)
    for status, expected in ((401, 502), (403, 502), (429, 429), (500, 502), (529, 502)):
        error = from_upstream_status(status, "m")
        assert (error.status, error.failover) == (expected, True)


async def _dropping_server(drops: int):
    """A raw HTTP server that closes the first `drops` connections without answering."""
    hits = []

    async def handle(reader, writer):
        hits.append(1)
        await reader.readuntil(b"\r\n\r\n")
        if len(hits) > drops:
            body = b'{"ok": true}'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions", hits


def test_a_connection_closed_without_an_answer_is_retried_once():
    async def run():
        server, url, hits = await _dropping_server(drops=1)
        http = UpstreamHTTP(Settings())
        response = await http.request("POST", url, content=b"{}")
        async with http.stream("POST", url, content=b"{}") as stream:
            streamed = await stream.aread()
        await http.aclose()
        server.close()
        return response, streamed, len(hits)

    response, streamed, hits = asyncio.run(run())
    assert (response.status, response.content, streamed, hits) == (200, b'{"ok": true}', b'{"ok": true}', 3)


def test_a_server_that_keeps_dropping_the_connection_is_an_upstream_error():
    async def run():
        server, url, hits = await _dropping_server(drops=10)
        http = UpstreamHTTP(Settings())
        try:
            await http.request("POST", url, content=b"{}")
        finally:
            await http.aclose()
            server.close()

    with pytest.raises(GatewayError) as err:
        asyncio.run(run())
    assert (err.value.status, err.value.code) == (502, "upstream_error")
