"""What a fake upstream received, for assertions on path, headers and translated body."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes = b""  # the body's bytes as received (e.g. to see duplicate JSON keys)

    @property
    def json(self) -> Any:
        return self.body


@dataclass
class Recorder:
    """Thread-safe log of requests a fake received, plus events (e.g. client disconnects)."""

    requests: list[Received] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _event_signal: threading.Condition = field(default_factory=threading.Condition)

    async def record(self, request) -> Received:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        item = Received(request.method, request.url.path, dict(request.query_params), {k.lower(): v for k, v in request.headers.items()}, body, raw)
        with self._lock:
            self.requests.append(item)
        return item

    def event(self, name: str) -> None:
        with self._event_signal:
            self.events.append(name)
            self._event_signal.notify_all()

    def wait_for_event(self, name: str, timeout: float = 10) -> bool:
        """Block until `name` was recorded (or `timeout` s passed); True when it was."""
        with self._event_signal:
            return self._event_signal.wait_for(lambda: name in self.events, timeout=timeout)

    @property
    def last(self) -> Received:
        return self.requests[-1]
