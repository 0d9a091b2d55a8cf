"""Vector stores, their files, file batches and chunks, as the database keeps them (`/openai/v1/vector_stores`).

What is here is bookkeeping in OpenAI's shapes; taking a file in (extract, chunk, embed, index) and
searching are `dockyard.tools.vector_search`'s, which writes its results back through `add_chunks`,
`finish_file` and `fail_file`. A vector store belongs to its caller as a file does
(dockyard.identity.ownership): another caller gets VectorStoreNotFound.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.domain.errors import BadRequest, Conflict, NotFound
from dockyard.identity.ownership import Owner
from dockyard.store.database import Repository
from dockyard.store.tables import VectorStoreChunkRow, VectorStoreFileBatchRow, VectorStoreFileRow, VectorStoreRow
from dockyard.store.vector_index import VectorIndex

IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "in_progress", "completed", "failed", "cancelled"
FILE_STATUSES = (IN_PROGRESS, COMPLETED, FAILED, CANCELLED)
MAX_METADATA_PAIRS = 16
MAX_LIST_LIMIT = 100


@dataclass(frozen=True)
class FileCounts:
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.in_progress + self.completed + self.failed + self.cancelled

    def to_wire(self) -> dict[str, int]:
        return {"in_progress": self.in_progress, "completed": self.completed, "failed": self.failed,
                "cancelled": self.cancelled, "total": self.total}


@dataclass(frozen=True)
class VectorStore:
    id: str
    project: str
    owner: Owner
    name: str | None
    created_at: int
    last_active_at: int
    expires_after: dict[str, Any] | None
    metadata: dict[str, Any]
    embedding_deployment: str
    file_counts: FileCounts = FileCounts()
    usage_bytes: int = 0

    @property
    def expires_at(self) -> int | None:
        if not self.expires_after:
            return None
        return int(self.last_active_at + int(self.expires_after.get("days", 0)) * 86400)

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= time.time()

    def to_wire(self) -> dict[str, Any]:
        status = "expired" if self.expired else IN_PROGRESS if self.file_counts.in_progress else COMPLETED
        return {"id": self.id, "object": "vector_store", "created_at": self.created_at, "name": self.name,
                "usage_bytes": self.usage_bytes, "file_counts": self.file_counts.to_wire(), "status": status,
                "expires_after": self.expires_after, "expires_at": self.expires_at,
                "last_active_at": self.last_active_at, "metadata": self.metadata}


@dataclass(frozen=True)
class VectorStoreFile:
    id: str
    vector_store_id: str
    status: str
    last_error: dict[str, Any] | None
    usage_bytes: int
    created_at: int
    chunking_strategy: dict[str, Any]
    attributes: dict[str, Any] = field(default_factory=dict)
    batch_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "object": "vector_store.file", "usage_bytes": self.usage_bytes,
                "created_at": self.created_at, "vector_store_id": self.vector_store_id, "status": self.status,
                "last_error": self.last_error, "chunking_strategy": self.chunking_strategy,
                "attributes": self.attributes}


@dataclass(frozen=True)
class FileBatch:
    id: str
    vector_store_id: str
    created_at: int
    cancelled: bool
    file_counts: FileCounts

    def to_wire(self) -> dict[str, Any]:
        status = (CANCELLED if self.cancelled and not self.file_counts.in_progress
                  else IN_PROGRESS if self.file_counts.in_progress
                  else FAILED if self.file_counts.failed and not self.file_counts.completed else COMPLETED)
        return {"id": self.id, "object": "vector_store.files_batch", "created_at": self.created_at,
                "vector_store_id": self.vector_store_id, "status": status,
                "file_counts": self.file_counts.to_wire()}


@dataclass(frozen=True)
class Chunk:
    id: int
    file_id: str
    position: int
    text: str


@dataclass(frozen=True)
class Listing:
    items: list[Any]
    has_more: bool


def vector_store_not_found(vector_store_id: str) -> NotFound:
    return NotFound(f"No vector store with id {vector_store_id!r} exists in this project for this caller. "
                    "`client.vector_stores.list()` shows yours.", code="VectorStoreNotFound",
                    param="vector_store_id")


def vector_store_file_not_found(vector_store_id: str, file_id: str) -> NotFound:
    return NotFound(f"File {file_id!r} is not in vector store {vector_store_id!r}. "
                    f"`client.vector_stores.files.list({vector_store_id!r})` shows its files.",
                    code="VectorStoreFileNotFound", param="file_id")


def check_metadata(value: Any) -> dict[str, Any]:
    """OpenAI's metadata: up to 16 string pairs, keys up to 64 characters, values up to 512."""
    if value is None:
        return {}
    if (not isinstance(value, Mapping) or len(value) > MAX_METADATA_PAIRS
            or not all(isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                       for k, v in value.items())):
        raise BadRequest("metadata is up to 16 pairs of strings (keys up to 64 characters, values up to 512).",
                         code="InvalidMetadata", param="metadata")
    return dict(value)


def check_attributes(value: Any) -> dict[str, Any]:
    """OpenAI's file attributes: up to 16 keys (up to 64 characters) with string, number or boolean values."""
    if value is None:
        return {}
    if (not isinstance(value, Mapping) or len(value) > MAX_METADATA_PAIRS
            or not all(isinstance(k, str) and len(k) <= 64
                       and (isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 512))
                       for k, v in value.items())):
        raise BadRequest("attributes are up to 16 keys (up to 64 characters) with string (up to 512 characters), "
                         "number or boolean values.", code="InvalidAttributes", param="attributes")
    return dict(value)


def check_expires_after(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if (not isinstance(value, Mapping) or value.get("anchor") != "last_active_at"
            or type(value.get("days")) is not int or not 1 <= value["days"] <= 365):
        raise BadRequest("expires_after must be {'anchor': 'last_active_at', 'days': 1 to 365}.",
                         code="InvalidExpiresAfter", param="expires_after")
    return {"anchor": "last_active_at", "days": value["days"]}


class VectorStoreRepository(Repository):
    def __init__(self, database: Engine, root: Path) -> None:
        super().__init__(database)
        self.root = root
        self._indexes: dict[str, VectorIndex] = {}

    def index(self, vector_store_id: str) -> VectorIndex:
        index = self._indexes.get(vector_store_id)
        if index is None:
            index = self._indexes.setdefault(vector_store_id, VectorIndex(self.root / vector_store_id))
        return index

    # -- vector stores ------------------------------------------------------------------------------

    def create(self, project: str, owner: Owner, *, name: str | None, expires_after: dict[str, Any] | None,
               metadata: dict[str, Any], embedding_deployment: str) -> VectorStore:
        now = int(time.time())
        row = VectorStoreRow(id=f"vs_{secrets.token_hex(12)}", project=project, owner_subject=owner.subject,
                             owner_user=owner.user, name=name, created_at=now, last_active_at=now,
                             expires_after=expires_after, metadata_=metadata,
                             embedding_deployment=embedding_deployment)
        with self._write() as session:
            session.add(row)
        return self.get(project, owner, row.id)

    def get(self, project: str, owner: Owner, vector_store_id: str) -> VectorStore:
        with self._read() as session:
            row = self._owned(session, project, owner, vector_store_id)
            return self._vector_store(session, row)

    def list_stores(self, project: str, owner: Owner, *, limit: int, order: str, after: str | None,
             before: str | None) -> Listing:
        with self._read() as session:
            statement = self._owned_statement(project, owner)
            statement = _paged(session, statement, VectorStoreRow, VectorStoreRow.id, order, after, before)
            rows = session.scalars(statement.limit(limit + 1)).all()
            return Listing([self._vector_store(session, r) for r in rows[:limit]], len(rows) > limit)

    def modify(self, project: str, owner: Owner, vector_store_id: str, changes: Mapping[str, Any]) -> VectorStore:
        with self._write() as session:
            row = self._owned(session, project, owner, vector_store_id)
            if "name" in changes:
                row.name = changes["name"]
            if "expires_after" in changes:
                row.expires_after = changes["expires_after"]
            if "metadata" in changes:
                row.metadata_ = changes["metadata"]
            row.last_active_at = int(time.time())
        return self.get(project, owner, vector_store_id)

    def delete(self, project: str, owner: Owner, vector_store_id: str) -> None:
        with self._write() as session:
            row = self._owned(session, project, owner, vector_store_id)
            _delete_rows(session, row)
        self._drop_index(vector_store_id)

    def delete_expired(self, *, grace_seconds: float, now: float | None = None) -> list[str]:
        """Delete the stores expired (`expires_after` past `last_active_at`) for longer than `grace_seconds`,
        with their files, batches, chunks and index; their ids. The periodic sweep calls this.

        OpenAI marks a store `expired` and later removes it; here it shows `expired` through the grace
        period, then is gone (404). A store used meanwhile (`touch`) is no longer expired and is kept:
        each row is checked again inside the transaction that deletes it. The files stay in `/files`.
        """
        now = time.time() if now is None else now
        with self._read() as session:
            candidates = session.execute(select(VectorStoreRow.id, VectorStoreRow.last_active_at,
                                                VectorStoreRow.expires_after)
                                         .where(VectorStoreRow.expires_after.is_not(None))).all()
        due = [vs for vs, active, policy in candidates if _expired_before(active, policy, now - grace_seconds)]
        deleted = []
        for vector_store_id in due:
            with self._write() as session:
                row = session.scalar(select(VectorStoreRow).where(VectorStoreRow.id == vector_store_id))
                if row is None or not _expired_before(row.last_active_at, row.expires_after, now - grace_seconds):
                    continue
                _delete_rows(session, row)
            self._drop_index(vector_store_id)
            deleted.append(vector_store_id)
        return deleted

    def _drop_index(self, vector_store_id: str) -> None:
        self.index(vector_store_id).drop()
        self._indexes.pop(vector_store_id, None)

    def touch(self, vector_store_id: str) -> None:
        with self._write() as session:
            session.execute(update(VectorStoreRow).where(VectorStoreRow.id == vector_store_id)
                            .values(last_active_at=int(time.time())))

    # -- files --------------------------------------------------------------------------------------

    def add_file(self, project: str, owner: Owner, vector_store_id: str, file_id: str, *,
                 chunking_strategy: dict[str, Any], attributes: dict[str, Any],
                 batch_id: str | None = None) -> VectorStoreFile:
        with self._write() as session:
            self._owned(session, project, owner, vector_store_id)
            existing = session.scalar(select(VectorStoreFileRow).where(
                VectorStoreFileRow.vector_store_id == vector_store_id, VectorStoreFileRow.file_id == file_id))
            if existing is not None:
                raise Conflict(f"File {file_id!r} is already in vector store {vector_store_id!r}.",
                               code="VectorStoreFileExists", param="file_id")
            row = VectorStoreFileRow(vector_store_id=vector_store_id, file_id=file_id, batch_id=batch_id,
                                     status=IN_PROGRESS, last_error=None, usage_bytes=0,
                                     created_at=int(time.time()), chunking_strategy=chunking_strategy,
                                     attributes=attributes)
            try:
                session.add(row)
                session.flush()
            except IntegrityError:
                raise Conflict(f"File {file_id!r} is already in vector store {vector_store_id!r}.",
                               code="VectorStoreFileExists", param="file_id") from None
            return _file(row)

    def create_batch(self, project: str, owner: Owner, vector_store_id: str) -> str:
        batch_id = f"vsfb_{secrets.token_hex(12)}"
        with self._write() as session:
            self._owned(session, project, owner, vector_store_id)
            session.add(VectorStoreFileBatchRow(id=batch_id, vector_store_id=vector_store_id,
                                                created_at=int(time.time()), cancelled=False))
        return batch_id

    def get_batch(self, project: str, owner: Owner, vector_store_id: str, batch_id: str) -> FileBatch:
        with self._read() as session:
            self._owned(session, project, owner, vector_store_id)
            row = session.scalar(select(VectorStoreFileBatchRow).where(
                VectorStoreFileBatchRow.id == batch_id, VectorStoreFileBatchRow.vector_store_id == vector_store_id))
            if row is None:
                raise NotFound(f"No file batch {batch_id!r} in vector store {vector_store_id!r}.",
                               code="FileBatchNotFound", param="batch_id")
            counts = _counts(session, VectorStoreFileRow.batch_id == batch_id)
            return FileBatch(row.id, row.vector_store_id, row.created_at, row.cancelled, counts)

    def cancel_batch(self, project: str, owner: Owner, vector_store_id: str, batch_id: str) -> FileBatch:
        self.get_batch(project, owner, vector_store_id, batch_id)
        with self._write() as session:
            session.execute(update(VectorStoreFileBatchRow).where(VectorStoreFileBatchRow.id == batch_id)
                            .values(cancelled=True))
            session.execute(update(VectorStoreFileRow).where(VectorStoreFileRow.batch_id == batch_id,
                                                             VectorStoreFileRow.status == IN_PROGRESS)
                            .values(status=CANCELLED))
        return self.get_batch(project, owner, vector_store_id, batch_id)

    def get_file(self, project: str, owner: Owner, vector_store_id: str, file_id: str) -> VectorStoreFile:
        with self._read() as session:
            self._owned(session, project, owner, vector_store_id)
            row = session.scalar(select(VectorStoreFileRow).where(
                VectorStoreFileRow.vector_store_id == vector_store_id, VectorStoreFileRow.file_id == file_id))
            if row is None:
                raise vector_store_file_not_found(vector_store_id, file_id)
            return _file(row)

    def list_files(self, project: str, owner: Owner, vector_store_id: str, *, limit: int, order: str,
                   after: str | None, before: str | None, status: str | None = None,
                   batch_id: str | None = None) -> Listing:
        with self._read() as session:
            self._owned(session, project, owner, vector_store_id)
            statement = select(VectorStoreFileRow).where(VectorStoreFileRow.vector_store_id == vector_store_id)
            if status is not None:
                statement = statement.where(VectorStoreFileRow.status == status)
            if batch_id is not None:
                statement = statement.where(VectorStoreFileRow.batch_id == batch_id)
            scope = VectorStoreFileRow.vector_store_id == vector_store_id
            statement = _paged(session, statement, VectorStoreFileRow, VectorStoreFileRow.file_id, order, after,
                               before, scope)
            rows = session.scalars(statement.limit(limit + 1)).all()
            return Listing([_file(r) for r in rows[:limit]], len(rows) > limit)

    def update_file_attributes(self, project: str, owner: Owner, vector_store_id: str, file_id: str,
                               attributes: dict[str, Any]) -> VectorStoreFile:
        self.get_file(project, owner, vector_store_id, file_id)
        with self._write() as session:
            session.execute(update(VectorStoreFileRow).where(
                VectorStoreFileRow.vector_store_id == vector_store_id, VectorStoreFileRow.file_id == file_id)
                .values(attributes=attributes))
        return self.get_file(project, owner, vector_store_id, file_id)

    def remove_file(self, project: str, owner: Owner, vector_store_id: str, file_id: str) -> None:
        self.get_file(project, owner, vector_store_id, file_id)
        self.drop_file(vector_store_id, file_id)

    def remove_file_everywhere(self, file_id: str) -> None:
        """A deleted file leaves every vector store it was in (OpenAI keeps it listed; its text is gone)."""
        with self._read() as session:
            stores = list(session.scalars(select(VectorStoreFileRow.vector_store_id)
                                          .where(VectorStoreFileRow.file_id == file_id)))
        for vector_store_id in stores:
            self.drop_file(vector_store_id, file_id)

    def drop_file(self, vector_store_id: str, file_id: str) -> None:
        with self._write() as session:
            keys = list(session.scalars(select(VectorStoreChunkRow.id).where(
                VectorStoreChunkRow.vector_store_id == vector_store_id, VectorStoreChunkRow.file_id == file_id)))
            session.execute(delete(VectorStoreChunkRow).where(VectorStoreChunkRow.vector_store_id == vector_store_id,
                                                              VectorStoreChunkRow.file_id == file_id))
            session.execute(delete(VectorStoreFileRow).where(VectorStoreFileRow.vector_store_id == vector_store_id,
                                                             VectorStoreFileRow.file_id == file_id))
        self.index(vector_store_id).remove(keys)

    # -- ingestion results --------------------------------------------------------------------------

    def status_of(self, vector_store_id: str, file_id: str) -> str | None:
        with self._read() as session:
            return session.scalar(select(VectorStoreFileRow.status).where(
                VectorStoreFileRow.vector_store_id == vector_store_id, VectorStoreFileRow.file_id == file_id))

    def add_chunks(self, vector_store_id: str, file_id: str, texts: Sequence[str]) -> list[int]:
        """Record a file's chunks; their ids, the keys their vectors go under in the index."""
        with self._write() as session:
            rows = [VectorStoreChunkRow(vector_store_id=vector_store_id, file_id=file_id, position=i, text=text)
                    for i, text in enumerate(texts)]
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    def finish_file(self, vector_store_id: str, file_id: str, usage_bytes: int) -> bool:
        """Mark a file completed; False when it was cancelled or removed meanwhile."""
        with self._write() as session:
            result = session.execute(update(VectorStoreFileRow).where(
                VectorStoreFileRow.vector_store_id == vector_store_id, VectorStoreFileRow.file_id == file_id,
                VectorStoreFileRow.status == IN_PROGRESS).values(status=COMPLETED, usage_bytes=usage_bytes))
            return bool(getattr(result, "rowcount", 0))

    def fail_file(self, vector_store_id: str, file_id: str, code: str, message: str) -> None:
        with self._write() as session:
            session.execute(update(VectorStoreFileRow).where(
                VectorStoreFileRow.vector_store_id == vector_store_id, VectorStoreFileRow.file_id == file_id,
                VectorStoreFileRow.status == IN_PROGRESS)
                .values(status=FAILED, last_error={"code": code, "message": message}))

    def in_progress(self) -> list[tuple[str, str, str, Owner, dict[str, Any]]]:
        """Files left in progress by a stop: (project, vector store, file, owner, chunking), to take in again."""
        with self._read() as session:
            rows = session.execute(select(VectorStoreRow.project, VectorStoreFileRow.vector_store_id,
                                          VectorStoreFileRow.file_id, VectorStoreRow.owner_subject,
                                          VectorStoreRow.owner_user, VectorStoreFileRow.chunking_strategy)
                                   .join(VectorStoreRow, VectorStoreRow.id == VectorStoreFileRow.vector_store_id)
                                   .where(VectorStoreFileRow.status == IN_PROGRESS)).all()
        return [(p, vs, f, Owner(s, u), c) for p, vs, f, s, u, c in rows]

    def chunks(self, vector_store_ids: Sequence[str], keys: Sequence[int] | None = None,
               limit: int = 20_000) -> list[Chunk]:
        """Chunks of completed files in these stores (by key, when given)."""
        with self._read() as session:
            statement = (select(VectorStoreChunkRow)
                         .join(VectorStoreFileRow, (VectorStoreFileRow.vector_store_id
                                                    == VectorStoreChunkRow.vector_store_id)
                               & (VectorStoreFileRow.file_id == VectorStoreChunkRow.file_id))
                         .where(VectorStoreChunkRow.vector_store_id.in_(vector_store_ids),
                                VectorStoreFileRow.status == COMPLETED))
            if keys is not None:
                statement = statement.where(VectorStoreChunkRow.id.in_(keys))
            rows = session.scalars(statement.order_by(VectorStoreChunkRow.id).limit(limit)).all()
            return [Chunk(r.id, r.file_id, r.position, r.text) for r in rows]

    def file_attributes(self, vector_store_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        with self._read() as session:
            rows = session.execute(select(VectorStoreFileRow.file_id, VectorStoreFileRow.attributes)
                                   .where(VectorStoreFileRow.vector_store_id.in_(vector_store_ids))).all()
        return {file_id: attributes or {} for file_id, attributes in rows}

    # -- helpers ------------------------------------------------------------------------------------

    def _owned_statement(self, project: str, owner: Owner) -> Any:
        return select(VectorStoreRow).where(
            VectorStoreRow.project == project, VectorStoreRow.owner_subject == owner.subject,
            VectorStoreRow.owner_user.is_(None) if owner.user is None else VectorStoreRow.owner_user == owner.user)

    def _owned(self, session: Any, project: str, owner: Owner, vector_store_id: str) -> VectorStoreRow:
        row = session.scalar(self._owned_statement(project, owner).where(VectorStoreRow.id == vector_store_id))
        if row is None:
            raise vector_store_not_found(vector_store_id)
        return row

    def _vector_store(self, session: Any, row: VectorStoreRow) -> VectorStore:
        counts = _counts(session, VectorStoreFileRow.vector_store_id == row.id)
        usage = session.scalar(select(func.coalesce(func.sum(VectorStoreFileRow.usage_bytes), 0))
                               .where(VectorStoreFileRow.vector_store_id == row.id)) or 0
        return VectorStore(id=row.id, project=row.project, owner=Owner(row.owner_subject, row.owner_user),
                           name=row.name, created_at=row.created_at, last_active_at=row.last_active_at,
                           expires_after=row.expires_after, metadata=row.metadata_ or {},
                           embedding_deployment=row.embedding_deployment, file_counts=counts, usage_bytes=int(usage))


def _expired_before(last_active_at: int, expires_after: Mapping[str, Any] | None, moment: float) -> bool:
    """Whether a store with this policy expired at or before `moment` (VectorStore.expires_at's rule)."""
    if not expires_after:
        return False
    return last_active_at + int(expires_after.get("days", 0)) * 86400 <= moment


def _delete_rows(session: Any, row: VectorStoreRow) -> None:
    for table in (VectorStoreChunkRow, VectorStoreFileRow, VectorStoreFileBatchRow):
        session.execute(delete(table).where(table.vector_store_id == row.id))
    session.delete(row)


def _counts(session: Any, condition: Any) -> FileCounts:
    rows = session.execute(select(VectorStoreFileRow.status, func.count()).where(condition)
                           .group_by(VectorStoreFileRow.status)).all()
    found = {status: int(count) for status, count in rows}
    return FileCounts(**{status: found.get(status, 0) for status in FILE_STATUSES})


def _file(row: VectorStoreFileRow) -> VectorStoreFile:
    return VectorStoreFile(id=row.file_id, vector_store_id=row.vector_store_id, status=row.status,
                           last_error=row.last_error, usage_bytes=row.usage_bytes, created_at=row.created_at,
                           chunking_strategy=row.chunking_strategy, attributes=row.attributes or {},
                           batch_id=row.batch_id)


def _paged(session: Any, statement: Any, table: Any, id_column: Any, order: str, after: str | None,
           before: str | None, scope: Any = None) -> Any:
    """Order by insertion (`seq`) and cut at the `after`/`before` cursors (ids as the caller saw them)."""
    for cursor, newer in ((after, order == "asc"), (before, order != "asc")):
        if cursor is None:
            continue
        lookup = select(table.seq).where(id_column == cursor)
        if scope is not None:
            lookup = lookup.where(scope)
        seq = session.scalar(lookup)
        if seq is None:
            raise BadRequest(f"No item with id {cursor!r} to page from.", code="InvalidPaging")
        statement = statement.where(table.seq > seq if newer else table.seq < seq)
    return statement.order_by(table.seq.asc() if order == "asc" else table.seq.desc())
