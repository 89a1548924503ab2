"""The fakes' embedding endpoints are faithful: the providers' own SDKs (openai, google-genai,
zhipuai) get the vectors they would from the real services, and the fakes refuse what those
refuse (Gemini's 100-request batches, Zhipu's 64 inputs, dimensions on older OpenAI models)."""

import openai
import pytest
import zhipuai
from google import genai
from google.genai import errors, types

from tests.fakes import zhipu as zhipu_fake
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.fakes.vectors import vector
from tests.fakes.zhipu import FakeZhipu
from tests.support.servers import serve_app

OPENAI_KEY = "sk-upstream-secret-key-0123456789"


@pytest.fixture(scope="module")
def servers():
    fakes = FakeOpenAI(api_key=OPENAI_KEY), FakeGemini(), FakeZhipu()
    with serve_app(fakes[0].app) as o, serve_app(fakes[1].app) as g, serve_app(fakes[2].app) as z:
        yield fakes, (o, g, z)


def test_openai_sdk_base64_default_and_float(servers):
    (fake, _, _), (url, _, _) = servers
    client = openai.OpenAI(api_key=OPENAI_KEY, base_url=f"{url}/v1", max_retries=0)
    result = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"], dimensions=4)
    assert fake.recorder.last.body["encoding_format"] == "base64"
    assert [d.embedding for d in result.data] == [vector("a b", 4), vector("c", 4)]
    assert result.usage.prompt_tokens == 3
    floats = client.embeddings.create(model="text-embedding-ada-002", input=[[1, 2, 3]], encoding_format="float")
    assert floats.data[0].embedding == vector([1, 2, 3], 8)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=4)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-3-small", input="")


def test_google_genai_embed_content_uses_batch_embed(servers):
    (_, fake, _), (_, url, _) = servers
    client = genai.Client(api_key=fake.api_key, http_options=types.HttpOptions(base_url=url, api_version="v1beta"))
    result = client.models.embed_content(model="gemini-embedding-001", contents=["one", "two"],
                                         config=types.EmbedContentConfig(output_dimensionality=5))
    assert [e.values for e in result.embeddings] == [vector("one", 5), vector("two", 5)]
    assert fake.recorder.last.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    with pytest.raises(errors.ClientError) as caught:
        client.models.embed_content(model="gemini-embedding-001", contents=[f"t{i}" for i in range(101)])
    assert "at most 100" in caught.value.message


def test_zhipuai_sdk_embeddings(servers):
    _, (_, _, url) = servers
    client = zhipuai.ZhipuAI(api_key=zhipu_fake.API_KEY, base_url=f"{url}{FakeZhipu.base_path}", max_retries=0)
    result = client.embeddings.create(model="embedding-3", input=["你好", "world"], dimensions=256)
    assert [d.embedding for d in result.data] == [vector("你好", 256), vector("world", 256)]
    with pytest.raises(zhipuai.APIRequestFailedError):
        client.embeddings.create(model="embedding-3", input=[f"t{i}" for i in range(65)])
