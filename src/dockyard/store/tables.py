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


class FileRow(Base):
    """An uploaded file (`/openai/v1/files`): its bytes live under `<home>/files`, named by its id."""

    __tablename__ = "files"

    # The integer key is the upload order that list paging walks; `id` is what callers see ("file-…").
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    owner_subject: Mapped[str] = mapped_column(String(300), nullable=False)
    owner_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    filename: Mapped[str] = mapped_column(String(512), nullable=False)
    purpose: Mapped[str] = mapped_column(String(32), nullable=False)
    bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)


class VectorStoreRow(Base):
    """A vector store (`/openai/v1/vector_stores`); its index lives under `<home>/vector_stores/<id>/`."""

    __tablename__ = "vector_stores"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    owner_subject: Mapped[str] = mapped_column(String(300), nullable=False)
    owner_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    name: Mapped[str | None] = mapped_column(String(512), nullable=True)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    last_active_at: Mapped[int] = mapped_column(Integer, nullable=False)
    expires_after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)
    # The embedding deployment its vectors came from: a search embeds the query with the same one.
    embedding_deployment: Mapped[str] = mapped_column(String(128), nullable=False)


class VectorStoreFileRow(Base):
    """A file attached to a vector store, with its ingestion status (in_progress → completed | failed)."""

    __tablename__ = "vector_store_files"
    __table_args__ = (UniqueConstraint("vector_store_id", "file_id", name="uq_vector_store_files_store_file"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vector_store_id: Mapped[str] = mapped_column(ForeignKey("vector_stores.id", ondelete="CASCADE"), nullable=False,
                                                 index=True)
    file_id: Mapped[str] = mapped_column(String(64), nullable=False)
    batch_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    usage_bytes: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    chunking_strategy: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class VectorStoreFileBatchRow(Base):
    """A file batch: several files attached at once, one status over theirs."""

    __tablename__ = "vector_store_file_batches"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    vector_store_id: Mapped[str] = mapped_column(ForeignKey("vector_stores.id", ondelete="CASCADE"), nullable=False,
                                                 index=True)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    cancelled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class VectorStoreChunkRow(Base):
    """One chunk of a file in a vector store: its text; `id` is its key in the store's vector index."""

    __tablename__ = "vector_store_chunks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vector_store_id: Mapped[str] = mapped_column(ForeignKey("vector_stores.id", ondelete="CASCADE"), nullable=False,
                                                 index=True)
    file_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)


class ToolboxRow(Base):
    """A toolbox: a name in a project whose versions each hold a list of tool entries (store/toolboxes.py)."""

    __tablename__ = "toolboxes"
    __table_args__ = (UniqueConstraint("project", "name", name="uq_toolboxes_project_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[int] = mapped_column(Integer, nullable=False)
    last_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The version its MCP endpoint serves; None: the latest.
    default_version: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ToolboxVersionRow(Base):
    """One immutable version of a toolbox: its tool entries (secrets in them sealed), description, metadata."""

    __tablename__ = "toolbox_versions"
    __table_args__ = (UniqueConstraint("toolbox_id", "number", name="uq_toolbox_versions_toolbox_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    toolbox_id: Mapped[int] = mapped_column(ForeignKey("toolboxes.id", ondelete="CASCADE"), nullable=False, index=True)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    policies: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Who made the version: the vector stores (and other resources) its entries name are reached as them.
    author_subject: Mapped[str | None] = mapped_column(String(300), nullable=True)
    author_user: Mapped[str | None] = mapped_column(String(256), nullable=True)


class StoredResponseRow(Base):
    """A response Microsoft's adapter stored through the project's storage API (api/storage.py), and whose it is:
    the agent and the caller its call id named. Kept as the adapter sent it; outlives sessions and versions."""

    __tablename__ = "stored_responses"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    agent_name: Mapped[str] = mapped_column(String(63), nullable=False, index=True)
    owner_subject: Mapped[str] = mapped_column(String(300), nullable=False)
    owner_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    conversation_id: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # Items of earlier turns this one saw, by id (stored with the responses they came from).
    history_item_ids: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)


class StoredResponseItemRow(Base):
    """An input or output item of a stored response, in order; found by its id for history and references."""

    __tablename__ = "stored_response_items"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    response_id: Mapped[str] = mapped_column(ForeignKey("stored_responses.id", ondelete="CASCADE"), nullable=False,
                                             index=True)
    role: Mapped[str] = mapped_column(String(8), nullable=False)  # "input" or "output"
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    item_id: Mapped[str] = mapped_column(String(256), nullable=False, index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class ToolLoopResponseRow(Base):
    """A Response the tool loop on the model endpoint made (dockyard.tools.loop), kept so that
    `previous_response_id` continues it and its approval requests can be answered; its caller's only."""

    __tablename__ = "tool_loop_responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    owner_subject: Mapped[str] = mapped_column(String(300), nullable=False)
    owner_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    # The Response as the caller got it (OpenAI's shape).
    response: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # What the model saw and said, as model-level items (messages, function calls and their outputs):
    # the prefix of a continuation's input.
    transcript: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    # Approval requests waiting for an answer: their id -> the function call the model made.
    pending: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # What `input_items` lists (the previous Response's items, then this one's input); null before 0012.
    input_items: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


class StateStoreRow(Base):
    """A Foundry state store (api/state_stores.py): a named bag of JSON items an agent keeps through the
    project, e.g. Agent Framework's agent sessions and workflow checkpoints. An agent's own: keyed by the
    agent's name (not its version, so state carries on across versions), outliving sessions and versions."""

    __tablename__ = "state_stores"
    __table_args__ = (UniqueConstraint("project", "agent_name", "name", name="uq_state_stores_agent_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project: Mapped[str] = mapped_column(String(64), nullable=False)
    agent_name: Mapped[str] = mapped_column(String(63), nullable=False)
    name: Mapped[str] = mapped_column(String(512), nullable=False)
    user_isolation: Mapped[bool] = mapped_column(Boolean, nullable=False)
    # -1: items never expire.
    item_ttl_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    description: Mapped[str | None] = mapped_column(String(512), nullable=True)
    tags: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[int] = mapped_column(Integer, nullable=False)


class StateStoreItemRow(Base):
    """One item of a state store, in its partition: the caller's in a store with user isolation, else ""."""

    __tablename__ = "state_store_items"
    __table_args__ = (UniqueConstraint("store_id", "partition", "key", name="uq_state_store_items_key"),)

    # The integer key breaks ties in the creation order that key listings walk.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("state_stores.id", ondelete="CASCADE"), nullable=False,
                                          index=True)
    partition: Mapped[str] = mapped_column(String(600), nullable=False)
    key: Mapped[str] = mapped_column(String(1024), nullable=False)
    id: Mapped[str] = mapped_column(String(40), nullable=False)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    tags: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    etag: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
