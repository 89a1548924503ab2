"""`POST /v1/embeddings` (CONTRACT.md §10) with the official `openai` SDK (which asks for base64 by
default) and LangChain's `OpenAIEmbeddings` (which sends token-id arrays), through openai, azure,
gemini, zhipu and router tokens, against the fakes; each test checks what the upstream got."""

import httpx
import numpy as np
import openai
import pytest
import tiktoken
import yaml
from langchain_openai import OpenAIEmbeddings
from langchain_openai.embeddings import base as langchain_embeddings

from gateway.app import create_app
from tests.fakes import zhipu as zhipu_fake
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.fakes.vectors import vector
from tests.fakes.zhipu import FakeZhipu
from tests.support.servers import serve_app

OPENAI_KEY = "sk-upstream-secret-key-0123456789"
GEMINI_KEY = "AIzaSyFakeGeminiKey-0123456789abcdefghij"


@pytest.fixture(scope="module")
def upstreams():
    fakes = {"openai": FakeOpenAI(api_key=OPENAI_KEY), "gemini": FakeGemini(api_key=GEMINI_KEY), "zhipu": FakeZhipu()}
    with serve_app(fakes["openai"].app) as o, serve_app(fakes["gemini"].app) as g, serve_app(fakes["zhipu"].app) as z:
        yield fakes, {"openai": o, "gemini": g, "zhipu": z}


@pytest.fixture(scope="module")
def gateway(upstreams, tmp_path_factory):
    _, urls = upstreams
    config = {"tokens": [
        {"token": "gw-openai", "type": "openai", "name": "openai", "config": {"api_base": f"{urls['openai']}/v1", "api_key": OPENAI_KEY}},
        {"token": "gw-openai-forced", "type": "openai", "config": {"api_base": f"{urls['openai']}/v1", "api_key": OPENAI_KEY,
                                                                    "model": "gpt-4o", "embedding_model": "text-embedding-3-large"}},
        {"token": "gw-azure", "type": "azure", "config": {"api_base": urls["openai"], "api_key": OPENAI_KEY, "deployment_id": "emb",
                                                          "api_version": "2024-10-21"}},
        {"token": "gw-gemini", "type": "gemini", "name": "gemini", "config": {"api_base": urls["gemini"], "api_key": GEMINI_KEY}},
        {"token": "gw-zhipu", "type": "zhipu-api", "config": {"api_base": f"{urls['zhipu']}{FakeZhipu.base_path}", "api_key": zhipu_fake.API_KEY}},
        {"token": "gw-mock", "type": "mock", "config": {}},
        {"token": "gw-dead", "type": "proxy", "name": "dead", "internal": True, "config": {"api_base": "http://127.0.0.1:9/v1"}},
        {"token": "gw-router", "type": "router", "config": {"router_strategy": "fallback", "token_pool": ["gw-dead", "gw-gemini"]}},
        {"token": "gw-by-model", "type": "model-name-router", "config": {"model-2-token": {"embedding-3": "gw-zhipu", "default": "gw-openai"}}},
    ]}
    path = tmp_path_factory.mktemp("embeddings") / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with serve_app(create_app(path)) as base:
        yield base


def sdk(gateway, token):
    return openai.OpenAI(api_key=token, base_url=f"{gateway}/v1", max_retries=0)


def test_openai_token_forwards_base64_request_as_sent(gateway, upstreams):
    fakes, _ = upstreams
    result = sdk(gateway, "gw-openai").embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"], dimensions=6)
    assert [d.embedding for d in result.data] == [vector("alpha", 6), vector("beta", 6)]
    assert result.model == "text-embedding-3-small" and result.usage.prompt_tokens == 2
    received = fakes["openai"].recorder.last
    assert received.path == "/v1/embeddings" and received.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert received.body == {"model": "text-embedding-3-small", "input": ["alpha", "beta"], "dimensions": 6, "encoding_format": "base64"}


def test_float_format_and_forced_embedding_model(gateway, upstreams):
    fakes, _ = upstreams
    response = httpx.post(f"{gateway}/v1/embeddings", headers={"authorization": "Bearer gw-openai-forced"},
                          json={"model": "anything", "input": "gamma"})
    assert response.status_code == 200
    assert response.json()["data"] == [{"object": "embedding", "index": 0, "embedding": vector("gamma", 8)}]
    assert fakes["openai"].recorder.last.body["model"] == "text-embedding-3-large"


def test_azure_token_uses_the_deployment_embeddings_path(gateway, upstreams):
    fakes, _ = upstreams
    result = sdk(gateway, "gw-azure").embeddings.create(model="text-embedding-3-small", input="delta")
    assert result.data[0].embedding == vector("delta", 8)
    received = fakes["openai"].recorder.last
    assert received.path == "/openai/deployments/emb/embeddings" and received.query == {"api-version": "2024-10-21"}
    assert received.headers["api-key"] == OPENAI_KEY


def test_gemini_token_batches_of_100_reassembled_in_order_and_base64_encoded(gateway, upstreams):
    fakes, _ = upstreams
    before = len(fakes["gemini"].recorder.requests)
    texts = [f"text {i}" for i in range(230)]
    result = sdk(gateway, "gw-gemini").embeddings.create(model="gemini-embedding-001", input=texts, dimensions=4)
    assert [d.index for d in result.data] == list(range(230))
    assert [d.embedding for d in result.data] == [vector(t, 4) for t in texts]
    calls = fakes["gemini"].recorder.requests[before:]
    assert sorted(len(c.body["requests"]) for c in calls) == [30, 100, 100]
    assert all(c.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents" and c.headers["x-goog-api-key"] == GEMINI_KEY for c in calls)
    assert calls[0].body["requests"][0] == {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": calls[0].body["requests"][0]["content"]["parts"][0]["text"]}]},
                                            "outputDimensionality": 4}


def test_zhipu_token_embedding_3_in_batches_of_64(gateway, upstreams):
    fakes, _ = upstreams
    before = len(fakes["zhipu"].recorder.requests)
    texts = [f"文本 {i}" for i in range(70)]
    result = sdk(gateway, "gw-zhipu").embeddings.create(model="embedding-3", input=texts, dimensions=256)
    assert [d.embedding for d in result.data] == [vector(t, 256) for t in texts]
    calls = fakes["zhipu"].recorder.requests[before:]
    assert sorted(len(c.body["input"]) for c in calls) == [6, 64]
    assert all(c.body["dimensions"] == 256 and c.body["model"] == "embedding-3" for c in calls)
    assert result.usage.prompt_tokens == sum(len(t) for t in texts)


def test_router_fails_over_for_embeddings(gateway):
    response = httpx.post(f"{gateway}/v1/embeddings", headers={"authorization": "Bearer gw-router"},
                          json={"model": "gemini-embedding-001", "input": ["x"], "encoding_format": "float"})
    assert response.status_code == 200 and response.json()["data"][0]["embedding"] == vector("x", 12)
    assert response.headers["x-gateway-served-by"] == "gemini"


def test_model_name_router_picks_the_embeddings_entry_by_model(gateway, upstreams):
    fakes, _ = upstreams
    c = sdk(gateway, "gw-by-model")
    assert c.embeddings.create(model="embedding-3", input="z", dimensions=256).data[0].embedding == vector("z", 256)
    assert fakes["zhipu"].recorder.last.body["input"] == ["z"]
    assert c.embeddings.create(model="text-embedding-3-small", input="o").data[0].embedding == vector("o", 8)
    assert fakes["openai"].recorder.last.body["input"] == "o"


def byte_encoding(*args, **kwargs) -> tiktoken.Encoding:
    """A byte-level tiktoken encoding built in memory (token id = byte value): LangChain's
    tokenizing path, without downloading OpenAI's vocabulary files (no test reaches the internet)."""
    return tiktoken.Encoding(name="bytes", pat_str=r"[\s\S]+", mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens={})


def test_langchain_token_arrays_go_to_openai_and_are_refused_for_gemini(gateway, upstreams, monkeypatch):
    fakes, _ = upstreams
    monkeypatch.setattr(langchain_embeddings.tiktoken, "encoding_for_model", byte_encoding)
    embeddings = OpenAIEmbeddings(model="text-embedding-3-small", api_key="gw-openai", base_url=f"{gateway}/v1", max_retries=0)
    vectors = embeddings.embed_documents(["hi", "yo"])
    assert fakes["openai"].recorder.last.body["input"] == [list(b"hi"), list(b"yo")]
    assert np.allclose(vectors, [vector(list(b"hi"), 8), vector(list(b"yo"), 8)])
    gemini = OpenAIEmbeddings(model="gemini-embedding-001", api_key="gw-gemini", base_url=f"{gateway}/v1", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        gemini.embed_documents(["hi"])
    assert "check_embedding_ctx_length=False" in caught.value.message and caught.value.body["param"] == "input"
    plain = OpenAIEmbeddings(model="gemini-embedding-001", api_key="gw-gemini", base_url=f"{gateway}/v1", max_retries=0,
                             check_embedding_ctx_length=False)
    assert np.allclose(plain.embed_query("hi"), vector("hi", 12))


def test_errors(gateway):
    headers = {"authorization": "Bearer gw-mock"}
    response = httpx.post(f"{gateway}/v1/embeddings", headers=headers, json={"model": "m", "input": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error" and "'mock'" in response.json()["error"]["message"]
    for body, param in (({"model": "m"}, "input"), ({"input": []}, "input"), ({"input": ["a", [1]]}, "input"),
                        ({"input": "a", "encoding_format": "int8"}, "encoding_format"), ({"input": "a", "dimensions": 0}, "dimensions")):
        response = httpx.post(f"{gateway}/v1/embeddings", headers={"authorization": "Bearer gw-openai"}, json=body)
        assert response.status_code == 400 and response.json()["error"]["param"] == param, body
    assert httpx.post(f"{gateway}/v1/embeddings", json={"input": "a"}).status_code == 401
    for model in ("status-429", "json-rate"):  # json-rate: a 200 whose body is OpenAI's rate-limit error
        response = httpx.post(f"{gateway}/v1/embeddings", headers={"authorization": "Bearer gw-openai"}, json={"model": model, "input": "a"})
        assert response.status_code == 429, model
