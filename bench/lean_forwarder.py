#!/usr/bin/env python3
"""The benchmark's reference: about the least a token → upstream forwarder can do in Python.

aiohttp server + one pooled aiohttp client. `POST /v1/chat/completions` with `Authorization:
Bearer TOKEN`: looks the token up in a JSON map `{token: api_base}`, parses the body (to learn
`stream`), sends it to `{api_base}/chat/completions` with the upstream key, and relays the answer:
whole for JSON, chunk by chunk as it arrives for SSE. Anything else is 401/404.

    python bench/lean_forwarder.py --routes routes.json --port 9200
"""

import argparse
import json

import aiohttp
from aiohttp import web


async def startup(app: web.Application) -> None:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    app["session"] = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300))


async def cleanup(app: web.Application) -> None:
    await app["session"].close()


async def chat(request: web.Request) -> web.StreamResponse:
    auth = request.headers.get("authorization", "")
    base = request.app["routes"].get(auth[7:] if auth.startswith("Bearer ") else None)
    if base is None:
        return web.json_response({"error": {"message": "invalid api key", "type": "invalid_request_error"}}, status=401)
    raw = await request.read()
    try:
        stream = json.loads(raw).get("stream") is True
    except (ValueError, AttributeError):
        return web.json_response({"error": {"message": "invalid JSON", "type": "invalid_request_error"}}, status=400)
    headers = {"content-type": "application/json", "authorization": "Bearer upstream-key"}
    try:
        async with request.app["session"].post(f"{base}/chat/completions", data=raw, headers=headers) as upstream:
            if not stream or upstream.status >= 400:
                body = await upstream.read()
                return web.Response(body=body, status=upstream.status, content_type="application/json")
            response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
    except aiohttp.ClientError as exc:
        return web.json_response({"error": {"message": type(exc).__name__, "type": "api_error"}}, status=502)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description="lean token -> upstream forwarder (benchmark reference)")
    parser.add_argument("--routes", required=True, help="JSON file: {token: api_base}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = web.Application()
    with open(args.routes) as fh:
        app["routes"] = json.load(fh)
    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, backlog=2048)


if __name__ == "__main__":
    main()
