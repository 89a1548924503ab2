"""Native pass-through (CONTRACT.md §10): a provider's own API behind a gateway token.

    /anthropic/{path}  → a `claude` entry's   {api_base}/{path}
    /gemini/{path}     → a `gemini` entry's   {api_base}/{path}
    /openai/{path}     → an `openai` / `proxy` entry's {api_base}/{path} (api_base ends in /v1),
                         an `azure` entry's {api_base}/openai/deployments/{deployment_id}/{path}?api-version=
    /v1/{path}         → the same as /openai/{path}, for the `/v1` paths the gateway does not
                         serve itself (`/v1/completions`, `/v1/images/*`, `/v1/audio/*`,
                         `/v1/moderations`, `/v1/files`, ...)

The URL is built by the entry's adapter (`Adapter.native_request`) from the config only: no
client header, query or body field names a host. The path is refused (400) when it could step
outside that base: a `.` or `..` segment, an empty segment (`//`), a backslash, a control
character, `@`, a scheme (`http:`, `://`), or a percent-encoded `.`, `/`, `\\`, `%` or NUL.
The client presents its gateway token as its SDK does (`Authorization: Bearer`, `x-api-key`,
`api-key`, `x-goog-api-key` or Gemini's `?key=`); its credentials never go upstream, the
entry's own key does (`gateway.api.relay` has the header, body, redirect and streaming rules).
Only tokens whose entry is one provider of the route's family pass through (not routers);
other tokens get 400 on the named routes and, on `/v1/{path}`, the 404 of an unknown URL. A
`/v1` path another route serves with other methods is routing's 405, as if this route were not there.
"""

from __future__ import annotations

import logging
import re

from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from gateway.api.asgi import client_token, header, query_params, send_bytes
from gateway.api.messages import errors as anthropic_errors
from gateway.api.relay import forward_headers, relay, request_body
from gateway.errors import GatewayError, error_json
from gateway.keys.guard import limit_headers, request_context

log = logging.getLogger("gateway.passthrough")

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# `/v1/{first segment}` the gateway answers itself: never passed through.
SERVED_V1 = frozenset({"chat", "models", "messages", "embeddings", "responses", "conversations"})
# Gateway-side credentials in the query (Gemini's `?key=`): never forwarded.
QUERY_CREDENTIALS = frozenset({"key", "api-key", "api_key"})
FAMILY_TYPES = {"anthropic": "claude", "gemini": "gemini", "openai": "openai, proxy or azure"}

_ENCODED = re.compile(r"%(2e|2f|5c|25|00)", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def checked_path(raw: str, decoded: str) -> str:
    """The relative upstream path, after the §10 checks on both the path as sent (`raw`,
    percent-encoded) and as decoded. Raises GatewayError 400."""
    problem = None
    if _ENCODED.search(raw):
        problem = "percent-encoded separators"
    elif not decoded or decoded.startswith("/") or "//" in decoded:
        problem = "empty segments"
    elif "\\" in decoded or "@" in decoded or any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        problem = "backslashes, '@' or control characters"
    elif any(segment in (".", "..") for segment in decoded.split("/")):
        problem = "'.' or '..' segments"
    elif "://" in decoded or _SCHEME.match(decoded.split("/", 1)[0]):
        problem = "a URL scheme"
    if problem:
        raise GatewayError(400, f"This pass-through path is refused: it contains {problem}.", code="invalid_path")
    return decoded


def _token(scope) -> str | None:
    return client_token(scope) or header(scope, b"x-goog-api-key") or next(
        (v for k, v in query_params(scope) if k == "key"), None)


class NativePassThrough:
    """The pass-through routes of one provider family (`anthropic`, `gemini`, `openai`), as a
    plain ASGI app; `prefix` is the route's fixed part (`/gemini/`, `/v1/`, ...)."""

    def __init__(self, gateway, family: str, prefix: str) -> None:
        self.gateway = gateway
        self.family = family
        self.prefix = prefix

    def _error(self, error: GatewayError) -> bytes:
        scrub = self.gateway.runtime.scrub
        return anthropic_errors.error_json(error, scrub) if self.family == "anthropic" else error_json(error, scrub)

    def _served_elsewhere(self, scope) -> None:
        """For `/v1/{path}`: raise routing's 405 when another route serves this path with other
        methods, and 404 for the paths the gateway keeps for itself (`SERVED_V1`), so they get
        the answers routing gives (OpenAI-shaped by the app's HTTP error handlers)."""
        allowed: set[str] = set()
        for route in scope["app"].router.routes:
            if isinstance(route, Route) and not isinstance(route.app, NativePassThrough) and route.matches(scope)[0] == Match.PARTIAL:
                allowed |= route.methods or set()
        if allowed:
            raise HTTPException(405, headers={"Allow": ", ".join(sorted(allowed))})
        if scope["path"][len(self.prefix):].split("/", 1)[0] in SERVED_V1:
            raise HTTPException(404)

    async def __call__(self, scope, receive, send) -> None:
        runtime = self.gateway.runtime
        if self.prefix == "/v1/":
            self._served_elsewhere(scope)
        try:
            raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
            path = checked_path(raw_path[len(self.prefix):] if raw_path.startswith(self.prefix) else raw_path,
                                scope["path"][len(self.prefix):])
            adapter = runtime.authenticate(_token(scope))
            if self.prefix == "/v1/" and (adapter.is_router or adapter.native_family != self.family):
                raise GatewayError(404, f"Invalid URL ({scope['method']} {scope['path']}): the /v1 paths the gateway does not serve "
                                        f"itself pass through for one openai, proxy or azure entry; this token's type is "
                                        f"'{adapter.type_name}'.", code="not_found")
            if adapter.is_router or adapter.native_family != self.family:
                raise GatewayError(400, f"{self.prefix}* passes through to one {FAMILY_TYPES[self.family]} entry; this token's type is "
                                        f"'{adapter.type_name}'.", code="passthrough_unsupported")
            limits = adapter.entry.limits
            if limits is not None and limits.models is not None:
                raise GatewayError(404, "This key is limited to certain models; native pass-through, which cannot check the "
                                        "model a request names, is not available to it.", code="model_not_found")
            # §6: expiry, rpm, parallel and spent budgets apply; the relayed answer is not read, so
            # its tokens are not counted (the event says `estimated`).
            ticket = await runtime.guard.admit(adapter, model=None, prompt_tokens=0, max_output=0, surface="passthrough",
                                               **request_context(scope))
            ticket.meter.mark_unread()
            with ticket:
                headers = forward_headers(scope["headers"])
                query = [(k, v) for k, v in query_params(scope) if k not in QUERY_CREDENTIALS]
                url, headers = adapter.native_request(path, query, headers)
                body = await request_body(scope, receive, headers)
                await relay(adapter, scope["method"], url, headers, body, send, receive,
                            [(b"x-gateway-token-name", adapter.name.encode()), *ticket.headers])
        except GatewayError as error:
            if error.status >= 500:
                log.warning("pass-through failed: %s %s: %s", error.status, error.code, runtime.scrub(error.message))
            await send_bytes(send, error.status, self._error(error), [(b"content-type", b"application/json"), *limit_headers(error)])
        except ConnectionResetError:
            return  # the client went away while sending its body
        except Exception as exc:
            log.exception("pass-through failed unexpectedly: %s", type(exc).__name__)
            await send_bytes(send, 500, self._error(GatewayError(500, "The gateway failed to relay the request.", type="api_error")),
                             [(b"content-type", b"application/json")])


def routes(gateway) -> list[Route]:
    """The pass-through routes; they must come after every route the gateway serves itself."""
    return [
        Route("/anthropic/{path:path}", NativePassThrough(gateway, "anthropic", "/anthropic/"), methods=METHODS),
        Route("/gemini/{path:path}", NativePassThrough(gateway, "gemini", "/gemini/"), methods=METHODS),
        Route("/openai/{path:path}", NativePassThrough(gateway, "openai", "/openai/"), methods=METHODS),
        Route("/v1/{path:path}", NativePassThrough(gateway, "openai", "/v1/"), methods=METHODS),
    ]


__all__ = ["NativePassThrough", "checked_path", "routes"]
