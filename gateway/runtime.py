"""A running config: the adapters built from one loaded `GatewayConfig`.

A new `Runtime` is built for every (re)load; requests hold the one they started with, so a
config swap never changes a request in flight. The pooled HTTP clients (`UpstreamHTTP`) and the
router members' health (`state`) outlive a swap.
"""

from __future__ import annotations

from typing import Any

from gateway import registry
from gateway.adapter import Adapter
from gateway.auth import TokenTable
from gateway.config import GatewayConfig
from gateway.errors import Scrubber, invalid_api_key
from gateway.http import UpstreamHTTP
from gateway.keys.guard import Guard


class Runtime:
    """Adapters by token, the client token table, the secret scrubber and the settings.

    Attributes: `config`, `settings`, `http` (shared pooled clients), `scrub` (Scrubber),
    `adapters` (token → Adapter, internal ones included), `state` (a dict shared across
    reloads, where routers keep member health).
    """

    def __init__(self, config: GatewayConfig, http: UpstreamHTTP, state: dict[str, Any] | None = None) -> None:
        self.config = config
        self.settings = config.settings
        self.http = http
        self.state = state if state is not None else {}
        self.scrub = Scrubber(config.secrets())
        self.adapters: dict[str, Adapter] = {
            token: registry.adapter_class(entry.type)(entry, self) for token, entry in config.entries.items()
        }
        self._clients = TokenTable((t, a) for t, a in self.adapters.items() if not a.entry.internal)
        # §6/§7: admission, settlement, metrics; counters and the usage sink live in `state`.
        self.guard = Guard(self)

    def authenticate(self, token: str | None) -> Adapter:
        """The adapter for a token a client presented. Raises GatewayError 401 (unknown or internal)."""
        adapter = self._clients.get(token)
        if adapter is None:
            raise invalid_api_key()
        return adapter

    def adapter(self, token: str) -> Adapter:
        """The adapter for a token named inside the config (router pools); internal ones included."""
        return self.adapters[token]
