"""Client authentication (CONTRACT.md §3): which token did the client present, and is it ours.

Accepted headers, in order: `Authorization: Bearer TOKEN`, `api-key: TOKEN` (Azure-style
clients), `x-api-key: TOKEN` (Anthropic-style clients). A request with one of these headers
twice presents no token (`auth_headers`). Read every request's headers through `auth_headers`
(never `request.headers.get`, which keeps the first of two), so every route reads them alike. Tokens are looked up by their SHA-256
digest and then compared with `hmac.compare_digest`, so timing reveals nothing about a token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The token the client sent, or None."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("api-key") or headers.get("x-api-key") or None


_AUTH_HEADER_NAMES = frozenset({b"authorization", b"api-key", b"x-api-key"})


def auth_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The auth-related headers of an ASGI scope's raw `headers` list, for `presented_token`.

    A request carrying one of them twice (two `Authorization` headers, ...) is ambiguous: a
    proxy in front may check or log the other one. It gets `{}`, so no token: 401 everywhere."""
    found: dict[str, str] = {}
    for name, value in raw_headers:
        if name in _AUTH_HEADER_NAMES:
            key = name.decode()
            if key in found:
                return {}
            found[key] = value.decode("latin-1")
    return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenTable(Generic[T]):
    """Maps secret tokens to values without comparing secrets in variable time."""

    __slots__ = ("_by_digest",)

    def __init__(self, items: Iterable[tuple[str, T]]) -> None:
        self._by_digest: dict[bytes, tuple[bytes, T]] = {}
        for token, value in items:
            digest = _digest(token)
            self._by_digest[digest] = (digest, value)

    def get(self, token: str | None) -> T | None:
        """The value for `token`, or None when it is unknown."""
        if not token:
            return None
        digest = _digest(token)
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found[0], digest):
            return None
        return found[1]


def same_secret(presented: str | None, expected: str | None) -> bool:
    """Constant-time equality of two secrets (False when either is missing)."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))
