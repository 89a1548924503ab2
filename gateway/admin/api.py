"""Routes of the config page and its JSON API (CONTRACT.md §5).

Page: `GET /` (the login form until a session exists, then the editor; data comes from the API).

API (JSON; errors in OpenAI's shape `{"error": {"message", "type", "param", "code"}}`):

| route | does |
|---|---|
| `POST /admin/api/login` `{"token"}` | 204 + session cookie + `X-CSRF-Token` header; 401; 429 when locked out |
| `POST /admin/api/logout` | 204, ends the session |
| `GET /admin/api/session` | `{"csrf_token", "auth": "cookie" or "bearer", "generated_token"}` |
| `GET /admin/api/status` | `{"path", "format", "writable", "version", "disk_error"}` |
| `GET /admin/api/schema` | form descriptions per adapter type (`gateway.admin.forms`) |
| `GET /admin/api/config` | the config data in the file's shape, secrets masked; `ETag` |
| `PUT /admin/api/config` | replace the whole config: 200 `{"changed", "version", "summary", "etag"}`, 400 `invalid_config` with `details`, 409 `no_config_file`, 412 `config_changed` (stale `If-Match`) |
| `POST /admin/api/config/validate` | the same checks, nothing applied: 200 `{"valid": true}` or 400 |
| `GET /admin/api/config/raw` | `{"format", "text"}`: the whole file text, secrets masked, comments kept |
| `PUT /admin/api/config/raw` `{"text"}` / `POST /admin/api/config/raw/validate` | as above, for file text |
| `GET /admin/api/history` | `{"data": [{"id", "time", "source", "summary", "current"}]}`, newest first |
| `GET /admin/api/history/{id}` | that version and `diff`: unified diff from it to the current file, secrets masked |
| `POST /admin/api/history/{id}/rollback` | make that version current (a new, validated save) |
| `POST /admin/api/test` `{"token", "prompt"?}` | send a one-line prompt through a token: `{"ok", "latency_ms", "content" or "error"}` |

Auth: the session cookie (state-changing requests also need `X-CSRF-Token`), or
`Authorization: Bearer ADMIN_TOKEN`. Tokens in the config are shown to the admin as written
(they hand them out); upstream secrets never leave the server unmasked.
"""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.routing import Route

from gateway import dispatch
from gateway.admin.forms import describe_all
from gateway.admin.manager import AdminError
from gateway.admin.security import COOKIE, CSRF_HEADER, SESSION_SECONDS
from gateway.auth import auth_headers
from gateway.config import ConfigError
from gateway.errors import GatewayError
from gateway.request import ChatRequest

TEMPLATE_DIR = Path(__file__).parent / "templates"
MAX_BODY = 2 * 1024 * 1024
DEFAULT_PROMPT = "Reply with one short sentence: are you there?"
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
PAGE_HEADERS = {
    **SECURITY_HEADERS,
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-frame-options": "DENY",
}


# -- responses --------------------------------------------------------------------------------


def _json(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers={**SECURITY_HEADERS, **(headers or {})})


def _error(status: int, message: str, code: str, headers: dict | None = None, **extra: Any) -> Response:
    body = {"message": message, "type": "invalid_request_error" if status < 500 else "api_error", "param": None, "code": code, **extra}
    return _json({"error": body}, status, headers)


def _config_error(exc: ConfigError) -> Response:
    return _error(400, exc.line(), "invalid_config", details=[issue.as_dict() for issue in exc.issues])


def _admin(request: Request):
    return request.app.state.admin


# -- auth -------------------------------------------------------------------------------------


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _bearer(request: Request) -> str | None:
    scheme, _, value = auth_headers(request.scope["headers"]).get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def _refuse(request: Request, message: str) -> Response:
    """401 after the client's backoff delay (a failed guess)."""
    delay = _admin(request).limiter.failed(_client(request))
    await asyncio.sleep(delay)
    return _error(401, message, "invalid_admin_token")


def _locked(request: Request) -> Response | None:
    left = _admin(request).limiter.locked_for(_client(request))
    if left:
        return _error(
            429, "Too many failed admin logins from this address; try again later.", "too_many_attempts", {"retry-after": str(int(left) + 1)}
        )
    return None


async def authorize(request: Request, write: bool) -> Response | None:
    """None when the request may go on (and sets `request.state.auth`), else the error response."""
    admin = _admin(request)
    bearer = _bearer(request)
    if bearer is not None:
        if (locked := _locked(request)) is not None:
            return locked
        if admin.keys.check_token(bearer):
            admin.limiter.succeeded(_client(request))
            request.state.auth = "bearer"
            return None
        return await _refuse(request, "Wrong admin token.")
    session_id = admin.keys.session_id(request.cookies.get(COOKIE))
    if session_id is None:
        return _error(401, "Admin login required: log in at / or send 'Authorization: Bearer ADMIN_TOKEN'.", "admin_auth_required")
    if write and not admin.keys.check_csrf(session_id, request.headers.get(CSRF_HEADER)):
        return _error(403, "Missing or wrong X-CSRF-Token header for a change made with the session cookie.", "csrf_failed")
    request.state.auth = "cookie"
    request.state.session_id = session_id
    return None


def _guarded(handler, write: bool):
    async def endpoint(request: Request) -> Response:
        refused = await authorize(request, write)
        if refused is not None:
            return refused
        try:
            return await handler(request)
        except AdminError as exc:
            return _error(exc.status, exc.message, exc.code)
        except ConfigError as exc:
            return _config_error(exc)

    endpoint.__name__ = handler.__name__
    return endpoint


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise AdminError(413, "body_too_large", "The request body is too large.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AdminError(400, "invalid_json", "The request body is not valid JSON.") from None


def _set_session(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE, value, max_age=max_age, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


async def login(request: Request) -> Response:
    admin = _admin(request)
    if (locked := _locked(request)) is not None:
        return locked
    try:
        body = await _body(request)
    except AdminError as exc:
        return _error(exc.status, exc.message, exc.code)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not admin.keys.check_token(token):
        return await _refuse(request, "Wrong admin token.")
    admin.limiter.succeeded(_client(request))
    cookie, csrf = admin.keys.new_session()
    response = Response(status_code=204, headers={**SECURITY_HEADERS, "x-csrf-token": csrf})
    _set_session(response, request, cookie, SESSION_SECONDS)
    return response


async def logout(request: Request) -> Response:
    admin = _admin(request)
    session_id = admin.keys.session_id(request.cookies.get(COOKIE))
    if session_id is not None:
        admin.keys.revoke(session_id)
    response = Response(status_code=204, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


# -- page -------------------------------------------------------------------------------------


def _static_version() -> str:
    from gateway.admin import STATIC_DIR

    stamps = [int(p.stat().st_mtime) for p in STATIC_DIR.glob("admin*")]
    return str(max(stamps, default=0))


@functools.cache
def _templates():
    """The page's Jinja environment, built on first use (Jinja is not loaded by a gateway that
    only serves the API)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(loader=FileSystemLoader(TEMPLATE_DIR), autoescape=select_autoescape(["html"]))


async def page(request: Request) -> Response:
    admin = _admin(request)
    session_id = admin.keys.session_id(request.cookies.get(COOKIE))
    html = _templates().get_template("config.html").render(
        logged_in=session_id is not None,
        csrf_token=admin.keys.csrf_for(session_id) if session_id else "",
        path=admin.manager.path or "",
        static_version=_static_version(),
    )
    return HTMLResponse(html, headers=PAGE_HEADERS)


# -- API --------------------------------------------------------------------------------------


async def session(request: Request) -> Response:
    admin = _admin(request)
    csrf = admin.keys.csrf_for(request.state.session_id) if request.state.auth == "cookie" else None
    return _json({"auth": request.state.auth, "csrf_token": csrf, "generated_token": admin.keys.generated})


async def status(request: Request) -> Response:
    manager = _admin(request).manager
    return _json(
        {
            "path": manager.path,
            "format": manager.format,
            "writable": manager.path is not None,
            "version": manager.version(),
            "disk_error": manager.disk_error and {k: v for k, v in manager.disk_error.items() if k != "sha256"},
            "watching": manager.watching,
        }
    )


async def schema(request: Request) -> Response:
    return _json(describe_all())


def _etag(manager) -> dict[str, str]:
    return {"etag": f'"{manager.version()}"'}


async def get_config(request: Request) -> Response:
    manager = _admin(request).manager
    return _json(manager.masked(), headers=_etag(manager))


async def put_config(request: Request) -> Response:
    manager = _admin(request).manager
    result = await manager.save_data(await _body(request), "page" if request.state.auth == "cookie" else "api", request.headers.get("if-match"))
    return _json(result, headers=_etag(manager))


async def validate_config(request: Request) -> Response:
    config = await _admin(request).manager.validate_data(await _body(request))
    return _json({"valid": True, "warnings": config.warnings})


def _text_of(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        raise AdminError(400, "invalid_request", 'Send {"text": "...the whole file..."}.')
    return body["text"]


async def get_raw(request: Request) -> Response:
    manager = _admin(request).manager
    return _json({"format": manager.format, "text": manager.masked_text()}, headers=_etag(manager))


async def put_raw(request: Request) -> Response:
    manager = _admin(request).manager
    result = await manager.save_text(_text_of(await _body(request)), "raw", request.headers.get("if-match"))
    return _json(result, headers=_etag(manager))


async def validate_raw(request: Request) -> Response:
    config = await _admin(request).manager.validate_text(_text_of(await _body(request)))
    return _json({"valid": True, "warnings": config.warnings})


async def history(request: Request) -> Response:
    return _json({"data": await _admin(request).manager.versions()})


async def history_diff(request: Request) -> Response:
    return _json(await _admin(request).manager.diff(request.path_params["version"]))


async def rollback(request: Request) -> Response:
    manager = _admin(request).manager
    result = await manager.rollback(request.path_params["version"])
    return _json(result, headers=_etag(manager))


async def test_token(request: Request) -> Response:
    """Send a one-line prompt through a token (internal ones too) and time the answer."""
    body = await _body(request)
    token = body.get("token") if isinstance(body, dict) else None
    prompt = body.get("prompt") if isinstance(body, dict) and isinstance(body.get("prompt"), str) else DEFAULT_PROMPT
    if not isinstance(token, str) or not token:
        raise AdminError(400, "invalid_request", 'Send {"token": "..."} naming a token of the config.')
    runtime = _admin(request).manager.gateway.runtime
    adapter = runtime.adapters.get(token)
    if adapter is None:
        raise AdminError(404, "token_not_found", "No enabled token of the running config has this value (save first; disabled entries cannot be tested).")
    chat = ChatRequest.from_body({"messages": [{"role": "user", "content": prompt}], "stream": False})
    dispatch.served_by.set(None)
    started = time.perf_counter()
    try:
        completion = await dispatch.complete(adapter, chat)
    except GatewayError as error:
        elapsed = round((time.perf_counter() - started) * 1000)
        body = error.body()["error"]
        body["message"] = runtime.scrub(body["message"])
        return _json({"ok": False, "latency_ms": elapsed, "status": error.status, "error": body, "name": adapter.name})
    elapsed = round((time.perf_counter() - started) * 1000)
    data = orjson.loads(completion) if isinstance(completion, bytes) else completion
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    return _json(
        {
            "ok": True,
            "latency_ms": elapsed,
            "name": adapter.name,
            "served_by": dispatch.served_by.get(),
            "model": data.get("model"),
            "content": runtime.scrub(message.get("content") or ""),
            "tool_calls": message.get("tool_calls"),
            "finish_reason": choice.get("finish_reason"),
            "usage": data.get("usage"),
        }
    )


class VersionConvertor(IntegerConvertor):
    """A history version id: 1 to 9 digits (a longer one is a 404 at routing, never `int()` of
    thousands of digits)."""

    regex = "[0-9]{1,9}"


register_url_convertor("version", VersionConvertor())


def routes() -> list[Route]:
    """The page and API routes (added to the app by `gateway.admin.mount`)."""
    api = "/admin/api"
    return [
        Route("/", page, methods=["GET"]),
        Route(f"{api}/login", login, methods=["POST"]),
        Route(f"{api}/logout", logout, methods=["POST"]),
        Route(f"{api}/session", _guarded(session, False), methods=["GET"]),
        Route(f"{api}/status", _guarded(status, False), methods=["GET"]),
        Route(f"{api}/schema", _guarded(schema, False), methods=["GET"]),
        Route(f"{api}/config", _guarded(get_config, False), methods=["GET"]),
        Route(f"{api}/config", _guarded(put_config, True), methods=["PUT"]),
        Route(f"{api}/config/validate", _guarded(validate_config, True), methods=["POST"]),
        Route(f"{api}/config/raw", _guarded(get_raw, False), methods=["GET"]),
        Route(f"{api}/config/raw", _guarded(put_raw, True), methods=["PUT"]),
        Route(f"{api}/config/raw/validate", _guarded(validate_raw, True), methods=["POST"]),
        Route(f"{api}/history", _guarded(history, False), methods=["GET"]),
        Route(f"{api}/history/{{version:version}}", _guarded(history_diff, False), methods=["GET"]),
        Route(f"{api}/history/{{version:version}}/rollback", _guarded(rollback, True), methods=["POST"]),
        Route(f"{api}/test", _guarded(test_token, True), methods=["POST"]),
    ]
