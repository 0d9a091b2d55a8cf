"""Secrets at rest: registry passwords and connection keys, encrypted with a key kept in the home.

The database is the file people copy, attach to bug reports and back up; the key stays beside it in
the home (0600, like the token signing key), so a database on its own gives nothing away. Fernet
(AES-128-CBC with an HMAC, from `cryptography`) rather than anything hand-made. Values written before
encryption existed are plain in old databases: they are still read, and sealed on the next start.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from dockyard.home import Home, write_private

_SEALED = "fernet:"


class SecretKeyMismatch(Exception):
    """A sealed value does not open with this home's key: the database came from another home."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def generate(cls) -> SecretBox:
        return cls(Fernet.generate_key())

    @classmethod
    def from_home(cls, home: Home) -> SecretBox:
        path: Path = home.root / "secrets-key"
        if not path.exists():
            write_private(path, Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def seal(self, plain: str | None) -> str | None:
        if plain is None:
            return None
        return _SEALED + self._fernet.encrypt(plain.encode()).decode()

    def open(self, stored: str | None) -> str | None:
        if stored is None or not is_sealed(stored):
            return stored  # written before encryption at rest; sealed on the next start
        try:
            return self._fernet.decrypt(stored[len(_SEALED):].encode()).decode()
        except InvalidToken:
            raise SecretKeyMismatch(
                "A stored secret does not decrypt with this home's secrets-key: the database was copied from "
                "another home, or the key was replaced. Restore that home's secrets-key, or remove and add the "
                "connection again."
            ) from None


def is_sealed(stored: str | None) -> bool:
    return stored is not None and stored.startswith(_SEALED)
