"""Invoking agents: the OpenAI-compatible Responses surface, sessions and the agent endpoint's settings.

The OpenAI client from `azure-ai-projects` reaches these routes at three bases, all served alike:
2.0.0b3's `{endpoint}/openai` (agent named in the body as `agent`), 2.x's `{endpoint}/openai/v1`
(`agent_reference`), and 2.x's per-agent `{endpoint}/agents/{name}/endpoint/protocols/openai`.
"""

from __future__ import annotations

import json
import secrets
import string
import uuid
from urllib.parse import urlencode
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from dockyard.api import wire
from dockyard.api.dependencies import authenticate, authenticate_operator, json_body, project, read_body, services
from dockyard.domain.definitions import WireShape
from dockyard.domain.errors import BadRequest, NotFound
from dockyard.domain.sessions import Session
from dockyard.gateway.proxy import SandboxUnreachable, relay, unreachable
from dockyard.gateway.routing import validate_endpoint
from dockyard.identity.tokens import Principal

router = APIRouter(prefix="/api/projects/{project}")

_OPENAI_BASES = ("/openai", "/openai/v1", "/agents/{agent_name}/endpoint/protocols/openai")
_ALPHANUMERIC = string.ascii_letters + string.digits


def _check_api_version(request: Request) -> None:
    # 2.x's default OpenAI client sends none; 2.0.0b3 sends 2025-11-15-preview; the agent endpoint v1.
    api_version = request.query_params.get("api-version")
    if api_version is not None and api_version not in WireShape.supported():
        raise BadRequest(f"api-version {api_version!r} is not supported here. Supported: "
                         f"{', '.join(WireShape.supported())}, or none.", code="UnsupportedApiVersion")


def new_response_id() -> str:
    """An id in the form Microsoft's adapter accepts: caresp_<16 hex>00<32 alphanumerics>."""
    return f"caresp_{secrets.token_hex(8)}00{''.join(secrets.choice(_ALPHANUMERIC) for _ in range(32))}"


def _platform_headers(request: Request, session: Session, principal: Principal) -> dict[str, str]:
    """What Foundry tells a sandbox about each request (DESIGN.md §3)."""
    headers = {
        "content-type": request.headers.get("content-type", "application/json"),
        "accept": request.headers.get("accept", "*/*"),
        "x-agent-session-id": session.id,
        "x-agent-user-id": str(principal.claims.get("oid") or principal.subject),
        "x-agent-foundry-call-id": uuid.uuid4().hex,
        "x-request-id": request.scope.get("state", {}).get("request_id", ""),
    }
    for name, value in request.headers.items():
        if name.startswith("x-client-") or name == "x-ms-client-request-id":
            headers[name] = value
    return headers


async def _target(request: Request, session: Session):  # type: ignore[no-untyped-def]
    return await run_in_threadpool(services(request).sandboxes.ensure_running, session)


async def create_response(request: Request, project: str, agent_name: str | None = None) -> Response:
    _check_api_version(request)
    principal = authenticate(request)
    body = await json_body(request, limit=services(request).settings.max_invocation_bytes)
    reference = body.get("agent_reference") or body.get("agent") or {}
    if not isinstance(reference, dict):
        raise BadRequest("'agent_reference' must be an object {\"type\": \"agent_reference\", \"name\": …}.",
                         code="InvalidAgentReference")
    name = agent_name or reference.get("name")
    if not name:
        raise BadRequest("Name the agent: send {\"agent_reference\": {\"type\": \"agent_reference\", \"name\": …}} "
                         "(2.0.0b3: \"agent\"), or use client.get_openai_client(agent_name=…).",
                         code="AgentReferenceRequired")
    session_id = body.get("agent_session_id") or request.headers.get("x-agent-session-id")
    sandboxes = services(request).sandboxes
    session = await run_in_threadpool(sandboxes.open, project, name, session_id=session_id,
                                      pinned_version=reference.get("version"))
    response_id = new_response_id()
    await run_in_threadpool(services(request).sessions.route_response, response_id, session.id)
    outbound = json.dumps({**body, "agent_session_id": session.id}).encode()
    headers = _platform_headers(request, session, principal) | {"x-agent-response-id": response_id}
    return await _relay_to_session(request, session, "POST", "/responses", headers, outbound)


async def _relay_to_session(request: Request, session: Session, method: str, path: str, headers: dict[str, str],
                            content: bytes | None) -> Response:
    """Relay to the session's sandbox; if a warm one turns out gone, start it again and retry once."""
    the = services(request)
    for attempt in (1, 2):
        target = await _target(request, session)
        try:
            return await relay(the.http, method, f"{target.endpoint}{path}", headers=headers, content=content,
                               extra_response_headers={"x-agent-session-id": session.id},
                               request_id=headers["x-request-id"])
        except SandboxUnreachable:
            the.sandboxes.forget(session.id)
            if attempt == 2:
                return unreachable(headers["x-request-id"])
    raise AssertionError("unreachable")


async def follow_response(request: Request, project: str, response_id: str, suffix: str = "") -> Response:
    """GET, DELETE, cancel and input_items of a response: routed to the sandbox that made it."""
    _check_api_version(request)
    principal = authenticate(request)
    the = services(request)
    session_id = await run_in_threadpool(the.sessions.session_of_response, response_id)
    session = None
    if session_id is not None:
        session = await run_in_threadpool(the.sessions.by_id, session_id)
    if session is None or session.project != project:
        raise NotFound(f"Response {response_id!r} was not found.", code="ResponseNotFound")
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "api-version"])
    path = f"/responses/{response_id}{suffix}" + (f"?{query}" if query else "")
    content = await request.body() if request.method == "POST" else None
    headers = _platform_headers(request, session, principal)
    return await _relay_to_session(request, session, request.method, path, headers, content)


for _base in _OPENAI_BASES:
    router.add_api_route(f"{_base}/responses", create_response, methods=["POST"])
    router.add_api_route(f"{_base}/responses/{{response_id}}", follow_response, methods=["GET", "DELETE"])

    async def _cancel(request: Request, project: str, response_id: str) -> Response:
        return await follow_response(request, project, response_id, "/cancel")

    async def _input_items(request: Request, project: str, response_id: str) -> Response:
        return await follow_response(request, project, response_id, "/input_items")

    router.add_api_route(f"{_base}/responses/{{response_id}}/cancel", _cancel, methods=["POST"])
    router.add_api_route(f"{_base}/responses/{{response_id}}/input_items", _input_items, methods=["GET"])


# -- the Invocations protocol (2.x) ------------------------------------------------------------------

@router.post("/agents/{agent_name}/endpoint/protocols/invocations")
async def invoke(request: Request, project: str, agent_name: str) -> Response:
    """Relayed as it is to the sandbox's POST /invocations: any body, any answer, streaming included.

    The session comes from the `agent_session_id` query parameter (as Foundry reads it), the
    `x-agent-session-id` header, or a new one, and goes to the sandbox in that same query parameter.
    """
    _check_api_version(request)
    principal = authenticate(request)
    content = await read_body(request, services(request).settings.max_invocation_bytes)
    session_id = request.query_params.get("agent_session_id") or request.headers.get("x-agent-session-id")
    session = await run_in_threadpool(services(request).sandboxes.open, project, agent_name, session_id=session_id,
                                      pinned_version=None)
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k not in ("api-version",
                                                                                         "agent_session_id")]
                      + [("agent_session_id", session.id)])
    headers = _platform_headers(request, session, principal)
    return await _relay_to_session(request, session, "POST", f"/invocations?{query}", headers, content)


# -- sessions (2.x) ---------------------------------------------------------------------------------

sessions_router = APIRouter(prefix="/api/projects/{project}/agents/{agent_name}",
                            dependencies=[Depends(authenticate_operator)])


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


@sessions_router.post("/endpoint/sessions", status_code=201)
async def create_session(request: Request, agent_name: str, project: str = Depends(project)) -> dict[str, Any]:
    body = await json_body(request) if int(request.headers.get("content-length") or 0) else {}
    indicator = body.get("version_indicator") or {}
    pinned = indicator.get("agent_version") if isinstance(indicator, dict) else None
    sandboxes = services(request).sandboxes
    session = await run_in_threadpool(sandboxes.open, project, agent_name, session_id=body.get("agent_session_id"),
                                      pinned_version=pinned)
    target = await _target(request, session)
    return session_to_wire(await run_in_threadpool(services(request).sessions.get, project, agent_name,
                                                   target.session.id))


@sessions_router.get("/endpoint/sessions")
def list_sessions(request: Request, agent_name: str, project: str = Depends(project),
                  after: str | None = None, limit: int = 20) -> dict[str, Any]:
    services(request).control_plane.get_agent(project, agent_name)
    everything = services(request).sessions.list(project, agent_name)
    if after:
        ids = [s.id for s in everything]
        everything = everything[ids.index(after) + 1:] if after in ids else []
    page = everything[: max(1, min(limit, 100))]
    items = [session_to_wire(s) for s in page]
    return {"object": "list", "data": items,
            "first_id": items[0]["agent_session_id"] if items else None,
            "last_id": items[-1]["agent_session_id"] if items else None,
            "has_more": len(everything) > len(page)}


@sessions_router.get("/endpoint/sessions/{session_id}")
def get_session(request: Request, agent_name: str, session_id: str, project: str = Depends(project)) -> dict[str, Any]:
    return session_to_wire(services(request).sessions.get(project, agent_name, session_id))


@sessions_router.delete("/endpoint/sessions/{session_id}", status_code=204)
def delete_session(request: Request, agent_name: str, session_id: str, project: str = Depends(project)) -> Response:
    session = services(request).sessions.get(project, agent_name, session_id)
    services(request).sandboxes.delete(session)
    return Response(status_code=204)


@sessions_router.post("/endpoint/sessions/{session_id}:stop", status_code=204)
def stop_session(request: Request, agent_name: str, session_id: str, project: str = Depends(project)) -> Response:
    session = services(request).sessions.get(project, agent_name, session_id)
    services(request).sandboxes.stop(session)
    return Response(status_code=204)


# -- the agent endpoint: traffic split, enable, disable ------------------------------------------------

@sessions_router.post(":enable", status_code=204)
def enable_agent(request: Request, agent_name: str, project: str = Depends(project)) -> Response:
    services(request).control_plane.store.set_endpoint(project, agent_name, enabled=True)
    return Response(status_code=204)


@sessions_router.post(":disable", status_code=204)
def disable_agent(request: Request, agent_name: str, project: str = Depends(project)) -> Response:
    services(request).control_plane.store.set_endpoint(project, agent_name, enabled=False)
    return Response(status_code=204)


@sessions_router.patch("")
async def update_agent_details(request: Request, agent_name: str, project: str = Depends(project)) -> dict[str, Any]:
    body = await json_body(request)
    the = services(request)
    if "agent_endpoint" in body:
        versions = [v.version for v in await run_in_threadpool(the.control_plane.store.desired_versions_of,
                                                               project, agent_name)]
        endpoint = validate_endpoint(body["agent_endpoint"], versions)
        await run_in_threadpool(the.control_plane.store.set_endpoint, project, agent_name, endpoint=endpoint)
    agent = await run_in_threadpool(the.control_plane.get_agent, project, agent_name)
    return wire.agent_to_wire(agent, WireShape.V1)

