"""Code interpreter containers (OpenAI's word): a /mnt/data folder that lives between runs, and its files.

Each container is a folder, `<home>/containers/<id>/`, holding `container.json` (whose it is, when it was
last used, its files' ids) and `data/` (what the code sees as /mnt/data). A container expires after 20
minutes without a run, as OpenAI's do; an expired one is gone for everyone and its folder is removed the
next time containers are created or listed.

Files are the caller's through the container: only the caller that made it (exactly: the subject and
the delegated end user, as for response content) reaches it; anyone else gets ContainerNotFound.

The code writes in `data/`, so nothing in there is trusted: files are found without following links,
registered only when they are plain files with one link, and opened with O_NOFOLLOW below a folder
resolved and checked to be inside `data/`. A symlink planted by the code to something of dockyard's is
never read.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dockyard.domain.errors import NotFound
from dockyard.identity.ownership import Caller, Owner, may_follow

IDLE_SECONDS = 20 * 60
_ID = re.compile(r"cntr_[a-f0-9]{32}")
_FILE_ID = re.compile(r"cfile_[a-f0-9]{32}")
_CHUNK = 64 * 1024
# At most this many files are registered per run (a loop writing a million files does not flood the record).
MAX_NEW_FILES = 100


@dataclass
class ContainerFile:
    id: str
    # Relative to data/ (what the code sees under /mnt/data).
    path: str
    bytes: int
    created_at: int
    # "user" (copied in from the Files API) or "assistant" (written by the code).
    source: str

    def to_wire(self, container_id: str) -> dict[str, Any]:
        """OpenAI's container file object (`client.containers.files.*`)."""
        return {"id": self.id, "object": "container.file", "created_at": self.created_at, "bytes": self.bytes,
                "container_id": container_id, "path": f"/mnt/data/{self.path}", "source": self.source}

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class CodeContainer:
    id: str
    project: str
    owner_subject: str
    owner_user: str | None
    name: str
    created_at: int
    last_active_at: float
    memory_limit: str | None
    files: dict[str, ContainerFile] = field(default_factory=dict)

    @property
    def owner(self) -> Owner:
        return Owner(self.owner_subject, self.owner_user)

    def expired(self, now: float, idle_seconds: float) -> bool:
        return now - self.last_active_at > idle_seconds

    def to_wire(self, idle_seconds: float = IDLE_SECONDS) -> dict[str, Any]:
        """OpenAI's container object."""
        return {"id": self.id, "object": "container", "created_at": self.created_at, "name": self.name,
                "status": "expired" if self.expired(time.time(), idle_seconds) else "running",
                "last_active_at": int(self.last_active_at), "memory_limit": self.memory_limit,
                "expires_after": {"anchor": "last_active_at", "minutes": int(idle_seconds // 60)}}


def container_not_found(container_id: str) -> NotFound:
    return NotFound(f"Container {container_id!r} does not exist, has expired (20 minutes without a run), or is "
                    "not yours. Use a container id a code_interpreter_call of yours returned, or "
                    '{"type": "auto"} for a new one.', code="ContainerNotFound")


def file_not_found(container_id: str, file_id: str) -> NotFound:
    return NotFound(f"Container {container_id!r} has no file {file_id!r}. List its files with "
                    f"GET …/containers/{container_id}/files.", code="ContainerFileNotFound")


class ContainerStore:
    def __init__(self, root: Path, idle_seconds: float = IDLE_SECONDS) -> None:
        self.root = root
        self.idle_seconds = idle_seconds
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- containers ---------------------------------------------------------------------------------

    def create(self, project: str, owner: Owner, name: str | None = None,
               memory_limit: str | None = None) -> CodeContainer:
        self.collect_expired()
        now = time.time()
        container = CodeContainer(id=f"cntr_{secrets.token_hex(16)}", project=project, owner_subject=owner.subject,
                                  owner_user=owner.user, name=name or "code_interpreter", created_at=int(now),
                                  last_active_at=now, memory_limit=memory_limit)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.root / container.id).mkdir(mode=0o700)
        self.data(container).mkdir(mode=0o755)
        self._save(container)
        return container

    def get(self, project: str, caller: Caller, container_id: str) -> CodeContainer:
        """The caller's live container; ContainerNotFound for one that is absent, expired or another's."""
        container = self._load(container_id)
        if (container is None or container.project != project or not may_follow(caller, container.owner)
                or container.expired(time.time(), self.idle_seconds)):
            raise container_not_found(container_id)
        return container

    def touch(self, container: CodeContainer) -> None:
        container.last_active_at = time.time()
        self._save(container)

    def data(self, container: CodeContainer) -> Path:
        return self.root / container.id / "data"

    def lock(self, container: CodeContainer) -> threading.Lock:
        """One run at a time per container: a run's new files are told apart by comparing before and after."""
        with self._guard:
            return self._locks.setdefault(container.id, threading.Lock())

    def collect_expired(self) -> int:
        if not self.root.is_dir():
            return 0
        removed = 0
        now = time.time()
        for folder in self.root.iterdir():
            container = self._load(folder.name)
            if container is not None and container.expired(now, self.idle_seconds):
                shutil.rmtree(folder, ignore_errors=True)
                with self._guard:
                    self._locks.pop(folder.name, None)
                removed += 1
        return removed

    # -- files --------------------------------------------------------------------------------------

    def add_file(self, container: CodeContainer, filename: str, source: Path) -> ContainerFile:
        """Copy a file in (from the Files API) under its name; the code reads it at /mnt/data/<filename>."""
        name = _safe_name(filename)
        target = self.data(container) / name
        shutil.copyfile(source, target, follow_symlinks=False)
        entry = ContainerFile(id=f"cfile_{secrets.token_hex(16)}", path=name, bytes=target.stat().st_size,
                              created_at=int(time.time()), source="user")
        container.files = {k: v for k, v in container.files.items() if v.path != name}
        container.files[entry.id] = entry
        self._save(container)
        return entry

    def snapshot(self, container: CodeContainer) -> dict[str, tuple[int, int]]:
        """Every plain file under data/ (links not followed): relative path -> (size, mtime_ns)."""
        found: dict[str, tuple[int, int]] = {}
        data = self.data(container)
        for folder, directories, files in os.walk(data, followlinks=False):
            directories[:] = [d for d in directories if not os.path.islink(os.path.join(folder, d))]
            for name in files:
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
                    found[os.path.relpath(path, data)] = (info.st_size, info.st_mtime_ns)
        return found

    def register_changes(self, container: CodeContainer, before: dict[str, tuple[int, int]]) -> list[ContainerFile]:
        """Files the last run made or changed, registered as the assistant's; the record is saved with them."""
        after = self.snapshot(container)
        by_path = {f.path: f for f in container.files.values()}
        changed: list[ContainerFile] = []
        for path, (size, mtime) in sorted(after.items()):
            if before.get(path) == (size, mtime):
                continue
            if len(changed) >= MAX_NEW_FILES:
                break
            known = by_path.get(path)
            if known is not None:
                known.bytes = size
                changed.append(known)
                continue
            entry = ContainerFile(id=f"cfile_{secrets.token_hex(16)}", path=path, bytes=size,
                                  created_at=int(time.time()), source="assistant")
            container.files[entry.id] = entry
            changed.append(entry)
        # Files the code deleted are gone from the listing too.
        container.files = {k: v for k, v in container.files.items() if v.path in after}
        container.last_active_at = time.time()
        self._save(container)
        return changed

    def file(self, container: CodeContainer, file_id: str) -> ContainerFile:
        entry = container.files.get(file_id) if _FILE_ID.fullmatch(file_id) else None
        if entry is None:
            raise file_not_found(container.id, file_id)
        return entry

    def open_file(self, container: CodeContainer, entry: ContainerFile) -> tuple[int, Iterator[bytes]]:
        """The file's size and its bytes, read without following any link the code may have planted."""
        data = self.data(container).resolve()
        path = data / entry.path
        try:
            parent = path.parent.resolve(strict=True)
            if parent != data and data not in parent.parents:
                raise OSError("outside the container's folder")
            fd = os.open(parent / path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            raise file_not_found(container.id, entry.id) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise file_not_found(container.id, entry.id)

        def chunks() -> Iterator[bytes]:
            with os.fdopen(fd, "rb") as source:
                while chunk := source.read(_CHUNK):
                    yield chunk

        return info.st_size, chunks()

    # -- the record ---------------------------------------------------------------------------------

    def _load(self, container_id: str) -> CodeContainer | None:
        if not _ID.fullmatch(container_id):
            return None
        try:
            raw = json.loads((self.root / container_id / "container.json").read_text())
        except (OSError, ValueError):
            return None
        files = {k: ContainerFile(**v) for k, v in (raw.pop("files", None) or {}).items()}
        return CodeContainer(**raw, files=files)

    def _save(self, container: CodeContainer) -> None:
        folder = self.root / container.id
        tmp = folder / f".container.{secrets.token_hex(4)}.tmp"
        tmp.write_text(json.dumps(asdict(container)))
        os.replace(tmp, folder / "container.json")


def _safe_name(filename: str) -> str:
    """A file name to put under /mnt/data: its last component, with nothing that could climb out."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip() or "file"
    if name in (".", ".."):
        name = "file"
    return name[:255]
