"""The openai SDK's own retry behaviour against the gateway's 429s (CONTRACT.md §6), with a real
gateway process: `rate_limit_exceeded` is retried after `retry-after-ms`, `insufficient_quota`
(`x-should-retry: false`) is not. Upstream calls are counted at the fake."""

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.keys.meter import estimate_prompt

TPM = 6000  # 10 ms per token: a request settled at 21 tokens frees its minute 0.21 s later


def _rejections(gateway, token_name):
    text = httpx.get(f"{gateway.base_url}/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) if f.name == "gateway_limit_rejections"
               for s in f.samples if s.name.endswith("_total") and s.labels["token_name"] == token_name)


def _calls(fake, marker):
    return sum(1 for r in fake.recorder.requests if isinstance(r.body, dict) and marker in str(r.body.get("messages")))


@pytest.fixture
def gateway(gateway_process, fake_openai):
    _, url = fake_openai
    config = {"settings": {"log_level": "warning", "metrics": {"public": True}}, "tokens": [
        {"token": "sk-team-tpm", "name": "tpm", "type": "proxy", "tpm_limit": TPM,
         "config": {"api_base": f"{url}/v1", "api_key": "sk-upstream-secret-key-0123456789"}},
        {"token": "sk-team-quota", "name": "quota", "type": "proxy", "token_budget": 1,
         "config": {"api_base": f"{url}/v1", "api_key": "sk-upstream-secret-key-0123456789"}},
    ]}
    return gateway_process(config)


def test_rate_limit_is_retried_per_retry_after(gateway, fake_openai):
    fake, _ = fake_openai
    client = openai.OpenAI(api_key="sk-team-tpm", base_url=f"{gateway.base_url}/v1", max_retries=2)
    messages = [{"role": "user", "content": "tpm-retry-marker"}]
    # max_tokens beyond the limit: the reservation is clamped to a whole minute's tokens
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, max_tokens=100000)
    assert first.headers["x-ratelimit-limit-tokens"] == str(TPM) and first.headers["x-ratelimit-remaining-tokens"] == "0"
    second = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages, max_tokens=100000)
    assert second.parse().choices[0].message.content == "Echo: tpm-retry-marker"
    assert second.retries_taken >= 1  # the SDK met a 429 and waited it out
    assert _calls(fake, "tpm-retry-marker") == 2  # the refused attempt never reached the upstream
    assert _rejections(gateway, "tpm") == second.retries_taken
    assert estimate_prompt({"messages": messages}) < TPM


def test_insufficient_quota_is_not_retried(gateway, fake_openai):
    fake, _ = fake_openai
    client = openai.OpenAI(api_key="sk-team-quota", base_url=f"{gateway.base_url}/v1", max_retries=2)
    messages = [{"role": "user", "content": "quota-marker"}]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # spends the whole budget
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    assert info.value.code == "insufficient_quota" and info.value.type == "insufficient_quota"
    assert info.value.response.headers["x-should-retry"] == "false"
    assert _calls(fake, "quota-marker") == 1
    assert _rejections(gateway, "quota") == 1  # one refusal: the SDK did not try again


def test_metrics_are_one_view_over_two_workers(gateway_process, fake_openai):
    _, url = fake_openai
    gateway = gateway_process({"settings": {"log_level": "warning", "metrics": {"public": True}}, "tokens": [
        {"token": "sk-team-w2", "name": "w2", "type": "proxy", "config": {"api_base": f"{url}/v1", "api_key": "sk-upstream-secret-key-0123456789"}},
    ]})
    gateway.stop()
    proc = type(gateway)(gateway.cmd[gateway.cmd.index("--config") + 1], args=["--workers", "2"]).start()
    try:
        with httpx.Client(base_url=proc.base_url) as client:
            for _ in range(20):  # new connections: uvicorn's workers share the socket
                httpx.post(f"{proc.base_url}/v1/chat/completions", headers={"authorization": "Bearer sk-team-w2"},
                           json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "w2"}]})
            for _ in range(4):  # whichever worker answers the scrape sees every worker's counts
                text = client.get("/metrics", headers={"connection": "close"}).text
                total = sum(s.value for f in text_string_to_metric_families(text) if f.name == "gateway_requests"
                            for s in f.samples if s.labels.get("token_name") == "w2")
                assert total == 20
    finally:
        proc.stop()


def test_workers_with_limits_need_redis(write_config):
    import subprocess
    import sys

    from tests.support.servers import ROOT

    path = write_config({"tokens": [{"token": "sk-x", "name": "x", "type": "mock", "rpm_limit": 5}]})
    done = subprocess.run([sys.executable, str(ROOT / "open-api.py"), "--config", str(path), "--workers", "2", "--port", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "needs settings.redis_url" in done.stderr and "'x'" in done.stderr and "sk-x" not in done.stderr
