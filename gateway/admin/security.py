"""Who may use the config page: the admin token, session cookies, CSRF tokens, login backoff.

- The admin token is `settings.admin_token` (else `$GATEWAY_ADMIN_TOKEN`, which
  `gateway.config.build_config` already folds in). With neither, a random token is generated
  once per process and logged once at WARNING (`open-api.py` generates it before starting its
  workers, so they all share it).
- A session is a signed cookie `gateway_admin = SESSION_ID.EXPIRY.SIGNATURE` (HMAC-SHA256 with
  a key derived from the admin token), HttpOnly, SameSite=Strict, Secure over https, 12 hours.
  Being stateless, it is valid in every worker; changing the admin token ends every session.
  Logout revokes the session id and clears the cookie. Revocations are kept in a file beside
  the config (`FOLDER/.history/FILENAME/revoked-sessions`, lines `SESSION_ID EXPIRY`, mode
  0600), which every worker re-reads when it changed, so a logout holds in every worker; with
  no config file they are kept in this process only.
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
import os
import secrets
import sys
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from gateway.auth import same_secret

log = logging.getLogger("gateway.admin")

COOKIE = "gateway_admin"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
REVOCATIONS_COMPACT_BYTES = 64 * 1024  # the revoked-sessions file is rewritten without expired lines past this


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

    def __init__(self, configured, revocations: str | os.PathLike | None = None) -> None:
        """`configured()` returns the admin token from the running config, or None;
        `revocations`: the revoked-sessions file shared by the workers (None: this process only)."""
        self._configured = configured
        self._generated: str | None = None
        self._revoked: dict[str, float] = {}
        self._file = Path(revocations) if revocations else None
        self._file_stamp: tuple[int, int, int] | None = None

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
        if not expires.isdigit() or int(expires) < time.time() or session_id in self._revocations():
            return None
        return session_id

    def csrf_for(self, session_id: str) -> str:
        """The CSRF token of a session."""
        return self._sign(f"csrf:{session_id}")

    def check_csrf(self, session_id: str, presented: str | None) -> bool:
        """Constant-time check of a session's CSRF token."""
        return same_secret(presented, self.csrf_for(session_id))

    def revoke(self, session_id: str) -> None:
        """End a session in every worker (the cookie is cleared in the browser too)."""
        now = time.time()
        revoked = {s: t for s, t in self._revocations().items() if t > now}
        revoked[session_id] = now + SESSION_SECONDS
        self._revoked = revoked
        if self._file is None:
            return
        try:
            self._file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self._file.exists() and self._file.stat().st_size > REVOCATIONS_COMPACT_BYTES:
                temp = self._file.with_name(f".{self._file.name}.{os.getpid()}.tmp")
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="ascii") as out:
                    out.writelines(f"{s} {int(t)}\n" for s, t in revoked.items())
                os.replace(temp, self._file)
                return
            # One short O_APPEND write: atomic, so concurrent logouts in other workers are kept.
            fd = os.open(self._file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{session_id} {int(now + SESSION_SECONDS)}\n".encode("ascii"))
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot record the logout in %s (it holds in this worker only): %s", self._file, exc.strerror or exc)

    def _revocations(self) -> dict[str, float]:
        """The revoked session ids (-> expiry), re-read from the shared file when it changed."""
        if self._file is None:
            return self._revoked
        try:
            stat = self._file.stat()
        except OSError:
            return self._revoked
        stamp = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        if stamp != self._file_stamp:
            revoked = dict(self._revoked)
            try:
                for line in self._file.read_text(encoding="ascii").splitlines():
                    session_id, _, expires = line.partition(" ")
                    if expires.isdigit():
                        revoked[session_id] = float(expires)
            except (OSError, UnicodeDecodeError):
                return self._revoked
            self._revoked, self._file_stamp = revoked, stamp
        return self._revoked


@dataclass
class LoginLimiter:
    """Per-client backoff for failed admin authentications.

    Each failure within `window` seconds doubles the delay before the next 401 (`base_delay`,
    capped at `max_delay`); `max_failures` failures within `window` lock the client out (429)
    for `lockout` seconds. A success clears the client's record. Both tables keep at most
    `max_clients` clients (the least recently failed ones are forgotten first), so a spray of
    addresses cannot grow them without bound.
    """

    base_delay: float = 0.25
    max_delay: float = 4.0
    max_failures: int = 10
    window: float = 300.0
    lockout: float = 60.0
    max_clients: int = 10_000
    _failures: OrderedDict[str, deque] = field(default_factory=OrderedDict)
    _locked_until: OrderedDict[str, float] = field(default_factory=OrderedDict)

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
        failures = self._failures.pop(client, None) or deque()
        self._failures[client] = failures  # most recent last
        while failures and failures[0] < now - self.window:
            failures.popleft()
        failures.append(now)
        if len(failures) >= self.max_failures:
            self._locked_until.pop(client, None)
            self._locked_until[client] = now + self.lockout
            failures.clear()
        for table in (self._failures, self._locked_until):
            while len(table) > self.max_clients:
                table.popitem(last=False)
        return min(self.max_delay, self.base_delay * 2 ** (max(len(failures), 1) - 1))

    def succeeded(self, client: str) -> None:
        """Forget the client's failures."""
        self._failures.pop(client, None)
