"""Sessions, and response and invocation routes, in the store: the gateway's routing state, shared by every replica."""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.domain.errors import Conflict, NotFound
from dockyard.domain.sessions import Session, SessionStatus
from dockyard.store.database import Repository
from dockyard.store.tables import InvocationRouteRow, ResponseRouteRow, SessionRow


class SessionStore(Repository):
    def create(self, session: Session) -> Session:
        """Record a new session; if another request created the same id first, that one wins."""
        try:
            with self._write() as db:
                db.add(SessionRow(
                    id=session.id, project=session.project, agent_name=session.agent_name,
                    version_uid=session.version_uid, version=session.version, status=session.status.value,
                    idle_timeout_seconds=session.idle_timeout_seconds, created_at=session.created_at,
                    last_accessed_at=session.last_accessed_at, stopped_at=session.stopped_at,
                    owner_subject=session.owner_subject, owner_user=session.owner_user,
                ))
        except IntegrityError:
            pass
        found = self.find(session.project, session.agent_name, session.id)
        if found is None:
            raise Conflict(f"Session id {session.id!r} is in use by another agent; choose another id.",
                           code="SessionIdInUse")
        return found

    def find(self, project: str, agent_name: str, session_id: str) -> Session | None:
        with self._read() as db:
            row = db.get(SessionRow, session_id)
            if row is None or row.project != project or row.agent_name != agent_name:
                return None
            return _session(row)

    def by_id(self, session_id: str) -> Session | None:
        with self._read() as db:
            row = db.get(SessionRow, session_id)
            return _session(row) if row is not None else None

    def get(self, project: str, agent_name: str, session_id: str) -> Session:
        found = self.find(project, agent_name, session_id)
        if found is None:
            raise session_not_found(agent_name, session_id)
        return found

    def list(self, project: str, agent_name: str) -> list[Session]:
        with self._read() as db:
            rows = db.scalars(select(SessionRow)
                              .where(SessionRow.project == project, SessionRow.agent_name == agent_name)
                              .order_by(SessionRow.created_at, SessionRow.id)).all()
            return [_session(row) for row in rows]

    def all(self) -> builtins.list[Session]:
        with self._read() as db:
            return [_session(row) for row in db.scalars(select(SessionRow)).all()]

    def touch(self, session_id: str) -> None:
        """A request reached the session: it is active and its idle clock starts again."""
        with self._write() as db:
            db.execute(update(SessionRow).where(SessionRow.id == session_id).values(
                last_accessed_at=time.time(), status=SessionStatus.ACTIVE.value, stopped_at=None))

    def set_status(self, session_id: str, status: SessionStatus) -> None:
        stopped = int(time.time()) if status in (SessionStatus.IDLE, SessionStatus.EXPIRED) else None
        with self._write() as db:
            db.execute(update(SessionRow).where(SessionRow.id == session_id).values(status=status.value,
                                                                                   stopped_at=stopped))

    def delete(self, session_id: str) -> None:
        with self._write() as db:
            db.execute(delete(ResponseRouteRow).where(ResponseRouteRow.session_id == session_id))
            db.execute(delete(InvocationRouteRow).where(InvocationRouteRow.session_id == session_id))
            db.execute(delete(SessionRow).where(SessionRow.id == session_id))

    def route_response(self, response_id: str, session_id: str, owner_subject: str | None = None,
                       owner_user: str | None = None) -> None:
        with self._write() as db:
            db.merge(ResponseRouteRow(response_id=response_id, session_id=session_id, created_at=int(time.time()),
                                      owner_subject=owner_subject, owner_user=owner_user))

    def response_route(self, response_id: str) -> Route | None:
        with self._read() as db:
            row = db.get(ResponseRouteRow, response_id)
            return Route(row.session_id, row.owner_subject, row.owner_user) if row is not None else None

    def session_of_response(self, response_id: str) -> str | None:
        route = self.response_route(response_id)
        return route.session_id if route is not None else None

    def route_invocation(self, invocation_id: str, session_id: str, owner_subject: str | None = None,
                         owner_user: str | None = None) -> None:
        with self._write() as db:
            db.merge(InvocationRouteRow(invocation_id=invocation_id, session_id=session_id,
                                        created_at=int(time.time()), owner_subject=owner_subject,
                                        owner_user=owner_user))

    def invocation_route(self, invocation_id: str) -> Route | None:
        with self._read() as db:
            row = db.get(InvocationRouteRow, invocation_id)
            return Route(row.session_id, row.owner_subject, row.owner_user) if row is not None else None

    def session_of_invocation(self, invocation_id: str) -> str | None:
        route = self.invocation_route(invocation_id)
        return route.session_id if route is not None else None


@dataclass(frozen=True)
class Route:
    """Which session a response or invocation lives in, and who made it (no subject: before owners were kept)."""

    session_id: str
    owner_subject: str | None
    owner_user: str | None


def session_not_found(agent_name: str, session_id: str) -> NotFound:
    """The one answer for a session that does not exist and for one that is another caller's."""
    return NotFound(f"Session {session_id!r} of agent {agent_name!r} was not found.", code="SessionNotFound")


def _session(row: SessionRow) -> Session:
    return Session(
        id=row.id, project=row.project, agent_name=row.agent_name, version_uid=row.version_uid, version=row.version,
        status=SessionStatus(row.status), idle_timeout_seconds=row.idle_timeout_seconds, created_at=row.created_at,
        last_accessed_at=row.last_accessed_at, stopped_at=row.stopped_at, owner_subject=row.owner_subject,
        owner_user=row.owner_user,
    )
