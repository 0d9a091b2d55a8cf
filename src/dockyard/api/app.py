"""The ASGI application: routers, error handling and request ids around the services."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from dockyard.api import agents, identity
from dockyard.api.dependencies import Services
from dockyard.api.errors import install_error_handlers
from dockyard.api.request_ids import RequestIdMiddleware


def create_app(services: Services) -> ASGIApp:
    # No /docs or /openapi.json: every route needs a token, and the SDKs' own docs describe the API.
    app = FastAPI(title="dockyard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    install_error_handlers(app)
    app.include_router(identity.router)
    app.include_router(agents.router)
    return RequestIdMiddleware(app)
