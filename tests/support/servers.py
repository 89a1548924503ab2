"""Running things as real servers on loopback for tests.

`serve_app(app)` runs an ASGI app (a fake upstream) with uvicorn in a background thread on a
pre-bound 127.0.0.1 socket, so it accepts connections as soon as the context is entered.
`GatewayProcess` runs `open-api.py` as a child process, as users do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[2]


def bound_socket() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 with a free port.

    `proto` must be IPPROTO_TCP: asyncio sets TCP_NODELAY only on accepted sockets whose proto
    says TCP, and without it every small response waits ~40 ms for a delayed ACK (Nagle)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


def free_port() -> int:
    """A port that was free a moment ago (for child processes that bind it themselves)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_app(app, lifespan: str = "off", **config) -> Iterator[str]:
    """Serve `app` on loopback in a thread; yields its base URL `http://127.0.0.1:PORT`.

    With `lifespan="on"` the app's startup (e.g. the config file watcher) has run before the
    URL is yielded."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, **config))
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        if lifespan == "on":
            wait_until(lambda: server.started or not thread.is_alive(), what="server start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def wait_until(predicate, timeout: float = 15.0, what: str = "condition", interval: float = 0.05):
    """Poll `predicate` until it returns a truthy value (returned) or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class GatewayProcess:
    """`python open-api.py --config PATH --port PORT` as a child process.

    `start()` returns once `/healthz` answers (bounded: `timeout` seconds), or raises with the
    process output. `base_url` is `http://127.0.0.1:PORT`.
    """

    def __init__(self, config_path: str | os.PathLike, env: dict[str, str] | None = None, args: list[str] = ()) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, str(ROOT / "open-api.py"), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> GatewayProcess:
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Drain the output as it comes: a gateway that logs a lot (access log) must never block
        # on a full pipe while a test is talking to it.
        self._output: list[str] = []
        self._reader = threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("gateway did not become healthy in time")

    def _drain(self, stream) -> None:
        for line in stream:
            self._output.append(line)

    def output(self) -> str:
        """Everything the process printed so far."""
        return "".join(getattr(self, "_output", []))

    def stop(self) -> str:
        """Stop the process; returns everything it printed."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        out = self.output()
        self.proc = None
        return out

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
