"""The Starlette path's middleware and error handlers (everything but the chat hot path).

- `LiveCORS`: Starlette's `CORSMiddleware`, rebuilt whenever the running config's
  `settings.cors_allow_origins` changes, so a change made on the config page (or on disk)
  applies to the next request without a restart.
- `HTTP_ERROR_HANDLERS`: routing's 404 and 405 answered in OpenAI's error shape
  (`{"error": {"message", "type", "param", "code"}}`, as the OpenAI API does for an unknown
  URL: "Invalid URL (GET /v1/unknown)"), 405 with its `Allow` header.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

CORS_OPTIONS = {
    "allow_methods": ["GET", "POST", "PUT", "DELETE", "OPTIONS"],
    "allow_headers": ["*"],
    "expose_headers": ["x-gateway-token-name", "x-gateway-served-by", "x-request-id"],
    "max_age": 600,
}


class LiveCORS:
    """CORS with the allow-list read from the running config on every request.

    `origins()` returns the current `cors_allow_origins` list; the inner `CORSMiddleware` is
    rebuilt only when that list object changes (a reload builds new settings)."""

    def __init__(self, app, origins: Callable[[], list[str]]) -> None:
        self.app = app
        self.origins = origins
        self._seen: list[str] | None = None
        self._cors: CORSMiddleware | None = None

    async def __call__(self, scope, receive, send) -> None:
        origins = self.origins()
        if origins is not self._seen or self._cors is None:
            self._cors = CORSMiddleware(self.app, allow_origins=origins, **CORS_OPTIONS)
            self._seen = origins
        await self._cors(scope, receive, send)


_CODES = {404: "not_found", 405: "method_not_allowed"}


async def http_error(request: Request, exc: HTTPException) -> Response:
    """An HTTPException raised by routing (or static files) in OpenAI's error shape."""
    status = exc.status_code
    if status == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif status == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
    else:
        message = exc.detail if isinstance(exc.detail, str) else "The request failed."
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": _CODES.get(status)}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=exc.headers)


HTTP_ERROR_HANDLERS = {HTTPException: http_error}
