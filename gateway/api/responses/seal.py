"""Sealed `reasoning.encrypted_content` (CONTRACT.md §9, reasoning state).

A provider's reasoning state (Claude's thinking signatures, the `reasoning_content` an adapter
reports, ...) must come back on the next turn unmodified. It rides in the `reasoning` item's
`encrypted_content`, sealed with AES-256-GCM (the `cryptography` package) under a key the
gateway keeps in its database: `gw1.` + urlsafe base64 of (12-byte nonce + ciphertext + tag)
of the JSON of the assistant message's provider fields. Clients that resend their history
(`store: false`, Codex) send it back as they got it; anything else in `encrypted_content`
(another service's blob, a tampered one) opens to nothing and the item is dropped.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "gw1."


class Sealer:
    """Seals and opens JSON objects with one 256-bit key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, value: dict) -> str:
        """`value` (a JSON object) as a sealed string."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, orjson.dumps(value), PREFIX.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, text: Any) -> dict | None:
        """The object sealed in `text`, or None when it is not ours (or was changed)."""
        if not isinstance(text, str) or not text.startswith(PREFIX):
            return None
        try:
            raw = base64.urlsafe_b64decode(text[len(PREFIX):])
            value = orjson.loads(self._aead.decrypt(raw[:12], raw[12:], PREFIX.encode()))
        except (ValueError, InvalidTag, orjson.JSONDecodeError):
            return None
        return value if isinstance(value, dict) else None
