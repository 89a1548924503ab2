"""Small pieces of the core whose behaviour the API relies on."""

import asyncio

from gateway.auth import TokenTable, presented_token
from gateway.config import Settings
from gateway.errors import Scrubber, from_upstream_status
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
