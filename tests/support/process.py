"""A real `dockyard up` process for tests: started on a free port, stopped or killed on demand."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dockyard_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dockyard", *args]


def read_env(home: Path, port: int) -> dict[str, str]:
    """What `dockyard env` prints, parsed the way a POSIX shell would."""
    out = subprocess.run(
        dockyard_command("env", "--home", str(home), "--port", str(port)),
        check=True, capture_output=True, text=True,
    ).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", line
        name, _, value = words[1].partition("=")
        env[name] = value
    return env


@dataclass
class DockyardProcess:
    home: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    # Off unless a test needs it: the local model is a llama.cpp server per dockyard (see models/local.py).
    local_model: bool = False
    # `--runtime`: None leaves dockyard's default (auto). "process" also hides every engine from it
    # (DOCKER_HOST to a socket nobody serves), as on a machine without podman or docker.
    runtime: str | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/api/projects/default"

    def start(self, timeout: float = 60.0) -> DockyardProcess:
        self.log_path = self.home.parent / f"{self.home.name}-dockyard-{self.port}.log"
        log = open(self.log_path, "ab")
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.runtime == "process":
            environment["DOCKER_HOST"] = f"unix://{self.home.parent / 'no-engine-here.sock'}"
        self.process = subprocess.Popen(
            dockyard_command("up", "--home", str(self.home), "--port", str(self.port), *self.extra_args,
                             *(() if self.local_model else ("--no-local-model",)),
                             *(("--runtime", self.runtime) if self.runtime else ())),
            stdout=log, stderr=subprocess.STDOUT, env=environment,
        )
        self._wait_until_serving(timeout)
        return self

    def _wait_until_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"dockyard exited with {self.process.returncode}:\n{self.logs()}")
            try:
                context = ssl.create_default_context(cafile=str(self.home / "tls" / "ca.pem"))
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
                    with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                        return
            except (OSError, ssl.SSLError):
                time.sleep(0.1)
        if self.process is not None:
            self.process.kill()  # a test that gives up on it must not leave it serving for ever
            self.process.wait(timeout=30)
        raise RuntimeError(f"dockyard did not start within {timeout}s:\n{self.logs()}")

    def env(self) -> dict[str, str]:
        return read_env(self.home, self.port)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
