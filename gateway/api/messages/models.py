"""`GET /v1/models` in Anthropic's shape, for requests that carry `anthropic-version`.

Follows the Models API (https://docs.anthropic.com/en/api/models-list): `ModelInfo {id, type:
"model", display_name, created_at}` in a page `{data, has_more, first_id, last_id}`. The entries
keep OpenAI's fields too (`object`, `created`, `owned_by`), so both SDKs parse the same list.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.responses import Response

from gateway.api.messages.errors import error_json
from gateway.errors import GatewayError, Scrubber


def wants_anthropic(headers) -> bool:
    """True when the request comes from an Anthropic client (it sends `anthropic-version`)."""
    return "anthropic-version" in headers


def model_info(model: dict) -> dict:
    """An OpenAI model object with Anthropic's `ModelInfo` fields added."""
    created = datetime.fromtimestamp(model.get("created") or 0, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**model, "type": "model", "display_name": model["id"], "created_at": created}


def model_page(models: list[dict]) -> dict:
    """The list page: `data` plus Anthropic's paging fields (everything in one page)."""
    data = [model_info(m) for m in models]
    return {"object": "list", "data": data, "has_more": False,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


def error_response(error: GatewayError, scrub: Scrubber) -> Response:
    """An Anthropic-shaped error response."""
    return Response(error_json(error, scrub), status_code=error.status, media_type="application/json")
