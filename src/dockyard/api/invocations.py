"""The Invocations protocol (2.x): any body relayed to the sandbox's POST /invocations, streaming included."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from dockyard.api.dependencies import authenticate, read_body, services
from dockyard.api.forwarding import check_api_version, open_session, platform_headers, relay_to_session

router = APIRouter(prefix="/api/projects/{project}")


@router.post("/agents/{agent_name}/endpoint/protocols/invocations")
async def invoke(request: Request, project: str, agent_name: str) -> Response:
    """Relayed as it is to the sandbox's POST /invocations: any body, any answer, streaming included.

    The session comes from the `agent_session_id` query parameter (as Foundry reads it), the
    `x-agent-session-id` header, or the version's shared one, and goes to the sandbox in that same query parameter.
    """
    check_api_version(request)
    principal = authenticate(request)
    content = await read_body(request, services(request).settings.max_invocation_bytes)
    session_id = request.query_params.get("agent_session_id") or request.headers.get("x-agent-session-id")
    session = await open_session(request, project, agent_name, session_id)
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k not in ("api-version",
                                                                                         "agent_session_id")]
                      + [("agent_session_id", session.id)])
    headers = platform_headers(request, session, principal)
    return await relay_to_session(request, session, "POST", f"/invocations?{query}", headers, content)
