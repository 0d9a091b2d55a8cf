"""The sessions API (2.x): create, get, list, stop and delete an agent's sessions.

Each caller sees its own sessions (dockyard.identity.ownership); another caller's answer as missing
ones. The operator lists, gets, stops and deletes any, as Foundry's project-level role may.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import authenticate_caller, json_body, project, services
from dockyard.api.forwarding import running_target
from dockyard.api.schemas import (
    After,
    CreateSessionRequest,
    Limit,
    SessionList,
    SessionObject,
    answers,
    json_request,
    validated,
)
from dockyard.domain.errors import Conflict
from dockyard.domain.paging import PageRequest
from dockyard.domain.sessions import Session, new_session_id, validate_session_id
from dockyard.identity.ownership import Caller, may_enter, may_manage, owner_of
from dockyard.store.sessions import session_not_found

# Authenticated before anything else is looked at (the handlers' own Depends reuse this one's answer).
router = APIRouter(prefix="/api/projects/{project}/agents/{agent_name}",
                   dependencies=[Depends(authenticate_caller)])


def session_to_wire(session: Session) -> dict[str, Any]:
    wire_session: dict[str, Any] = {
        "object": "agent.session",
        "agent_session_id": session.id,
        "version_indicator": {"type": "version_ref", "agent_version": session.version},
        "status": session.status.value,
        "created_at": session.created_at,
        "last_accessed_at": int(session.last_accessed_at),
        "expires_at": session.expires_at,
    }
    if session.stopped_at is not None:
        wire_session["stopped_at"] = session.stopped_at
    return wire_session


def _managed(request: Request, caller: Caller, project: str, agent_name: str, session_id: str) -> Session:
    """A session the caller may get, stop or delete; another caller's is answered as a missing one."""
    session = services(request).sessions.get(project, agent_name, session_id)
    if not may_manage(caller, owner_of(session.owner_subject, session.owner_user)):
        raise session_not_found(agent_name, session_id)
    return session


@router.post("/endpoint/sessions", status_code=201, openapi_extra=json_request(CreateSessionRequest, required=False),
             responses=answers(SessionObject, status=201, description="Created"))
async def create_session(request: Request, agent_name: str, project: str = Depends(project),
                         caller: Caller = Depends(authenticate_caller)) -> dict[str, Any]:
    body = (validated(CreateSessionRequest, await json_body(request))
            if int(request.headers.get("content-length") or 0) else {})
    indicator = body.get("version_indicator") or {}
    pinned = indicator.get("agent_version") if isinstance(indicator, dict) else None
    sandboxes = services(request).sandboxes
    session_id = body.get("agent_session_id") or new_session_id()
    taken = await run_in_threadpool(services(request).sessions.find, project, agent_name,
                                    validate_session_id(session_id))
    if taken is not None and not may_enter(caller, owner_of(taken.owner_subject, taken.owner_user)):
        # What another agent's id gets too (SessionStore.create): the id is taken, nothing about whose.
        raise Conflict(f"Session id {session_id!r} is in use by another agent; choose another id.",
                       code="SessionIdInUse")
    session = await run_in_threadpool(sandboxes.open, project, agent_name, session_id=session_id,
                                      pinned_version=pinned, caller=caller)
    target = await running_target(request, session)
    return session_to_wire(await run_in_threadpool(services(request).sessions.get, project, agent_name,
                                                   target.session.id))


@router.get("/endpoint/sessions", responses=answers(SessionList))
def list_sessions(request: Request, agent_name: str, project: str = Depends(project),
                  after: After = None, limit: Limit = None,
                  caller: Caller = Depends(authenticate_caller)) -> dict[str, Any]:
    limit = PageRequest.parse(limit, None, after, None).limit  # refused with 400 out of 1..100
    services(request).control_plane.get_agent(project, agent_name)
    everything = [s for s in services(request).sessions.list(project, agent_name)
                  if may_manage(caller, owner_of(s.owner_subject, s.owner_user))]
    if after:
        ids = [s.id for s in everything]
        everything = everything[ids.index(after) + 1:] if after in ids else []
    page = everything[:limit]
    items = [session_to_wire(s) for s in page]
    return {"object": "list", "data": items,
            "first_id": items[0]["agent_session_id"] if items else None,
            "last_id": items[-1]["agent_session_id"] if items else None,
            "has_more": len(everything) > len(page)}


@router.get("/endpoint/sessions/{session_id}", responses=answers(SessionObject))
def get_session(request: Request, agent_name: str, session_id: str, project: str = Depends(project),
                caller: Caller = Depends(authenticate_caller)) -> dict[str, Any]:
    return session_to_wire(_managed(request, caller, project, agent_name, session_id))


@router.delete("/endpoint/sessions/{session_id}", status_code=204, responses=answers(status=204, description="Deleted"))
def delete_session(request: Request, agent_name: str, session_id: str, project: str = Depends(project),
                   caller: Caller = Depends(authenticate_caller)) -> Response:
    session = _managed(request, caller, project, agent_name, session_id)
    services(request).sandboxes.delete(session)
    return Response(status_code=204)


@router.post("/endpoint/sessions/{session_id}:stop", status_code=204,
             responses=answers(status=204, description="Stopped"))
def stop_session(request: Request, agent_name: str, session_id: str, project: str = Depends(project),
                 caller: Caller = Depends(authenticate_caller)) -> Response:
    session = _managed(request, caller, project, agent_name, session_id)
    services(request).sandboxes.stop(session)
    return Response(status_code=204)
