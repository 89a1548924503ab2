"""The HTTP/1.1 connection limits uvicorn does not enforce itself (README "Limits and hardening").

`GuardedHttpToolsProtocol` is uvicorn's httptools protocol (the fast parser the gateway runs on)
plus, per connection:

- `max_header_bytes`: the request line and headers together may not exceed this many bytes;
  more is answered 431 and the connection closed (httptools has no limit of its own).
- `header_timeout`: a request's headers must be complete this many seconds after its first
  byte (or after the connection opened); else 408 and close (slowloris).
- `body_timeout`: the whole request body must arrive within this many seconds after the
  headers; else 408 (if nothing was answered yet) and close. The app then sees
  `http.disconnect`.
- `send_timeout`: a client that stops reading (the transport's write buffer stays above its
  high-water mark) for this many seconds is disconnected, so a stream it never reads releases
  its upstream connection (the app sees `http.disconnect` and closes the upstream request).
- `max_connections`: a connection beyond this many open ones gets an immediate 503 in OpenAI's
  shape and is closed, before any of its bytes are read, so file descriptors never run out.

Idle keep-alive connections are closed by uvicorn's own `timeout_keep_alive`.

Deadlines are checked by one sweeper task per event loop, once a second (`SWEEP_SECONDS`), so
the request path only stores a timestamp: no timer per request. The limits are start-time
settings (`settings` of the config file read at start; see `limits_from_settings`), handed to
every worker through `$GATEWAY_SERVER_LIMITS` (JSON).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import weakref
from dataclasses import asdict, dataclass

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("gateway.server")

ENV = "GATEWAY_SERVER_LIMITS"
SWEEP_SECONDS = 1.0


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits, seconds and bytes (defaults documented in README)."""

    max_header_bytes: int = 65536
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    send_timeout: float = 120.0
    max_connections: int = 1000


def limits_from_settings(settings) -> ServerLimits:
    """The `ServerLimits` of a config's `Settings` (`max_connections` None: derived from the
    file-descriptor limit, see `default_max_connections`)."""
    return ServerLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        send_timeout=settings.stream_idle_timeout,
        max_connections=settings.max_connections or default_max_connections(),
    )


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (the usual server practice); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def default_max_connections() -> int:
    """Half the file descriptors left after a reserve of 64: each client connection may hold
    one upstream connection as well."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(16, (soft - 64) // 2)


def export(limits: ServerLimits) -> None:
    """Hand `limits` to the worker processes (through the environment)."""
    os.environ[ENV] = json.dumps(asdict(limits))


def _imported() -> ServerLimits:
    raw = os.environ.get(ENV)
    return ServerLimits(**json.loads(raw)) if raw else ServerLimits()


def _plain_response(status: bytes, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: " + content_type + b"\r\ncontent-length: "
        + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


def _error_response(status: bytes, message: str, code: str, type_: str = "invalid_request_error") -> bytes:
    body = json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()
    return _plain_response(status, body)


TOO_MANY_CONNECTIONS = _error_response(b"503 Service Unavailable", "The gateway has too many open connections; retry shortly.", "too_many_connections", "api_error")
HEADERS_TOO_LARGE = _error_response(b"431 Request Header Fields Too Large", "The request line and headers are too large.", "headers_too_large")
REQUEST_TIMEOUT = _error_response(b"408 Request Timeout", "The request was not received in time.", "request_timeout")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of this module (see its docstring)."""

    limits: ServerLimits = _imported()
    _live: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> set of protocols

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_bytes = 0
        self._phase_since = self.loop.time()
        self._in_headers = True
        self._body_since: float | None = None
        self._write_paused_since: float | None = None
        self._refused_headers = False
        if len(self.connections) > self.limits.max_connections:
            log.warning("refusing a connection: %d open (max_connections %d)", len(self.connections), self.limits.max_connections)
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        live = self._live.get(self.loop)
        if live is None:
            live = self._live[self.loop] = set()
            self.loop.create_task(_sweep(self.loop, live))
        live.add(self)

    def connection_lost(self, exc) -> None:
        live = self._live.get(self.loop)
        if live is not None:
            live.discard(self)
        super().connection_lost(exc)

    # Parser callbacks (the request path: only counters and timestamps here).

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._in_headers = True
        self._phase_since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            self._refused_headers = True
            raise httptools.HttpParserCallbackError("headers too large")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._body_since = self.loop.time()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._body_since = None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refused_headers:
            log.warning("refused a request: headers over max_header_bytes (%d)", self.limits.max_header_bytes)
            self.transport.write(HEADERS_TOO_LARGE)
            self.transport.close()
            return
        super().send_400_response(msg)

    def pause_writing(self) -> None:
        self._write_paused_since = self.loop.time()
        super().pause_writing()

    def resume_writing(self) -> None:
        self._write_paused_since = None
        super().resume_writing()

    # Deadlines (called by the sweeper).

    def _check(self, now: float) -> bool:
        """Enforce the deadlines; False once this connection needs no more checks."""
        if self.transport is None or self.transport.is_closing() or self.transport.get_protocol() is not self:
            return False  # closed, or upgraded to another protocol (WebSocket)
        limits = self.limits
        cycle = self.cycle
        if self._in_headers and now - self._phase_since > limits.header_timeout:
            self._drop("headers not complete within header_timeout", REQUEST_TIMEOUT)
        elif self._body_since is not None and now - self._body_since > limits.body_timeout:
            answered = cycle is not None and cycle.response_started
            self._drop("body not complete within body_timeout", None if answered else REQUEST_TIMEOUT)
        elif self._write_paused_since is not None and now - self._write_paused_since > limits.send_timeout:
            self._drop("client stopped reading for send_timeout", None)
        return True

    def _drop(self, why: str, response: bytes | None) -> None:
        log.info("closing connection from %s: %s", self.client[0] if self.client else "?", why)
        self._body_since = None
        self._in_headers = False
        if response is None:
            self.transport.abort()  # a full send buffer would keep close() waiting forever
            return
        self.transport.write(response)
        self.transport.close()


async def _sweep(loop: asyncio.AbstractEventLoop, live: set) -> None:
    """Check every live connection's deadlines once per `SWEEP_SECONDS`."""
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        now = loop.time()
        for protocol in list(live):
            try:
                if not protocol._check(now):
                    live.discard(protocol)
            except Exception:  # one broken connection must not stop the sweeper
                log.exception("connection check failed")
