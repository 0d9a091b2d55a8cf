"""The catalog: a project's deployments and connections, as the inference routes and the API read them.

`resolve(project, name)` is on every inference request's warm path, so it reads no database: it serves
from what it read of the project at most `cache_seconds` ago (this process's own writes show at once,
through the store's `generation`). The CLI writes the same SQLite file from another process, and a
second replica writes the same database; their changes show within that second. Past it, what was
read keeps serving for up to `_STALE_LIMIT` times as long while one background read refreshes it, as
the agent gateway's routing state does (`gateway/sandboxes.py`). A name it does not know is read again
at once before it answers 404: a deployment added a moment ago by `dockyard model add` is found.

The local model's address is known only while it runs, so a deployment on the built-in `local`
connection takes `base_url` and `model` from the running `LocalModel` at each call. A local deployment
whose capabilities say embeddings (the built-in `local-embeddings`) goes to the embedding server
instead (models/embeddings.py lends it here), which starts on the first call that needs it.

Listing (deployments and connections API) reads the store each time: it is not on a hot path, and
it must show registry connections too, which live in their own store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

from dockyard.domain.deployments import (
    CONNECTION_NOT_FOUND,
    DEPLOYMENT_NOT_FOUND,
    AuthKind,
    Connection,
    Deployment,
    ProviderKind,
    default_capabilities,
    embedding_capabilities,
    is_embedding_model,
)
from dockyard.domain.errors import NotFound, ServiceUnavailable
from dockyard.models.deployments import (
    MODEL_DEPLOYMENT,
    ProjectConnection,
    model_connection_view,
    registry_connection_view,
)
from dockyard.models.upstreams import ModelKind, Upstream
from dockyard.store.models import ModelStore, connection_not_found
from dockyard.store.registries import RegistryStore

# The built-in connection and deployment that reach the local model.
LOCAL = "local"
# The built-in deployment that reaches dockyard's own embedding server (on the `local` connection).
LOCAL_EMBEDDINGS = "local-embeddings"
LOCAL_MODEL_UNAVAILABLE = "LocalModelUnavailable"

_STALE_LIMIT = 10


class LocalModelLike(Protocol):
    """What the catalog reads of `dockyard.models.local.LocalModel`."""

    @property
    def base_url(self) -> str | None: ...

    @property
    def model_name(self) -> str: ...

    @property
    def available(self) -> bool: ...

    @property
    def api_key(self) -> str: ...


def local_connection() -> Connection:
    return Connection(name=LOCAL, kind=ProviderKind.LOCAL, target="", auth=AuthKind.NONE, speaks_responses=False,
                      metadata={"description": "The local model dockyard runs (llama.cpp's server)."})


def local_deployment(name: str = LOCAL, model_name: str = "") -> Deployment:
    return Deployment(name=name, connection=LOCAL, model="", model_name=model_name, model_publisher="dockyard",
                      capabilities=default_capabilities(speaks_responses=False))


def local_embeddings_deployment(model_name: str = "") -> Deployment:
    return Deployment(name=LOCAL_EMBEDDINGS, connection=LOCAL, model="", model_name=model_name,
                      model_publisher="dockyard", capabilities=embedding_capabilities())


@dataclass
class _Snapshot:
    read_at: float
    generation: int
    deployments: dict[str, Deployment]
    connections: dict[str, Connection]
    # Resolved upstreams of remote connections (local ones depend on the running model: never cached).
    upstreams: dict[str, Upstream] = field(default_factory=dict)


class Catalog:
    def __init__(self, models: ModelStore, registries: RegistryStore | None = None, *,
                 local_model: LocalModelLike | None = None, cache_seconds: float = 1.0) -> None:
        self.models = models
        self.registries = registries
        # Set once the local model exists (see `attach_local_model`); None means dockyard runs none.
        self.local_model = local_model
        # dockyard's own embedding server, lent by models/embeddings.py (`attach_embedding_server`).
        self.embedding_server: LocalModelLike | None = None
        self.cache_seconds = cache_seconds
        self._snapshots: dict[str, _Snapshot] = {}
        self._refreshing: set[str] = set()
        self._guard = threading.Lock()
        self._background: ThreadPoolExecutor | None = None

    # -- the warm path ------------------------------------------------------------------------------

    def resolve(self, project: str, deployment: str) -> Upstream:
        """Where a request for `deployment` goes.

        Raises NotFound (code DeploymentNotFound, the message lists the deployments there are and how
        to add one) and, for the local model when it is not installed or not running,
        ServiceUnavailable (503, code LocalModelUnavailable).
        """
        snapshot = self._snapshot(project)
        upstream = snapshot.upstreams.get(deployment)
        if upstream is not None:
            return upstream
        found = snapshot.deployments.get(deployment)
        if found is None:
            snapshot = self._read(project)  # maybe added a moment ago, by the CLI or another replica
            found = snapshot.deployments.get(deployment)
            if found is None:
                raise self._deployment_not_found(deployment, snapshot.deployments)
        connection = snapshot.connections.get(found.connection)
        if connection is None:
            raise NotFound(f"Deployment {deployment!r} goes through connection {found.connection!r}, which no longer "
                           f"exists. Add it again with `dockyard connection add {found.connection} ...`, or remove the "
                           f"deployment with `dockyard model remove {deployment}`.", code=CONNECTION_NOT_FOUND)
        if connection.kind is ProviderKind.LOCAL:
            return self._local_upstream(found, connection)
        upstream = Upstream(deployment=found.name, connection=connection.name, kind=connection.kind,
                            base_url=connection.target, model=found.model or found.name, auth=connection.auth,
                            api_key=connection.api_key, speaks_responses=connection.speaks_responses,
                            model_kind=ModelKind.EMBEDDINGS if is_embedding_model(found.capabilities)
                            else ModelKind.ANY)
        snapshot.upstreams[deployment] = upstream
        return upstream

    async def resolve_ready(self, project: str, deployment: str, timeout: float = 60.0) -> Upstream:
        """`resolve`, but a deployment on the local model waits (without blocking the loop) while it loads.

        The embedding server is started here, by the first call that needs it.
        """
        try:
            return self.resolve(project, deployment)
        except ServiceUnavailable as error:
            server = self._local_server(project, deployment)
            wait_ready = getattr(server, "wait_ready", None)
            if error.code != LOCAL_MODEL_UNAVAILABLE or server is None or wait_ready is None or not server.available:
                raise
            if server is self.embedding_server:
                getattr(server, "start", lambda: None)()  # at once when it already runs
            await wait_ready(timeout)  # raises its own 503 with the reason when it gives up
            return self.resolve(project, deployment)

    def _local_server(self, project: str, deployment: str) -> LocalModelLike | None:
        found = self._snapshot(project).deployments.get(deployment)
        if found is not None and is_embedding_model(found.capabilities):
            return self.embedding_server
        return self.local_model

    def names(self, project: str) -> list[str]:
        """The deployment names of `project`, sorted (from the same cache as `resolve`)."""
        return sorted(self._snapshot(project).deployments)

    def _local_upstream(self, deployment: Deployment, connection: Connection) -> Upstream:
        if is_embedding_model(deployment.capabilities):
            return self._embedding_upstream(deployment, connection)
        local = self.local_model
        if local is None:
            raise ServiceUnavailable(
                f"Deployment {deployment.name!r} goes to the local model, which this dockyard does not run (it was "
                "started with --no-local-model). Restart it without that flag, or point the name elsewhere: "
                f"`dockyard model remove {deployment.name}` then "
                f"`dockyard model add {deployment.name} --base-url URL`.",
                code=LOCAL_MODEL_UNAVAILABLE)
        if not local.available:
            hint = getattr(local, "install_hint", "The local model is not installed; `make run` installs it.")
            raise ServiceUnavailable(f"Deployment {deployment.name!r} goes to the local model. {hint}",
                                     code=LOCAL_MODEL_UNAVAILABLE)
        base_url = local.base_url
        if base_url is None:
            raise ServiceUnavailable(
                f"Deployment {deployment.name!r} goes to the local model, which is not running yet (it is starting, "
                "or restarting after a crash). Retry in a few seconds; its log is logs/local-model.log in dockyard's "
                "home.", code=LOCAL_MODEL_UNAVAILABLE)
        return Upstream(deployment=deployment.name, connection=connection.name, kind=ProviderKind.LOCAL,
                        base_url=base_url, model=local.model_name, auth=AuthKind.API_KEY, api_key=local.api_key,
                        speaks_responses=bool(getattr(local, "speaks_responses", connection.speaks_responses)),
                        model_kind=ModelKind.CHAT)

    def _embedding_upstream(self, deployment: Deployment, connection: Connection) -> Upstream:
        server = self.embedding_server
        if server is None:
            raise ServiceUnavailable(
                f"Deployment {deployment.name!r} goes to dockyard's own embedding server, which this dockyard does "
                "not run (it was started with --no-local-model). Restart it without that flag, or use an embedding "
                "deployment of a provider (`dockyard model add NAME --base-url URL`).", code=LOCAL_MODEL_UNAVAILABLE)
        if not server.available:
            hint = getattr(server, "install_hint", "The local model is not installed; `make run` installs it.")
            raise ServiceUnavailable(f"Deployment {deployment.name!r} goes to dockyard's embedding server. {hint}",
                                     code=LOCAL_MODEL_UNAVAILABLE)
        base_url = server.base_url
        if base_url is None:
            raise ServiceUnavailable(
                f"Deployment {deployment.name!r} goes to dockyard's embedding server, which is not running yet (it "
                "starts on the first call, or is restarting after a crash). Retry in a few seconds; its log is "
                "logs/local-embeddings.log in dockyard's home.", code=LOCAL_MODEL_UNAVAILABLE)
        return Upstream(deployment=deployment.name, connection=connection.name, kind=ProviderKind.LOCAL,
                        base_url=base_url, model=server.model_name, auth=AuthKind.API_KEY, api_key=server.api_key,
                        speaks_responses=False, model_kind=ModelKind.EMBEDDINGS)

    def _deployment_not_found(self, name: str, deployments: Iterable[str]) -> NotFound:
        known = ", ".join(sorted(deployments)) or "none"
        return NotFound(
            f"The deployment {name!r} does not exist. Deployments in this project: {known}. Add it with "
            f"`dockyard model add {name} --base-url URL` (any OpenAI-compatible server), "
            f"`--azure-endpoint URL` (Azure OpenAI), or `--local` (the local model).",
            code=DEPLOYMENT_NOT_FOUND)

    # -- the cache ----------------------------------------------------------------------------------

    def _snapshot(self, project: str) -> _Snapshot:
        snapshot = self._snapshots.get(project)
        if snapshot is None or snapshot.generation != self.models.generation:
            return self._read(project)
        age = time.monotonic() - snapshot.read_at
        if age > self.cache_seconds:
            if age > self.cache_seconds * _STALE_LIMIT:
                return self._read(project)
            self._refresh_in_background(project)
        return snapshot

    def _read(self, project: str) -> _Snapshot:
        generation = self.models.generation
        deployments, connections = self.models.snapshot(project)
        snapshot = _Snapshot(read_at=time.monotonic(), generation=generation,
                             deployments={d.name: d for d in deployments},
                             connections={c.name: c for c in connections})
        self._snapshots[project] = snapshot
        return snapshot

    def _refresh_in_background(self, project: str) -> None:
        with self._guard:
            if project in self._refreshing:
                return
            self._refreshing.add(project)
            if self._background is None:
                self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dockyard-catalog-refresh")

        def refresh() -> None:
            try:
                self._read(project)
            except Exception:  # noqa: BLE001 - the store did not answer: the next request reads it itself
                self._snapshots.pop(project, None)
            finally:
                with self._guard:
                    self._refreshing.discard(project)

        self._background.submit(refresh)

    def close(self) -> None:
        if self._background is not None:
            self._background.shutdown(wait=False)

    # -- the local model ----------------------------------------------------------------------------

    def attach_local_model(self, local_model: LocalModelLike, projects: Iterable[str]) -> None:
        """Use `local_model` for the `local` connection, and make sure `local` and `local-embeddings` (the
        embedding server, on the same GGUF) exist in each project.

        Idempotent: a `local` connection or deployment already there (even one the user changed) is kept.
        """
        self.local_model = local_model
        for project in projects:
            self.models.ensure_connection(project, local_connection())
            self.models.ensure_deployment(project, local_deployment(model_name=local_model.model_name))
            self.models.ensure_deployment(project, local_embeddings_deployment(model_name=local_model.model_name))

    def attach_embedding_server(self, server: LocalModelLike) -> None:
        """Serve local deployments whose capabilities say embeddings from `server` (not started here)."""
        self.embedding_server = server

    # -- what the deployments and connections API show ----------------------------------------------

    def deployments(self, project: str, *, model_publisher: str | None = None, model_name: str | None = None,
                    deployment_type: str | None = None) -> list[Deployment]:
        """The deployments as the API lists them, filtered as `GET /deployments` filters (case-insensitively)."""
        if deployment_type is not None and deployment_type.lower() != MODEL_DEPLOYMENT.lower():
            return []
        found = [self._reported(d) for d in self.models.list_deployments(project)]
        if model_publisher is not None:
            found = [d for d in found if d.model_publisher.lower() == model_publisher.lower()]
        if model_name is not None:
            found = [d for d in found if d.model_name.lower() == model_name.lower()]
        return found

    def deployment(self, project: str, name: str) -> Deployment:
        deployments, _ = self.models.snapshot(project)
        for deployment in deployments:
            if deployment.name == name:
                return self._reported(deployment)
        raise self._deployment_not_found(name, (d.name for d in deployments))

    def _reported(self, deployment: Deployment) -> Deployment:
        """A local-model deployment reports the model the local server serves."""
        if deployment.connection != LOCAL or deployment.model_name:
            return deployment
        name = self.local_model.model_name if self.local_model is not None else LOCAL
        return replace(deployment, model_name=name)

    def connections(self, project: str, *, connection_type: str | None = None,
                    default_connection: bool | None = None) -> list[ProjectConnection]:
        """Every connection of the project, model and registry ones, without filtering out secrets.

        Callers decide what to show: the API shapes them with credentials only on the credentials route.
        The first connection of each type is its default, as the first one made in a Foundry project is.
        A registry connection whose name a model connection also has is left out (pulls still use it).
        """
        views = [self._view(c) for c in self.models.list_connections(project)]
        names = {v.name for v in views}
        if self.registries is not None:
            views += [registry_connection_view(r.name, r.server, r.username, r.password)
                      for r in self.registries.list(project) if r.name not in names]
        seen_types: set[str] = set()
        marked = []
        for view in views:
            marked.append(replace(view, is_default=view.type not in seen_types))
            seen_types.add(view.type)
        if connection_type is not None:
            marked = [v for v in marked if v.type.lower() == connection_type.lower()]
        if default_connection is not None:
            marked = [v for v in marked if v.is_default == default_connection]
        return marked

    def connection(self, project: str, name: str) -> ProjectConnection:
        """One connection by name (model or registry); NotFound with code ConnectionNotFound."""
        for view in self.connections(project):
            if view.name == name:
                return view
        raise connection_not_found(name)

    def _view(self, connection: Connection) -> ProjectConnection:
        if connection.kind is ProviderKind.LOCAL:
            return model_connection_view(connection, target=(self.local_model.base_url or "")
                                         if self.local_model is not None else "")
        return model_connection_view(connection)
