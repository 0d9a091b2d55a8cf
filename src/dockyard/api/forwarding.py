"""What every call into a sandbox shares: the api-version check, the platform headers Foundry sends
a sandbox (DESIGN.md §3), and relaying to a session's sandbox with one cold retry."""

from __future__ import annotations

import random

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import services
from dockyard.domain.definitions import WireShape
from dockyard.domain.errors import BadRequest
from dockyard.domain.sessions import Session
from dockyard.gateway import tracing
from dockyard.gateway.proxy import SandboxUnreachable, relay, unreachable
from dockyard.gateway.sandboxes import Target
from dockyard.identity.call_ids import CallScope, mint_call_id
from dockyard.identity.ownership import Caller


def check_api_version(request: Request) -> None:
    # 2.x's default OpenAI client sends none; 2.0.0b3 sends 2025-11-15-preview; the agent endpoint v1.
    api_version = request.query_params.get("api-version")
    if api_version is not None and api_version not in WireShape.supported():
        raise BadRequest(f"api-version {api_version!r} is not supported here. Supported: "
                         f"{', '.join(WireShape.supported())}, or none.", code="UnsupportedApiVersion")


def platform_headers(request: Request, session: Session, caller: Caller) -> dict[str, str]:
    """What Foundry tells a sandbox about each request (DESIGN.md §3); the user is the delegated end user
    (`x-ms-user-identity`) when the caller names one, else the caller's object id. The call id says whose
    call it is, for the sandbox's calls back to the project (dockyard.identity.call_ids)."""
    call = CallScope(session.version_uid, session.project, session.agent_name, caller.owner)
    headers = {
        "content-type": request.headers.get("content-type", "application/json"),
        "accept": request.headers.get("accept", "*/*"),
        "x-agent-session-id": session.id,
        "x-agent-user-id": caller.end_user,
        "x-agent-foundry-call-id": mint_call_id(services(request).identity_secret, call),
        "x-request-id": request.scope.get("state", {}).get("request_id", ""),
    }
    for name, value in request.headers.items():
        if name.startswith("x-client-") or name == "x-ms-client-request-id":
            headers[name] = value
    return headers


async def open_session(request: Request, project: str, agent_name: str, session_id: str | None,
                       pinned_version: str | None = None, *, caller: Caller) -> Session:
    """The caller's session (404 for one that is another caller's); read from the store (off the event
    loop) only when not known already.

    One draw per request decides a traffic split, whichever of the two paths answers: drawing again
    on the slow path would favour the versions whose sessions this process happens to know.
    """
    sandboxes = services(request).sandboxes
    draw = random.random()
    known = sandboxes.open_cached(project, agent_name, session_id=session_id, pinned_version=pinned_version,
                                  caller=caller, draw=draw)
    if known is not None:
        return known
    return await run_in_threadpool(sandboxes.open, project, agent_name, session_id=session_id,
                                   pinned_version=pinned_version, caller=caller, draw=draw)


async def running_target(request: Request, session: Session) -> Target:
    """The session's sandbox, started if it is not running (a warm one costs no thread hop)."""
    sandboxes = services(request).sandboxes
    warm = sandboxes.warm(session)
    return warm if warm is not None else await run_in_threadpool(sandboxes.ensure_running, session)


async def relay_to_session(request: Request, session: Session, method: str, path: str, headers: dict[str, str],
                           content: bytes | None) -> Response:
    """Relay to the session's sandbox; if a warm one turns out gone, start it again and retry once."""
    the = services(request)
    assert the.http is not None, "the app sets its client when it starts serving"
    tracing.entered_session(session)
    for attempt in (1, 2):
        sandbox = await running_target(request, session)
        try:
            return await relay(the.http, method, f"{sandbox.endpoint}{path}", headers=headers, content=content,
                               extra_response_headers={"x-agent-session-id": session.id},
                               request_id=headers["x-request-id"])
        except SandboxUnreachable:
            the.sandboxes.forget(session.id)
            if attempt == 2:
                return unreachable(headers["x-request-id"])
    raise AssertionError("unreachable")
