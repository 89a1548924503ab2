"""Embeddings for `gemini` tokens: OpenAI's embeddings request → Gemini `batchEmbedContents`.

Follows https://ai.google.dev/api/embeddings#method:-models.batchembedcontents::

    POST {api_base}/v1beta/models/{model}:batchEmbedContents     x-goog-api-key: KEY
    {"requests": [{"model": "models/{model}", "content": {"parts": [{"text": T}]},
                   "outputDimensionality": D}, ...]}
    → {"embeddings": [{"values": [...]}, ...]}

    OpenAI embeddings request                    Gemini
    -------------------------------------------  ------------------------------------------------
    input (strings; token ids → 400)             one request per input, at most 100 per call:
                                                   larger inputs are split into calls made at
                                                   once and reassembled in input order
    model (config `embedding_model` forces it;   the URL's model and each request's `model`
      default gemini-embedding-001)
    dimensions                                   outputDimensionality
    answer                                       data[i].embedding = embeddings[i].values;
                                                   usage 0 (Gemini reports none)
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from gateway.api.embeddings import EmbeddingRequest, embedding_list, text_inputs
from gateway.errors import from_upstream_status

if TYPE_CHECKING:
    from adapters.gemini import GeminiAdapter

DEFAULT_EMBEDDING_MODEL = "gemini-embedding-001"
BATCH_LIMIT = 100


async def _batch(adapter: GeminiAdapter, url: str, model: str, texts: list[str], dimensions: int | None) -> list[list[float]]:
    requests = []
    for text in texts:
        item: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
        if dimensions:
            item["outputDimensionality"] = dimensions
        requests.append(item)
    response = await adapter.runtime.http.request(
        "POST", url, headers=adapter.headers(None), content=orjson.dumps({"requests": requests}), proxies=adapter.config.proxies)
    if response.status >= 400:
        raise adapter.translate_error(response.status, response.content, response.headers)
    try:
        embeddings = orjson.loads(response.content)["embeddings"]
        vectors = [e["values"] for e in embeddings]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise from_upstream_status(502, "Gemini's batchEmbedContents answer is not in its documented shape") from None
    if len(vectors) != len(texts):
        raise from_upstream_status(502, f"Gemini returned {len(vectors)} embeddings for {len(texts)} inputs")
    return vectors


async def embed(adapter: GeminiAdapter, request: EmbeddingRequest) -> dict[str, Any]:
    """OpenAI's embeddings answer for `request`, from as many `batchEmbedContents` calls as it
    takes (at once). Raises GatewayError (400 for token-id input; upstream errors as for chat)."""
    texts = text_inputs(request, adapter.type_name)
    model = (adapter.config.embedding_model or request.model or DEFAULT_EMBEDDING_MODEL).removeprefix("models/")
    url = f"{adapter.api_root}/models/{quote(model, safe='')}:batchEmbedContents"
    chunks = [texts[i : i + BATCH_LIMIT] for i in range(0, len(texts), BATCH_LIMIT)]
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_batch(adapter, url, model, chunk, request.dimensions)) for chunk in chunks]
    return embedding_list([v for task in tasks for v in task.result()], model)
