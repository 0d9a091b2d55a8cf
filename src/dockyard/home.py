"""dockyard's home folder: everything it keeps between runs, in one place.

The home holds the database, the local CA and server certificate, the token signing key, the
managed-identity secret and a record of the server that is running. Secrets are written with mode
0600 from the moment they exist (never created world-readable and tightened afterwards).

The folder is 0700 and what it holds is 0600 whether dockyard made the folder or found it: a home made
by hand (or by an older dockyard) with the usual 0755/0644 is tightened on every start. The one
exception is the public certificates (the CA and the server's), which stay 0644 because containers'
unprivileged users read the CA bundle through a bind mount. A home that other users can write to is
refused: whoever could write there could have planted a key.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class HomeError(Exception):
    """The home folder cannot be used; the message says why and what to do."""


def default_home() -> Path:
    return Path(os.environ.get("DOCKYARD_HOME") or Path.home() / ".dockyard").expanduser()


def write_private(path: Path, data: bytes) -> None:
    """Write a secret so that only its owner can ever read it, replacing any earlier file atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _refuse_if_others_can_write(folder: Path) -> None:
    info = folder.stat()
    if info.st_mode & 0o022:
        raise HomeError(
            f"dockyard's home {folder} can be written by other users (mode {info.st_mode & 0o777:o}), who could "
            f"have replaced its keys. Check its contents, then `chmod 700 {folder}`, or use another --home."
        )
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise HomeError(
            f"dockyard's home {folder} belongs to another user (uid {info.st_uid}). Use a home of your own "
            "(--home DIR or DOCKYARD_HOME)."
        )


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "dockyard.db"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.tls / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.tls / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.tls / "server-key.pem"

    @property
    def ca_bundle(self) -> Path:
        """dockyard's CA followed by the system CAs, for REQUESTS_CA_BUNDLE and SSL_CERT_FILE."""
        return self.tls / "ca-bundle.pem"

    @property
    def code_dir(self) -> Path:
        """Code bundles of code-based versions (dockyard.store.code_bundles)."""
        return self.root / "code"

    @property
    def signing_key(self) -> Path:
        return self.root / "token-signing-key.pem"

    @property
    def identity_secret_file(self) -> Path:
        return self.root / "identity-header"

    def instance_id(self) -> str:
        """This dockyard's identity on the container engine, kept so a restart adopts its containers."""
        path = self.root / "instance-id"
        if not path.exists():
            write_private(path, secrets.token_hex(8).encode())
        return path.read_text().strip()

    @property
    def server_record(self) -> Path:
        return self.root / "server.json"

    def ensure(self) -> Home:
        """Create the folder layout (private to its owner), or explain why it cannot be used."""
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            _refuse_if_others_can_write(self.root)
            self.root.chmod(0o700)
            self.tls.mkdir(exist_ok=True, mode=0o700)
            self.tls.chmod(0o700)
            probe = self.root / f".write-probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
            self._make_files_private()
        except OSError as exc:
            raise HomeError(
                f"dockyard's home {self.root} is not writable ({exc.strerror or exc}). "
                "Pass --home DIR or set DOCKYARD_HOME to a folder you can write to."
            ) from None
        return self

    def _make_files_private(self) -> None:
        """0600 for everything but the public certificates; the database exists 0600 before SQLite opens it.

        SQLite gives its -wal and -shm files the database file's mode, so creating the (empty, valid)
        database file 0600 here keeps all three private from the first write.
        """
        if not self.database.exists():
            os.close(os.open(self.database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        public = {self.ca_cert, self.server_cert, self.ca_bundle}
        for folder in (self.root, self.tls):
            for path in folder.iterdir():
                if path.is_file() and not path.is_symlink() and path not in public and path.stat().st_mode & 0o077:
                    path.chmod(0o600)

    def identity_secret(self) -> str:
        """The X-IDENTITY-HEADER secret, made on first use and kept for every later run."""
        path = self.identity_secret_file
        if not path.exists():
            write_private(path, secrets.token_urlsafe(32).encode())
        return path.read_text().strip()

    def read_server_record(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.server_record.read_text())
        except (OSError, ValueError):
            return None

    def write_server_record(self, record: dict[str, Any]) -> None:
        write_private(self.server_record, json.dumps(record, indent=2).encode())

    def clear_server_record(self, pid: int) -> None:
        record = self.read_server_record()
        if record and record.get("pid") == pid:
            self.server_record.unlink(missing_ok=True)
