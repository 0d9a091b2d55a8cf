"""Responses the tool loop made, kept so a later call continues them (`previous_response_id`).

A record is its caller's (dockyard.identity.ownership `may_follow`): anyone else reads nothing, exactly
as if it did not exist, so ids cannot be probed. Records are kept a bounded time, as OpenAI keeps
responses (30 days by default, `tool_response_retention_seconds`): the reconciler's loop prunes older ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete

from dockyard.identity.ownership import Caller, Owner, may_follow
from dockyard.store.database import Repository
from dockyard.store.stored_responses import MAX_PAGE, ItemPage
from dockyard.store.tables import ToolLoopResponseRow


@dataclass
class LoopRecord:
    """One Response of the loop and what continuing it needs."""

    id: str
    project: str
    owner: Owner
    created_at: int
    response: dict[str, Any]
    # Model-level items: what the model saw and answered, the prefix of the next call's input.
    transcript: list[dict[str, Any]] = field(default_factory=list)
    # Approval requests waiting: their id -> the model's function call item.
    pending: dict[str, Any] = field(default_factory=dict)
    # What `input_items` lists: the previous Response's input and output items, then this one's input.
    input_items: list[dict[str, Any]] = field(default_factory=list)


class ToolResponseStore(Repository):
    def save(self, record: LoopRecord) -> None:
        with self._write() as db:
            db.merge(ToolLoopResponseRow(
                id=record.id, project=record.project, owner_subject=record.owner.subject,
                owner_user=record.owner.user, created_at=record.created_at, response=record.response,
                transcript=record.transcript, pending=record.pending, input_items=record.input_items))

    def delete(self, project: str, caller: Caller, response_id: str) -> bool:
        """Remove the caller's record; False (nothing done) when `find` would not find it."""
        with self._write() as db:
            row = db.get(ToolLoopResponseRow, response_id)
            if row is None or row.project != project or not may_follow(caller, Owner(row.owner_subject,
                                                                                      row.owner_user)):
                return False
            db.delete(row)
            return True

    def prune(self, *, older_than: float) -> int:
        """Remove every record made before `older_than` (seconds since the epoch); how many went."""
        with self._write() as db:
            result = db.execute(delete(ToolLoopResponseRow).where(ToolLoopResponseRow.created_at < older_than))
            return int(getattr(result, "rowcount", 0) or 0)

    def find(self, project: str, caller: Caller, response_id: str) -> LoopRecord | None:
        """The record if it exists in `project` and is the caller's; None otherwise (either way alike)."""
        with self._read() as db:
            row = db.get(ToolLoopResponseRow, response_id)
            if row is None or row.project != project:
                return None
            owner = Owner(row.owner_subject, row.owner_user)
            if not may_follow(caller, owner):
                return None
            return LoopRecord(id=row.id, project=row.project, owner=owner, created_at=row.created_at,
                              response=row.response, transcript=row.transcript, pending=row.pending,
                              input_items=row.input_items or [])


def page_items(items: list[dict[str, Any]], *, limit: int = 20, ascending: bool = False, after: str | None = None,
               before: str | None = None) -> ItemPage:
    """A page of `items` in OpenAI's list paging: newest first unless ascending, after/before an item's id."""
    ordered = items if ascending else items[::-1]
    ids = [item.get("id") for item in ordered]
    if after is not None and after in ids:
        ordered = ordered[ids.index(after) + 1:]
        ids = ids[ids.index(after) + 1:]
    if before is not None and before in ids:
        ordered = ordered[:ids.index(before)]
    page = ordered[:max(1, min(MAX_PAGE, limit))]
    return ItemPage(list(page), len(ordered) > len(page))
