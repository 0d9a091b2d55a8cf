"""A real OCI registry for tests: Debian's `docker-registry` (CNCF Distribution 2.8) on 127.0.0.1.

    with Registry() as plain:                      # anonymous push and pull
        push_image(local_ref, f"{plain.host}/echo-agent:1")
    with Registry(auth=True) as private:           # htpasswd (bcrypt) basic auth, random password
        push_image(local_ref, f"{private.host}/echo-agent:1", creds=(private.username, private.password))

`Registry(username="u", password="p")` turns auth on with those credentials.

Each registry gets a free port, its own storage directory and (with auth) its own random password, and is
stopped (and its storage removed) on exit. Plain http: podman treats 127.0.0.1/localhost registries as
insecure once ci/setup-podman.sh has written its registries.conf drop-in; `push_image` also passes
--tls-verify=false.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

REGISTRY_BINARY = os.environ.get("DOCKYARD_REGISTRY_BINARY", "/usr/bin/docker-registry")


class RegistryUnavailable(RuntimeError):
    """docker-registry is not installed or did not start."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def htpasswd_line(username: str, password: str) -> str:
    """One htpasswd line with a bcrypt hash, the only hash Distribution's htpasswd auth accepts."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6)).decode()
    return f"{username}:{hashed}\n"


def registry_available() -> bool:
    return Path(REGISTRY_BINARY).is_file() and os.access(REGISTRY_BINARY, os.X_OK)


class Registry:
    """`docker-registry serve CONFIG` on 127.0.0.1:<free port>, as a context manager."""

    def __init__(self, *, auth: bool | None = None, username: str | None = None, password: str | None = None,
                 start_timeout: float = 20.0) -> None:
        # Auth is on when asked for, or when a username or password is given.
        self.auth = bool(auth) if auth is not None else (username is not None or password is not None)
        self.username: str | None = (username or "dockyard") if self.auth else None
        self.password: str | None = (password or secrets.token_urlsafe(18)) if self.auth else None
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    # --- what tests use
    @property
    def host(self) -> str:
        """"127.0.0.1:PORT", the registry part of an image reference."""
        if self.port is None:
            raise RuntimeError("registry not started")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def creds(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.auth else None  # type: ignore[return-value]

    def logs(self) -> str:
        if self._dir is None or not (self._dir / "registry.log").exists():
            return ""
        return (self._dir / "registry.log").read_text(errors="replace")

    def catalog(self) -> list[str]:
        """Repositories stored, read through the registry's own API (with credentials when it has auth)."""
        import base64
        import json

        request = urllib.request.Request(f"{self.url}/v2/_catalog")
        if self.auth:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer).get("repositories") or []

    # --- lifecycle
    def start(self) -> Registry:
        if not registry_available():
            raise RegistryUnavailable(
                f"{REGISTRY_BINARY} not found: apt-get install docker-registry (Debian's CNCF Distribution)")
        self._dir = Path(tempfile.mkdtemp(prefix="dockyard-registry-"))
        (self._dir / "storage").mkdir()
        last_error = ""
        for _attempt in range(3):  # the free port can be taken between probing and binding it
            self.port = _free_port()
            config = self._write_config()
            log = open(self._dir / "registry.log", "ab")
            self.process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            log.close()
            try:
                self._wait_until_serving()
                return self
            except RegistryUnavailable as exc:
                last_error = str(exc)
                self._stop_process()
        self.stop()
        raise RegistryUnavailable(last_error)

    def _write_config(self) -> Path:
        assert self._dir is not None
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self._dir / 'storage'}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.auth:
            htpasswd = self._dir / "htpasswd"
            htpasswd.write_text(htpasswd_line(self.username or "", self.password or ""))
            lines += ["auth:", "  htpasswd:", "    realm: dockyard-test-registry", f"    path: {htpasswd}"]
        config = self._dir / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        return config

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RegistryUnavailable(
                    f"docker-registry exited with {self.process.returncode}:\n{self.logs()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # auth enabled and serving
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RegistryUnavailable(f"docker-registry did not answer /v2/ within {self.start_timeout}s:\n"
                                  f"{self.logs()[-2000:]}")

    def _stop_process(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def stop(self) -> None:
        self._stop_process()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Registry(host={self.host if self.port else None!r}, auth={self.auth})"
