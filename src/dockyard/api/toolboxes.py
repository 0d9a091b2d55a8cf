"""Toolboxes under `/api/projects/{project}/toolboxes`, as azure-ai-projects 2.10's `client.toolboxes` calls them.

Management (api-version v1, operator only, as managing agents is; an agent's identity gets 403):
`POST …/toolboxes/{name}/versions` (create_version: makes the toolbox on its first version),
`GET …/toolboxes`, `GET|PATCH|DELETE …/toolboxes/{name}` (PATCH `{default_version}`),
`GET …/toolboxes/{name}/versions`, `GET|DELETE …/toolboxes/{name}/versions/{version}`. Every entry of
`tools` is checked by its kind's `bind` before anything is stored.

Use (any valid token for https://ai.azure.com, an agent's own managed identity included):
`…/toolboxes/{name}/mcp?api-version=v1` serves the default version as an MCP server (streamable HTTP),
`…/toolboxes/{name}/versions/{version}/mcp` one version, and `POST …/toolboxes/{name}:invoke_mcp` (the SDK's
`invoke_latest_toolbox_mcp`) takes one JSON-RPC message for the default version. The caller's
`x-agent-foundry-call-id` goes on to the tools (an MCP server in the toolbox receives it). When an agent's
sandbox sends the call id dockyard gave one of its requests, the tools act for that request's caller (its
owner: the caller and the end user it delegated for), as Foundry's toolboxes resolve the user from the call
id; otherwise they act for the token's principal. See dockyard.tools.toolboxes.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from dockyard.api.dependencies import authenticate_operator, caller_of, json_body, project, services
from dockyard.api.inference import authenticate_inference
from dockyard.api.wire import page_to_wire
from dockyard.domain.errors import BadRequest, ServiceUnavailable
from dockyard.domain.paging import Page, PageRequest
from dockyard.identity.agents import AGENT_ROLE
from dockyard.identity.call_ids import resolve_call_id
from dockyard.identity.ownership import USER_IDENTITY_HEADER, Caller
from dockyard.identity.tokens import Principal
from dockyard.store.toolboxes import ToolboxStore, validate_toolbox_name, validate_version_body
from dockyard.tools.toolboxes import ToolboxCall, check_entries

API_VERSION = "v1"
CALL_ID_HEADER = "x-agent-foundry-call-id"
log = logging.getLogger("dockyard.toolboxes")


def api_version(request: Request) -> str:
    value = request.query_params.get("api-version")
    if value != API_VERSION:
        raise BadRequest(f"Toolboxes speak api-version {API_VERSION}; got {value!r}. Add ?api-version=v1 "
                         "(azure-ai-projects 2.x sends it).",
                         code="MissingApiVersionParameter" if value is None else "UnsupportedApiVersion",
                         param="api-version")
    return value


router = APIRouter(prefix="/api/projects/{project}")
_manage = [Depends(authenticate_operator), Depends(api_version)]


def toolbox_store(request: Request) -> ToolboxStore:
    found = services(request).toolboxes
    if found is None:
        raise ServiceUnavailable("This dockyard keeps no toolboxes.", code="ToolboxesUnavailable")
    return found


def _page(limit: int | None = Query(None), order: str | None = Query(None), after: str | None = Query(None),
          before: str | None = Query(None)) -> PageRequest:
    return PageRequest.parse(limit, order, after, before)


def _paged(items: list[dict[str, Any]], page: PageRequest) -> dict[str, Any]:
    """One page of `items` (oldest first, each with an `id`), walked as the SDKs walk (domain/paging.py)."""
    ordered = items if page.order == "asc" else list(reversed(items))
    ids = [item["id"] for item in ordered]
    start = ids.index(page.after) + 1 if page.after in ids else 0
    end = ids.index(page.before) if page.before in ids else len(ordered)
    window = ordered[start:end]
    return page_to_wire(Page(window[: page.limit], len(window) > page.limit), window[: page.limit])


@router.post("/toolboxes/{name}/versions", dependencies=_manage)
async def create_version(request: Request, name: str, project: str = Depends(project),
                         body: dict[str, Any] = Depends(json_body)) -> dict[str, Any]:
    validate_toolbox_name(name)
    tools, description, metadata, policies = validate_version_body(body)
    caller = caller_of(request.state.principal, request.headers.get(USER_IDENTITY_HEADER))
    await check_entries(services(request).tool_kinds, project, caller, tools, log.info)
    store = toolbox_store(request)
    version = await run_in_threadpool(lambda: store.create_version(
        project, name, tools, description=description, metadata=metadata, policies=policies, author=caller.owner))
    log.info("toolbox %s version %s created with %d tool(s)", name, version.version, len(tools))
    return version.to_wire()


@router.get("/toolboxes", dependencies=_manage)
def list_toolboxes(request: Request, project: str = Depends(project),
                   page: PageRequest = Depends(_page)) -> dict[str, Any]:
    return _paged([toolbox.to_wire() for toolbox in toolbox_store(request).toolboxes(project)], page)


@router.get("/toolboxes/{name}", dependencies=_manage)
def get_toolbox(request: Request, name: str, project: str = Depends(project)) -> dict[str, Any]:
    return toolbox_store(request).get(project, name).to_wire()


@router.patch("/toolboxes/{name}", dependencies=_manage)
async def update_toolbox(request: Request, name: str, project: str = Depends(project),
                         body: dict[str, Any] = Depends(json_body)) -> dict[str, Any]:
    default = body.get("default_version")
    if not isinstance(default, str) or not default:
        raise BadRequest("Send {\"default_version\": \"<version>\"}: the version the toolbox's endpoint serves.",
                         code="InvalidRequestBody", param="default_version")
    toolbox = await run_in_threadpool(toolbox_store(request).set_default_version, project, name, default)
    return toolbox.to_wire()


@router.delete("/toolboxes/{name}", dependencies=_manage, status_code=204)
async def delete_toolbox(request: Request, name: str, project: str = Depends(project)) -> Response:
    await run_in_threadpool(toolbox_store(request).delete, project, name)
    return Response(status_code=204)


@router.get("/toolboxes/{name}/versions", dependencies=_manage)
def list_versions(request: Request, name: str, project: str = Depends(project),
                  page: PageRequest = Depends(_page)) -> dict[str, Any]:
    return _paged([version.to_wire() for version in toolbox_store(request).versions(project, name)], page)


@router.get("/toolboxes/{name}/versions/{version}", dependencies=_manage)
def get_version(request: Request, name: str, version: str, project: str = Depends(project)) -> dict[str, Any]:
    return toolbox_store(request).get_version(project, name, version).to_wire()


@router.delete("/toolboxes/{name}/versions/{version}", dependencies=_manage, status_code=204)
async def delete_version(request: Request, name: str, version: str, project: str = Depends(project)) -> Response:
    await run_in_threadpool(toolbox_store(request).delete_version, project, name, version)
    return Response(status_code=204)


class McpEndpoint:
    """The ASGI endpoint of a toolbox's MCP server: authenticate, then hand the request to the SDK's manager.

    A plain ASGI app rather than a route function: the SDK's transport writes the answer itself (JSON, or
    a 202 for a notification). Errors before the hand-over (token, project, api-version, no such toolbox)
    are raised as dockyard's own and answered in the Azure envelope by the app's handlers."""

    def __init__(self, *, pinned: bool) -> None:
        self.pinned = pinned

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        principal = authenticate_inference(request)
        project_name = project(request)
        api_version(request)
        name = request.path_params["name"]
        version = request.path_params.get("version") if self.pinned else None
        found = services(request)
        server = found.toolbox_server
        if server is None:
            raise ServiceUnavailable("This dockyard serves no toolboxes.", code="ToolboxesUnavailable")
        # The toolbox (and version) must exist: a missing one is a 404 in the Azure envelope, not an MCP error.
        await run_in_threadpool(toolbox_store(request).get_version, project_name, name, version)
        request_id = str(scope.get("state", {}).get("request_id", ""))
        call_id = request.headers.get(CALL_ID_HEADER)
        caller = _acting_caller(found.identity_secret, principal, project_name, call_id,
                                caller_of(principal, request.headers.get(USER_IDENTITY_HEADER)))
        call = ToolboxCall(project=project_name, name=name, version=version, caller=caller, request_id=request_id,
                           foundry_call_id=call_id, log=lambda line: log.info("%s [request %s]", line, request_id))
        log.info("toolbox %s: %s for %s [request %s]", name, "v" + version if version else "default version",
                 caller.subject, request_id)
        await server.handle(call, scope, receive, send)


def _acting_caller(identity_secret: str, principal: Principal, project_name: str, call_id: str | None,
                   caller: Caller) -> Caller:
    """Whom the tools act for: the owner of the request an agent's sandbox is serving, when it forwards that
    request's call id (minted by dockyard for this sandbox's version and project); else the token's caller."""
    if not call_id or principal.claims.get("dockyard_role") != AGENT_ROLE:
        return caller
    scope = resolve_call_id(identity_secret, call_id)
    if scope is None or scope.project != project_name or scope.version_uid != principal.claims.get(
            "dockyard_version_uid"):
        return caller
    return Caller(subject=scope.owner.subject, user=scope.owner.user, operator=False,
                  oid=scope.owner.user or scope.owner.subject)


def install_mcp_routes(app: FastAPI) -> None:
    """The MCP endpoints, as plain ASGI routes on the app (a router would wrap them as request handlers)."""
    methods = ["GET", "POST", "DELETE"]  # streamable HTTP's; stateless, GET and DELETE answer 405
    prefix = "/api/projects/{project}/toolboxes/{name}"
    app.add_route(f"{prefix}/mcp", cast(Any, McpEndpoint(pinned=False)), methods=methods)
    app.add_route(f"{prefix}/versions/{{version}}/mcp", cast(Any, McpEndpoint(pinned=True)), methods=methods)
    app.add_route(f"{prefix}:invoke_mcp", cast(Any, McpEndpoint(pinned=False)), methods=["POST"])
