"""Console sign-in without a cloud account: one-time links, a signed session cookie, CSRF tokens.

A sign-in link carries a random token; only its SHA-256 is kept (`<home>/console-links.json`, 0600),
with an expiry, and using it removes it: a link that leaked from a log after use is worth nothing.
The session cookie is stateless, `v1.<session id>.<expiry>.<HMAC-SHA256>` under a key kept in the home
(`<home>/console-key`), so it survives a restart and a forged or edited cookie fails the MAC. The CSRF
token is the same key's MAC over the session id: a page carries it in its forms and the script layer
sends it as `x-csrf-token`; the cookie is also SameSite=Strict, so a cross-site request never has it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass

from dockyard.home import Home, write_private

COOKIE_NAME = "dockyard_console"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
LINK_LIFETIME_SECONDS = 15 * 60
SESSION_LIFETIME_SECONDS = 12 * 3600
# Links minted and never used: the oldest go first past this many.
_MAX_PENDING_LINKS = 64


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in browser: its session id and when the cookie stops being accepted."""

    id: str
    expires_at: int


class ConsoleAuth:
    def __init__(self, home: Home) -> None:
        self._links = home.root / "console-links.json"
        self._lock = threading.Lock()
        key_file = home.root / "console-key"
        if not key_file.exists():
            write_private(key_file, secrets.token_bytes(32).hex().encode())
        self._key = bytes.fromhex(key_file.read_text().strip())

    # ---- one-time links ---------------------------------------------------------------------------------

    def mint_link_token(self, now: float | None = None) -> tuple[str, int]:
        """A new sign-in token and its expiry (unix seconds); only its hash is stored."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        expires_at = int(now) + LINK_LIFETIME_SECONDS
        with self._lock:
            pending = {h: e for h, e in self._read_links().items() if e > now}
            pending[_digest(token)] = expires_at
            newest = sorted(pending.items(), key=lambda item: item[1])[-_MAX_PENDING_LINKS:]
            self._write_links(dict(newest))
        return token, expires_at

    def redeem(self, token: str, now: float | None = None) -> ConsoleSession | None:
        """The session a sign-in token opens, once: None for an unknown, used or expired token."""
        now = time.time() if now is None else now
        with self._lock:
            pending = self._read_links()
            expires_at = pending.pop(_digest(token), None)
            self._write_links({h: e for h, e in pending.items() if e > now})
        if expires_at is None or expires_at <= now:
            return None
        return ConsoleSession(id=secrets.token_hex(16), expires_at=int(now) + SESSION_LIFETIME_SECONDS)

    def _read_links(self) -> dict[str, int]:
        try:
            value = json.loads(self._links.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): int(v) for k, v in value.items()} if isinstance(value, dict) else {}

    def _write_links(self, links: dict[str, int]) -> None:
        write_private(self._links, json.dumps(links).encode())

    # ---- the session cookie -----------------------------------------------------------------------------

    def cookie_value(self, session: ConsoleSession) -> str:
        payload = f"v1.{session.id}.{session.expires_at}"
        return f"{payload}.{self._mac(payload)}"

    def session_from_cookie(self, value: str | None, now: float | None = None) -> ConsoleSession | None:
        """The session a cookie names, if this dockyard signed it and it has not expired."""
        if not value:
            return None
        payload, _, mac = value.rpartition(".")
        parts = payload.split(".")
        if len(parts) != 3 or parts[0] != "v1" or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        if not parts[2].isdigit() or int(parts[2]) <= (time.time() if now is None else now):
            return None
        return ConsoleSession(id=parts[1], expires_at=int(parts[2]))

    # ---- CSRF -------------------------------------------------------------------------------------------

    def csrf_token(self, session: ConsoleSession) -> str:
        return self._mac(f"csrf.{session.id}")

    def csrf_valid(self, session: ConsoleSession, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(str(presented), self.csrf_token(session))

    def _mac(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
