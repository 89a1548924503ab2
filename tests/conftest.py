"""Shared fixtures: fake upstreams on loopback, config files, the gateway as an ASGI app or a process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes.openai import FakeOpenAI  # noqa: E402
from tests.support.servers import GatewayProcess, serve_app  # noqa: E402


@pytest.fixture(scope="session")
def fake_openai():
    """A FakeOpenAI served on loopback for the whole session: (fake, base_url)."""
    fake = FakeOpenAI(slow_seconds=30)
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture
def write_config(tmp_path):
    """Write a config (mapping or list) to a YAML/JSON file; returns its path."""

    def write(data, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        if name.endswith(".json"):
            import json

            path.write_text(json.dumps(data), encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write


@pytest.fixture
def gateway_process(write_config):
    """Start `open-api.py` on a config; stopped at teardown. Call as gateway_process(data) -> GatewayProcess."""
    started: list[GatewayProcess] = []

    def start(data, env: dict | None = None, name: str = "config.yaml") -> GatewayProcess:
        proc = GatewayProcess(write_config(data, name), env=env).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def redis_server():
    """A real `redis-server` on loopback for the session (tests/support/services.py)."""
    from tests.support.services import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server():
    """A real throw-away PostgreSQL cluster on loopback for the session."""
    from tests.support.services import PostgresServer

    with PostgresServer() as server:
        yield server
