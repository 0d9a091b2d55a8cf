"""The agent endpoint's settings: traffic split between versions (`update_details`), enable and disable."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from dockyard.api import wire
from dockyard.api.dependencies import authenticate_operator, json_body, project, services
from dockyard.api.schemas import AgentObject, UpdateAgentDetailsRequest, answers, json_request, validated
from dockyard.domain.definitions import WireShape
from dockyard.gateway.routing import validate_endpoint

router = APIRouter(prefix="/api/projects/{project}/agents/{agent_name}", dependencies=[Depends(authenticate_operator)])

@router.post(":enable", status_code=204, responses=answers(status=204, description="Enabled"))
def enable_agent(request: Request, agent_name: str, project: str = Depends(project)) -> Response:
    services(request).control_plane.store.set_endpoint(project, agent_name, enabled=True)
    return Response(status_code=204)


@router.post(":disable", status_code=204, responses=answers(status=204, description="Disabled"))
def disable_agent(request: Request, agent_name: str, project: str = Depends(project)) -> Response:
    services(request).control_plane.store.set_endpoint(project, agent_name, enabled=False)
    return Response(status_code=204)


@router.patch("", openapi_extra=json_request(UpdateAgentDetailsRequest), responses=answers(AgentObject))
async def update_agent_details(request: Request, agent_name: str, project: str = Depends(project)) -> dict[str, Any]:
    body = validated(UpdateAgentDetailsRequest, await json_body(request))
    the = services(request)
    if "agent_endpoint" in body:
        versions = [v.version for v in await run_in_threadpool(the.control_plane.store.desired_versions_of,
                                                               project, agent_name)]
        endpoint = validate_endpoint(body["agent_endpoint"], versions)
        await run_in_threadpool(the.control_plane.store.set_endpoint, project, agent_name, endpoint=endpoint)
    agent = await run_in_threadpool(the.control_plane.get_agent, project, agent_name)
    return wire.agent_to_wire(agent, WireShape.V1)
