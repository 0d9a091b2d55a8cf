"""Model connections and deployments in the store.

One store for both: a deployment names its connection, and the two are read together (the catalog
snapshots a project's deployments and connections in one transaction). Rows become the pure values
of `dockyard.domain.deployments`; validation happens there, before anything is written.

API keys are sealed with the home's key (store/secrets.py) before they reach the database. They never
leave this module except inside a `Connection`, whose repr hides them.
"""

from __future__ import annotations

import time
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard.domain.deployments import (
    CONNECTION_NOT_FOUND,
    DEPLOYMENT_NOT_FOUND,
    AuthKind,
    Connection,
    Deployment,
    ProviderKind,
    Sku,
)
from dockyard.domain.errors import Conflict, NotFound
from dockyard.store.database import Repository
from dockyard.store.secrets import SecretBox, is_sealed
from dockyard.store.tables import DeploymentRow, ModelConnectionRow, RegistryConnectionRow


class ModelStore(Repository):
    def __init__(self, engine: Engine, secrets: SecretBox) -> None:
        super().__init__(engine)
        self._secrets = secrets

    def seal_plaintext(self) -> int:
        """Seal keys stored in the clear (by a build before encryption at rest); how many there were."""
        with self._write() as session:
            rows = [r for r in session.scalars(select(ModelConnectionRow))
                    if r.api_key is not None and not is_sealed(r.api_key)]
            for row in rows:
                row.api_key = self._secrets.seal(row.api_key)
        return len(rows)

    # -- connections --------------------------------------------------------------------------------

    def add_connection(self, project: str, connection: Connection) -> Connection:
        connection = connection.validated()
        try:
            with self._write() as session:
                if self._registry_named(session, project, connection.name):
                    raise _connection_exists(connection.name, "registry connection")
                session.add(_connection_row(project, connection, self._secrets))
        except IntegrityError:
            raise _connection_exists(connection.name, "connection") from None
        return connection

    def ensure_connection(self, project: str, connection: Connection) -> bool:
        """Add `connection` unless one of that name exists; True if it was added. Safe on every start."""
        connection = connection.validated()
        try:
            with self._write() as session:
                if session.scalar(self._connection_query(project, connection.name)) is not None:
                    return False
                session.add(_connection_row(project, connection, self._secrets))
        except IntegrityError:  # another process added it meanwhile
            return False
        return True

    def get_connection(self, project: str, name: str) -> Connection:
        with self._read() as session:
            row = session.scalar(self._connection_query(project, name))
            if row is None:
                raise connection_not_found(name)
            return _connection(row, self._secrets)

    def list_connections(self, project: str) -> list[Connection]:
        with self._read() as session:
            rows = session.scalars(select(ModelConnectionRow).where(ModelConnectionRow.project == project)
                                   .order_by(ModelConnectionRow.id))
            return [_connection(row, self._secrets) for row in rows]

    def remove_connection(self, project: str, name: str) -> None:
        with self._write() as session:
            users = session.scalars(select(DeploymentRow.name).where(
                DeploymentRow.project == project, DeploymentRow.connection == name).order_by(DeploymentRow.name)).all()
            if users:
                raise Conflict(
                    f"Connection {name!r} is used by deployment(s) {', '.join(users)}. Remove them first with "
                    f"`dockyard model remove NAME`.", code="ConnectionInUse")
            # Session.execute types every result as a plain Result; a DELETE's is a CursorResult.
            removed = cast("CursorResult[Any]", session.execute(delete(ModelConnectionRow).where(
                ModelConnectionRow.project == project, ModelConnectionRow.name == name))).rowcount
        if not removed:
            raise connection_not_found(name)

    # -- deployments --------------------------------------------------------------------------------

    def add_deployment(self, project: str, deployment: Deployment) -> Deployment:
        deployment = deployment.validated()
        try:
            with self._write() as session:
                if session.scalar(self._connection_query(project, deployment.connection)) is None:
                    raise connection_not_found(deployment.connection)
                session.add(_deployment_row(project, deployment))
        except IntegrityError:
            raise Conflict(f"A deployment named {deployment.name!r} already exists; remove it first with "
                           f"`dockyard model remove {deployment.name}`.", code="DeploymentExists") from None
        return deployment

    def ensure_deployment(self, project: str, deployment: Deployment) -> bool:
        """Add `deployment` unless one of that name exists; True if it was added."""
        deployment = deployment.validated()
        try:
            with self._write() as session:
                if session.scalar(self._deployment_query(project, deployment.name)) is not None:
                    return False
                if session.scalar(self._connection_query(project, deployment.connection)) is None:
                    raise connection_not_found(deployment.connection)
                session.add(_deployment_row(project, deployment))
        except IntegrityError:
            return False
        return True

    def get_deployment(self, project: str, name: str) -> Deployment:
        with self._read() as session:
            row = session.scalar(self._deployment_query(project, name))
            if row is None:
                raise NotFound(f"Deployment {name!r} does not exist. `dockyard model list` shows the deployments "
                               "there are.", code=DEPLOYMENT_NOT_FOUND)
            return _deployment(row)

    def list_deployments(self, project: str) -> list[Deployment]:
        with self._read() as session:
            return self._deployments(session, project)

    def remove_deployment(self, project: str, name: str) -> Deployment:
        with self._write() as session:
            row = session.scalar(self._deployment_query(project, name))
            if row is None:
                raise NotFound(f"Deployment {name!r} does not exist. `dockyard model list` shows the deployments "
                               "there are.", code=DEPLOYMENT_NOT_FOUND)
            removed = _deployment(row)
            session.delete(row)
        return removed

    def snapshot(self, project: str) -> tuple[list[Deployment], list[Connection]]:
        """A project's deployments and connections, read in one transaction."""
        with self._read() as session:
            connections = [_connection(row, self._secrets) for row in session.scalars(
                select(ModelConnectionRow).where(ModelConnectionRow.project == project))]
            return self._deployments(session, project), connections

    # -- helpers ------------------------------------------------------------------------------------

    @staticmethod
    def _connection_query(project: str, name: str):  # type: ignore[no-untyped-def]
        return select(ModelConnectionRow).where(ModelConnectionRow.project == project, ModelConnectionRow.name == name)

    @staticmethod
    def _deployment_query(project: str, name: str):  # type: ignore[no-untyped-def]
        return select(DeploymentRow).where(DeploymentRow.project == project, DeploymentRow.name == name)

    @staticmethod
    def _deployments(session: Session, project: str) -> list[Deployment]:
        return [_deployment(row) for row in session.scalars(
            select(DeploymentRow).where(DeploymentRow.project == project).order_by(DeploymentRow.name))]

    @staticmethod
    def _registry_named(session: Session, project: str, name: str) -> bool:
        return session.scalar(select(RegistryConnectionRow.id).where(
            RegistryConnectionRow.project == project, RegistryConnectionRow.name == name)) is not None


def connection_not_found(name: str) -> NotFound:
    return NotFound(
        f"Connection {name!r} does not exist. Add it with `dockyard connection add {name} --base-url URL` "
        "(or --azure-endpoint URL); `dockyard connection list` shows the connections there are.",
        code=CONNECTION_NOT_FOUND)


def _connection_exists(name: str, what: str) -> Conflict:
    return Conflict(f"A {what} named {name!r} already exists; connection names are shared by every kind of "
                    "connection. Choose another name, or remove it first.", code="ConnectionExists")


def _connection_row(project: str, connection: Connection, secrets: SecretBox) -> ModelConnectionRow:
    return ModelConnectionRow(
        project=project, name=connection.name, kind=connection.kind.value, target=connection.target,
        auth=connection.auth.value, api_key=secrets.seal(connection.api_key),
        metadata_=dict(connection.metadata),
        speaks_responses=connection.speaks_responses, created_at=int(time.time()))


def _connection(row: ModelConnectionRow, secrets: SecretBox) -> Connection:
    return Connection(name=row.name, kind=ProviderKind(row.kind), target=row.target, auth=AuthKind(row.auth),
                      api_key=secrets.open(row.api_key),
                      metadata={str(k): str(v) for k, v in (row.metadata_ or {}).items()},
                      speaks_responses=row.speaks_responses)


def _deployment_row(project: str, deployment: Deployment) -> DeploymentRow:
    return DeploymentRow(
        project=project, name=deployment.name, connection=deployment.connection, upstream_model=deployment.model,
        model_name=deployment.model_name, model_version=deployment.model_version,
        model_publisher=deployment.model_publisher, capabilities=dict(deployment.capabilities),
        sku=deployment.sku.to_wire(), created_at=int(time.time()))


def _deployment(row: DeploymentRow) -> Deployment:
    return Deployment(name=row.name, connection=row.connection, model=row.upstream_model, model_name=row.model_name,
                      model_version=row.model_version, model_publisher=row.model_publisher,
                      capabilities={str(k): str(v) for k, v in (row.capabilities or {}).items()},
                      sku=Sku.from_wire(row.sku))
