"""A small outbound HTTP proxy on loopback, for testing the `proxies` setting.

`HTTPProxy` serves, in a background thread, the two forms an HTTP proxy takes (RFC 9110 §9.3.6,
RFC 9112 §3.2.2): `CONNECT host:port` tunnels (what clients use for `https://` and `wss://`
targets) and absolute-form requests (`GET http://host/path`, also `ws://` upgrades). Either way
it opens a TCP connection to the target and then copies bytes both ways untouched. Each
request is recorded in `tunnels` as `(method, target, Proxy-Authorization header or None)`.
With `auth="user:password"` it answers 407 to a request without matching Basic credentials.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from tests.support.servers import bound_socket


class HTTPProxy:
    """The proxy; use `with HTTPProxy.running() as proxy:` and `proxy.url`."""

    def __init__(self, auth: str | None = None) -> None:
        self.expected = f"Basic {base64.b64encode(auth.encode()).decode()}" if auth else None
        self.tunnels: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")[:-2]
        method, target, version = lines[0].split(" ", 2)
        headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
        credentials = next((v.strip() for k, v in headers if k.strip().lower() == "proxy-authorization"), None)
        with self._lock:
            self.tunnels.append((method, target, credentials))
        if self.expected is not None and credentials != self.expected:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            request = b""
        else:
            url = urlsplit(target)
            host, port = url.hostname, url.port or (443 if url.scheme in ("https", "wss") else 80)
            path = url.path or "/"
            kept = "".join(f"{k}:{v}\r\n" for k, v in headers if not k.strip().lower().startswith("proxy-"))
            request = f"{method} {path}{'?' + url.query if url.query else ''} {version}\r\n{kept}\r\n".encode("latin-1")
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream_writer.write(request)
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    @classmethod
    @contextlib.contextmanager
    def running(cls, auth: str | None = None) -> Iterator[HTTPProxy]:
        """Serve a proxy on 127.0.0.1 until the block ends; `proxy.url` is `http://127.0.0.1:PORT`
        (with `user:password@` when `auth` is set)."""
        proxy = cls(auth)
        sock = bound_socket()
        port = sock.getsockname()[1]
        proxy.url = f"http://{auth + '@' if auth else ''}127.0.0.1:{port}"
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        async def serve() -> None:
            server = await asyncio.start_server(proxy._handle, sock=sock)
            async with server:
                await stop.wait()

        thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
        thread.start()
        try:
            yield proxy
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=10)
