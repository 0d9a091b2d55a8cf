"""The ASGI application: routers, error handling and request ids around the services."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from dockyard.api import (
    admission,
    agents,
    connections,
    containers,
    deployments,
    endpoint,
    files,
    identity,
    inference,
    invocations,
    logs,
    metrics,
    openapi,
    responses,
    session_files,
    sessions,
    state_stores,
    storage,
    telemetry,
    toolboxes,
    vector_stores,
)
from dockyard.api.dependencies import Services
from dockyard.api.errors import install_error_handlers
from dockyard.api.request_ids import RequestIdMiddleware
from dockyard.gateway.proxy import sandbox_client
from dockyard.gateway.tracing import TracingMiddleware
from dockyard.metrics import Metrics
from dockyard.store.traces import TraceWriter
from dockyard.tools.toolboxes import ToolboxServer


def create_app(services: Services, *, mounts: Sequence[Callable[[FastAPI], None]] = ()) -> ASGIApp:
    """The API around `services`; `mounts` add what else answers on the same app (the server's web console).

    They are handed in, not imported: the console stands above the API (it signs callers in with the API's
    own dependencies), so the API cannot import it without an import running back up.
    """
    settings = services.settings
    services.metrics = services.metrics or Metrics(services.sessions, services.control_plane.store)
    writer = None if services.traces is None else TraceWriter(
        services.traces, max_age_seconds=settings.trace_retention_seconds, max_bytes=settings.trace_max_bytes,
        prune_interval_seconds=settings.trace_prune_interval_seconds)

    # Toolboxes' MCP server: one for every toolbox; its session manager runs as long as the app.
    if services.toolboxes is not None:
        services.toolbox_server = ToolboxServer(services.toolboxes, services.tool_kinds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The reconciler lives exactly as long as the server: started once it listens, stopped on shutdown.
        if services.reconciler is not None:
            services.reconciler.start()
        # The local model loads in the background; a request that needs it meanwhile waits for it.
        if services.local_model is not None:
            services.local_model.start()
        services.http = sandbox_client(services.settings.invocation_timeout_seconds)
        # Files a stop left half taken into vector stores are taken in again.
        if services.vector_search is not None:
            services.vector_search.resume()
        if writer is not None:
            writer.start()
        try:
            if services.toolbox_server is not None:
                async with services.toolbox_server.run():
                    yield
            else:
                yield
        finally:
            if writer is not None:
                await asyncio.to_thread(writer.close)
            if services.sandboxes is not None:
                services.sandboxes.writes.close()
            if services.reconciler is not None:
                services.reconciler.stop()
            if services.local_model is not None:
                await asyncio.to_thread(services.local_model.stop)
            if services.vector_search is not None:
                await services.vector_search.close()
            await services.http.close()

    # FastAPI's own /docs and /openapi.json are off (they would be open to anyone): dockyard's document is
    # served to callers with a token (api/openapi.py), and app.openapi() answers that same document.
    app = FastAPI(title="dockyard", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.openapi = functools.partial(openapi.document, app)  # type: ignore[method-assign]
    app.state.services = services
    install_error_handlers(app)
    app.include_router(identity.router)
    # The endpoint routes (…/agents/{name}:enable) come before agents' own (…/agents/{name}), which would
    # otherwise take "name:enable" for a name.
    app.include_router(sessions.router)
    app.include_router(session_files.router)
    app.include_router(endpoint.router)
    app.include_router(responses.router)
    # The model endpoint: under each project, and Azure OpenAI's paths at the host's root too.
    app.include_router(inference.project_router)
    app.include_router(inference.root_router)
    # Files and vector stores (file_search) beside the model endpoint's paths.
    app.include_router(files.project_router)
    app.include_router(vector_stores.project_router)
    # The code interpreter's containers and their files (container_file_citation), beside the model endpoint.
    app.include_router(containers.router)
    app.include_router(responses.root_router)
    app.include_router(invocations.router)
    app.include_router(agents.router)
    app.include_router(logs.router)
    # Deployments and connections share no path with the agent routes, so their place does not matter.
    app.include_router(deployments.router)
    app.include_router(connections.router)
    # Response storage for the adapter inside sandboxes (FOUNDRY_HOSTING_ENVIRONMENT), under each project.
    app.include_router(storage.router)
    app.include_router(state_stores.router)
    app.include_router(toolboxes.router)
    toolboxes.install_mcp_routes(app)
    # Telemetry: OTLP in at the root (where exporters append /v1/traces), traces out per project, /metrics.
    app.include_router(telemetry.router)
    app.include_router(telemetry.project_router)
    app.include_router(metrics.router)
    app.include_router(admission.router)
    app.include_router(openapi.router)
    # The web console: pages at /console/ (and / redirects there), behind its own sign-in.
    for mount in mounts:
        mount(app)
    return RequestIdMiddleware(TracingMiddleware(app, metrics.gateway_call_finished(services, writer)))
