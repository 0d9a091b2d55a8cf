"""Agents and versions in the database.

This is the desired state of the system: what users asked for. The runtime's observations come back
through `set_status`, which only allows the moves the version lifecycle allows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select, and_, delete, func, select, update
from sqlalchemy.orm import Session

from dockyard.domain.agents import (
    Agent,
    AgentVersion,
    VersionError,
    VersionStatus,
    can_transition,
    parse_version_number,
)
from dockyard.domain.definitions import HostedDefinition
from dockyard.domain.errors import BadRequest, NotFound
from dockyard.domain.paging import Page, PageRequest
from dockyard.store.database import Repository, rowcount
from dockyard.store.tables import AgentRow, AgentVersionRow


def _unix_now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class DesiredVersion:
    uid: str
    project: str
    version: AgentVersion
    restarts: int
    updated_at: int


class AgentStore(Repository):
    def __init__(self, engine: Engine, *, clock: Callable[[], int] = _unix_now) -> None:
        super().__init__(engine)
        self._clock = clock

    # -- versions -----------------------------------------------------------------------------------

    def create_version(
        self,
        project: str,
        agent_name: str,
        definition: HostedDefinition,
        *,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> AgentVersion:
        """Add the next version of an agent, creating the agent on its first version."""
        now = self._clock()
        with self._write() as session:
            agent = session.scalars(
                select(AgentRow).where(AgentRow.project == project, AgentRow.name == agent_name)
            ).one_or_none()
            if agent is None:
                agent = AgentRow(project=project, name=agent_name, created_at=now, last_version=0)
                session.add(agent)
                session.flush()
            # One atomic increment hands out the number, even where transactions overlap.
            number = session.execute(
                update(AgentRow)
                .where(AgentRow.id == agent.id)
                .values(last_version=AgentRow.last_version + 1)
                .returning(AgentRow.last_version)
            ).scalar_one()
            row = AgentVersionRow(
                uid=uuid.uuid4().hex,
                agent_id=agent.id,
                number=number,
                created_at=now,
                updated_at=now,
                description=description,
                metadata_=dict(metadata or {}),
                definition=definition.to_record(),
                status=VersionStatus.CREATING.value,
            )
            session.add(row)
            session.flush()
            return _version(agent_name, row)

    def get_version(self, project: str, agent_name: str, version: str) -> AgentVersion:
        with self._read() as session:
            return _version(agent_name, self._version_row(session, project, agent_name, version))

    def version_uid(self, project: str, agent_name: str, version: str) -> str:
        """The uid that names a version's containers; NotFound as get_version."""
        with self._read() as session:
            return self._version_row(session, project, agent_name, version).uid

    def agent_of_uid(self, uid: str) -> tuple[str, str] | None:
        """The project and agent name of the version `uid`, or None when it is gone: what an agent's token
        (which names only its version) reaches."""
        with self._read() as session:
            row = session.execute(select(AgentRow.project, AgentRow.name).join(
                AgentVersionRow, AgentVersionRow.agent_id == AgentRow.id).where(AgentVersionRow.uid == uid)).first()
            return (row[0], row[1]) if row is not None else None

    def list_versions(self, project: str, agent_name: str, request: PageRequest) -> Page[AgentVersion]:
        with self._read() as session:
            agent = self._agent_row(session, project, agent_name)
            stmt = select(AgentVersionRow).where(AgentVersionRow.agent_id == agent.id)
            rows, has_more = _paged(
                session,
                stmt,
                AgentVersionRow.number,
                request,
                after=_version_cursor(request.after, agent_name),
                before=_version_cursor(request.before, agent_name),
            )
            return Page([_version(agent_name, row[0]) for row in rows], has_more)

    def delete_version(self, project: str, agent_name: str, version: str) -> None:
        """Remove a version; removing an agent's last version removes the agent."""
        number = parse_version_number(version, agent_name)
        with self._write() as session:
            agent = self._agent_row(session, project, agent_name)
            deleted = 0
            if number is not None:
                deleted = rowcount(session.execute(
                    delete(AgentVersionRow)
                    .where(AgentVersionRow.agent_id == agent.id, AgentVersionRow.number == number)
                ))
            if not deleted:
                raise _version_not_found(agent_name, version)
            remaining = session.scalar(
                select(func.count()).select_from(AgentVersionRow).where(AgentVersionRow.agent_id == agent.id)
            )
            if not remaining:
                session.delete(agent)

    # -- agents -------------------------------------------------------------------------------------

    def get_agent(self, project: str, agent_name: str) -> Agent:
        with self._read() as session:
            rows = session.execute(_agents_with_latest(project).where(AgentRow.name == agent_name)).all()
            if not rows:
                raise _agent_not_found(agent_name)
            return _agent(*rows[0])

    def list_agents(self, project: str, request: PageRequest) -> Page[Agent]:
        with self._read() as session:
            after = self._agent_cursor(session, project, request.after)
            before = self._agent_cursor(session, project, request.before)
            rows, has_more = _paged(session, _agents_with_latest(project), AgentRow.id, request,
                                    after=after, before=before)
            return Page([_agent(agent, version) for agent, version in rows], has_more)

    def delete_agent(self, project: str, agent_name: str) -> None:
        with self._write() as session:
            agent = self._agent_row(session, project, agent_name)
            session.execute(delete(AgentVersionRow).where(AgentVersionRow.agent_id == agent.id))
            session.delete(agent)

    # -- for the reconciler -------------------------------------------------------------------------

    def desired_versions(self) -> list[DesiredVersion]:
        """Every version that exists, with what the reconciler needs to converge it."""
        with self._read() as session:
            rows = session.execute(
                select(AgentRow.project, AgentRow.name, AgentVersionRow)
                .join(AgentRow, AgentRow.id == AgentVersionRow.agent_id)
            ).all()
            return [
                DesiredVersion(uid=row.uid, project=project, version=_version(name, row), restarts=row.restarts,
                               updated_at=row.updated_at)
                for project, name, row in rows
            ]

    def desired_versions_of(self, project: str, agent_name: str) -> list[DesiredVersion]:
        with self._read() as session:
            agent = self._agent_row(session, project, agent_name)
            rows = session.scalars(select(AgentVersionRow).where(AgentVersionRow.agent_id == agent.id)).all()
            return [DesiredVersion(uid=row.uid, project=project, version=_version(agent_name, row),
                                   restarts=row.restarts, updated_at=row.updated_at) for row in rows]

    def endpoint_of(self, project: str, agent_name: str) -> tuple[bool, dict[str, Any] | None]:
        """Whether the agent's endpoint is enabled, and its configuration (version selector, protocols)."""
        with self._read() as session:
            agent = self._agent_row(session, project, agent_name)
            return agent.enabled, agent.endpoint

    def set_endpoint(self, project: str, agent_name: str, *, endpoint: dict[str, Any] | None = None,
                     enabled: bool | None = None) -> None:
        with self._write() as session:
            agent = self._agent_row(session, project, agent_name)
            if endpoint is not None:
                agent.endpoint = endpoint
            if enabled is not None:
                agent.enabled = enabled

    def set_status(self, uid: str, status: VersionStatus, error: VersionError | None = None) -> bool:
        """Record an observation for the version `uid`; False if it is gone or the move is not allowed."""
        with self._write() as session:
            row = session.scalars(select(AgentVersionRow).where(AgentVersionRow.uid == uid)).one_or_none()
            if row is None or not can_transition(VersionStatus(row.status), status):
                return False
            changed = (row.status, row.error_code, row.error_message) != (
                status.value, error.code if error else None, error.message if error else None)
            if changed:
                row.status = status.value
                row.error_code = error.code if error else None
                row.error_message = error.message if error else None
                row.updated_at = self._clock()
            return True

    def record_restart(self, uid: str) -> int:
        """Count one more crash of the version `uid` and return the total."""
        with self._write() as session:
            restarts = session.execute(
                update(AgentVersionRow).where(AgentVersionRow.uid == uid)
                .values(restarts=AgentVersionRow.restarts + 1).returning(AgentVersionRow.restarts)
            ).scalar_one_or_none()
            return restarts or 0

    # -- helpers ------------------------------------------------------------------------------------

    @staticmethod
    def _agent_row(session: Session, project: str, agent_name: str) -> AgentRow:
        agent = session.scalars(
            select(AgentRow).where(AgentRow.project == project, AgentRow.name == agent_name)
        ).one_or_none()
        if agent is None:
            raise _agent_not_found(agent_name)
        return agent

    def _version_row(self, session: Session, project: str, agent_name: str, version: str) -> AgentVersionRow:
        agent = self._agent_row(session, project, agent_name)
        number = parse_version_number(version, agent_name)
        row = None
        if number is not None:
            row = session.scalars(
                select(AgentVersionRow).where(AgentVersionRow.agent_id == agent.id, AgentVersionRow.number == number)
            ).one_or_none()
        if row is None:
            raise _version_not_found(agent_name, version)
        return row

    @staticmethod
    def _agent_cursor(session: Session, project: str, cursor: str | None) -> int | None:
        if cursor is None:
            return None
        key = session.scalar(select(AgentRow.id).where(AgentRow.project == project, AgentRow.name == cursor))
        if key is None:
            raise BadRequest(
                f"The paging cursor {cursor!r} names no agent in this project (was it deleted?). "
                "Start the listing again without 'after'/'before'.",
                code="InvalidPaging",
                param="after",
            )
        return key


def _agents_with_latest(project: str) -> Select[AgentRow, AgentVersionRow]:
    latest = (
        select(AgentVersionRow.agent_id, func.max(AgentVersionRow.number).label("number"))
        .group_by(AgentVersionRow.agent_id)
        .subquery()
    )
    return (
        select(AgentRow, AgentVersionRow)
        .join(latest, latest.c.agent_id == AgentRow.id)
        .join(AgentVersionRow, and_(AgentVersionRow.agent_id == AgentRow.id, AgentVersionRow.number == latest.c.number))
        .where(AgentRow.project == project)
    )


def _paged(
    session: Session, stmt: Select[*tuple[Any, ...]], key: Any, request: PageRequest, *, after: int | None,
    before: int | None,
) -> tuple[list[Any], bool]:
    """One page of `stmt` walked along the integer `key`, in the requested order."""
    descending = request.order == "desc"
    reverse = False
    if after is not None:
        stmt = stmt.where(key < after if descending else key > after)
    if before is not None:
        stmt = stmt.where(key > before if descending else key < before)
        if after is None:
            # The page just before the cursor: walk away from it, then flip back into the requested order.
            descending, reverse = not descending, True
    stmt = stmt.order_by(key.desc() if descending else key.asc()).limit(request.limit + 1)
    rows = list(session.execute(stmt).all())
    has_more = len(rows) > request.limit
    rows = rows[: request.limit]
    if reverse:
        rows.reverse()
    return rows, has_more


def _version_cursor(cursor: str | None, agent_name: str) -> int | None:
    if cursor is None:
        return None
    number = parse_version_number(cursor, agent_name)
    if number is None:
        raise BadRequest(
            f"The paging cursor {cursor!r} is not a version id of agent {agent_name!r} (such as '{agent_name}:3').",
            code="InvalidPaging",
            param="after",
        )
    return number


def _version(agent_name: str, row: AgentVersionRow) -> AgentVersion:
    error = VersionError(row.error_code, row.error_message or "") if row.error_code else None
    return AgentVersion(
        agent_name=agent_name,
        number=row.number,
        created_at=row.created_at,
        definition=HostedDefinition.from_record(row.definition),
        description=row.description,
        metadata=dict(row.metadata_ or {}),
        status=VersionStatus(row.status),
        error=error,
    )


def _agent(agent: AgentRow, latest: AgentVersionRow) -> Agent:
    return Agent(name=agent.name, created_at=agent.created_at, latest=_version(agent.name, latest),
                 enabled=agent.enabled, endpoint=agent.endpoint)


def _agent_not_found(agent_name: str) -> NotFound:
    return NotFound(
        f"Agent {agent_name!r} was not found in this project. "
        "List agents with client.agents.list() to see what exists.",
        code="AgentNotFound",
    )


def _version_not_found(agent_name: str, version: str) -> NotFound:
    return NotFound(
        f"Version {version!r} of agent {agent_name!r} was not found. "
        "List versions with client.agents.list_versions(agent_name=...) to see what exists.",
        code="AgentVersionNotFound",
    )
