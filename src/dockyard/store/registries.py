"""Registry connections: the credentials dockyard uses to pull from registries that need them.

Foundry pulls with the project's managed identity or a registry connection named by
`container_configuration.registry_connection_id`; dockyard keeps named connections in its store
(added with `dockyard registry add`). A version that names none still gets the connection whose
server matches its image's registry, the way a Foundry project with AcrPull just works.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from dockyard.domain.errors import REGISTRY_CONNECTION_NOT_FOUND, Conflict, NotFound
from dockyard.store.database import Repository, rowcount
from dockyard.store.tables import ModelConnectionRow, RegistryConnectionRow


@dataclass(frozen=True)
class RegistryConnection:
    name: str
    server: str
    username: str
    password: str = field(repr=False)


def connection_name(connection_id: str) -> str:
    """`myacr` from `myacr` or from an ARM id `/subscriptions/…/connections/myacr`."""
    return connection_id.rstrip("/").rsplit("/", 1)[-1]


class RegistryStore(Repository):
    def add(self, project: str, name: str, server: str, username: str, password: str) -> RegistryConnection:
        row = RegistryConnectionRow(project=project, name=name, server=server, username=username, password=password,
                                    created_at=int(time.time()))
        try:
            with self._write() as session:
                # One namespace for every kind of connection, as the connections API lists them together.
                if session.scalar(select(ModelConnectionRow.id).where(
                        ModelConnectionRow.project == project, ModelConnectionRow.name == name)) is not None:
                    raise Conflict(f"A model connection named {name!r} already exists (`dockyard connection list`); "
                                   "connection names are shared by every kind of connection. Choose another name.",
                                   code="ConnectionExists")
                session.add(row)
        except IntegrityError:
            raise Conflict(f"A registry connection named {name!r} already exists; remove it first.",
                           code="RegistryConnectionExists") from None
        return RegistryConnection(name, server, username, password)

    def remove(self, project: str, name: str) -> None:
        with self._write() as session:
            removed = rowcount(session.execute(delete(RegistryConnectionRow).where(
                RegistryConnectionRow.project == project, RegistryConnectionRow.name == name)))
        if not removed:
            raise _not_found(name)

    def list(self, project: str) -> list[RegistryConnection]:
        with self._read() as session:
            rows = session.scalars(select(RegistryConnectionRow).where(RegistryConnectionRow.project == project)
                                   .order_by(RegistryConnectionRow.name)).all()
            return [RegistryConnection(r.name, r.server, r.username, r.password) for r in rows]

    def get(self, project: str, connection_id: str) -> RegistryConnection:
        name = connection_name(connection_id)
        for connection in self.list(project):
            if connection.name == name:
                return connection
        raise _not_found(name)

    def for_server(self, project: str, server: str | None) -> RegistryConnection | None:
        return next((c for c in self.list(project) if server and c.server == server), None)


def _not_found(name: str) -> NotFound:
    return NotFound(
        f"Registry connection {name!r} does not exist. Add it with `dockyard registry add {name} --server HOST "
        "--username USER --password-stdin`.",
        code=REGISTRY_CONNECTION_NOT_FOUND,
    )
