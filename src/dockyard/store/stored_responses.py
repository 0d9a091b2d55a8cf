"""Responses and their items as Microsoft's adapter stores them through the project's storage API.

The semantics are the adapter's own reference store's (`InMemoryResponseProvider` in
azure-ai-agentserver-responses): a response is kept with its input items and the ids of the history
it saw; its output items are replaced on each update; history for a new turn is the previous
response's history, input and output ids (or every response of a conversation), de-duplicated, the
most recent `limit` of them. Items are found by id for history and `item_reference` inputs.

Every row belongs to an agent of a project and to the caller its call id named
(dockyard.identity.call_ids): each operation takes that scope, and what is outside it answers exactly
as what does not exist. Keyed by the agent's name, not its version, so a conversation carries on
across versions, and kept after the session and the version are gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.domain.errors import BadRequest, Conflict, NotFound
from dockyard.identity.ownership import Owner
from dockyard.store.database import Repository
from dockyard.store.tables import StoredResponseItemRow, StoredResponseRow

INPUT = "input"
OUTPUT = "output"
# The adapter pages input items 100 at a time (and clamps any limit to 1..100, as this store does).
MAX_PAGE = 100
# Ids in one batch retrieve; the adapter asks for at most its history count (100 by default) at a time.
MAX_BATCH = 1000
MAX_ID_CHARS = 256


@dataclass(frozen=True)
class StorageScope:
    """Whose stored responses a request may reach: one agent of one project, for one caller."""

    project: str
    agent_name: str
    owner: Owner


@dataclass(frozen=True)
class StoredResponse:
    id: str
    scope: StorageScope
    body: dict[str, Any]


@dataclass(frozen=True)
class ItemPage:
    data: list[dict[str, Any]]
    has_more: bool

    def to_wire(self) -> dict[str, Any]:
        return {"object": "list", "data": self.data, "first_id": _item_id(self.data[0]) if self.data else None,
                "last_id": _item_id(self.data[-1]) if self.data else None, "has_more": self.has_more}


class StoredResponses(Repository):
    def create(self, scope: StorageScope, response: dict[str, Any], input_items: Sequence[Any],
               history_item_ids: Sequence[str]) -> None:
        """Keep a new response; Conflict ("already exists", which the adapter reads as an idempotent
        create after a crash) when its id is taken."""
        response_id = _response_id(response)
        now = time.time()
        try:
            with self._write() as db:
                if db.get(StoredResponseRow, response_id) is not None:
                    raise _already_exists(response_id)
                db.add(StoredResponseRow(
                    id=response_id, project=scope.project, agent_name=scope.agent_name,
                    owner_subject=scope.owner.subject, owner_user=scope.owner.user,
                    conversation_id=conversation_id(response), body=response,
                    history_item_ids=list(history_item_ids), created_at=now, updated_at=now,
                ))
                db.flush()
                _add_items(db, response_id, INPUT, input_items)
                _add_items(db, response_id, OUTPUT, response.get("output"))
        except IntegrityError:
            raise _already_exists(response_id) from None  # made by a concurrent request a moment ago

    def get(self, scope: StorageScope, response_id: str) -> dict[str, Any]:
        with self._read() as db:
            return _row(db, scope, response_id).body

    def update(self, scope: StorageScope, response: dict[str, Any]) -> None:
        """The response's new snapshot; its output items are replaced by the snapshot's."""
        response_id = _response_id(response)
        with self._write() as db:
            row = _row(db, scope, response_id)
            row.body = response
            row.conversation_id = conversation_id(response) or row.conversation_id
            row.updated_at = time.time()
            db.execute(delete(StoredResponseItemRow).where(StoredResponseItemRow.response_id == response_id,
                                                           StoredResponseItemRow.role == OUTPUT))
            _add_items(db, response_id, OUTPUT, response.get("output"))

    def delete(self, scope: StorageScope, response_id: str) -> None:
        with self._write() as db:
            row = _row(db, scope, response_id)
            db.execute(delete(StoredResponseItemRow).where(StoredResponseItemRow.response_id == response_id))
            db.delete(row)

    def input_items(self, scope: StorageScope, response_id: str, *, limit: int = 20, ascending: bool = False,
                    after: str | None = None, before: str | None = None) -> ItemPage:
        """The response's history and input items (history first), paged on item ids."""
        with self._read() as db:
            row = _row(db, scope, response_id)
            inputs = _items_of(db, [response_id], INPUT)
            ids = [*row.history_item_ids, *(item_id for item_id, _ in inputs)]
            if not ascending:
                ids.reverse()
            if after is not None and after in ids:
                ids = ids[ids.index(after) + 1:]
            if before is not None and before in ids:
                ids = ids[:ids.index(before)]
            page = ids[:max(1, min(MAX_PAGE, limit))]
            found = _items_by_id(db, scope, page)
            return ItemPage([found[item_id] for item_id in page if item_id in found], len(ids) > len(page))

    def items(self, scope: StorageScope, item_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Items by id, in the order asked, None where the scope has no such item."""
        with self._read() as db:
            found = _items_by_id(db, scope, item_ids)
        return [found.get(item_id) for item_id in item_ids]

    def history_item_ids(self, scope: StorageScope, previous_response_id: str | None, conversation: str | None,
                         limit: int) -> list[str]:
        """The ids a new turn's history is made of: NotFound for a previous response that is not the scope's."""
        with self._read() as db:
            responses: list[StoredResponseRow] = []
            if previous_response_id is not None:
                responses.append(_row(db, scope, previous_response_id))
            if conversation is not None:
                responses.extend(db.scalars(select(StoredResponseRow).where(
                    _in_scope(scope), StoredResponseRow.conversation_id == conversation,
                ).order_by(StoredResponseRow.created_at, StoredResponseRow.id)).all())
            resolved: list[str] = []
            for row in responses:
                resolved.extend(row.history_item_ids)
                resolved.extend(item_id for item_id, _ in _items_of(db, [row.id], INPUT))
                resolved.extend(item_id for item_id, _ in _items_of(db, [row.id], OUTPUT))
        unique = list(dict.fromkeys(resolved))
        if limit == -1:
            return unique
        return unique[-limit:] if limit > 0 else []

    def find(self, project: str, agent_name: str | None, response_id: str) -> StoredResponse | None:
        """A stored response of the project (and agent, when named), whoever's it is: the gateway answers
        from here when the sandbox that made it is gone, after its own ownership check."""
        with self._read() as db:
            row = db.get(StoredResponseRow, response_id)
            if row is None or row.project != project or agent_name not in (None, row.agent_name):
                return None
            return StoredResponse(row.id, StorageScope(row.project, row.agent_name,
                                                       Owner(row.owner_subject, row.owner_user)), row.body)

    def delete_found(self, found: StoredResponse) -> None:
        self.delete(found.scope, found.id)


def conversation_id(response: dict[str, Any]) -> str | None:
    """`conversation` as the adapter reads it: a string, or an object with an `id`."""
    value = response.get("conversation")
    if isinstance(value, dict):
        value = value.get("id")
    return str(value)[:MAX_ID_CHARS] if value else None


def response_not_found(response_id: str) -> NotFound:
    return NotFound(f"Response {response_id!r} was not found.", code="ResponseNotFound")


def _already_exists(response_id: str) -> Conflict:
    return Conflict(f"Response {response_id!r} already exists.", code="ResponseAlreadyExists")


def _response_id(response: dict[str, Any]) -> str:
    response_id = response.get("id")
    if not isinstance(response_id, str) or not response_id or len(response_id) > 128:
        raise BadRequest("The response must have an 'id': a string of 1 to 128 characters.",
                         code="InvalidRequestBody", param="response.id")
    return response_id


def _item_id(item: Any) -> str | None:
    value = item.get("id") if isinstance(item, dict) else None
    return str(value) if value is not None else None


def _in_scope(scope: StorageScope) -> ColumnElement[bool]:
    user = scope.owner.user
    return and_(StoredResponseRow.project == scope.project, StoredResponseRow.agent_name == scope.agent_name,
                StoredResponseRow.owner_subject == scope.owner.subject,
                StoredResponseRow.owner_user.is_(None) if user is None else StoredResponseRow.owner_user == user)


def _row(db: Session, scope: StorageScope, response_id: str) -> StoredResponseRow:
    row = db.scalars(select(StoredResponseRow).where(StoredResponseRow.id == response_id, _in_scope(scope))).first()
    if row is None:
        raise response_not_found(response_id)
    return row


def _add_items(db: Session, response_id: str, role: str, items: Iterable[Any] | None) -> None:
    """Items without an id are not kept, as in the adapter's own store: nothing could ever ask for them."""
    for position, item in enumerate(items or []):
        item_id = _item_id(item)
        if item_id is None:
            continue
        if len(item_id) > MAX_ID_CHARS:
            raise BadRequest(f"Item ids are at most {MAX_ID_CHARS} characters.", code="InvalidRequestBody")
        db.add(StoredResponseItemRow(response_id=response_id, role=role, position=position, item_id=item_id,
                                     body=item))


def _items_of(db: Session, response_ids: list[str], role: str) -> list[tuple[str, dict[str, Any]]]:
    rows = db.execute(select(StoredResponseItemRow.item_id, StoredResponseItemRow.body).where(
        StoredResponseItemRow.response_id.in_(response_ids), StoredResponseItemRow.role == role,
    ).order_by(StoredResponseItemRow.position, StoredResponseItemRow.seq)).all()
    return [(item_id, body) for item_id, body in rows]


def _items_by_id(db: Session, scope: StorageScope, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The scope's items with these ids; where one id was stored twice, the latest."""
    wanted = list(dict.fromkeys(item_ids))
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), 500):  # well under any database's limit on bound parameters
        rows = db.execute(
            select(StoredResponseItemRow.item_id, StoredResponseItemRow.body)
            .join(StoredResponseRow, StoredResponseRow.id == StoredResponseItemRow.response_id)
            .where(StoredResponseItemRow.item_id.in_(wanted[start:start + 500]), _in_scope(scope))
            .order_by(StoredResponseItemRow.seq)
        ).all()
        found.update((item_id, body) for item_id, body in rows)
    return found
