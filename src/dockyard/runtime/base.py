"""The one interface every runtime backend implements, and the data that crosses it.

The reconciler speaks only this interface: it says what should run (`Workload`), asks what does run
(`Observed`), and reads logs. A backend keeps no state of its own beyond what its engine keeps, so a
restarted dockyard finds everything it started by asking `list()`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO, Protocol

from dockyard.domain.session_files import SessionFileEntry, SessionPath


@dataclass(frozen=True)
class RegistryCredentials:
    server: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class WorkloadKey:
    """Which workload: a version's sandbox (session "") or, later, one per session."""

    version_uid: str
    session: str = ""


@dataclass(frozen=True)
class CodeWorkload:
    """A code-based version's code: what a runtime mounts (or copies) and runs instead of an image's own command.

    `tree` is the zip already checked and unpacked by dockyard (never written to after that); the runtime
    gives each sandbox a read-only view of it. `runtime` is the definition's `python_3_12` style name.
    """

    content_hash: str
    tree: Path
    runtime: str
    entry_point: tuple[str, ...]
    # "bundled": run the tree as it is, its packages/ folder on the import path;
    # "remote_build": dockyard installs requirements.txt (or pyproject.toml) first, cached by what it installs.
    dependency_resolution: str = "bundled"


@dataclass(frozen=True)
class Workload:
    key: WorkloadKey
    project: str
    agent_name: str
    version: str
    image: str
    cpu: Decimal
    memory_bytes: int
    # Holds resolved ${{connections.…}} secrets: never in a repr, so never in a log or a traceback.
    environment: dict[str, str] = field(repr=False)
    credentials: RegistryCredentials | None = None
    # `latest` (or no tag) is pulled on every activation; a digest never; other tags when missing.
    pull_always: bool = False
    port: int = 8088
    # Set for code-based versions: `image` is then the runtime base image a container runtime runs the
    # code on (a process runtime runs the code directly and ignores `image`).
    code: CodeWorkload | None = None


@dataclass(frozen=True)
class Observed:
    key: WorkloadKey
    container_id: str
    agent_name: str
    version: str
    running: bool
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    # Where dockyard reaches the agent's HTTP port, e.g. "http://127.0.0.1:49153".
    endpoint: str | None = None


class RuntimeFailure(Exception):
    """A workload cannot run; `code` is the Foundry-style error code the version fails with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LogStream(Protocol):
    """Log lines as they are written. `close()` may be called from another thread to end iteration."""

    def __iter__(self) -> Iterator[str]: ...

    def close(self) -> None: ...


@dataclass
class SessionFileStream:
    """A session file being read: its size, then its content as it comes; `close()` ends it early."""

    size: int
    chunks: Iterator[bytes]

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


class Runtime(Protocol):
    # Whether this backend runs images at all. One that does may fail a start only because its engine is
    # away for a moment (restarted, upgraded): such failures are retried. One that does not (processes)
    # refuses an image-based version the same way every time.
    runs_images: bool

    def ensure_running(self, workload: Workload) -> Observed:
        """Make the workload run (pulling, creating or starting as needed); idempotent."""

    def stop(self, key: WorkloadKey) -> None:
        """Stop and remove the workload's containers, keeping its state; a no-op when nothing runs."""

    def discard(self, key: WorkloadKey) -> None:
        """Stop the workload and delete its state (a session's volume) as well."""

    def observe(self, key: WorkloadKey) -> Observed | None: ...

    def list(self) -> list[Observed]:
        """Every workload this dockyard instance owns, running or not."""

    def logs(self, key: WorkloadKey, tail: int = 100) -> builtins.list[str]: ...

    def follow_logs(self, key: WorkloadKey, tail: int = 100) -> LogStream | None:
        """Log lines as they come, until closed; None when the workload has no container."""

    # A session's files: paths are relative to the session's home (its volume), already validated.
    # The workload says which session, and what to run to reach its volume when no container does.

    def write_session_file(self, workload: Workload, path: SessionPath, content: BinaryIO, size: int) -> None:
        """Write `size` bytes read from `content` to `path`, making missing directories."""

    def read_session_file(self, workload: Workload, path: SessionPath) -> SessionFileStream:
        """Open a session file for reading; errors (no such file, a directory) are raised here, not later."""

    def list_session_files(self, workload: Workload, path: SessionPath) -> builtins.list[SessionFileEntry]:
        """The immediate children of a directory in the session's home."""

    def delete_session_file(self, workload: Workload, path: SessionPath, recursive: bool) -> None:
        """Delete a file, an empty directory, or (with `recursive`) a directory and what it holds."""
