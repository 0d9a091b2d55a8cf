"""The Invocations protocol (2.x): invoke, get and cancel an invocation, its OpenAPI document, its WebSocket.

`POST …/protocols/invocations` relays any body to the sandbox's `POST /invocations`, streaming included.
dockyard names each invocation itself (a UUID, sent to the sandbox as `x-agent-invocation-id`, which
Microsoft's adapter adopts) and records which session ran it before relaying, so `GET …/invocations/{id}`
and `POST …/invocations/{id}/cancel` reach that same sandbox, from any replica. `…/invocations_ws` is
relayed both ways to the sandbox's `/invocations_ws`.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response, WebSocket
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import authenticate_caller, read_body, services
from dockyard.api.forwarding import check_api_version, open_session, platform_headers, relay_to_session
from dockyard.api.schemas import raw_request
from dockyard.api.websocket_relay import relay_websocket
from dockyard.domain.errors import NotFound
from dockyard.domain.sessions import Session
from dockyard.identity.ownership import Caller, may_follow

router = APIRouter(prefix="/api/projects/{project}")

_BASE = "/agents/{agent_name}/endpoint/protocols/invocations"
# What the adapter accepts as an invocation id (azure-ai-agentserver-invocations `_sanitize_id`).
_INVOCATION_ID = re.compile(r"[A-Za-z0-9\-_.:]{1,256}")


def _sandbox_query(request: Request, session: Session) -> str:
    """The caller's query, minus what is the platform's, plus the session as the adapter reads it."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("api-version", "agent_session_id")]
    return urlencode(kept + [("agent_session_id", session.id)])


@router.post(_BASE, openapi_extra=raw_request("*/*", "Any body: relayed as it is to the agent's POST /invocations.",
                                                required=False))
async def invoke(request: Request, project: str, agent_name: str) -> Response:
    """Relayed as it is to the sandbox's POST /invocations: any body, any answer, streaming included.

    The session comes from the `agent_session_id` query parameter (as Foundry reads it), the
    `x-agent-session-id` header, or the version's shared one, and goes to the sandbox in that same query parameter.
    """
    check_api_version(request)
    caller = authenticate_caller(request)
    content = await read_body(request, services(request).settings.max_invocation_bytes)
    session_id = request.query_params.get("agent_session_id") or request.headers.get("x-agent-session-id")
    session = await open_session(request, project, agent_name, session_id, caller=caller)
    # Named here, not by the caller: an id chosen by a caller could claim another session's route.
    invocation_id = str(uuid.uuid4())
    services(request).sandboxes.record_invocation(invocation_id, session.id, caller.owner)
    headers = platform_headers(request, session, caller) | {"x-agent-invocation-id": invocation_id}
    return await relay_to_session(request, session, "POST", f"/invocations?{_sandbox_query(request, session)}",
                                  headers, content)


@router.get(f"{_BASE}/docs/openapi.json")
async def openapi_document(request: Request, project: str, agent_name: str) -> Response:
    """The agent's own OpenAPI document (404 from the agent when it registered none)."""
    check_api_version(request)
    caller = authenticate_caller(request)
    session = await open_session(request, project, agent_name, request.query_params.get("agent_session_id"),
                                 caller=caller)
    return await relay_to_session(request, session, "GET", "/invocations/docs/openapi.json",
                                  platform_headers(request, session, caller), None)


async def _follow(request: Request, project: str, agent_name: str, invocation_id: str, suffix: str) -> Response:
    check_api_version(request)
    caller = authenticate_caller(request)
    session = await _session_of_invocation(request, project, agent_name, invocation_id, caller)
    content = await read_body(request, services(request).settings.max_invocation_bytes) if suffix else None
    headers = platform_headers(request, session, caller) | {"x-agent-invocation-id": invocation_id}
    path = f"/invocations/{invocation_id}{suffix}?{_sandbox_query(request, session)}"
    return await relay_to_session(request, session, request.method, path, headers, content)


@router.get(f"{_BASE}/{{invocation_id}}")
async def get_invocation(request: Request, project: str, agent_name: str, invocation_id: str) -> Response:
    """Relayed to the sandbox that ran the invocation; what it answers is the agent's (404 if it keeps none)."""
    return await _follow(request, project, agent_name, invocation_id, "")


@router.post(f"{_BASE}/{{invocation_id}}/cancel",
             openapi_extra=raw_request("*/*", "Relayed to the agent.", required=False))
async def cancel_invocation(request: Request, project: str, agent_name: str, invocation_id: str) -> Response:
    return await _follow(request, project, agent_name, invocation_id, "/cancel")


async def _session_of_invocation(request: Request, project: str, agent_name: str, invocation_id: str,
                                 caller: Caller) -> Session:
    """The session that ran the invocation, if the caller (and delegated end user) made it through this
    agent; otherwise the 404 of an invocation that does not exist, word for word."""
    not_found = NotFound(f"Invocation {invocation_id!r} of agent {agent_name!r} was not found.",
                         code="InvocationNotFound")
    if not _INVOCATION_ID.fullmatch(invocation_id):
        raise not_found
    routed = await run_in_threadpool(services(request).sandboxes.session_of_invocation, invocation_id)
    if routed is None:
        raise not_found
    session, owner = routed
    if (session.project, session.agent_name) != (project, agent_name) or not may_follow(caller, owner):
        raise not_found
    return session


@router.websocket("/agents/{agent_name}/endpoint/protocols/invocations_ws")
async def invocations_ws(websocket: WebSocket, project: str, agent_name: str) -> None:
    """Relayed both ways to the sandbox's /invocations_ws, in the session `agent_session_id` names."""
    await relay_websocket(websocket, project, agent_name, "/invocations_ws")
