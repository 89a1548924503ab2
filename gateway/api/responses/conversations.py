"""HTTP routes of the Conversations API (CONTRACT.md §9), after openai-python
`resources/conversations` and `types/conversations/`:

    POST   /v1/conversations                        {items?, metadata?} → Conversation
    GET    /v1/conversations/{id}                   Conversation
    POST   /v1/conversations/{id}                   {metadata} → Conversation
    DELETE /v1/conversations/{id}                   {id, object: "conversation.deleted", deleted}
    POST   /v1/conversations/{id}/items             {items} → list of the added items
    GET    /v1/conversations/{id}/items             page (`after`, `limit`, `order`, `include`)
    GET    /v1/conversations/{id}/items/{item_id}   the item
    DELETE /v1/conversations/{id}/items/{item_id}   the Conversation

A conversation belongs to the token that created it; for any other it does not exist (404).
At most 20 items per create call, as OpenAI's.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.responses import items as it
from gateway.api.responses.routes import _include, authenticated, handles_errors, json_response, service_of
from gateway.errors import invalid_request

MAX_ITEMS = 20


async def _body(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_request("We could not parse the JSON body of your request: it is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    return body


def _metadata(body: dict, required: bool = False) -> dict:
    meta = body.get("metadata")
    if meta is None and not required:
        return {}
    if not isinstance(meta, dict) or len(meta) > 16 or any(not isinstance(v, str) or len(v) > 512 or len(k) > 64 for k, v in meta.items()):
        raise invalid_request("Invalid 'metadata': an object of at most 16 string pairs (keys ≤ 64, values ≤ 512 characters).", param="metadata")
    return meta


async def _items(request: Request, owner: str, body: dict, required: bool) -> list[dict]:
    value = body.get("items")
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise invalid_request("Invalid type for 'items': expected an array of items.", param="items")
    if len(value) > MAX_ITEMS:
        raise invalid_request(f"Invalid 'items': at most {MAX_ITEMS} items per request.", param="items")
    items = it.normalize_input(value, "items")
    store = service_of(request).store
    out = []
    for item in items:
        if item["type"] == "item_reference":
            found = await store.find_item(owner, item["id"])
            if found is None:
                raise it.not_found("item", item["id"], param="items")
            item = {**found, "id": it.new_id(it.PREFIXES.get(found["type"], "item"))}
        out.append(item)
    return out


async def _conversation(request: Request) -> tuple[str, dict]:
    _, owner = authenticated(request)
    conversation_id = request.path_params["conversation_id"]
    conversation = await service_of(request).store.get_conversation(owner, conversation_id)
    if conversation is None:
        raise it.not_found("conversation", conversation_id)
    return owner, conversation


@handles_errors
async def create_conversation(request: Request) -> Response:
    _, owner = authenticated(request)
    body = await _body(request)
    meta = _metadata(body)
    items = await _items(request, owner, body, required=False)
    return json_response(await service_of(request).store.create_conversation(owner, it.new_id("conv"), meta, items))


@handles_errors
async def retrieve_conversation(request: Request) -> Response:
    _, conversation = await _conversation(request)
    return json_response(conversation)


@handles_errors
async def update_conversation(request: Request) -> Response:
    owner, conversation = await _conversation(request)
    meta = _metadata(await _body(request), required=True)
    return json_response(await service_of(request).store.update_conversation(owner, conversation["id"], meta))


@handles_errors
async def delete_conversation(request: Request) -> Response:
    owner, conversation = await _conversation(request)
    await service_of(request).store.delete_conversation(owner, conversation["id"])
    return json_response({"id": conversation["id"], "object": "conversation.deleted", "deleted": True})


@handles_errors
async def create_items(request: Request) -> Response:
    owner, conversation = await _conversation(request)
    items = await _items(request, owner, await _body(request), required=True)
    service = service_of(request)
    async with service.lock(conversation["id"]):
        await service.store.add_items(conversation["id"], items)
    include = _include(request)
    return json_response(it.page([it.public(i, include) for i in items], None, len(items) or 1, "asc"))


@handles_errors
async def list_items(request: Request) -> Response:
    after, limit, order = it.list_params(request.query_params)
    _, conversation = await _conversation(request)
    found = await service_of(request).store.items_page(conversation["id"], after, limit, order)
    if found is None:
        raise it.not_found("item", str(after), param="after")
    data, has_more = found
    include = _include(request)
    data = [it.public(i, include) for i in data]
    return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None, "has_more": has_more})


@handles_errors
async def retrieve_item(request: Request) -> Response:
    _, conversation = await _conversation(request)
    item_id = request.path_params["item_id"]
    item = await service_of(request).store.get_item(conversation["id"], item_id)
    if item is None:
        raise it.not_found("item", item_id)
    return json_response(it.public(item, _include(request)))


@handles_errors
async def delete_item(request: Request) -> Response:
    _, conversation = await _conversation(request)
    item_id = request.path_params["item_id"]
    service = service_of(request)
    async with service.lock(conversation["id"]):
        deleted = await service.store.delete_item(conversation["id"], item_id)
    if not deleted:
        raise it.not_found("item", item_id)
    return json_response(conversation)
