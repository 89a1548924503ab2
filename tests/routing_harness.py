"""Shared by the router tests: the gateway app served on loopback with a controllable clock,
config builders for pool members, and the fake member upstream."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openai
import yaml
from starlette.applications import Starlette

from gateway import health
from gateway.app import create_app
from gateway.runtime import Runtime
from tests.support.servers import free_port, serve_app

MEMBER_KEY = "sk-member-secret-key-0123456789"


class FakeClock:
    """A monotonic clock the test moves by hand (no sleeping to wait out a cooldown)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RunningGateway:
    """The gateway's ASGI app served on loopback; `clock` drives member cooldowns."""

    url: str
    app: Starlette
    clock: FakeClock
    clients: dict[str, openai.OpenAI] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        return self.app.state.gateway.runtime

    def client(self, token: str) -> openai.OpenAI:
        """An official client presenting `token` (one per token, reused)."""
        if token not in self.clients:
            self.clients[token] = openai.OpenAI(api_key=token, base_url=f"{self.url}/v1", max_retries=0)
        return self.clients[token]

    def chat(self, token: str, **kw):
        """One chat completion with the official client: `(completion, response headers)`."""
        kw.setdefault("messages", [{"role": "user", "content": "hi"}])
        kw.setdefault("model", "any")
        raw = self.client(token).chat.completions.with_raw_response.create(**kw)
        return raw.parse(), raw.headers

    def stream_text(self, token: str, **kw):
        """One streamed chat completion: `(text, response headers)`."""
        kw.setdefault("messages", [{"role": "user", "content": "hi"}])
        kw.setdefault("model", "any")
        with self.client(token).chat.completions.with_streaming_response.create(stream=True, **kw) as response:
            text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
            return text, response.headers


@contextlib.contextmanager
def running_gateway(directory: Path, tokens: list[dict], settings: dict | None = None) -> Iterator[RunningGateway]:
    """Write the config, build the app with a fake clock for cooldowns, serve it on loopback."""
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump({"settings": settings or {}, "tokens": tokens}, sort_keys=False), encoding="utf-8")
    app = create_app(path)
    clock = FakeClock()
    health.install(app.state.gateway.runtime.state, clock)
    with serve_app(app) as url:
        gateway = RunningGateway(url, app, clock)
        try:
            yield gateway
        finally:
            for client in gateway.clients.values():
                client.close()


def member(token: str, name: str, model: str, base: str, *, internal: bool = True) -> dict:
    """A `proxy` pool member with a forced model (the fake's scenario) pointing at `base`."""
    return {"token": token, "name": name, "type": "proxy", "internal": internal,
            "config": {"api_base": f"{base}/v1", "api_key": MEMBER_KEY, "model": model}}


def router(token: str, name: str, strategy: str, pool: list[str], **config) -> dict:
    return {"token": token, "name": name, "type": "router", "config": {"router_strategy": strategy, "token_pool": pool, **config}}


def closed_base() -> str:
    """A loopback base URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"
