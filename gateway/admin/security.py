"""Who may use the config page: the admin token, session cookies, CSRF tokens, login backoff.

- The admin token is `settings.admin_token` (else `$GATEWAY_ADMIN_TOKEN`, which
  `gateway.config.build_config` already folds in). With neither, a random token is generated
  once per process and logged once at WARNING (`open-api.py` generates it before starting its
  workers, so they all share it).
- A session is a signed cookie `gateway_admin = SESSION_ID.EXPIRY.SIGNATURE` (HMAC-SHA256 with
  a key derived from the admin token), HttpOnly, SameSite=Strict, Secure over https, 12 hours.
  Being stateless, it is valid in every worker; changing the admin token ends every session.
  Logout revokes the session id in this process and clears the cookie.
- The CSRF token of a session is HMAC(key, "csrf:" + SESSION_ID). Requests that change state
  with the cookie must send it as `X-CSRF-Token`; requests with `Authorization: Bearer
  ADMIN_TOKEN` need none (a browser never adds that header on its own).
- Failed attempts (a wrong token at login or as a bearer token) are answered after a delay that
  doubles per recent failure from the same client (`asyncio.sleep`, the event loop keeps
  serving), and after `max_failures` within `window` seconds the client gets 429 for
  `lockout` seconds, even with the right token.

Every comparison of a presented secret is constant-time (`gateway.auth.same_secret`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from gateway.auth import same_secret

log = logging.getLogger("gateway.admin")

COOKIE = "gateway_admin"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600


def generate_token() -> str:
    """A fresh random admin token (URL-safe, 32 bytes of entropy)."""
    return "gw-admin-" + secrets.token_urlsafe(32)


def announce_generated_token(token: str) -> None:
    """Tell the operator the generated admin token, once (log WARNING, stderr if logging is off)."""
    message = (
        f"no admin token configured (settings.admin_token / $GATEWAY_ADMIN_TOKEN); "
        f"generated one for the config page at /: {token}"
    )
    if log.isEnabledFor(logging.WARNING) and logging.getLogger().handlers:
        log.warning(message)
    else:
        print(f"WARNING gateway.admin: {message}", file=sys.stderr, flush=True)


class AdminKeys:
    """The admin token in force and the session/CSRF signatures derived from it."""

    def __init__(self, configured) -> None:
        """`configured()` returns the admin token from the running config, or None."""
        self._configured = configured
        self._generated: str | None = None
        self._revoked: dict[str, float] = {}

    def token(self) -> str:
        """The admin token: the configured one, else one generated (and announced) once."""
        configured = self._configured()
        if configured:
            return configured
        if self._generated is None:
            self._generated = generate_token()
            announce_generated_token(self._generated)
        return self._generated

    @property
    def generated(self) -> bool:
        """True when the token in force was generated (none configured)."""
        return not self._configured()

    def _key(self) -> bytes:
        return hashlib.sha256(b"gateway-admin-session\0" + self.token().encode("utf-8")).digest()

    def _sign(self, message: str) -> str:
        return hmac.new(self._key(), message.encode("utf-8"), hashlib.sha256).hexdigest()

    def check_token(self, presented: str | None) -> bool:
        """Constant-time check of a presented admin token."""
        return same_secret(presented, self.token())

    def new_session(self) -> tuple[str, str]:
        """(cookie value, CSRF token) for a new session."""
        session_id = secrets.token_urlsafe(18)
        expires = int(time.time()) + SESSION_SECONDS
        payload = f"{session_id}.{expires}"
        return f"{payload}.{self._sign(payload)}", self.csrf_for(session_id)

    def session_id(self, cookie: str | None) -> str | None:
        """The session id of a valid, unexpired, unrevoked cookie, else None."""
        if not cookie or cookie.count(".") != 2:
            return None
        session_id, expires, signature = cookie.split(".")
        if not same_secret(signature, self._sign(f"{session_id}.{expires}")):
            return None
        if not expires.isdigit() or int(expires) < time.time() or session_id in self._revoked:
            return None
        return session_id

    def csrf_for(self, session_id: str) -> str:
        """The CSRF token of a session."""
        return self._sign(f"csrf:{session_id}")

    def check_csrf(self, session_id: str, presented: str | None) -> bool:
        """Constant-time check of a session's CSRF token."""
        return same_secret(presented, self.csrf_for(session_id))

    def revoke(self, session_id: str) -> None:
        """End a session (in this process; the cookie is cleared in the browser too)."""
        now = time.time()
        self._revoked = {s: t for s, t in self._revoked.items() if t > now}
        self._revoked[session_id] = now + SESSION_SECONDS


@dataclass
class LoginLimiter:
    """Per-client backoff for failed admin authentications.

    Each failure within `window` seconds doubles the delay before the next 401 (`base_delay`,
    capped at `max_delay`); `max_failures` failures within `window` lock the client out (429)
    for `lockout` seconds. A success clears the client's record.
    """

    base_delay: float = 0.25
    max_delay: float = 4.0
    max_failures: int = 10
    window: float = 300.0
    lockout: float = 60.0
    _failures: dict[str, deque] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def locked_for(self, client: str) -> float:
        """Seconds left of the client's lockout (0 when it may try)."""
        left = self._locked_until.get(client, 0.0) - time.monotonic()
        if left <= 0:
            self._locked_until.pop(client, None)
            return 0.0
        return left

    def failed(self, client: str) -> float:
        """Record a failure; returns the delay to wait before answering."""
        now = time.monotonic()
        failures = self._failures.setdefault(client, deque())
        while failures and failures[0] < now - self.window:
            failures.popleft()
        failures.append(now)
        if len(failures) >= self.max_failures:
            self._locked_until[client] = now + self.lockout
            failures.clear()
        if len(self._failures) > 10_000:  # bound memory under a spray of clients
            self._failures = {c: f for c, f in self._failures.items() if f and f[-1] > now - self.window}
        return min(self.max_delay, self.base_delay * 2 ** (max(len(failures), 1) - 1))

    def succeeded(self, client: str) -> None:
        """Forget the client's failures."""
        self._failures.pop(client, None)
