"""`dockyard up`: prepare the home, bind the port, serve HTTPS until told to stop.

The port is bound here, before uvicorn starts, so "port taken" is one clear line and a non-zero exit
rather than a traceback; uvicorn then serves on that socket and shuts down gracefully on SIGINT or
SIGTERM. What is being served is recorded in the home so `dockyard env` can point at it.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import logging.config
import os
import signal
import socket
import time
import uuid

import uvicorn

from dockyard.api.app import create_app
from dockyard.api.dependencies import Services
from dockyard.console.auth import ConsoleAuth
from dockyard.console.routes import install as install_console
from dockyard.control_plane import ControlPlane
from dockyard.domain.admission import Admission, Budget, budget_from, read_machine
from dockyard.domain.errors import CONTAINER_RUNTIME_UNAVAILABLE
from dockyard.gateway.sandboxes import Sandboxes
from dockyard.home import Home
from dockyard.housekeeping import Retention, sweeps
from dockyard.identity.tls import ensure_tls
from dockyard.identity.tokens import TokenAuthority
from dockyard.logs import logging_config
from dockyard.models.catalog import Catalog
from dockyard.models.embeddings import Embedder
from dockyard.models.local import LocalModel
from dockyard.reconciler import Reconciler, ReconcilerSettings
from dockyard.runtime.containers import ContainersRuntime
from dockyard.runtime.engine import INSTALL_HINT, Engine, find_engine, host_address
from dockyard.runtime.environment import PlatformEnvironment
from dockyard.runtime.processes import ProcessRuntime
from dockyard.runtime.python_runtimes import HostPythons
from dockyard.settings import IDENTITY_PATH, Settings, base_url
from dockyard.store.agents import AgentStore
from dockyard.store.code_bundles import CodeBundles
from dockyard.store.database import migrate, open_engine, sqlite_url
from dockyard.store.files import FileStore
from dockyard.store.models import ModelStore
from dockyard.store.registries import RegistryStore
from dockyard.store.secrets import SecretBox
from dockyard.store.sessions import SessionStore
from dockyard.store.state_stores import StateStores
from dockyard.store.stored_responses import StoredResponses
from dockyard.store.tool_responses import ToolResponseStore
from dockyard.store.toolboxes import ToolboxStore
from dockyard.store.traces import TraceStore
from dockyard.store.vector_stores import VectorStoreRepository
from dockyard.tools.dependencies import ToolDependencies
from dockyard.tools.kinds import build_tool_kinds
from dockyard.tools.vector_search import VectorSearch

log = logging.getLogger("dockyard.server")


class StartupError(Exception):
    """dockyard cannot start; the message is the one line to show."""


class _Server(uvicorn.Server):
    """uvicorn, minus a ten-second hang on every stop.

    On shutdown uvicorn closes idle keep-alive connections and waits for them to go; over TLS, a close
    waits for the client's close_notify, which an idle SDK connection pool never sends. So: let every
    in-flight request finish (that is the graceful part), then drop the idle connections at once.
    """

    async def _wait_tasks_to_complete(self) -> None:
        while self.server_state.tasks and not self.force_exit:
            await asyncio.sleep(0.05)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        # An aborted TLS transport does not always report the loss back to uvicorn (seen with
        # connections already half-way through a close): nothing is in flight, so stop tracking them.
        self.server_state.connections.clear()
        await super()._wait_tasks_to_complete()


def build_services(settings: Settings, home: Home, *, engine: Engine | None = None,
                   container_base_url: str | None = None) -> Services:
    engine_db = open_engine(sqlite_url(home.database))
    migrate(engine_db)
    store = AgentStore(engine_db)
    secrets = SecretBox.from_home(home)
    registries = RegistryStore(engine_db, secrets)
    models = ModelStore(engine_db, secrets)
    sealed = registries.seal_plaintext() + models.seal_plaintext()
    if sealed:
        log.info("encrypted %d secret(s) an older dockyard had stored in the clear", sealed)
    identity_secret = home.identity_secret()
    runtime: ContainersRuntime | ProcessRuntime | None = None
    if engine is not None:
        runtime = ContainersRuntime(engine, instance_id=home.instance_id(), ca_bundle=home.ca_bundle, home=home.root)
    elif settings.runtime in ("auto", "process"):
        runtime = ProcessRuntime(home, HostPythons(home.root / "python"), instance_id=home.instance_id(),
                                 ca_bundle=home.ca_bundle)
    # Deployments and connections; the built-in `local` connection and deployment when the local model runs.
    local_model = LocalModel(home) if settings.local_model else None
    catalog = Catalog(models, registries)
    if local_model is not None:
        catalog.attach_local_model(local_model, settings.projects)
    platform = PlatformEnvironment(base_url=container_base_url, identity_secret=identity_secret,
                                   connections=catalog.connection)
    sessions = SessionStore(engine_db)
    bundles = CodeBundles(home.code_dir)
    files = FileStore(engine_db, home.root / "files")
    files.clear_incoming()
    files.collect_orphans()
    vector_search = VectorSearch(
        VectorStoreRepository(engine_db, home.root / "vector_stores"), files,
        {settings.embedding_deployment: Embedder(settings.embedding_deployment, catalog,
                                                 home if settings.local_model else None)},
        settings.embedding_deployment)
    tool_responses = ToolResponseStore(engine_db)
    state_stores = StateStores(engine_db)
    reconciler = Reconciler(store, registries, runtime, platform.for_version,
                            ReconcilerSettings(interval_seconds=settings.reconcile_interval_seconds,
                                               prune_interval_seconds=settings.housekeeping_interval_seconds),
                            sessions=sessions, bundles=bundles, code_image=settings.code_image,
                            admission=Admission(admission_budget(settings)),
                            sweeps=sweeps(Retention(tool_responses_seconds=settings.tool_response_retention_seconds),
                                          tool_responses=tool_responses, vector_stores=vector_search.repository,
                                          state_stores=state_stores))
    control_plane = ControlPlane(store, capability_host=settings.capability_host, on_change=reconciler.wake,
                                 sessions=sessions, bundles=bundles)
    # Uploads cut off by a crash are partial files; bundles whose versions went while stopped are garbage.
    bundles.clear_incoming()
    control_plane.collect_code_bundles()
    return Services(
        settings=settings,
        control_plane=control_plane,
        authority=TokenAuthority.from_home(home, lifetime_seconds=settings.token_lifetime_seconds),
        identity_secret=identity_secret,
        registries=registries,
        runtime=runtime,
        reconciler=reconciler,
        sessions=sessions,
        sandboxes=Sandboxes(store, sessions, reconciler),
        tool_responses=tool_responses,
        # Built here, started by the app once it serves (never before the port is bound).
        local_model=local_model,
        catalog=catalog,
        bundles=bundles,
        files=files,
        vector_search=vector_search,
        traces=TraceStore(home.root / "traces.db"),
        stored_responses=StoredResponses(engine_db),
        state_stores=state_stores,
        tool_kinds=build_tool_kinds(ToolDependencies(settings=settings, home=home, database=engine_db,
                                                     engine=engine, catalog=catalog, files=files,
                                                     vector_search=vector_search)),
        toolboxes=ToolboxStore(engine_db, secrets),
    )


def admission_budget(settings: Settings) -> Budget:
    """The budget sandboxes' limits must fit in, from the machine and the settings; StartupError if misspelled."""
    try:
        return budget_from(read_machine(), settings.max_memory, settings.max_cpu, settings.max_sessions_per_agent,
                           settings.on_full)
    except ValueError as exc:
        raise StartupError(str(exc)) from None


_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


def bind(host: str, port: int, *, before_the_address_exists: bool = False) -> socket.socket:
    """A listening socket. `before_the_address_exists` binds an address no interface has yet (Linux).

    That is the engine's bridge address on a machine where no container has run: podman creates the
    bridge with the first container, and dockyard must already be listening there by then.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only for sockets that say they are
    # TCP, and with Nagle on every small TLS answer waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if before_the_address_exists and family == socket.AF_INET:
        try:
            sock.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
        except OSError:
            pass
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use (another dockyard?). Stop it or pass --port N."
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings.log_level))
    home = Home(settings.home).ensure()
    budget = admission_budget(settings)  # a misspelt --max-memory stops here, before anything starts
    sockets = [bind(settings.host, settings.port)]
    log.info("admission: sandboxes' limits may add up to %s of %.1fGi memory and %s of %s cpu; %d live sessions "
             "per agent; when full: %s", "unlimited" if budget.memory_bytes is None
             else f"{budget.memory_bytes / 1024**3:.1f}Gi", budget.machine.memory_bytes / 1024**3,
             "unlimited" if budget.cpu_cores is None else budget.cpu_cores, budget.machine.cpu_cores,
             budget.sessions_per_agent, budget.on_full)
    if settings.runtime not in ("auto", "containers", "process"):
        raise StartupError(f"--runtime {settings.runtime!r} is not one of auto, containers, process.")
    wants_engine = settings.containers and settings.runtime != "process"
    engine = find_engine(settings.engine) if wants_engine else None
    if engine is None and settings.runtime == "containers":
        log.warning("no container engine found: versions will fail with %s. %s",
                    CONTAINER_RUNTIME_UNAVAILABLE, INSTALL_HINT)
    elif engine is None:
        log.info("running code-based versions as processes (no container engine%s); image-based versions fail "
                 "with %s. %s", "" if wants_engine else " asked for", CONTAINER_RUNTIME_UNAVAILABLE, INSTALL_HINT)
    container_host = host_address(engine) if engine is not None else None
    names = [] if settings.host in ("0.0.0.0", "::", "") else [settings.host]
    container_base_url = None
    if container_host is not None and settings.host not in ("0.0.0.0", "::", "", container_host):
        try:
            # Containers reach dockyard on the engine's bridge, never through a port open to the world.
            sockets.append(bind(container_host, settings.port, before_the_address_exists=True))
        except StartupError as exc:
            log.warning("containers will not reach dockyard: %s", exc)
            container_host = None
    if container_host is not None:
        names.append(container_host)
        container_base_url = base_url(container_host, settings.port)
    elif engine is None and settings.runtime != "containers":
        container_base_url = base_url(settings.host, settings.port)  # processes reach dockyard on loopback
    ensure_tls(home, extra_names=names)
    app = create_app(build_services(settings, home, engine=engine, container_base_url=container_base_url),
                     mounts=[install_console])
    config = uvicorn.Config(
        app,
        ssl_certfile=str(home.server_cert),
        ssl_keyfile=str(home.server_key),
        log_config=logging_config(settings.log_level),
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    server = _Server(config)
    url = base_url(settings.host, settings.port)
    home.write_server_record({
        "pid": os.getpid(),
        "instance_id": str(uuid.uuid4()),
        "host": settings.host,
        "port": settings.port,
        "url": url,
        "endpoint": f"{url}/api/projects/{settings.projects[0]}",
        "identity_endpoint": f"{url}{IDENTITY_PATH}",
        "started_at": int(time.time()),
    })
    log.info(
        "dockyard serving %s; in another shell run: eval \"$(dockyard env --home %s)\"",
        url, home.root, extra={"home": str(home.root), "capability_host": settings.capability_host},
    )
    # A one-time link: single use, 15 minutes, stored hashed; `dockyard console` makes more.
    link_token, _expires = ConsoleAuth(home).mint_link_token()
    log.info("console: %s/console/sign-in?token=%s (one-time link; `dockyard console` prints another)",
             url, link_token)
    # uvicorn handles SIGINT/SIGTERM with a graceful shutdown, then re-raises the signal to whatever
    # handler was there before. Make that a no-op so a requested stop exits 0 rather than 130 or -15.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    # What start-up built lives until the end: out of the collector's sight, it costs nothing to scan, neither
    # in each full collection while serving nor in the interpreter's last one at exit (1.5–3.5 s of a stop).
    gc.freeze()
    try:
        server.run(sockets=sockets)
    finally:
        home.clear_server_record(os.getpid())
        log.info("dockyard stopped")
