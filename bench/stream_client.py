#!/usr/bin/env python3
"""The benchmark's asyncio load client: concurrent SSE streams with precise timings, and
count-bounded keep-alive request loops (the leak check's mixed load).

Raw asyncio protocol + httptools response parser (+ uvloop), so the client's own cost per event
stays small next to what it measures. Times are `time.perf_counter()` seconds.

- `run_streams(n, ...)` opens `n` connections at once, each sending one streamed request;
  returns a `StreamResult` per stream: time to the first `data:` event (TTFT, measured from just
  before connecting), total time, number of `data:` events, HTTP status.
- `run_requests(total, concurrency, make_request)` sends exactly `total` requests over
  `concurrency` keep-alive connections; `make_request(i)` gives `(path, headers, body)`.

Standalone:

    python bench/stream_client.py --url http://127.0.0.1:8090/v1/chat/completions \
        --token TOKEN --streams 200
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


@dataclass(slots=True)
class StreamResult:
    """One request: `status` (0 = transport failure), `ttft` and `total` in seconds (None if
    never reached), `events` = number of `data:` lines in the body, `error` text if any."""

    status: int
    ttft: float | None
    total: float | None
    events: int
    error: str | None = None


class _Conn(asyncio.Protocol):
    """A keep-alive HTTP/1.1 client connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.lost = False
        self._reset(0.0)

    def _reset(self, start: float) -> None:
        self.start = start
        self.ttft = None
        self.events = 0
        self.tail = b""
        self.status = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed before the response ended"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)
            self.transport.close()

    # httptools callbacks
    def on_status(self, status: bytes) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        data = self.tail + body
        count = data.count(b"data:")
        if count and self.ttft is None:
            self.ttft = time.perf_counter() - self.start
        self.events += count
        self.tail = data[-4:]

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.should_keep_alive())

    async def request(self, raw: bytes, start: float) -> bool:
        """Send one request's bytes; wait for the response's end. Returns keep-alive."""
        self._reset(start)
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def build_request(host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """An HTTP/1.1 POST with a content-length body."""
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", "content-type: application/json", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connect(host: str, port: int) -> _Conn:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(_Conn, host, port)
    return conn


async def one_stream(host: str, port: int, raw: bytes, timeout: float) -> StreamResult:
    """One streamed request on its own connection."""
    start = time.perf_counter()
    conn = None
    try:
        async with asyncio.timeout(timeout):
            conn = await _connect(host, port)
            await conn.request(raw, start)
        return StreamResult(conn.status, conn.ttft, time.perf_counter() - start, conn.events)
    except (OSError, ConnectionError, TimeoutError, httptools.HttpParserError) as exc:
        return StreamResult(conn.status if conn else 0, conn.ttft if conn else None, None, conn.events if conn else 0, type(exc).__name__)
    finally:
        if conn is not None and conn.transport is not None:
            conn.transport.close()


async def run_streams(n: int, host: str, port: int, raw: bytes, timeout: float = 120.0) -> tuple[list[StreamResult], float]:
    """`n` concurrent streams; returns (results, wall time from first connect to last end)."""
    start = time.perf_counter()
    results = await asyncio.gather(*(one_stream(host, port, raw, timeout) for _ in range(n)))
    return list(results), time.perf_counter() - start


async def run_requests(
    total: int, concurrency: int, host: str, port: int, make_request, timeout: float = 600.0, per_request_timeout: float = 30.0
) -> dict:
    """Exactly `total` requests (bounded by `timeout` s overall) over `concurrency` keep-alive
    connections. `make_request(i)` returns the raw request bytes. Returns counts and the wall time."""
    counter = iter(range(total))
    stats = {"ok": 0, "non2xx": 0, "errors": 0, "events": 0}

    async def worker() -> None:
        conn = None
        for i in counter:
            try:
                if conn is None or conn.lost:
                    conn = await _connect(host, port)
                async with asyncio.timeout(per_request_timeout):
                    keep = await conn.request(make_request(i), time.perf_counter())
                stats["ok" if 200 <= conn.status < 300 else "non2xx"] += 1
                stats["events"] += conn.events
                if not keep:
                    conn.transport.close()
                    conn = None
            except (OSError, ConnectionError, TimeoutError, httptools.HttpParserError):
                stats["errors"] += 1
                if conn is not None:
                    conn.transport.close()
                conn = None
        if conn is not None:
            conn.transport.close()

    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(worker() for _ in range(concurrency)))
    except TimeoutError:
        stats["timed_out"] = True
    stats["seconds"] = time.perf_counter() - start
    stats["requests"] = stats["ok"] + stats["non2xx"] + stats["errors"]
    return stats


def summarize(results: list[StreamResult]) -> dict:
    """p50/p99 TTFT (ms), p50 total (ms), completed and failed counts, events per stream."""
    ok = [r for r in results if r.error is None and 200 <= r.status < 300 and r.ttft is not None]
    ttfts = sorted(r.ttft * 1000 for r in ok)
    totals = sorted(r.total * 1000 for r in ok)

    def pct(values: list[float], p: float) -> float | None:
        return values[min(len(values) - 1, int(p * len(values)))] if values else None

    return {
        "ok": len(ok),
        "failed": len(results) - len(ok),
        "ttft_p50_ms": statistics.median(ttfts) if ttfts else None,
        "ttft_p99_ms": pct(ttfts, 0.99),
        "total_p50_ms": statistics.median(totals) if totals else None,
        "events_min": min((r.events for r in ok), default=0),
        "errors": sorted({r.error or f"HTTP {r.status}" for r in results if r not in ok}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="concurrent SSE streams against an OpenAI-style endpoint")
    parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8090/v1/chat/completions")
    parser.add_argument("--token", default="bench")
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    url = urlsplit(args.url)
    body = b'{"model":"%s","stream":true,"messages":[{"role":"user","content":"hi"}]}' % args.model.encode()
    raw = build_request(url.hostname, url.port, url.path, {"authorization": f"Bearer {args.token}"}, body)
    results, wall = asyncio.run(run_streams(args.streams, url.hostname, url.port, raw, args.timeout))
    print({**summarize(results), "wall_ms": round(wall * 1000, 1)})


if __name__ == "__main__":
    main()
