"""Registry connections: the credentials dockyard uses to pull from registries that need them.

Foundry pulls with the project's managed identity or a registry connection named by
`container_configuration.registry_connection_id`; dockyard keeps named connections in its store
(added with `dockyard registry add`). A version that names none still gets the connection whose
server matches its image's registry, the way a Foundry project with AcrPull just works.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from dockyard.domain.errors import REGISTRY_CONNECTION_NOT_FOUND, Conflict, NotFound
from dockyard.store.database import Repository, rowcount
from dockyard.store.secrets import SecretBox, is_sealed
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
    """Passwords are sealed with the home's key (store/secrets.py) before they reach the database."""

    def __init__(self, engine: Engine, secrets: SecretBox) -> None:
        super().__init__(engine)
        self._secrets = secrets

    def add(self, project: str, name: str, server: str, username: str, password: str) -> RegistryConnection:
        row = RegistryConnectionRow(project=project, name=name, server=server, username=username,
                                    password=self._secrets.seal(password), created_at=int(time.time()))
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
            return [RegistryConnection(r.name, r.server, r.username, self._secrets.open(r.password) or "")
                    for r in rows]

    def seal_plaintext(self) -> int:
        """Seal passwords an older dockyard stored in the clear; how many there were."""
        with self._write() as session:
            rows = [r for r in session.scalars(select(RegistryConnectionRow)) if not is_sealed(r.password)]
            for row in rows:
                row.password = self._secrets.seal(row.password) or ""
        return len(rows)

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
