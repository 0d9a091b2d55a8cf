"""The project's state stores, as `FoundryStateStore` (azure-ai-agentserver-core 2.3) calls them from a sandbox.

With `FOUNDRY_HOSTING_ENVIRONMENT` set, Agent Framework's hosting (agent-framework-foundry-hosting) keeps
each stored turn's agent session, pending function approvals and workflow checkpoints here rather than in
files in the sandbox, so a conversation carries on in another session, another version, after a restart.
`{FOUNDRY_PROJECT_ENDPOINT}/storage/…`, api-version v1, a bearer token for https://ai.azure.com; store names
and item keys travel in the path base64url-encoded without padding:

    POST   state_stores                              {name, user_isolation, item_ttl_seconds, description, tags}
    GET    state_stores                              ?limit&order&after&before
    GET    state_stores/{name}                       PATCH {description?, tags?}   DELETE (every item too)
    POST   state_stores/{name}/items                 {key, value, tags}: 409 when the key is taken
    PUT    state_stores/{name}/items/{key}           {value, tags}, If-Match (an ETag, or * for "exists")
    GET    state_stores/{name}/items/{key}           DELETE, If-Match
    GET    state_stores/{name}/items:keys            ?tags.K=V&limit&order&after&before

Who: only a sandbox's own identity; its stores are its agent's (any version's). The caller an item belongs
to, in a store with user isolation, is the one the forwarded `x-agent-foundry-call-id` names (dockyard
minted it for a request to this sandbox: dockyard.identity.call_ids), or a user the agent names itself in
`x-ms-user-id` (the client's delegated user), kept apart from callers dockyard vouches for; with neither,
the agent's own. Statuses are the ones the client maps: 404, 400 (with `param`), 409, 412 with the current
`ETag`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import json_body, project, services
from dockyard.api.schemas import validated
from dockyard.api.storage import sandbox_principal, verified_call
from dockyard.domain.errors import BadRequest, Forbidden
from dockyard.store.state_stores import (
    DEFAULT_ITEM_TTL_SECONDS,
    DEFAULT_PAGE,
    MAX_KEY_CHARS,
    MAX_NAME_CHARS,
    MAX_PAGE,
    NEVER_EXPIRES,
    Paging,
    StateScope,
    StateStores,
)

# Not in dockyard's OpenAPI document: the platform's API for sandboxes, as in Foundry, not one for callers.
router = APIRouter(prefix="/api/projects/{project}/storage/state_stores", include_in_schema=False)

DELEGATED_USER_HEADER = "x-ms-user-id"
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
MAX_TAGS = 32

TagKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TagValue = Annotated[str, StringConstraints(max_length=256)]
Tags = Annotated[dict[TagKey, TagValue] | None, Field(max_length=MAX_TAGS)]
Description = Annotated[str | None, StringConstraints(max_length=512)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class CreateStore(_Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
    user_isolation: bool | None = None
    item_ttl_seconds: int | None = None
    description: Description = None
    tags: Tags = None


class UpdateStore(_Body):
    description: Description = None
    tags: Tags = None


class PutItem(_Body):
    value: dict[str, Any]
    tags: Tags = None


class CreateItem(PutItem):
    key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_CHARS)]


def _stores(request: Request) -> StateStores:
    store = services(request).state_stores
    assert store is not None, "build_services always makes one"
    return store


def state_scope(request: Request) -> StateScope:
    """The agent whose stores these are and the caller items are kept for (see the module's docstring)."""
    principal = sandbox_principal(request)
    project_name = project(request)
    call = verified_call(request, principal)
    delegated = request.headers.get(DELEGATED_USER_HEADER)
    if call is not None:
        agent_name = call.agent_name
        caller = f"call:{call.owner.subject}|{call.owner.user or ''}"
    else:
        found = services(request).control_plane.store.agent_of_uid(str(principal.claims.get("dockyard_version_uid")))
        if found is None or found[0] != project_name:
            raise Forbidden("This identity's agent version is gone, or is another project's.",
                            code="AgentIdentityNotForThisProject")
        agent_name = found[1]
        caller = "agent:"
    if delegated:
        caller = f"delegated:{delegated[:256]}"
    return StateScope(project_name, agent_name, caller)


def _decoded(segment: str, what: str, limit: int) -> str:
    """A store name or item key from the path: base64url without padding, as the client encodes them."""
    try:
        value = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise BadRequest(f"The {what} in the path must be base64url-encoded UTF-8 (no padding).",
                         code="InvalidPathSegment", param=what) from None
    if not value or len(value) > limit:
        raise BadRequest(f"A {what} is 1 to {limit} characters.", code="InvalidPathSegment", param=what)
    return value


def _paging(request: Request) -> Paging:
    query = request.query_params
    raw_limit, order = query.get("limit"), query.get("order", "desc")
    try:
        limit = DEFAULT_PAGE if raw_limit is None else int(raw_limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_PAGE}.", code="InvalidPaging", param="limit")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be 'asc' or 'desc'.", code="InvalidPaging", param="order")
    after, before = query.get("after"), query.get("before")
    if after is not None and before is not None:
        raise BadRequest("Page with 'after' or 'before', not both.", code="InvalidPaging", param="before")
    return Paging(limit=limit, ascending=order == "asc", after=after, before=before)


async def _body(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    return validated(model, await json_body(request, limit=services(request).settings.max_invocation_bytes))


@router.post("", status_code=201)
async def create_store(request: Request, scope: StateScope = Depends(state_scope)) -> dict[str, Any]:
    body = await _body(request, CreateStore)
    ttl = body.get("item_ttl_seconds")
    ttl = DEFAULT_ITEM_TTL_SECONDS if ttl is None else ttl
    if ttl != NEVER_EXPIRES and not 1 <= ttl <= MAX_TTL_SECONDS:
        raise BadRequest(f"item_ttl_seconds is -1 (never expire) or 1 to {MAX_TTL_SECONDS}.",
                         code="InvalidRequestBody", param="item_ttl_seconds")
    return await run_in_threadpool(_stores(request).create_store, scope, body["name"],
                                   user_isolation=bool(body.get("user_isolation")), item_ttl_seconds=ttl,
                                   description=body.get("description"), tags=body.get("tags"))


@router.get("")
async def list_stores(request: Request, scope: StateScope = Depends(state_scope)) -> dict[str, Any]:
    page = await run_in_threadpool(_stores(request).list_stores, scope, _paging(request))
    return page.to_wire()


@router.get("/{store}")
async def get_store(request: Request, store: str, scope: StateScope = Depends(state_scope)) -> dict[str, Any]:
    return await run_in_threadpool(_stores(request).get_store, scope, _decoded(store, "name", MAX_NAME_CHARS))


@router.patch("/{store}")
async def update_store(request: Request, store: str, scope: StateScope = Depends(state_scope)) -> dict[str, Any]:
    name = _decoded(store, "name", MAX_NAME_CHARS)
    changes = await _body(request, UpdateStore)
    return await run_in_threadpool(_stores(request).update_store, scope, name,
                                   {key: changes[key] for key in ("description", "tags") if key in changes})


@router.delete("/{store}")
async def delete_store(request: Request, store: str, scope: StateScope = Depends(state_scope)) -> dict[str, Any]:
    return await run_in_threadpool(_stores(request).delete_store, scope, _decoded(store, "name", MAX_NAME_CHARS))


@router.post("/{store}/items", status_code=201)
async def create_item(request: Request, store: str, scope: StateScope = Depends(state_scope)) -> dict[str, Any]:
    name = _decoded(store, "name", MAX_NAME_CHARS)
    body = await _body(request, CreateItem)
    return await run_in_threadpool(_stores(request).create_item, scope, name, body["key"], body["value"],
                                   body.get("tags"))


@router.get("/{store}/items:keys")
async def list_keys(request: Request, store: str, scope: StateScope = Depends(state_scope)) -> dict[str, Any]:
    name = _decoded(store, "name", MAX_NAME_CHARS)
    tags = {key[len("tags."):]: value for key, value in request.query_params.items() if key.startswith("tags.")}
    page = await run_in_threadpool(_stores(request).list_keys, scope, name, tags, _paging(request))
    return page.to_wire()


@router.put("/{store}/items/{key}")
async def put_item(request: Request, store: str, key: str, scope: StateScope = Depends(state_scope)) -> dict[str, Any]:
    name, item_key = _decoded(store, "name", MAX_NAME_CHARS), _decoded(key, "key", MAX_KEY_CHARS)
    body = await _body(request, PutItem)
    return await run_in_threadpool(_stores(request).put_item, scope, name, item_key, body["value"],
                                   body.get("tags"), request.headers.get("if-match"))


@router.get("/{store}/items/{key}")
async def get_item(request: Request, store: str, key: str, scope: StateScope = Depends(state_scope)) -> dict[str, Any]:
    return await run_in_threadpool(_stores(request).get_item, scope, _decoded(store, "name", MAX_NAME_CHARS),
                                   _decoded(key, "key", MAX_KEY_CHARS))


@router.delete("/{store}/items/{key}")
async def delete_item(request: Request, store: str, key: str,
                      scope: StateScope = Depends(state_scope)) -> dict[str, Any]:
    return await run_in_threadpool(_stores(request).delete_item, scope, _decoded(store, "name", MAX_NAME_CHARS),
                                   _decoded(key, "key", MAX_KEY_CHARS), request.headers.get("if-match"))
