"""Uploaded files (`/openai/v1/files`): their bytes on disk, what is known about them in the database.

A file is written under `<root>/incoming` while it arrives, counted against the size limit chunk by chunk
(so a huge upload is refused as soon as it passes the limit, never held in memory), then renamed to
`<root>/<id>` and recorded. The record goes in last and comes out first, so a file the database knows
always has its bytes; bytes left by a crash between the two are swept by `clear_incoming` and
`collect_orphans` at start-up.

Files belong to the caller that uploaded them (dockyard.identity.ownership): another caller, the operator
included, gets FileNotFound as if the file did not exist, as it does for response content.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Engine, delete, select

from dockyard.domain.errors import BadRequest, NotFound, PayloadTooLarge
from dockyard.identity.ownership import Owner
from dockyard.store.database import Repository, rowcount
from dockyard.store.tables import FileRow

# OpenAI's purposes; dockyard keeps every one, and uses `assistants` and `user_data` files for tools.
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
# OpenAI's limit for one file.
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
# OpenAI lists up to 10,000 files a page (default 10,000).
MAX_LIST_LIMIT = 10_000
_MAX_FILENAME = 512


@dataclass(frozen=True)
class StoredFile:
    id: str
    project: str
    owner: Owner
    filename: str
    purpose: str
    bytes: int
    created_at: int

    def to_wire(self) -> dict[str, Any]:
        """OpenAI's file object, as `client.files.*` parses it."""
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "expires_at": None, "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "status_details": None}


@dataclass(frozen=True)
class FilePage:
    items: list[StoredFile]
    has_more: bool


def check_purpose(purpose: str | None) -> str:
    if not purpose or purpose not in PURPOSES:
        raise BadRequest(f"purpose {purpose!r} is not valid: use one of {', '.join(PURPOSES)}.",
                         code="InvalidPurpose", param="purpose")
    return purpose


def clean_filename(filename: str | None) -> str:
    """The name a file is listed under: its last path component, without control characters."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if not name:
        raise BadRequest("The file part needs a filename (multipart Content-Disposition filename=…).",
                         code="InvalidFilename", param="file")
    return name[:_MAX_FILENAME]


def file_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The file is larger than this dockyard's limit of {limit} bytes "
                           "(dockyard up --max-file-bytes raises it).", code="FileTooLarge", param="file")


def file_not_found(file_id: str) -> NotFound:
    return NotFound(f"No file with id {file_id!r} exists in this project for this caller. "
                    "`client.files.list()` shows the files you uploaded.", code="FileNotFound", param="file_id")


class Incoming:
    """A file arriving under `<root>/incoming`, counted against its limit as it is written."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        self._out: BinaryIO | None = path.open("xb")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.discard()
            raise file_too_large(self.limit)
        if self._out is None:
            raise ValueError("the incoming file was closed")
        self._out.write(data)

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


class FileStore(Repository):
    def __init__(self, database: Engine, root: Path) -> None:
        super().__init__(database)
        self.root = root
        self._incoming = root / "incoming"

    def _ensure(self) -> None:
        self._incoming.mkdir(parents=True, exist_ok=True, mode=0o700)

    def receive(self, limit: int) -> Incoming:
        """A file about to arrive: write its bytes to it, then `commit` it (or `discard` it)."""
        self._ensure()
        return Incoming(self._incoming / secrets.token_hex(12), limit)

    def commit(self, incoming: Incoming, project: str, owner: Owner, filename: str, purpose: str) -> StoredFile:
        """Record a received file; the incoming bytes are moved in (or deleted when the record fails)."""
        try:
            incoming.close()
            return self._record(project, owner, clean_filename(filename), check_purpose(purpose), incoming.path,
                                incoming.size)
        finally:
            incoming.discard()

    async def save(self, project: str, owner: Owner, filename: str, purpose: str, chunks: AsyncIterator[bytes],
                   limit: int) -> StoredFile:
        """Receive a file as it streams in; FileTooLarge (413) as soon as it passes `limit` bytes."""
        check_purpose(purpose)
        filename = clean_filename(filename)
        incoming = self.receive(limit)
        try:
            async for chunk in chunks:
                incoming.write(chunk)
        except BaseException:
            incoming.discard()
            raise
        return self.commit(incoming, project, owner, filename, purpose)

    def save_path(self, project: str, owner: Owner, filename: str, purpose: str, source: Path) -> StoredFile:
        """Take a finished file in (a tool's output): moved when it can be, copied otherwise."""
        check_purpose(purpose)
        filename = clean_filename(filename)
        self._ensure()
        tmp = self._incoming / secrets.token_hex(12)
        try:
            try:
                os.replace(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            return self._record(project, owner, filename, purpose, tmp, tmp.stat().st_size)
        finally:
            tmp.unlink(missing_ok=True)

    def _record(self, project: str, owner: Owner, filename: str, purpose: str, tmp: Path, size: int) -> StoredFile:
        stored = StoredFile(id=f"file-{secrets.token_hex(12)}", project=project, owner=owner, filename=filename,
                            purpose=purpose, bytes=size, created_at=int(time.time()))
        tmp.chmod(0o600)
        os.replace(tmp, self.path(stored))
        try:
            with self._write() as session:
                session.add(FileRow(id=stored.id, project=project, owner_subject=owner.subject, owner_user=owner.user,
                                    filename=filename, purpose=purpose, bytes=size, created_at=stored.created_at))
        except BaseException:
            self.path(stored).unlink(missing_ok=True)
            raise
        return stored

    def get(self, project: str, owner: Owner, file_id: str) -> StoredFile:
        with self._read() as session:
            row = session.scalar(select(FileRow).where(FileRow.id == file_id, FileRow.project == project))
        if row is None or _owner(row) != owner:
            raise file_not_found(file_id)
        return _stored(row)

    def names(self, file_ids: Iterable[str]) -> dict[str, str]:
        """Filenames by id, for citing files a search found (the caller's access was checked on the store)."""
        wanted = set(file_ids)
        if not wanted:
            return {}
        with self._read() as session:
            rows = session.execute(select(FileRow.id, FileRow.filename).where(FileRow.id.in_(wanted))).all()
        return {file_id: filename for file_id, filename in rows}

    def path(self, stored: StoredFile) -> Path:
        return self.root / stored.id

    def list(self, project: str, owner: Owner, purpose: str | None = None, limit: int = MAX_LIST_LIMIT,
             after: str | None = None, order: str = "desc") -> FilePage:
        """The owner's files, newest first by default; `after` is the id of the last file of the previous page."""
        statement = select(FileRow).where(FileRow.project == project, FileRow.owner_subject == owner.subject,
                                          FileRow.owner_user.is_(None) if owner.user is None
                                          else FileRow.owner_user == owner.user)
        if purpose is not None:
            statement = statement.where(FileRow.purpose == purpose)
        with self._read() as session:
            if after is not None:
                cursor = session.scalar(select(FileRow.seq).where(FileRow.id == after, FileRow.project == project))
                if cursor is None:
                    raise file_not_found(after)
                statement = statement.where(FileRow.seq < cursor if order == "desc" else FileRow.seq > cursor)
            ordered = FileRow.seq.desc() if order == "desc" else FileRow.seq.asc()
            rows = session.scalars(statement.order_by(ordered).limit(limit + 1)).all()
        return FilePage([_stored(r) for r in rows[:limit]], has_more=len(rows) > limit)

    def delete(self, project: str, owner: Owner, file_id: str) -> None:
        stored = self.get(project, owner, file_id)
        with self._write() as session:
            removed = rowcount(session.execute(delete(FileRow).where(FileRow.id == stored.id)))
        if not removed:
            raise file_not_found(file_id)
        self.path(stored).unlink(missing_ok=True)

    def clear_incoming(self) -> None:
        """Partial uploads a crash cut off; called at start-up."""
        if self._incoming.is_dir():
            shutil.rmtree(self._incoming, ignore_errors=True)

    def collect_orphans(self) -> int:
        """Bytes whose record never made it (a crash between rename and insert); how many were removed."""
        if not self.root.is_dir():
            return 0
        with self._read() as session:
            known = set(session.scalars(select(FileRow.id)))
        removed = 0
        for path in self.root.glob("file-*"):
            if path.name not in known:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _owner(row: FileRow) -> Owner:
    return Owner(row.owner_subject, row.owner_user)


def _stored(row: FileRow) -> StoredFile:
    return StoredFile(id=row.id, project=row.project, owner=_owner(row), filename=row.filename,
                      purpose=row.purpose, bytes=row.bytes, created_at=row.created_at)
