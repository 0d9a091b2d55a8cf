"""The console's HTTP layer: pages, the few JSON and event-stream endpoints its script calls, sign-in.

Reads (agents, versions, sessions, traces, recent log lines) come straight from the stores; anything
that changes state or invokes an agent goes through dockyard's own API as the operator (`OwnApi`), so
the gateway, tracing and ownership apply as for any caller. Every route under /console but the sign-in
pages and the packaged assets needs the session cookie: pages redirect to the sign-in page without it,
the JSON and stream endpoints answer 401. Every POST, PUT and DELETE also needs the CSRF token.
"""

from __future__ import annotations

import inspect
import json
import mimetypes
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import authenticate_caller, authenticate_operator, read_body, services
from dockyard.console.auth import COOKIE_NAME, CSRF_FIELD, CSRF_HEADER, ConsoleAuth, ConsoleSession
from dockyard.console.own_api import OwnApi, error_text
from dockyard.console.waterfall import waterfall
from dockyard.domain.agents import Agent, AgentVersion
from dockyard.domain.errors import BadRequest, DockyardError, Forbidden, NotFound
from dockyard.domain.paging import PageRequest
from dockyard.domain.sessions import validate_session_id
from dockyard.gateway.routing import selection_rules
from dockyard.gateway.tracing import new_span_id, new_trace_id
from dockyard.home import Home
from dockyard.runtime.base import WorkloadKey
from dockyard.settings import base_url
from dockyard.wire_errors import error_response

router = APIRouter(prefix="/console", include_in_schema=False)
# The operator's route `dockyard console` mints a sign-in link with.
api_router = APIRouter(prefix="/api/console", dependencies=[Depends(authenticate_operator)], include_in_schema=False)

_LOG_LINES = 20
_MAX_OUTPUT_TOKENS = 4096
_SECURITY_HEADERS = {
    # The script and styles are the packaged ones; bars in the trace waterfall are sized with inline styles.
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_STATIC = {"console.css", "console.js"}


@dataclass
class Console:
    auth: ConsoleAuth
    api: OwnApi
    templates: jinja2.Environment


class SignInRequired(Exception):
    """No valid session cookie: a page redirects to the sign-in page, an API call answers 401."""


def install(app: FastAPI) -> None:
    """Mount the console on the app: its routes, its state, and what a missing sign-in answers."""
    the = app.state.services
    settings = the.settings
    home = Home(settings.home)
    app.state.console = Console(
        auth=ConsoleAuth(home),
        api=OwnApi(base_url(settings.host, settings.port), str(home.ca_cert), the.authority,
                   settings.invocation_timeout_seconds),
        templates=jinja2.Environment(loader=jinja2.PackageLoader("dockyard.console", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined),
    )
    app.include_router(router)
    app.include_router(api_router)
    app.add_api_route("/", _root, methods=["GET"], include_in_schema=False)
    app.add_exception_handler(SignInRequired, _sign_in_required)
    # A page that fails (no such agent, a bad trace id) answers with a page; the API and the console's JSON
    # endpoints keep the Azure error envelope.
    api_errors = app.exception_handlers[DockyardError]

    async def page_or_envelope(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if (isinstance(exc, DockyardError) and request.method == "GET" and path.startswith("/console/")
                and not path.startswith("/console/api/") and request.cookies.get(COOKIE_NAME)):
            session = console(request).auth.session_from_cookie(request.cookies.get(COOKIE_NAME))
            page = _page(request, "error.html", session, code=exc.code, message=exc.message)
            page.status_code = exc.status_code
            return page
        answer = api_errors(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    app.add_exception_handler(DockyardError, page_or_envelope)


def console(request: Request) -> Console:
    the: Console = request.app.state.console
    return the


async def _root() -> Response:
    return RedirectResponse("/console/", status_code=303)


async def _sign_in_required(request: Request, _exc: Exception) -> Response:
    if request.url.path.startswith("/console/api/"):
        return error_response(401, "ConsoleSignInRequired",
                              "Sign in to the console first: run `dockyard console` and open the link it prints.")
    return RedirectResponse("/console/sign-in", status_code=303, headers=_SECURITY_HEADERS)


async def signed_in(request: Request) -> ConsoleSession:
    """The browser's console session; for a state change, also its CSRF token (header or form field)."""
    the = console(request)
    session = the.auth.session_from_cookie(request.cookies.get(COOKIE_NAME))
    if session is None:
        raise SignInRequired()
    if request.method not in ("GET", "HEAD"):
        presented = request.headers.get(CSRF_HEADER)
        if presented is None and request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            await request.body()  # kept, so a handler may still read the body after the form
            presented = str((await request.form()).get(CSRF_FIELD) or "")
        if not the.auth.csrf_valid(session, presented):
            raise Forbidden("The console's CSRF token is missing or wrong: reload the page and try again.",
                            code="CsrfTokenInvalid")
    return session


def _page(request: Request, template: str, session: ConsoleSession | None, **values: Any) -> HTMLResponse:
    the = console(request)
    html = the.templates.get_template(template).render(
        csrf=the.auth.csrf_token(session) if session else "", signed_in=session is not None,
        project=_project(request), **values)
    return HTMLResponse(html, headers=_SECURITY_HEADERS)


def _project(request: Request) -> str:
    return services(request).settings.projects[0]


# ---- sign-in -------------------------------------------------------------------------------------------------


@api_router.post("/sign-in-links", status_code=201)
def mint_sign_in_link(request: Request) -> dict[str, Any]:
    """A one-time console link (for `dockyard console`); the operator's alone: the console acts as the operator,
    so a named user's token (a caller of its own) may not open it either."""
    if not authenticate_caller(request).operator:
        raise Forbidden("The console is the operator's: run `dockyard console` with the home's own identity "
                        "(what `dockyard env` hands out), not a named user's.", code="OperatorOnly")
    token, expires_at = console(request).auth.mint_link_token()
    return {"url": f"{str(request.base_url).rstrip('/')}/console/sign-in?token={token}", "expires_at": expires_at}


@router.get("/sign-in")
def sign_in(request: Request, token: str | None = None) -> Response:
    the = console(request)
    if token is None:
        return _page(request, "sign_in.html", None, refused=False)
    session = the.auth.redeem(token)
    if session is None:
        page = _page(request, "sign_in.html", None, refused=True)
        page.status_code = 401
        return page
    response = RedirectResponse("/console/", status_code=303, headers=_SECURITY_HEADERS)
    response.set_cookie(COOKIE_NAME, the.auth.cookie_value(session), max_age=session.expires_at - _now(),
                        path="/console", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/sign-out")
def sign_out(_session: ConsoleSession = Depends(signed_in)) -> Response:
    response = RedirectResponse("/console/sign-in", status_code=303, headers=_SECURITY_HEADERS)
    response.delete_cookie(COOKIE_NAME, path="/console", secure=True, httponly=True, samesite="strict")
    return response


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The packaged stylesheet and script: code anyone may read, served without the cookie."""
    if name not in _STATIC:
        raise NotFound(f"No console asset {name!r}.", code="NotFound")
    body = resources.files("dockyard.console").joinpath("static", name).read_bytes()
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(body, media_type=media_type, headers={"cache-control": "no-cache",
                                                          "x-content-type-options": "nosniff"})


# ---- agents --------------------------------------------------------------------------------------------------


def _agents(request: Request) -> list[Agent]:
    control_plane = services(request).control_plane
    agents: list[Agent] = []
    after = None
    while True:
        page = control_plane.list_agents(_project(request), PageRequest(limit=100, order="asc", after=after))
        agents += page.items
        if not page.has_more or not page.items:
            return agents
        after = page.items[-1].name


def _versions(request: Request, name: str) -> list[AgentVersion]:
    control_plane = services(request).control_plane
    versions: list[AgentVersion] = []
    after = None
    while True:
        page = control_plane.list_versions(_project(request), name, PageRequest(limit=100, after=after))
        versions += page.items
        if not page.has_more or not page.items:
            return versions
        after = page.items[-1].version


@router.get("/")
async def overview(request: Request, session: ConsoleSession = Depends(signed_in)) -> HTMLResponse:
    the = services(request)
    agents = await run_in_threadpool(_agents, request)
    sessions = await run_in_threadpool(the.sessions.all)
    live: dict[str, int] = {}
    for item in sessions:
        if item.project == _project(request) and item.status.value == "active":
            live[item.agent_name] = live.get(item.agent_name, 0) + 1
    deployments = the.catalog.names(_project(request)) if the.catalog is not None else []
    return _page(request, "overview.html", session, agents=agents, live=live, deployments=deployments)


@router.get("/api/agents")
async def agents_json(request: Request, _session: ConsoleSession = Depends(signed_in)) -> dict[str, Any]:
    """What the overview refreshes itself with: each agent's latest version and its status."""
    agents = await run_in_threadpool(_agents, request)
    return {"agents": [{"name": a.name, "version": a.latest.version, "status": a.latest.status.value,
                        "enabled": a.enabled,
                        "error": None if a.latest.error is None else {"code": a.latest.error.code,
                                                                      "message": a.latest.error.message}}
                       for a in agents]}


@router.get("/agents/{name}")
async def agent_page(request: Request, name: str, error: str | None = None,
                     session: ConsoleSession = Depends(signed_in)) -> HTMLResponse:
    the = services(request)
    project = _project(request)
    agent = await run_in_threadpool(the.control_plane.get_agent, project, name)
    versions = await run_in_threadpool(_versions, request, name)
    logs: dict[str, list[str]] = {}
    if the.runtime is not None:
        for version in versions[:10]:
            uid = await run_in_threadpool(the.control_plane.store.version_uid, project, name, version.version)
            logs[version.version] = await run_in_threadpool(the.runtime.logs, WorkloadKey(uid), _LOG_LINES)
    sessions = await run_in_threadpool(the.sessions.list, project, name)
    split = dict(selection_rules(agent.endpoint))
    return _page(request, "agent.html", session, agent=agent, versions=versions, logs=logs, sessions=sessions,
                 split=split, error=error)


async def _act(request: Request, name: str, method: str, path: str, body: Any = None) -> Response:
    """Do one API call for a form, then back to the agent's page (with the error, when it failed)."""
    answer = await console(request).api.call(method, f"/api/projects/{_project(request)}/agents/{quote(name)}{path}",
                                              json=body, params={"api-version": "v1"})
    target = f"/console/agents/{quote(name)}"
    if answer.status_code >= 400:
        target += f"?error={quote(error_text(answer))}"
    return RedirectResponse(target, status_code=303, headers=_SECURITY_HEADERS)


@router.post("/agents/{name}/enable")
async def enable(request: Request, name: str, _session: ConsoleSession = Depends(signed_in)) -> Response:
    return await _act(request, name, "POST", ":enable")


@router.post("/agents/{name}/disable")
async def disable(request: Request, name: str, _session: ConsoleSession = Depends(signed_in)) -> Response:
    return await _act(request, name, "POST", ":disable")


@router.post("/agents/{name}/traffic")
async def traffic(request: Request, name: str, _session: ConsoleSession = Depends(signed_in)) -> Response:
    form = await request.form()
    rules = []
    for key, value in form.multi_items():
        if key.startswith("pct_") and str(value).strip() not in ("", "0"):
            try:
                percentage = float(str(value))
            except ValueError:
                raise BadRequest(f"Traffic for version {key[4:]} must be a number.", code="InvalidVersionSelector") \
                    from None
            rules.append({"type": "FixedRatio", "agent_version": key[4:], "traffic_percentage": percentage})
    endpoint = {"version_selector": {"version_selection_rules": rules}} if rules else {}
    return await _act(request, name, "PATCH", "", {"agent_endpoint": endpoint})


@router.post("/agents/{name}/sessions/{session_id}/stop")
async def stop_session(request: Request, name: str, session_id: str,
                       _session: ConsoleSession = Depends(signed_in)) -> Response:
    return await _act(request, name, "POST", f"/endpoint/sessions/{quote(session_id)}:stop")


# ---- logs ----------------------------------------------------------------------------------------------------


@router.get("/logs/{name}/{version}/{session_id}")
def logs_page(request: Request, name: str, version: str, session_id: str,
              session: ConsoleSession = Depends(signed_in)) -> HTMLResponse:
    return _page(request, "logs.html", session, name=name, version=version, session_id=session_id)


@router.get("/api/logs/{name}/{version}/{session_id}")
async def follow_logs(request: Request, name: str, version: str, session_id: str,
                      _session: ConsoleSession = Depends(signed_in)) -> Response:
    """The session's (or, for `default`, the version's own) log stream, relayed as it comes."""
    path = (f"/api/projects/{_project(request)}/agents/{quote(name)}/versions/{quote(version)}/sessions/"
            f"{quote(session_id)}:logstream")
    return await _relay_stream(request, "GET", path, params={"api-version": "v1"})


async def _relay_stream(request: Request, method: str, path: str, *, params: dict[str, str] | None = None,
                        body: Any = None, headers: dict[str, str] | None = None,
                        first: bytes = b"") -> Response:
    """An event stream from the API to the browser, chunk by chunk; an error answer is one `console.error`
    event, and a JSON answer (an agent that does not stream) one `console.response` event."""
    api = console(request).api

    async def events() -> AsyncIterator[bytes]:
        if first:
            yield first
        async with api.client() as client:
            async with client.stream(method, path, params=params, json=body, headers=headers) as answer:
                if answer.status_code >= 400:
                    await answer.aread()
                    yield _event("console.error", {"status": answer.status_code, "message": error_text(answer)})
                    return
                if not answer.headers.get("content-type", "").startswith("text/event-stream"):
                    yield _event("console.response", json.loads(await answer.aread() or b"null"))
                    return
                async for chunk in answer.aiter_raw():
                    yield chunk

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**_SECURITY_HEADERS, "x-accel-buffering": "no"})


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


# ---- traces --------------------------------------------------------------------------------------------------


@router.get("/traces")
async def traces_page(request: Request, agent: str | None = None, session_id: str | None = Query(None, alias="session"),
                      session: ConsoleSession = Depends(signed_in)) -> HTMLResponse:
    store = services(request).traces
    summaries = [] if store is None else await run_in_threadpool(
        store.list_traces, project=_project(request), agent=agent or None, session_id=session_id or None, limit=50)
    return _page(request, "traces.html", session, traces=summaries, agent=agent or "", session_id=session_id or "")


@router.get("/traces/{trace_id}")
async def trace_page(request: Request, trace_id: str, session: ConsoleSession = Depends(signed_in)) -> HTMLResponse:
    if len(trace_id) != 32 or any(c not in "0123456789abcdef" for c in trace_id):
        raise BadRequest("A trace id is 32 lowercase hex characters.", code="InvalidParameter", param="trace_id")
    store = services(request).traces
    spans = [] if store is None else await run_in_threadpool(store.trace, trace_id)
    spans = [s for s in spans if s.project in ("", _project(request))]
    bars, total_ms = waterfall(spans)
    page = _page(request, "trace.html", session, trace_id=trace_id, bars=bars, total_ms=total_ms)
    if not bars:
        page.status_code = 404
    return page


# ---- playground ----------------------------------------------------------------------------------------------


@router.get("/playground")
async def playground(request: Request, agent: str | None = None, session_id: str | None = Query(None, alias="session"),
                     session: ConsoleSession = Depends(signed_in)) -> HTMLResponse:
    the = services(request)
    agents = await run_in_threadpool(_agents, request)
    deployments = the.catalog.names(_project(request)) if the.catalog is not None else []
    return _page(request, "playground.html", session, agents=agents, deployments=deployments,
                 selected=agent or "", session_id=session_id or "")


@router.post("/api/chat")
async def chat(request: Request, _session: ConsoleSession = Depends(signed_in)) -> Response:
    """One playground turn, streamed: `console.trace` first (the trace id the turn is recorded under), then
    the API's own Responses events as they arrive."""
    body = await read_body(request, services(request).settings.max_request_bytes)
    try:
        turn = json.loads(body)
    except ValueError:
        raise BadRequest("The chat turn is not JSON.", code="InvalidRequestBody") from None
    if not isinstance(turn, dict) or not isinstance(turn.get("input"), str) or not turn["input"].strip():
        raise BadRequest("Say something: 'input' must be a non-empty string.", code="InvalidRequestBody")
    kind, _, name = str(turn.get("target") or "").partition(":")
    request_body: dict[str, Any] = {"input": turn["input"], "stream": True}
    if kind == "agent" and name:
        request_body["agent_reference"] = {"type": "agent_reference", "name": name}
        if turn.get("session_id"):
            request_body["agent_session_id"] = validate_session_id(str(turn["session_id"]))
    elif kind == "model" and name:
        request_body["model"] = name
    else:
        raise BadRequest("Pick an agent ('agent:NAME') or a model deployment ('model:NAME').",
                         code="InvalidRequestBody", param="target")
    limit = turn.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= _MAX_OUTPUT_TOKENS:
            raise BadRequest(f"max_output_tokens must be a whole number from 1 to {_MAX_OUTPUT_TOKENS}.",
                             code="InvalidRequestBody", param="max_output_tokens")
        request_body["max_output_tokens"] = limit
    trace_id = new_trace_id()
    traceparent = f"00-{trace_id}-{new_span_id()}-01"
    return await _relay_stream(request, "POST", f"/api/projects/{_project(request)}/openai/v1/responses",
                               body=request_body, headers={"traceparent": traceparent},
                               first=_event("console.trace", {"trace_id": trace_id, "agent": kind == "agent"}))


@router.post("/api/agents/{name}/sessions")
async def new_session(request: Request, name: str, _session: ConsoleSession = Depends(signed_in)) -> Response:
    """A session for the playground: the id asked for, or a new one."""
    wanted = request.query_params.get("id") or f"console-{secrets.token_hex(6)}"
    answer = await console(request).api.call(
        "POST", f"/api/projects/{_project(request)}/agents/{quote(name)}/endpoint/sessions",
        json={"agent_session_id": validate_session_id(wanted)}, params={"api-version": "v1"})
    return Response(answer.content, status_code=answer.status_code, media_type="application/json")


@router.put("/api/agents/{name}/sessions/{session_id}/files")
async def upload_file(request: Request, name: str, session_id: str, path: str,
                      _session: ConsoleSession = Depends(signed_in)) -> Response:
    """A file into the session's home, through the session files API (its size and path rules)."""
    content = await read_body(request, services(request).settings.max_invocation_bytes)
    answer = await console(request).api.call(
        "PUT", f"/api/projects/{_project(request)}/agents/{quote(name)}/endpoint/sessions/{quote(session_id)}"
        "/files/content", params={"api-version": "v1", "path": path}, content=content,
        headers={"content-type": "application/octet-stream"})
    return Response(answer.content, status_code=answer.status_code, media_type="application/json")


@router.get("/api/agents/{name}/sessions/{session_id}/files")
async def list_files(request: Request, name: str, session_id: str,
                     _session: ConsoleSession = Depends(signed_in)) -> Response:
    answer = await console(request).api.call(
        "GET", f"/api/projects/{_project(request)}/agents/{quote(name)}/endpoint/sessions/{quote(session_id)}"
        "/files", params={"api-version": "v1", "limit": "100"})
    return Response(answer.content, status_code=answer.status_code, media_type="application/json")


def _now() -> int:
    return int(time.time())
