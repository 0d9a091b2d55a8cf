"""Responses the tool loop made, kept so a later call continues them (`previous_response_id`).

A record is its caller's (dockyard.identity.ownership `may_follow`): anyone else reads nothing, exactly
as if it did not exist, so ids cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dockyard.identity.ownership import Caller, Owner, may_follow
from dockyard.store.database import Repository
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


class ToolResponseStore(Repository):
    def save(self, record: LoopRecord) -> None:
        with self._write() as db:
            db.merge(ToolLoopResponseRow(
                id=record.id, project=record.project, owner_subject=record.owner.subject,
                owner_user=record.owner.user, created_at=record.created_at, response=record.response,
                transcript=record.transcript, pending=record.pending))

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
                              response=row.response, transcript=row.transcript, pending=row.pending)
