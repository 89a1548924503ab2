"""First real run: the official `openai` client, through the gateway, to a real LLM.

Runs only with `-m local_llm` and `$LOCAL_LLM_BASE` pointing at an OpenAI-compatible server;
`scripts/e2e_local_llm.sh` builds llama.cpp's server with Gemma 3 270M and runs these.
"""

import os

import openai
import pytest
import yaml

from tests.support.servers import GatewayProcess

pytestmark = pytest.mark.local_llm


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    base = os.environ.get("LOCAL_LLM_BASE")
    if not base:
        pytest.fail("LOCAL_LLM_BASE is not set: run scripts/e2e_local_llm.sh")
    config = {"tokens": [{"token": "team-local", "name": "gemma-local", "type": "proxy", "config": {"api_base": base, "api_key": "none"}}]}
    path = tmp_path_factory.mktemp("llm") / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with GatewayProcess(path) as proc:
        yield proc


@pytest.fixture
def client(gateway):
    return openai.OpenAI(api_key="team-local", base_url=f"{gateway.base_url}/v1", max_retries=0, timeout=120)


def test_real_model_answers(client):
    completion = client.chat.completions.create(
        model="gemma", messages=[{"role": "user", "content": "Say hello in one short sentence."}], max_tokens=32
    )
    text = completion.choices[0].message.content
    print(f"\nnon-stream answer: {text!r} usage={completion.usage}")
    assert text.strip()
    assert completion.usage.completion_tokens > 0


def test_real_model_streams(client):
    stream = client.chat.completions.create(
        model="gemma", messages=[{"role": "user", "content": "Count from one to five."}], max_tokens=40, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    print(f"\nstreamed answer ({len(chunks)} chunks): {text!r}")
    assert text.strip() and len(chunks) > 2


def test_real_model_listed(client):
    models = [m.id for m in client.models.list()]
    print(f"\nmodels: {models}")
    assert models
