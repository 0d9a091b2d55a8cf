"""The store's tables. Alembic migrations in `migrations/` create exactly these; a test keeps them in step."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint, true as sa_true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AgentRow(Base):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("project", "name", name="uq_agents_project_name"),)

    # The integer key doubles as the creation order that list paging walks.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    # The last version number handed out; bumped atomically so concurrent creates never collide.
    last_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default=sa_true())
    # The agent endpoint's configuration as 2.x sends it (version_selector, protocols), kept verbatim.
    endpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class AgentVersionRow(Base):
    __tablename__ = "agent_versions"
    __table_args__ = (
        UniqueConstraint("agent_id", "number", name="uq_agent_versions_agent_number"),
        UniqueConstraint("uid", name="uq_agent_versions_uid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Names this version's containers: unlike (agent, number), never reused by a recreated agent.
    uid: Mapped[str] = mapped_column(String(32), nullable=False)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), nullable=False, index=True)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[int] = mapped_column(Integer, nullable=False)
    # Crashes seen by the reconciler; kept here, not in memory, so a restart does not forget them.
    restarts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")


class RegistryConnectionRow(Base):
    __tablename__ = "registry_connections"
    __table_args__ = (UniqueConstraint("project", "name", name="uq_registry_connections_project_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    server: Mapped[str] = mapped_column(String(255), nullable=False)
    username: Mapped[str] = mapped_column(String(255), nullable=False)
    password: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)


class SessionRow(Base):
    """A session: one sandbox (container and volume) serving one conversation with one agent version."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    agent_name: Mapped[str] = mapped_column(String(63), nullable=False, index=True)
    version_uid: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    version: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    idle_timeout_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    last_accessed_at: Mapped[float] = mapped_column(Float, nullable=False)
    stopped_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Who made it (dockyard.identity.ownership): the token's subject and the delegated end user, if any.
    owner_subject: Mapped[str | None] = mapped_column(String(300), nullable=True, index=True)
    owner_user: Mapped[str | None] = mapped_column(String(256), nullable=True)


class ResponseRouteRow(Base):
    """Which session a response lives in, so GET/cancel/delete of a response reach the same sandbox."""

    __tablename__ = "response_routes"

    response_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False, index=True)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    owner_subject: Mapped[str | None] = mapped_column(String(300), nullable=True)
    owner_user: Mapped[str | None] = mapped_column(String(256), nullable=True)


class InvocationRouteRow(Base):
    """Which session an invocation ran in, so its GET and cancel reach the same sandbox."""

    __tablename__ = "invocation_routes"

    invocation_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False, index=True)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    owner_subject: Mapped[str | None] = mapped_column(String(300), nullable=True)
    owner_user: Mapped[str | None] = mapped_column(String(256), nullable=True)


class ModelConnectionRow(Base):
    """A connection to a model provider: where a deployment's requests go, and with which credentials."""

    __tablename__ = "model_connections"
    __table_args__ = (UniqueConstraint("project", "name", name="uq_model_connections_project_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    target: Mapped[str] = mapped_column(Text, nullable=False)
    auth: Mapped[str] = mapped_column(String(16), nullable=False)
    # Kept in plain text like registry passwords: encryption at rest is a separate piece of work.
    api_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)
    speaks_responses: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default=sa_true())
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)


class DeploymentRow(Base):
    """A named model deployment: the name callers use, the connection it goes through, what it reports."""

    __tablename__ = "model_deployments"
    __table_args__ = (UniqueConstraint("project", "name", name="uq_model_deployments_project_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    connection: Mapped[str] = mapped_column(String(128), nullable=False)
    # The model name the upstream expects in request bodies ("" for the local model: whatever it serves).
    upstream_model: Mapped[str] = mapped_column(String(255), nullable=False)
    model_name: Mapped[str] = mapped_column(String(255), nullable=False)
    model_version: Mapped[str] = mapped_column(String(64), nullable=False)
    model_publisher: Mapped[str] = mapped_column(String(128), nullable=False)
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    sku: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
