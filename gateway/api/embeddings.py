"""`POST /v1/embeddings` (CONTRACT.md §10), OpenAI's embeddings API for every token that has one.

Follows https://platform.openai.com/docs/api-reference/embeddings/create: `input` (a string, a
list of strings, a list of token ids, or a list of token-id lists), `model`, `dimensions`,
`encoding_format` (`float`, the default, or `base64`: float32 little-endian, which both
official OpenAI SDKs ask for), `user`. The answer is `{object: "list", data: [{object:
"embedding", index, embedding}], model, usage: {prompt_tokens, total_tokens}}`.

The request goes through `gateway.dispatch.embed` to the token's adapter (`Adapter.embed`): each
provider's translation lives in its adapter module (`openai`, `proxy` and `azure` forward;
`gemini` uses `batchEmbedContents`; `zhipu-api` its `/embeddings`); routers fail over as for
chat. Whatever the upstream returned, the vectors reach the client in the format it asked for
(floats are base64-encoded here when it asked for base64). Errors are OpenAI-shaped.
"""

from __future__ import annotations

import base64
import logging
import sys
from array import array
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.routing import Route

from gateway import dispatch
from gateway.api.asgi import client_token, read_body, send_bytes
from gateway.errors import GatewayError, error_json, invalid_request
from gateway.keys.guard import limit_headers, request_context
from gateway.keys.meter import estimate_tokens

log = logging.getLogger("gateway.embeddings")

ENCODINGS = ("float", "base64")
JSON = [(b"content-type", b"application/json")]


@dataclass(slots=True)
class EmbeddingRequest:
    """A checked embeddings request. `body` is the client's JSON object (adapters copy before
    changing it) and `raw` its bytes; `inputs` is `input` as a list (of strings, or of token-id
    lists when `tokens`); `encoding_format` is what the client gets back."""

    body: dict[str, Any]
    raw: bytes
    model: str | None
    inputs: list
    tokens: bool
    encoding_format: str
    dimensions: int | None


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def parse_embedding_request(raw: bytes) -> EmbeddingRequest:
    """Parse and check a request body. Raises GatewayError 400 `invalid_request_error`."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_request("We could not parse the JSON body of your request: it is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    value = body.get("input")
    if value is None:
        raise invalid_request("Missing required parameter: 'input'.", param="input")
    if isinstance(value, str) or _is_ids(value):
        value = [value]
    if not isinstance(value, list) or not value:
        raise invalid_request("'input' must be a string, an array of strings, or an array of token arrays.", param="input")
    tokens = _is_ids(value[0])
    for i, item in enumerate(value):
        if tokens and not _is_ids(item) or not tokens and not (isinstance(item, str) and item):
            raise invalid_request(f"Invalid 'input[{i}]': expected a non-empty {'token array' if tokens else 'string'} "
                                  "(one input kind per request).", param="input")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise invalid_request("Invalid type for 'model': expected a string.", param="model")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise invalid_request("Invalid value for 'encoding_format': expected 'float' or 'base64'.", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise invalid_request("Invalid value for 'dimensions': expected a positive integer.", param="dimensions")
    return EmbeddingRequest(body, raw, model, value, tokens, encoding, dimensions)


def text_inputs(request: EmbeddingRequest, type_name: str) -> list[str]:
    """The inputs as strings, for upstreams without token-id input. Raises 400 for token arrays
    (LangChain's `OpenAIEmbeddings` sends them unless `check_embedding_ctx_length=False`)."""
    if request.tokens:
        raise invalid_request(
            f"Token-id arrays as 'input' can only go to OpenAI-wire upstreams (openai, proxy, azure), not to this "
            f"token's type '{type_name}'. Send strings (LangChain: OpenAIEmbeddings(check_embedding_ctx_length=False)).",
            param="input", code="unsupported_input")
    return request.inputs


def to_base64(values: list[float]) -> str:
    """Floats as base64 of float32 little-endian, as OpenAI's `encoding_format: base64`."""
    packed = array("f", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def from_base64(text: str) -> list[float]:
    """The floats of a base64 float32 little-endian vector."""
    packed = array("f")
    packed.frombytes(base64.b64decode(text))
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tolist()


def encode_vectors(result: dict[str, Any], encoding_format: str) -> dict[str, Any]:
    """`result` with every `data[].embedding` in `encoding_format` (converted where needed)."""
    for item in result.get("data") or []:
        embedding = item.get("embedding")
        if encoding_format == "base64" and isinstance(embedding, list):
            item["embedding"] = to_base64(embedding)
        elif encoding_format == "float" and isinstance(embedding, str):
            item["embedding"] = from_base64(embedding)
    return result


def embedding_list(vectors: list[list[float]], model: str, prompt_tokens: int = 0) -> dict[str, Any]:
    """OpenAI's embeddings answer for `vectors` (floats, in input order)."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def _input_tokens(request: EmbeddingRequest) -> int:
    """The inputs' size in tokens: token-id arrays counted, strings estimated."""
    if request.tokens:
        return sum(len(item) for item in request.inputs)
    return sum(estimate_tokens(item) for item in request.inputs)


class EmbeddingsEndpoint:
    """`POST /v1/embeddings` as a plain ASGI app."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope, receive, send) -> None:
        runtime = self.gateway.runtime
        ticket = None
        try:
            adapter = runtime.authenticate(client_token(scope))
            where = request_context(scope)
            try:
                request = parse_embedding_request(await read_body(receive))
            except GatewayError as error:
                runtime.guard.failed(adapter, error, surface="embeddings", **where)
                raise
            # §6: the token's limits; the prompt is the inputs, nothing is generated.
            ticket = await runtime.guard.admit(adapter, model=request.model or getattr(adapter.config, "model", None),
                                               prompt_tokens=_input_tokens(request), max_output=0,
                                               surface="embeddings", **where)
            with ticket:
                result = encode_vectors(await dispatch.embed(adapter, request), request.encoding_format)
                ticket.meter.take(result.get("usage"))
        except ConnectionResetError:
            return  # the client went away while sending its body
        except GatewayError as error:
            if error.status >= 500 or (error.status == 429 and not error.headers):
                log.warning("embeddings failed: %s %s: %s", error.status, error.code, runtime.scrub(error.message))
            await send_bytes(send, error.status, error_json(error, runtime.scrub), JSON + limit_headers(error, ticket))
            return
        except Exception as exc:
            log.exception("embeddings failed unexpectedly: %s", type(exc).__name__)
            error = GatewayError(500, "The gateway failed to handle the request.", type="api_error", code="internal_error")
            await send_bytes(send, 500, error_json(error), list(JSON))
            return
        headers = [*JSON, (b"x-gateway-token-name", adapter.name.encode()), *ticket.headers]
        if (served := dispatch.served_by.get()) and served != adapter.name:
            headers.append((b"x-gateway-served-by", served.encode()))
        await send_bytes(send, 200, orjson.dumps(result), headers)


def routes(gateway) -> list[Route]:
    """The embeddings routes."""
    endpoint = EmbeddingsEndpoint(gateway)
    return [Route("/v1/embeddings", endpoint, methods=["POST"]), Route("/embeddings", endpoint, methods=["POST"])]
