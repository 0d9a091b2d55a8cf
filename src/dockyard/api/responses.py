"""The OpenAI-compatible Responses surface, at the three bases the SDKs use.

2.0.0b3's `{endpoint}/openai` (agent named in the body as `agent`), 2.x's `{endpoint}/openai/v1`
(`agent_reference`), and 2.x's per-agent `{endpoint}/agents/{name}/endpoint/protocols/openai`, all
served alike. A response's later calls (GET, DELETE, cancel, input_items) reach the sandbox that made it.
A response is its caller's and delegated end user's (dockyard.identity.ownership): anyone else, or the
same id through another agent's URL, gets the 404 of a response that does not exist, and so does a
request continuing it (`previous_response_id`).
"""

from __future__ import annotations

import json
import secrets
import string
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import authenticate_caller, json_body, root_project, services
from dockyard.api.forwarding import check_api_version, open_session, platform_headers, relay_to_session
from dockyard.api.inference import authenticate_inference, follow_loop_response, model_response
from dockyard.api.schemas import CreateResponseRequest, json_request, validated
from dockyard.api.storage import answer_from_store, stored_response_of
from dockyard.domain.errors import BadRequest, NotFound
from dockyard.domain.sessions import Session, validate_session_id
from dockyard.identity.ownership import Caller, may_follow

router = APIRouter(prefix="/api/projects/{project}")
# The host's root (AzureOpenAI and LangChain given the host as endpoint) is the default project's.
root_router = APIRouter()

_OPENAI_BASES = ("/openai", "/openai/v1", "/agents/{agent_name}/endpoint/protocols/openai")
_ALPHANUMERIC = string.ascii_letters + string.digits


def new_response_id() -> str:
    """An id in the form Microsoft's adapter accepts: caresp_<16 hex>00<32 alphanumerics>."""
    # One read of the kernel's random source, not 33: each read costs a system call on the warm path.
    # (256 is not a multiple of 62, so the last few letters are very slightly rarer; ids need not be uniform.)
    entropy = secrets.token_bytes(40)
    return f"caresp_{entropy[:8].hex()}00{''.join(_ALPHANUMERIC[b % 62] for b in entropy[8:])}"


async def create_response(request: Request, project: str, agent_name: str | None = None) -> Response:
    body = None
    if agent_name is None:
        # Naming a model and no agent makes it a call to a model deployment (api/inference.py), which
        # takes any api-version an Azure OpenAI client sends and tokens for either audience.
        authenticate_inference(request)
        body = validated(CreateResponseRequest,
                         await json_body(request, limit=services(request).settings.max_invocation_bytes))
        if body.get("model") and not (body.get("agent_reference") or body.get("agent")):
            return await model_response(request, project, body)
    check_api_version(request)
    caller = authenticate_caller(request)
    if body is None:
        body = validated(CreateResponseRequest,
                         await json_body(request, limit=services(request).settings.max_invocation_bytes))
    reference = body.get("agent_reference") or body.get("agent") or {}
    if not isinstance(reference, dict):
        raise BadRequest("'agent_reference' must be an object {\"type\": \"agent_reference\", \"name\": …}.",
                         code="InvalidAgentReference")
    name = agent_name or reference.get("name")
    if not name:
        raise BadRequest("Name the agent: send {\"agent_reference\": {\"type\": \"agent_reference\", \"name\": …}} "
                         "(2.0.0b3: \"agent\"), or use client.get_openai_client(agent_name=…).",
                         code="AgentReferenceRequired")
    session_id = body.get("agent_session_id")
    if session_id in (None, ""):
        session_id = request.headers.get("x-agent-session-id")
    else:
        session_id = validate_session_id(session_id)  # before it is used as a key: it may be any JSON
    previous = body.get("previous_response_id")
    if previous is not None:
        if not isinstance(previous, str):
            raise BadRequest("'previous_response_id' must be a string: the id of an earlier response.",
                             code="InvalidRequestBody", param="previous_response_id")
        await _continuable(request, project, name, previous, caller)  # 404 unless the caller's, of this agent
    session = await open_session(request, project, name, session_id, reference.get("version"), caller=caller)
    response_id = new_response_id()
    services(request).sandboxes.record_response(response_id, session.id, caller.owner)
    outbound = json.dumps({**body, "agent_session_id": session.id}).encode()
    headers = platform_headers(request, session, caller) | {"x-agent-response-id": response_id}
    return await relay_to_session(request, session, "POST", "/responses", headers, outbound)


async def follow_response(request: Request, project: str, response_id: str, suffix: str = "") -> Response:
    """GET, DELETE, cancel and input_items of a response: routed to the sandbox that made it."""
    check_api_version(request)
    caller = authenticate_caller(request)
    agent_name = request.path_params.get("agent_name")
    try:
        session = await _response_of(request, project, agent_name, response_id, caller)
    except NotFound:
        # A Response the tool loop made on the model endpoint (dockyard.tools.loop), kept in the store.
        loops = services(request).tool_responses
        if agent_name is None and loops is not None:
            record = await run_in_threadpool(loops.find, project, caller, response_id)
            if record is not None:
                return await follow_loop_response(request, record, caller, suffix)
        # Its session is gone (deleted, or its version): the adapter stored it in the project (api/storage.py).
        return await answer_from_store(request, project, agent_name, response_id, caller, suffix)
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "api-version"])
    path = f"/responses/{response_id}{suffix}" + (f"?{query}" if query else "")
    content = await request.body() if request.method == "POST" else None
    headers = platform_headers(request, session, caller)
    return await relay_to_session(request, session, request.method, path, headers, content)


async def _continuable(request: Request, project: str, agent_name: str, response_id: str, caller: Caller) -> None:
    """`previous_response_id`: the caller's response of this agent, in a live session or in storage."""
    try:
        await _response_of(request, project, agent_name, response_id, caller)
    except NotFound:
        await stored_response_of(request, project, agent_name, response_id, caller)


async def _response_of(request: Request, project: str, agent_name: str | None, response_id: str,
                       caller: Caller) -> Session:
    """The session a response lives in, if it is the caller's and (when the URL or body names one) of
    that agent; otherwise the 404 of a response that does not exist, word for word."""
    routed = await run_in_threadpool(services(request).sandboxes.session_of_response, response_id)
    if routed is not None:
        session, owner = routed
        if (session.project == project and agent_name in (None, session.agent_name)
                and may_follow(caller, owner)):
            return session
    raise NotFound(f"Response {response_id!r} was not found.", code="ResponseNotFound")


for _base in _OPENAI_BASES:
    router.add_api_route(f"{_base}/responses", create_response, methods=["POST"],
                         openapi_extra=json_request(CreateResponseRequest))
    router.add_api_route(f"{_base}/responses/{{response_id}}", follow_response, methods=["GET", "DELETE"])

    async def _cancel(request: Request, project: str, response_id: str) -> Response:
        return await follow_response(request, project, response_id, "/cancel")

    async def _input_items(request: Request, project: str, response_id: str) -> Response:
        return await follow_response(request, project, response_id, "/input_items")

    router.add_api_route(f"{_base}/responses/{{response_id}}/cancel", _cancel, methods=["POST"])
    router.add_api_route(f"{_base}/responses/{{response_id}}/input_items", _input_items, methods=["GET"])


async def create_response_at_root(request: Request) -> Response:
    return await create_response(request, root_project(request))


for _base in ("/openai/v1", "/openai"):
    root_router.add_api_route(f"{_base}/responses", create_response_at_root, methods=["POST"],
                              openapi_extra=json_request(CreateResponseRequest))
