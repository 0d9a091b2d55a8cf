"""dockyard's OpenAPI document, built from its routes and the models they check bodies with, served with a token.

FastAPI makes the paths, parameters and answers from the routes (`responses=` and the request bodies each
route declares with dockyard.api.schemas.json_request); this adds what is true of every route and that
FastAPI cannot see: the request models' schemas, the Azure error envelope on every operation, bearer
authentication, the patterns of path parameters, and `api-version` required where the handler requires
it. FastAPI's own 422 answers are dropped: dockyard answers a bad parameter with a 400 in the envelope.

Served at `GET /openapi.json` and `GET /api/projects/{project}/openapi.json` to any valid token, never
open (FastAPI's own /docs and /openapi.json are off: see dockyard.api.app).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from dockyard import __version__
from dockyard.api import schemas
from dockyard.api.dependencies import authenticate, project
from dockyard.settings import IDENTITY_PATH

router = APIRouter(dependencies=[Depends(authenticate)])

_ERRORS = {
    "400": "The request is not valid: the message names the field and what it takes.",
    "401": "No token, or a token that is expired, wrongly signed or for another audience.",
    "403": "The token's identity may not do this (an agent's own identity managing agents).",
    "404": "No such project, agent, version, session or response (or not the caller's).",
    "4XX": "Any other refusal (409 conflict, 413 too large, 429 no room: see Retry-After).",
}
_DESCRIPTION = (
    "The Azure AI Foundry hosted-agents API as azure-ai-projects speaks it (2.0.0b3 with api-version "
    "2025-11-15-preview, 2.x with v1), the project's OpenAI-compatible model endpoint, and dockyard's own "
    "routes. Every route needs a bearer token (`eval \"$(dockyard env)\"`, then DefaultAzureCredential); "
    "every error is Azure's envelope, {\"error\": {\"code\", \"message\"}}."
)


def document(app: FastAPI) -> dict[str, Any]:
    """The document, built once per application (what `app.openapi()` answers)."""
    if app.openapi_schema is None:
        app.openapi_schema = build(app)
    return app.openapi_schema


def build(app: FastAPI) -> dict[str, Any]:
    with warnings.catch_warnings():
        # One route serving GET and DELETE gets one operation id for both; they are made unique below.
        warnings.filterwarnings("ignore", message="Duplicate Operation ID")
        doc = get_openapi(title="dockyard", version=__version__, description=_DESCRIPTION, routes=app.routes)
    components = doc.setdefault("components", {})
    found = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        found.pop(name, None)
    models: list[type[BaseModel]] = [*schemas.REQUEST_MODELS, schemas.ErrorResponse]
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            found.setdefault(name, sub)
        found[model.__name__] = schema
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "A dockyard token for https://ai.azure.com (DefaultAzureCredential)."},
        "identityHeader": {"type": "apiKey", "in": "header", "name": "X-IDENTITY-HEADER",
                           "description": "IDENTITY_HEADER from `dockyard env` (the managed-identity protocol)."},
    }
    doc["security"] = [{"bearer": []}]
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    projects = list(app.state.services.settings.projects)
    seen: set[str] = set()
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            _finish(path, operation, error, projects)
            if operation.get("operationId") in seen:
                operation["operationId"] = f"{operation['operationId']}_{method}"
            seen.add(operation.get("operationId", ""))
    return doc


def _finish(path: str, operation: dict[str, Any], error: dict[str, Any], projects: list[str]) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    for answer in responses.values():
        for media in answer.get("content", {}).values():
            if "$ref" in media.get("schema", {}):  # FastAPI leaves the return annotation's schema beside it
                media["schema"] = {"$ref": media["schema"]["$ref"]}
    for status, description in _ERRORS.items():
        responses.setdefault(status, {"description": description, "content": error})
    if path == IDENTITY_PATH:
        operation["security"] = [{"identityHeader": []}]
    parameters = operation.setdefault("parameters", [])
    declared = {p["name"] for p in parameters if p["in"] == "path"}
    # A path parameter that a dependency reads from the request (`project`) is not declared to FastAPI.
    for name in re.findall(r"{([^}]+)}", path):
        if name not in declared:
            parameters.insert(0, {"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    for parameter in parameters:
        _flatten_optional(parameter)
        if parameter["in"] == "path" and parameter["name"] == "project":
            parameter["schema"]["enum"] = projects  # this dockyard's projects (`default` unless configured)
        if parameter["in"] == "path" and parameter["name"] in schemas.PATH_PATTERNS:
            parameter["schema"]["pattern"] = schemas.PATH_PATTERNS[parameter["name"]]
        if parameter["in"] == "path" and parameter["name"] in schemas.PATH_EXAMPLES:
            parameter["example"] = schemas.PATH_EXAMPLES[parameter["name"]]
        if parameter["in"] == "query" and parameter["name"] == "api-version":
            # Declared by the wire_shape dependency, which refuses a missing one (MissingApiVersionParameter).
            parameter["required"] = True
            parameter["schema"] = {"type": "string", "enum": schemas.API_VERSIONS}
            parameter["description"] = schemas.API_VERSION_DESCRIPTION


@router.get("/openapi.json", responses=schemas.answers(schemas.OpenAPIDocument))
def openapi_at_root(request: Request) -> dict[str, Any]:
    return document(request.app)


@router.get("/api/projects/{project}/openapi.json", dependencies=[Depends(project)],
            responses=schemas.answers(schemas.OpenAPIDocument))
def openapi_in_project(request: Request) -> dict[str, Any]:
    return document(request.app)


def _flatten_optional(parameter: dict[str, Any]) -> None:
    """`anyOf: [X, null]` of an optional parameter as X: a query string has no null, only absence."""
    schema = parameter.get("schema", {})
    members = [m for m in schema.get("anyOf", []) if m.get("type") != "null"]
    if len(members) == 1 and len(schema["anyOf"]) == 2:
        del schema["anyOf"]
        schema.update(members[0])
