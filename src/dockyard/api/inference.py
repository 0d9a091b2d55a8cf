"""The project's model endpoint: OpenAI's and Azure OpenAI's inference paths, relayed to a deployment.

Clients reach the same deployments by several paths; each below is one a real client sends (read from
their sources and captured on the wire: openai 3.54, azure-ai-projects 2.10 and 2.0.0b3,
langchain-openai 1.7, agent-framework-core 1.23 / -openai 1.17 / -foundry 1.10):

- `{project}/openai/v1/{responses,chat/completions,embeddings,models}`, no api-version: the openai
  client on `base_url={project}/openai/v1`, azure-ai-projects 2.x `get_openai_client()` (a token for
  https://ai.azure.com), and so Agent Framework's `FoundryChatClient` (FOUNDRY_PROJECT_ENDPOINT +
  FOUNDRY_MODEL).
- `{project}/openai/{responses,chat/completions,embeddings,models}?api-version=2025-11-15-preview`:
  2.0.0b3's `get_openai_client()` (an OpenAI client on `{project}/openai` with that default query).
- `/openai/deployments/{d}/{chat/completions,completions,embeddings}?api-version=…`, plus
  `/openai/responses` and `/openai/models`: `AzureOpenAI(azure_endpoint=E, api_version=V)`, with E the
  host (these paths at the host root, which serves the default project) or the project endpoint.
  LangChain's `AzureChatOpenAI(azure_endpoint=<host>, azure_deployment=d, api_version=
  "2024-12-01-preview")` sends no `model` in the body: the path names the deployment. Agent
  Framework's `OpenAIChatCompletionClient` on an Azure endpoint sends the same (2024-12-01-preview; its
  embeddings 2024-10-21), with a token for https://cognitiveservices.azure.com.
- `/openai/v1/responses?api-version=preview`: Agent Framework's `OpenAIChatClient` on an Azure endpoint
  (an AzureOpenAI client on `{endpoint}/openai/v1/`). An AzureOpenAI client given that base URL sends
  its other calls to `/openai/v1/deployments/{d}/…`, served too.

Any api-version is accepted here: it names an Azure OpenAI API revision, and every revision's
inference calls have the same body. Tokens may be for https://ai.azure.com or
https://cognitiveservices.azure.com, from a person or from an agent's own identity (agents call
models; they still may not manage agents). A token in the `api-key` header is accepted too, for
clients configured with a key. A Responses call that names an agent is the agent gateway's
(api/responses.py hands over only calls that name a `model` and no agent).
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

import aiohttp
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from dockyard.api.dependencies import caller_of, json_body, root_project, services
from dockyard.api.schemas import InferenceRequest, json_request, validated
from dockyard.domain.errors import BadRequest, NotFound, Unauthorized
from dockyard.identity.ownership import USER_IDENTITY_HEADER, Caller
from dockyard.identity.tokens import FOUNDRY_AUDIENCE, InvalidToken, Principal
from dockyard.models.providers import (
    EntraTokens,
    Operation,
    auth_headers,
    check_operation,
    operation_url,
    rewrite_model,
)
from dockyard.models.relay import model_timeout, relay, relay_translated, send
from dockyard.models.translate import chat_to_response, responses_to_chat
from dockyard.models.upstreams import Upstream
from dockyard.store.stored_responses import MAX_PAGE
from dockyard.store.tool_responses import LoopRecord, page_items
from dockyard.tools.base import ToolContext
from dockyard.tools.loop import (
    RESPONSE_NOT_FOUND,
    CallModel,
    ModelCallFailed,
    Turn,
    run_to_end,
    stream_turn,
    uses_loop,
)

COGNITIVE_SERVICES_AUDIENCE = "https://cognitiveservices.azure.com"
_AUDIENCES = (FOUNDRY_AUDIENCE, COGNITIVE_SERVICES_AUDIENCE)

project_router = APIRouter(prefix="/api/projects/{project}")
root_router = APIRouter()

# dockyard's own Entra identity, for Azure OpenAI connections that use it: one per process.
_ENTRA = EntraTokens()
# Which audience verified a token: a cognitiveservices token is then not checked against ai.azure.com
# (and refused) on every call first. Bounded like the authority's own cache.
_AUDIENCE_OF: dict[str, str] = {}
_AUDIENCE_CACHE_SIZE = 4096


def authenticate_inference(request: Request) -> Principal:
    """A valid dockyard token for either audience; an agent's own identity is welcome here."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.",
                               code="InvalidAuthenticationScheme")
        token = token.strip()
    else:
        token = request.headers.get("api-key", "").strip()
        if not token:
            raise Unauthorized(
                "The request has no bearer token. Authenticate with DefaultAzureCredential after "
                "`eval \"$(dockyard env)\"` (a token for https://ai.azure.com or https://cognitiveservices.azure.com), "
                "or send 'Authorization: Bearer <token>'.", code="MissingToken")
    authority = services(request).authority
    known = _AUDIENCE_OF.get(token)
    audiences = (known,) if known is not None else _AUDIENCES
    first: InvalidToken | None = None
    for audience in audiences:
        try:
            principal = authority.verify(token, audience=audience)
        except InvalidToken as exc:
            first = first or exc
            continue
        if known is None:
            if len(_AUDIENCE_OF) >= _AUDIENCE_CACHE_SIZE:
                _AUDIENCE_OF.clear()
            _AUDIENCE_OF[token] = audience
        request.state.principal = principal
        return principal
    assert first is not None
    reason = first.reason
    if "audience" in reason:
        reason = f"The access token is not for this audience; request a token for {' or '.join(_AUDIENCES)}."
    raise Unauthorized(reason, code="InvalidToken")


def _check_project(request: Request, project: str) -> str:
    projects = services(request).settings.projects
    if project not in projects:
        raise NotFound(f"Project {project!r} does not exist on this dockyard. Known projects: {', '.join(projects)}. "
                       "Use the AZURE_AI_PROJECT_ENDPOINT that `dockyard env` prints.", code="ProjectNotFound")
    return project


@lru_cache(maxsize=8)
def _timeout(read_seconds: float) -> aiohttp.ClientTimeout:
    return model_timeout(read_seconds)


async def _resolve(request: Request, project: str, name: Any, operation: Operation | None = None,
                   body: dict[str, Any] | None = None) -> Upstream:
    """The deployment's upstream; with `operation`, a call its model cannot answer is a 400 here
    (chat on an embedding deployment, embeddings on a chat one: see providers.check_operation)."""
    if not isinstance(name, str) or not name:
        names = ", ".join(services(request).catalog.names(project)) or "none"  # type: ignore[union-attr]
        raise BadRequest(f"Name the model deployment to call in 'model'. Deployments in this project: {names}.",
                         code="ModelRequired", param="model")
    upstream = await services(request).catalog.resolve_ready(project, name)  # type: ignore[union-attr]
    if operation is not None:
        check_operation(upstream, operation, body)
    return upstream


async def forward(request: Request, upstream: Upstream, operation: Operation, body: dict[str, Any]) -> Response:
    """Relay one call to the deployment's upstream (translating Responses when it speaks only Chat)."""
    the = services(request)
    assert the.http is not None
    headers = {"content-type": "application/json", "accept": request.headers.get("accept", "application/json"),
               **await auth_headers(upstream, _ENTRA)}
    request_id = request.scope.get("state", {}).get("request_id", "")
    timeout = _timeout(the.settings.invocation_timeout_seconds)
    if operation is Operation.RESPONSES and not upstream.speaks_responses:
        return await relay_translated(the.http, upstream, operation_url(upstream, Operation.CHAT_COMPLETIONS),
                                      headers=headers, request=body, timeout=timeout, request_id=request_id)
    return await relay(the.http, upstream, operation, "POST", operation_url(upstream, operation), headers=headers,
                       content=rewrite_model(body, upstream), timeout=timeout, request_id=request_id)


async def model_response(request: Request, project: str, body: dict[str, Any]) -> Response:
    """`POST …/responses` naming a model and no agent (called by api/responses.py once it has the body).

    With platform tools (or continuing a Response the tool loop made) it runs the tool loop
    (dockyard.tools.loop); otherwise it is relayed as it is.
    """
    _check_project(request, project)
    if uses_loop(body, services(request).tool_kinds) or await _continues_loop(request, project, body):
        return await _tool_loop(request, project, body)
    upstream = await _resolve(request, project, body.get("model"), Operation.RESPONSES, body)
    return await forward(request, upstream, Operation.RESPONSES, body)


_tools_log = logging.getLogger("dockyard.tools")


async def _continues_loop(request: Request, project: str, body: dict[str, Any]) -> bool:
    previous, store = body.get("previous_response_id"), services(request).tool_responses
    if not isinstance(previous, str) or store is None:
        return False
    caller = caller_of(request.state.principal, request.headers.get(USER_IDENTITY_HEADER))
    return await run_in_threadpool(store.find, project, caller, previous) is not None


async def _tool_loop(request: Request, project: str, body: dict[str, Any]) -> Response:
    the = services(request)
    upstream = await _resolve(request, project, body.get("model"), Operation.RESPONSES, body)
    request_id = request.scope.get("state", {}).get("request_id", "")

    def log_line(line: str) -> None:
        _tools_log.info(line, extra={"request_id": request_id})

    ctx = ToolContext(project=project, caller=caller_of(request.state.principal,
                                                        request.headers.get(USER_IDENTITY_HEADER)),
                      request_id=request_id, log=log_line,
                      foundry_call_id=request.headers.get("x-agent-foundry-call-id"))
    turn = Turn(body=body, ctx=ctx, call_model=_model_caller(request, upstream),
                max_rounds=the.settings.max_tool_rounds)
    await turn.start(the.tool_kinds, the.tool_responses)  # 4xx before anything is sent
    if not body.get("stream"):
        return JSONResponse(await run_to_end(turn, the.tool_responses))
    return StreamingResponse(stream_turn(turn, the.tool_responses),
                             headers={"content-type": "text/event-stream", "cache-control": "no-cache"})


async def follow_loop_response(request: Request, record: LoopRecord, caller: Caller, suffix: str) -> Response:
    """GET, DELETE, cancel and input_items of a Response the tool loop made (api/responses.py found it the
    caller's), as OpenAI answers them."""
    if suffix == "/input_items":
        query = request.query_params
        order = query.get("order", "desc")
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE or order not in ("asc", "desc"):
            raise BadRequest(f"limit must be 1 to {MAX_PAGE} and order 'asc' or 'desc'.", code="InvalidPaging")
        page = page_items(record.input_items, limit=limit, ascending=order == "asc", after=query.get("after"),
                          before=query.get("before"))
        return JSONResponse(page.to_wire())
    if suffix == "/cancel":
        raise BadRequest("Only responses created with background=true can be cancelled. The tool loop answers when "
                         "the response is finished, so there is nothing left to cancel.",
                         code="invalid_request_error", param="response_id")
    if request.method == "DELETE":
        store = services(request).tool_responses
        assert store is not None, "the record was found in it"
        if not await run_in_threadpool(store.delete, record.project, caller, record.id):
            raise NotFound(f"Response {record.id!r} was not found.", code=RESPONSE_NOT_FOUND)  # deleted meanwhile
        return JSONResponse({"id": record.id, "object": "response", "deleted": True})
    return JSONResponse(record.response)


def _model_caller(request: Request, upstream: Upstream) -> CallModel:
    """One non-streamed Responses call to the deployment, for the loop: the relay's upstream, credentials and
    Chat Completions translation; a refusal or failure is raised with the status and words the relay gives."""
    the = services(request)
    request_id = request.scope.get("state", {}).get("request_id", "")
    timeout = _timeout(the.settings.invocation_timeout_seconds)

    async def call_model(body: dict[str, Any]) -> dict[str, Any]:
        assert the.http is not None
        body = {**body, "stream": False}
        headers = {"content-type": "application/json", "accept": "application/json",
                   **await auth_headers(upstream, _ENTRA)}
        if upstream.speaks_responses:
            url, content = operation_url(upstream, Operation.RESPONSES), rewrite_model(body, upstream)
        else:
            chat = responses_to_chat(body)
            if upstream.model:
                chat["model"] = upstream.model
            url, content = operation_url(upstream, Operation.CHAT_COMPLETIONS), json.dumps(chat).encode()
        answer = await send(the.http, upstream, "POST", url, headers=headers, content=content, timeout=timeout,
                            request_id=request_id)
        if isinstance(answer, Response):
            raise _model_failure(answer)
        try:
            data = await answer.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            data = None
        finally:
            answer.release()
        if not isinstance(data, dict):
            raise ModelCallFailed(502, f"The model behind deployment {upstream.deployment!r} answered with something "
                                  f"that is not a JSON object (request id {request_id}).", code="ModelUnavailable")
        # Counted in /metrics as a relayed call's usage is (models/relay.py): per call, by deployment.
        if the.metrics is not None and isinstance(data.get("usage"), dict):
            the.metrics.tokens_used(upstream.deployment, data["usage"])
        return data if upstream.speaks_responses else chat_to_response(data, body)

    return call_model


def _model_failure(answer: Response) -> ModelCallFailed:
    try:
        error = json.loads(bytes(answer.body)).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = str(error.get("message") or "The model's server refused the call.") if isinstance(error, dict) else ""
    code = str(error.get("code") or "ModelError") if isinstance(error, dict) else "ModelError"
    retry = answer.headers.get("retry-after")
    return ModelCallFailed(answer.status_code, message, code=code, headers={"Retry-After": retry} if retry else None)


async def _call(request: Request, project: str, operation: Operation, deployment: str | None = None) -> Response:
    authenticate_inference(request)
    _check_project(request, project)
    body = validated(InferenceRequest, await json_body(request, limit=services(request).settings.max_invocation_bytes))
    # The Azure OpenAI paths name the deployment; LangChain sends no `model` in the body then.
    upstream = await _resolve(request, project, deployment or body.get("model"), operation, body)
    return await forward(request, upstream, operation, body)


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "dockyard"}


async def list_models(request: Request, project: str) -> JSONResponse:
    """The project's deployments in OpenAI's model list shape (what `client.models.list()` reads)."""
    authenticate_inference(request)
    _check_project(request, project)
    names = services(request).catalog.names(project)  # type: ignore[union-attr]
    return JSONResponse({"object": "list", "data": [_model_entry(name) for name in names]})


async def get_model(request: Request, project: str, model: str) -> JSONResponse:
    authenticate_inference(request)
    _check_project(request, project)
    await _resolve(request, project, model)  # 404 DeploymentNotFound, listing the deployments there are
    return JSONResponse(_model_entry(model))


# ---- routes -------------------------------------------------------------------------------------------

_OPERATIONS = (Operation.CHAT_COMPLETIONS, Operation.COMPLETIONS, Operation.EMBEDDINGS)
_BODY = json_request(InferenceRequest)
# Deployment-path operations (Azure OpenAI's classic surface).
_DEPLOYMENT_BASES = ("/openai/deployments/{deployment}", "/openai/v1/deployments/{deployment}")


def _by_model(operation: Operation) -> tuple[Any, Any]:
    async def in_project(request: Request, project: str) -> Response:
        return await _call(request, project, operation)

    async def at_root(request: Request) -> Response:
        return await _call(request, root_project(request), operation)

    return in_project, at_root


def _by_deployment(operation: Operation) -> tuple[Any, Any]:
    async def in_project(request: Request, project: str, deployment: str) -> Response:
        return await _call(request, project, operation, deployment)

    async def at_root(request: Request, deployment: str) -> Response:
        return await _call(request, root_project(request), operation, deployment)

    return in_project, at_root


async def _root_list_models(request: Request) -> JSONResponse:
    return await list_models(request, root_project(request))


async def _root_get_model(request: Request, model: str) -> JSONResponse:
    return await get_model(request, root_project(request), model)


for _base in ("/openai/v1", "/openai"):
    for _operation in _OPERATIONS:
        _in_project, _at_root = _by_model(_operation)
        project_router.add_api_route(f"{_base}/{_operation.value}", _in_project, methods=["POST"], openapi_extra=_BODY)
        root_router.add_api_route(f"{_base}/{_operation.value}", _at_root, methods=["POST"], openapi_extra=_BODY)
    project_router.add_api_route(f"{_base}/models", list_models, methods=["GET"])
    project_router.add_api_route(f"{_base}/models/{{model}}", get_model, methods=["GET"])
    root_router.add_api_route(f"{_base}/models", _root_list_models, methods=["GET"])
    root_router.add_api_route(f"{_base}/models/{{model}}", _root_get_model, methods=["GET"])
for _base in _DEPLOYMENT_BASES:
    for _operation in _OPERATIONS:
        _in_project, _at_root = _by_deployment(_operation)
        project_router.add_api_route(f"{_base}/{_operation.value}", _in_project, methods=["POST"], openapi_extra=_BODY)
        root_router.add_api_route(f"{_base}/{_operation.value}", _at_root, methods=["POST"], openapi_extra=_BODY)
