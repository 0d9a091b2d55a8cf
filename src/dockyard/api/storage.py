"""The project's response storage, as Microsoft's responses adapter calls it from inside a sandbox.

With `FOUNDRY_HOSTING_ENVIRONMENT` set (runtime/environment.py) and no store of the app's own, the adapter
(azure-ai-agentserver-responses, `store/_foundry_provider.py`) keeps responses and conversation history
here rather than in the sandbox, so they outlive the session: `{FOUNDRY_PROJECT_ENDPOINT}/storage/…`,
`api-version=v1`, a bearer token for https://ai.azure.com, and the `x-agent-foundry-call-id` of the
request it is serving:

    POST   responses                    {response, input_items, history_item_ids}
    GET    responses/{id}               the response as stored
    POST   responses/{id}               its new snapshot
    DELETE responses/{id}
    GET    responses/{id}/input_items   ?limit&order&after&before → {data, first_id, last_id, has_more}
    POST   items/batch/retrieve         {item_ids} → the items in that order, null where missing
    GET    history/item_ids             ?limit&previous_response_id&conversation_id → [ids]

Who: only a sandbox's own identity (its agent token), with a call id dockyard minted for a request to that
same sandbox's version (dockyard.identity.call_ids). The call id says the agent and the caller the request
was for; every row is that agent's and that caller's, and anything else answers the 404 of what does not
exist. Statuses are the ones the adapter maps: 404 not found (its own 404 to the client), 400 and 409 (409
"already exists" is its idempotent create after a crash), anything else a platform error.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import authenticate, json_body, parse_json_object, project, read_body, services
from dockyard.domain.errors import BadRequest, Forbidden, Unauthorized
from dockyard.identity.agents import AGENT_ROLE
from dockyard.identity.call_ids import CallScope, resolve_call_id
from dockyard.identity.ownership import Caller, may_follow
from dockyard.identity.tokens import Principal
from dockyard.store.stored_responses import (
    MAX_BATCH,
    MAX_ID_CHARS,
    MAX_PAGE,
    StorageScope,
    StoredResponse,
    StoredResponses,
    response_not_found,
)

# Not in dockyard's OpenAPI document: it is the platform's API for sandboxes, as in Foundry, not one for callers.
router = APIRouter(prefix="/api/projects/{project}/storage", include_in_schema=False)

STORAGE_API_VERSION = "v1"
CALL_ID_HEADER = "x-agent-foundry-call-id"


def _store(request: Request) -> StoredResponses:
    store = services(request).stored_responses
    assert store is not None, "build_services always makes one"
    return store


def storage_scope(request: Request) -> StorageScope:
    """The agent and caller this request may reach: from the sandbox's token and the call id it forwards.
    The token is checked first, so a caller without one learns nothing else (not even the project)."""
    principal = sandbox_principal(request)
    project(request)  # an unknown project is its 404 before anything about the call
    call = verified_call(request, principal)
    if call is None:
        raise BadRequest(f"Send the {CALL_ID_HEADER} header of the request being served: dockyard sends one with "
                         "every request to a sandbox, and the storage partition is that call's agent and caller.",
                         code="CallIdRequired", param=CALL_ID_HEADER)
    return StorageScope(call.project, call.agent_name, call.owner)


def sandbox_principal(request: Request) -> Principal:
    """The storage API's caller: a sandbox's own identity, speaking api-version v1."""
    principal = authenticate(request)
    api_version = request.query_params.get("api-version")
    if api_version != STORAGE_API_VERSION:
        raise BadRequest(f"The storage API speaks api-version {STORAGE_API_VERSION}; got {api_version!r}.",
                         code="UnsupportedApiVersion", param="api-version")
    if principal.claims.get("dockyard_role") != AGENT_ROLE:
        raise Forbidden("The project's storage is for hosted agents' sandboxes: call it with the sandbox's managed "
                        "identity (DefaultAzureCredential inside the sandbox), as Microsoft's adapters do.",
                        code="AgentIdentityRequired")
    return principal


def verified_call(request: Request, principal: Principal) -> CallScope | None:
    """The call the sandbox says it is serving (`x-agent-foundry-call-id`), checked: minted by this dockyard,
    for a request to this very sandbox's version in this project. None when the header is not sent."""
    call_id = request.headers.get(CALL_ID_HEADER)
    if not call_id:
        return None
    scope = resolve_call_id(services(request).identity_secret, call_id)
    if scope is None:
        raise Unauthorized(f"The {CALL_ID_HEADER} value is not one this dockyard sent; forward the header of "
                           "the request being served, unchanged.", code="InvalidCallId")
    if scope.version_uid != principal.claims.get("dockyard_version_uid") or scope.project != project(request):
        raise Forbidden(f"The {CALL_ID_HEADER} value was sent to another agent's sandbox; a sandbox can use only "
                        "the call ids of requests it received.", code="CallIdNotForThisAgent")
    return scope


async def _body(request: Request) -> dict[str, Any]:
    return await json_body(request, limit=services(request).settings.max_invocation_bytes)


@router.post("/responses", status_code=201)
async def create_response(request: Request, scope: StorageScope = Depends(storage_scope)) -> Response:
    body = await _body(request)
    response = body.get("response")
    if not isinstance(response, dict):
        raise BadRequest("'response' must be the response object.", code="InvalidRequestBody", param="response")
    input_items = _list_of(body, "input_items", dict)
    history = _list_of(body, "history_item_ids", str)
    await run_in_threadpool(_store(request).create, scope, response, input_items, history)
    return Response(status_code=201)


@router.get("/responses/{response_id}")
async def get_response(request: Request, response_id: str, scope: StorageScope = Depends(storage_scope)) -> Any:
    return JSONResponse(await run_in_threadpool(_store(request).get, scope, response_id))


@router.post("/responses/{response_id}")
async def update_response(request: Request, response_id: str, scope: StorageScope = Depends(storage_scope)) -> Any:
    response = await _body(request)
    if response.get("id") != response_id:
        raise BadRequest("The body's 'id' must be the response id in the path.", code="InvalidRequestBody",
                         param="id")
    await run_in_threadpool(_store(request).update, scope, response)
    return Response(status_code=200)


@router.delete("/responses/{response_id}")
async def delete_response(request: Request, response_id: str, scope: StorageScope = Depends(storage_scope)) -> Any:
    await run_in_threadpool(_store(request).delete, scope, response_id)
    return {"id": response_id, "object": "response", "deleted": True}


@router.get("/responses/{response_id}/input_items")
async def list_input_items(request: Request, response_id: str,
                           scope: StorageScope = Depends(storage_scope)) -> dict[str, Any]:
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be 'asc' or 'desc'.", code="InvalidPaging", param="order")
    page = await run_in_threadpool(_store(request).input_items, scope, response_id,
                                   limit=_integer(query.get("limit"), "limit", 20), ascending=order == "asc",
                                   after=query.get("after"), before=query.get("before"))
    return page.to_wire()


@router.post("/items/batch/retrieve")
async def retrieve_items(request: Request, scope: StorageScope = Depends(storage_scope)) -> Any:
    # Up to MAX_BATCH ids of at most MAX_ID_CHARS: the request limit of other routes fits them.
    body = parse_json_object(await read_body(request, services(request).settings.max_request_bytes))
    item_ids = _list_of(body, "item_ids", str)
    if len(item_ids) > MAX_BATCH or any(len(item_id) > MAX_ID_CHARS for item_id in item_ids):
        raise BadRequest(f"Ask for at most {MAX_BATCH} item ids of at most {MAX_ID_CHARS} characters at a time.",
                         code="InvalidRequestBody", param="item_ids")
    return JSONResponse(await run_in_threadpool(_store(request).items, scope, item_ids))


@router.get("/history/item_ids")
async def history_item_ids(request: Request, scope: StorageScope = Depends(storage_scope)) -> Any:
    query = request.query_params
    return JSONResponse(await run_in_threadpool(
        _store(request).history_item_ids, scope, query.get("previous_response_id"), query.get("conversation_id"),
        _integer(query.get("limit"), "limit", 100),
    ))


def _list_of(body: dict[str, Any], name: str, kind: type) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(entry, kind) for entry in value):
        what = "objects" if kind is dict else "strings"
        raise BadRequest(f"'{name}' must be a list of {what}.", code="InvalidRequestBody", param=name)
    return value


def _integer(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer.", code="InvalidPaging", param=name) from None


# ---- the gateway's answers when the sandbox that made a response is gone -------------------------------------

_CANCEL_REFUSALS = {"completed": "Cannot cancel a completed response.", "failed": "Cannot cancel a failed response.",
                    "incomplete": "Cannot cancel a response in terminal state."}


async def stored_response_of(request: Request, project: str, agent_name: str | None, response_id: str,
                             caller: Caller) -> StoredResponse:
    """A stored response the caller may follow (dockyard.identity.ownership), of that agent when one is named;
    otherwise the gateway's 404 of a response that does not exist, word for word."""
    store = services(request).stored_responses
    found = None if store is None else await run_in_threadpool(store.find, project, agent_name, response_id)
    if found is None or not may_follow(caller, found.scope.owner):
        raise response_not_found(response_id)
    return found


async def answer_from_store(request: Request, project: str, agent_name: str | None, response_id: str,
                            caller: Caller, suffix: str) -> Response:
    """GET, DELETE, cancel and input_items of a response whose session is gone, answered from storage as the
    adapter answers them from its store: internal metadata stripped, the same refusals."""
    found = await stored_response_of(request, project, agent_name, response_id, caller)
    store = _store(request)
    body = found.body
    if suffix == "/input_items":
        query = request.query_params
        limit = _integer(query.get("limit"), "limit", 20)
        order = query.get("order", "desc")
        if not 1 <= limit <= MAX_PAGE or order not in ("asc", "desc"):
            raise BadRequest(f"limit must be 1 to {MAX_PAGE} and order 'asc' or 'desc'.", code="InvalidPaging")
        page = await run_in_threadpool(store.input_items, found.scope, response_id, limit=limit,
                                       ascending=order == "asc", after=query.get("after"),
                                       before=query.get("before"))
        return JSONResponse(strip_internal_metadata(page.to_wire()))
    if suffix == "/cancel":
        status = body.get("status")
        if body.get("background") is not True:
            if status in ("queued", "in_progress"):
                raise response_not_found(response_id)
            raise BadRequest("Cannot cancel a synchronous response.", code="invalid_request_error",
                             param="response_id")
        if status in _CANCEL_REFUSALS:
            raise BadRequest(_CANCEL_REFUSALS[status], code="invalid_request_error", param="response_id")
        if status != "cancelled":
            raise BadRequest("The sandbox that runs this response is gone; it cannot be cancelled now.",
                             code="invalid_request_error", param="response_id")
    elif request.method == "DELETE":
        await run_in_threadpool(store.delete_found, found)
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})
    elif request.query_params.get("stream", "").lower() == "true":
        raise BadRequest("This response cannot be streamed: its sandbox is gone, and with it the stream's events. "
                         "Get it without stream=true.", code="invalid_request_error", param="stream")
    return JSONResponse(strip_internal_metadata(body))


def strip_internal_metadata(payload: Any) -> Any:
    """A copy without the adapter's framework-internal keys, which it stores but never shows a client: any
    `internal_metadata`, and `_internal_metadata` in a `metadata` map (left None when that empties it)."""
    if isinstance(payload, list):
        return [strip_internal_metadata(value) for value in payload]
    if not isinstance(payload, dict):
        return payload
    clean = {key: strip_internal_metadata(value) for key, value in payload.items() if key != "internal_metadata"}
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and "_internal_metadata" in metadata:
        rest = {key: value for key, value in clean["metadata"].items() if key != "_internal_metadata"}
        clean["metadata"] = rest or None
    return clean
