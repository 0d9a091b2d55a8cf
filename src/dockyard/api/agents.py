"""Agents and agent versions under `/api/projects/{project}`: parse, call the control plane, shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from dockyard.api import code, wire
from dockyard.api.dependencies import authenticate_operator, json_body, project, services, wire_shape
from dockyard.api.schemas import (
    After,
    AgentDeleted,
    AgentList,
    AgentObject,
    AgentVersionDeleted,
    AgentVersionList,
    AgentVersionObject,
    Before,
    CreateAgentRequest,
    CreateVersionRequest,
    Limit,
    Order,
    answers,
    body_of,
    json_request,
    validated,
)
from dockyard.domain.definitions import WireShape
from dockyard.domain.paging import Page, PageRequest

router = APIRouter(prefix="/api/projects/{project}", dependencies=[Depends(authenticate_operator)])
# The JSON bodies, read and checked against the models the OpenAPI document shows.
_AGENT_BODY = body_of(CreateAgentRequest)
_VERSION_BODY = body_of(CreateVersionRequest)


def _page(limit: Limit = None, order: Order = None, after: After = None, before: Before = None) -> PageRequest:
    return PageRequest.parse(limit, order, after, before)


@router.get("/agents", responses=answers(AgentList))
def list_agents(
    request: Request, shape: WireShape = Depends(wire_shape), project: str = Depends(project),
    page: PageRequest = Depends(_page), kind: str | None = Query(None),
) -> dict[str, Any]:
    control = services(request).control_plane
    if kind not in (None, "hosted"):
        # dockyard holds hosted agents only, so any other kind is an empty list, not an error.
        return wire.page_to_wire(Page([], False), [])
    result = control.list_agents(project, page)
    return wire.page_to_wire(result, [wire.agent_to_wire(agent, shape) for agent in result.items])


@router.post("/agents", openapi_extra=json_request(CreateAgentRequest), responses=answers(AgentObject))
async def create_agent(
    request: Request, shape: WireShape = Depends(wire_shape), project: str = Depends(project),
    body: dict[str, Any] = Depends(_AGENT_BODY),
) -> dict[str, Any]:
    agent = await _threaded(request, lambda c: c.create_agent(project, body))
    return wire.agent_to_wire(agent, shape)


@router.get("/agents/{agent_name}", responses=answers(AgentObject))
def get_agent(
    request: Request, agent_name: str, shape: WireShape = Depends(wire_shape), project: str = Depends(project)
) -> dict[str, Any]:
    return wire.agent_to_wire(services(request).control_plane.get_agent(project, agent_name), shape)


@router.post("/agents/{agent_name}", openapi_extra=json_request(CreateVersionRequest), responses=answers(AgentObject))
async def update_agent(
    request: Request, agent_name: str, shape: WireShape = Depends(wire_shape), project: str = Depends(project),
    body: dict[str, Any] = Depends(_VERSION_BODY),
) -> dict[str, Any]:
    agent = await _threaded(request, lambda c: c.update_agent(project, agent_name, body))
    return wire.agent_to_wire(agent, shape)


@router.delete("/agents/{agent_name}", responses=answers(AgentDeleted))
def delete_agent(
    request: Request, agent_name: str, _shape: WireShape = Depends(wire_shape), project: str = Depends(project),
    force: bool = Query(False),
) -> dict[str, Any]:
    services(request).control_plane.delete_agent(project, agent_name, force=force)
    return wire.agent_deleted(agent_name)


@router.post("/agents/{agent_name}/versions", openapi_extra=json_request(CreateVersionRequest, also=code.MULTIPART),
             responses=answers(AgentVersionObject))
async def create_version(
    request: Request, agent_name: str, shape: WireShape = Depends(wire_shape), project: str = Depends(project),
) -> dict[str, Any]:
    """JSON: an image-based version. multipart/form-data: 2.x's create_version_from_code (see api/code.py)."""
    if code.is_multipart(request):
        version = await code.create_version_from_code(request, project, agent_name)
    else:
        body = validated(CreateVersionRequest, await json_body(request))
        version = await _threaded(request, lambda c: c.create_version(project, agent_name, body))
    return wire.version_to_wire(version, shape)


@router.get("/agents/{agent_name}/versions", responses=answers(AgentVersionList))
def list_versions(
    request: Request, agent_name: str, shape: WireShape = Depends(wire_shape), project: str = Depends(project),
    page: PageRequest = Depends(_page),
) -> dict[str, Any]:
    result = services(request).control_plane.list_versions(project, agent_name, page)
    return wire.page_to_wire(result, [wire.version_to_wire(v, shape) for v in result.items])


@router.get("/agents/{agent_name}/versions/{agent_version}", responses=answers(AgentVersionObject))
def get_version(
    request: Request, agent_name: str, agent_version: str, shape: WireShape = Depends(wire_shape),
    project: str = Depends(project),
) -> dict[str, Any]:
    return wire.version_to_wire(services(request).control_plane.get_version(project, agent_name, agent_version), shape)


@router.delete("/agents/{agent_name}/versions/{agent_version}", responses=answers(AgentVersionDeleted))
def delete_version(
    request: Request, agent_name: str, agent_version: str, _shape: WireShape = Depends(wire_shape),
    project: str = Depends(project), force: bool = Query(False),
) -> dict[str, Any]:
    version = services(request).control_plane.get_version(project, agent_name, agent_version)
    services(request).control_plane.delete_version(project, agent_name, agent_version, force=force)
    return wire.version_deleted(agent_name, version.version)


async def _threaded(request: Request, call: Any) -> Any:
    """Run a blocking control-plane call off the event loop (the body was read asynchronously)."""
    return await run_in_threadpool(call, services(request).control_plane)


router.include_router(code.router)
