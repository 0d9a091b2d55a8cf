"""State stores: named bags of JSON items an agent keeps through its project, as Foundry's state-store API
holds them (`FoundryStateStore` in azure-ai-agentserver-core 2.3, whose local file backend is the reference
for the semantics kept here).

A store belongs to one agent of one project (keyed by the agent's name, so its state carries on across
versions and outlives sessions). A store made with `user_isolation` keeps each caller's items apart: the
same key names a different item for each caller, and one caller never sees another's keys. Items expire
`item_ttl_seconds` after their last write (-1: never); an expired item is gone to every read at once and
its row is removed by the next write to the store or by `purge_expired`.

Writes are optimistic: each item has an ETag, a fresh one on every write, and `If-Match` makes a write or
delete conditional on it (`*`: on the item existing). A failed condition is `PreconditionFailed` (412)
carrying the current ETag, which is what the client reads to retry.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from dockyard.domain.errors import Conflict, DockyardError, NotFound
from dockyard.store.database import Repository
from dockyard.store.tables import StateStoreItemRow, StateStoreRow

DEFAULT_ITEM_TTL_SECONDS = 30 * 24 * 3600  # the client's default, so a store made without one behaves alike
NEVER_EXPIRES = -1
MAX_PAGE = 100
DEFAULT_PAGE = 20
MAX_NAME_CHARS = 512
MAX_KEY_CHARS = 1024


class PreconditionFailed(DockyardError):
    """An `If-Match` that does not hold: 412 with the item's current ETag (none when it does not exist)."""

    status_code = 412
    code = "PreconditionFailed"

    def __init__(self, message: str, current_etag: str | None) -> None:
        super().__init__(message)
        self.headers = {"ETag": current_etag} if current_etag else {}


@dataclass(frozen=True)
class StateScope:
    """Whose state a request reaches: an agent of a project, acting for a caller ("" when for no one but
    itself). The caller matters only in stores with user isolation."""

    project: str
    agent_name: str
    caller: str


@dataclass(frozen=True)
class Page:
    data: list[dict[str, Any]]
    has_more: bool

    def to_wire(self) -> dict[str, Any]:
        return {"object": "list", "data": self.data, "first_id": self.data[0]["id"] if self.data else None,
                "last_id": self.data[-1]["id"] if self.data else None, "has_more": self.has_more}


@dataclass(frozen=True)
class Paging:
    limit: int = DEFAULT_PAGE
    ascending: bool = False
    after: str | None = None
    before: str | None = None


class StateStores(Repository):
    # ----- stores -----------------------------------------------------------------------------------------

    def create_store(self, scope: StateScope, name: str, *, user_isolation: bool, item_ttl_seconds: int,
                     description: str | None, tags: Mapping[str, str] | None) -> dict[str, Any]:
        """A new store; Conflict when the agent has one of that name (the client then fetches it)."""
        now = int(time.time())
        try:
            with self._write() as db:
                if _store_row(db, scope, name, missing_ok=True) is not None:
                    raise _store_exists(name)
                row = StateStoreRow(id=_resource_id("ss", scope.project, scope.agent_name, name), project=scope.project,
                                    agent_name=scope.agent_name, name=name, user_isolation=user_isolation,
                                    item_ttl_seconds=item_ttl_seconds, description=description,
                                    tags=dict(tags) if tags else None, created_at=now, updated_at=now)
                db.add(row)
                db.flush()
                return _store_wire(row)
        except IntegrityError:
            raise _store_exists(name) from None  # made by a concurrent request a moment ago

    def get_store(self, scope: StateScope, name: str) -> dict[str, Any]:
        with self._read() as db:
            return _store_wire(_store_row(db, scope, name))

    def update_store(self, scope: StateScope, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """`description` and `tags` as given: a key left out stays, a null clears, tags are replaced whole."""
        with self._write() as db:
            row = _store_row(db, scope, name)
            if "description" in changes:
                row.description = changes["description"]
            if "tags" in changes:
                row.tags = dict(changes["tags"]) if changes["tags"] else None
            row.updated_at = int(time.time())
            return _store_wire(row)

    def delete_store(self, scope: StateScope, name: str) -> dict[str, Any]:
        """The store and every item in it, every caller's."""
        with self._write() as db:
            row = _store_row(db, scope, name)
            db.execute(delete(StateStoreItemRow).where(StateStoreItemRow.store_id == row.id))
            db.delete(row)
            return {"id": row.id, "object": "state_store", "name": row.name, "deleted": True}

    def list_stores(self, scope: StateScope, paging: Paging) -> Page:
        with self._read() as db:
            rows = db.scalars(select(StateStoreRow).where(
                StateStoreRow.project == scope.project, StateStoreRow.agent_name == scope.agent_name,
            )).all()
            ordered = sorted(rows, key=lambda row: (row.created_at, row.id), reverse=not paging.ascending)
            return _page([_store_wire(row) for row in ordered], paging)

    # ----- items ------------------------------------------------------------------------------------------

    def create_item(self, scope: StateScope, name: str, key: str, value: dict[str, Any],
                    tags: Mapping[str, str] | None) -> dict[str, Any]:
        """A new item; Conflict when the key is taken (by an item that has not expired)."""
        now = time.time()
        try:
            with self._write() as db:
                store = _store_row(db, scope, name)
                partition = _partition(store, scope)
                _purge_store(db, store.id, now)
                if _item_row(db, store.id, partition, key) is not None:
                    raise Conflict(f"State store item {key!r} already exists.", code="ItemAlreadyExists")
                row = StateStoreItemRow(store_id=store.id, partition=partition, key=key,
                                        id=_resource_id("it", store.id, partition, key), value=value,
                                        tags=dict(tags) if tags else None, etag=_new_etag(), created_at=now,
                                        updated_at=now, expires_at=_expiry(store, now))
                db.add(row)
                db.flush()
                return _item_wire(row, value=False)
        except IntegrityError:
            raise Conflict(f"State store item {key!r} already exists.", code="ItemAlreadyExists") from None

    def put_item(self, scope: StateScope, name: str, key: str, value: dict[str, Any],
                 tags: Mapping[str, str] | None, if_match: str | None) -> dict[str, Any]:
        """Create or replace; with `If-Match`, only the item that holds that ETag (`*`: any that exists)."""
        now = time.time()
        with self._write() as db:
            store = _store_row(db, scope, name)
            partition = _partition(store, scope)
            _purge_store(db, store.id, now)
            row = _item_row(db, store.id, partition, key)
            _check_precondition(key, row, if_match)
            if row is None:
                row = StateStoreItemRow(store_id=store.id, partition=partition, key=key,
                                        id=_resource_id("it", store.id, partition, key), created_at=now)
                db.add(row)
            row.value, row.tags, row.etag = value, dict(tags) if tags else None, _new_etag()
            row.updated_at, row.expires_at = now, _expiry(store, now)
            db.flush()
            return _item_wire(row, value=False)

    def get_item(self, scope: StateScope, name: str, key: str) -> dict[str, Any]:
        with self._read() as db:
            store = _store_row(db, scope, name)
            row = _item_row(db, store.id, _partition(store, scope), key, now=time.time())
            if row is None:
                raise NotFound(f"State store item {key!r} was not found.", code="ItemNotFound")
            return _item_wire(row, value=True)

    def delete_item(self, scope: StateScope, name: str, key: str, if_match: str | None) -> dict[str, Any]:
        """Deleting a key that is not there succeeds (id null), as the client's own local store does; with
        `If-Match` it is a failed precondition instead."""
        now = time.time()
        with self._write() as db:
            store = _store_row(db, scope, name)
            _purge_store(db, store.id, now)
            row = _item_row(db, store.id, _partition(store, scope), key)
            _check_precondition(key, row, if_match)
            if row is not None:
                db.delete(row)
            return {"id": row.id if row is not None else None, "object": "state_store.item", "key": key,
                    "deleted": True}

    def list_keys(self, scope: StateScope, name: str, tags: Mapping[str, str], paging: Paging) -> Page:
        """The partition's keys (with tags and ETags, no values) whose tags hold every pair asked for, in
        creation order, paged on item ids."""
        with self._read() as db:
            store = _store_row(db, scope, name)
            rows = db.scalars(select(StateStoreItemRow).options(defer(StateStoreItemRow.value)).where(
                StateStoreItemRow.store_id == store.id, StateStoreItemRow.partition == _partition(store, scope),
                _live(time.time()),
            )).all()  # values (checkpoints can be large) are not read: a listing shows keys
            matching = [row for row in rows if all((row.tags or {}).get(k) == v for k, v in tags.items())]
            matching.sort(key=lambda row: (row.created_at, row.seq), reverse=not paging.ascending)
            return _page([_item_wire(row, value=False, tags=True) for row in matching], paging)

    def purge_expired(self, now: float | None = None) -> int:
        """Remove every expired item of every store; the number removed."""
        with self._write() as db:
            result = db.execute(delete(StateStoreItemRow).where(
                StateStoreItemRow.expires_at.is_not(None), StateStoreItemRow.expires_at <= (now or time.time())))
            return int(getattr(result, "rowcount", 0) or 0)


def _store_exists(name: str) -> Conflict:
    return Conflict(f"State store {name!r} already exists.", code="StateStoreAlreadyExists")


def _store_row(db: Session, scope: StateScope, name: str, *, missing_ok: bool = False) -> Any:
    row = db.scalars(select(StateStoreRow).where(
        StateStoreRow.project == scope.project, StateStoreRow.agent_name == scope.agent_name,
        StateStoreRow.name == name)).first()
    if row is None and not missing_ok:
        raise NotFound(f"State store {name!r} was not found.", code="StateStoreNotFound")
    return row


def _partition(store: StateStoreRow, scope: StateScope) -> str:
    return scope.caller if store.user_isolation else ""


def _live(now: float) -> ColumnElement[bool]:
    return or_(StateStoreItemRow.expires_at.is_(None), StateStoreItemRow.expires_at > now)


def _item_row(db: Session, store_id: str, partition: str, key: str, *, now: float | None = None) -> Any:
    conditions = [StateStoreItemRow.store_id == store_id, StateStoreItemRow.partition == partition,
                  StateStoreItemRow.key == key]
    if now is not None:
        conditions.append(_live(now))
    return db.scalars(select(StateStoreItemRow).where(and_(*conditions))).first()


def _purge_store(db: Session, store_id: str, now: float) -> None:
    """Expired items of one store, removed before a write so a new item may take an expired one's key."""
    db.execute(delete(StateStoreItemRow).where(StateStoreItemRow.store_id == store_id,
                                               StateStoreItemRow.expires_at.is_not(None),
                                               StateStoreItemRow.expires_at <= now))


def _check_precondition(key: str, row: StateStoreItemRow | None, if_match: str | None) -> None:
    if if_match is None:
        return
    if row is None or if_match not in ("*", row.etag):
        raise PreconditionFailed(f"ETag precondition failed for state store item {key!r}: "
                                 f"{'it does not exist' if row is None else 'it has changed since'}. "
                                 "Read it again and retry with its current ETag.",
                                 row.etag if row is not None else None)


def _expiry(store: StateStoreRow, now: float) -> float | None:
    return None if store.item_ttl_seconds == NEVER_EXPIRES else now + store.item_ttl_seconds


def _resource_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]
    return f"{prefix}_{digest}"


def _new_etag() -> str:
    return f'"{uuid.uuid4().hex}"'


def _store_wire(row: StateStoreRow) -> dict[str, Any]:
    return {"id": row.id, "object": "state_store", "name": row.name, "user_isolation": row.user_isolation,
            "item_ttl_seconds": row.item_ttl_seconds, "description": row.description, "tags": row.tags,
            "created_at": row.created_at, "updated_at": row.updated_at}


def _item_wire(row: StateStoreItemRow, *, value: bool, tags: bool = False) -> dict[str, Any]:
    wire: dict[str, Any] = {"id": row.id, "object": "state_store.item", "key": row.key, "etag": row.etag,
                            "created_at": int(row.created_at), "updated_at": int(row.updated_at)}
    if value:
        wire["value"] = row.value
    if value or tags:
        wire["tags"] = row.tags
    return wire


def _page(ordered: list[dict[str, Any]], paging: Paging) -> Page:
    ids = [entry["id"] for entry in ordered]
    if paging.after is not None:
        ordered = ordered[ids.index(paging.after) + 1:] if paging.after in ids else []
    elif paging.before is not None:
        ordered = ordered[:ids.index(paging.before)] if paging.before in ids else []
    page = ordered[:paging.limit]
    return Page(page, len(ordered) > len(page))

