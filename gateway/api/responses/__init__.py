"""The Responses and Conversations API (CONTRACT.md §9), for every token.

Each request is translated to the token's chat completion and back (`translate.py`,
`output.py`, `events.py`), so adapters need nothing new; state lives in the §8 database
(`store.py`). `mount(app)` adds the routes (`routes.py`, `conversations.py`) and the service.

Modules: `items` (ids, input items), `tools` (tools and tool_choice), `translate` (request →
chat), `output` (chat → Response), `events` (chunks → SSE events), `seal` (sealed reasoning
state), `store` (tables), `service` (a turn: context, upstream call, storage), `routes`,
`conversations`.
"""

from __future__ import annotations

from starlette.routing import Route

from gateway.api.responses import conversations as conv
from gateway.api.responses import routes
from gateway.api.responses.service import ResponsesService, call_upstream

ROUTES = [
    ("/responses", routes.create_response, ["POST"]),
    ("/responses/{response_id}", routes.retrieve_response, ["GET"]),
    ("/responses/{response_id}", routes.delete_response, ["DELETE"]),
    ("/responses/{response_id}/cancel", routes.cancel_response, ["POST"]),
    ("/responses/{response_id}/input_items", routes.list_input_items, ["GET"]),
    ("/conversations", conv.create_conversation, ["POST"]),
    ("/conversations/{conversation_id}", conv.retrieve_conversation, ["GET"]),
    ("/conversations/{conversation_id}", conv.update_conversation, ["POST"]),
    ("/conversations/{conversation_id}", conv.delete_conversation, ["DELETE"]),
    ("/conversations/{conversation_id}/items", conv.create_items, ["POST"]),
    ("/conversations/{conversation_id}/items", conv.list_items, ["GET"]),
    ("/conversations/{conversation_id}/items/{item_id}", conv.retrieve_item, ["GET"]),
    ("/conversations/{conversation_id}/items/{item_id}", conv.delete_item, ["DELETE"]),
]


def mount(app) -> None:
    """Add the routes under `/v1` (and bare, as chat completions are) and the service
    (`app.state.responses`) to a gateway app. They go first in the route list: Starlette tries
    routes in order, and these are the ones with per-request traffic."""
    app.state.responses = ResponsesService(app.state.gateway)
    app.router.routes[0:0] = [Route(prefix + path, endpoint, methods=methods)
                              for prefix in ("/v1", "") for path, endpoint, methods in ROUTES]


__all__ = ["mount", "ResponsesService", "call_upstream"]
