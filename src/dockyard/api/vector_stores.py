"""The Vector Stores API (`/openai/v1/vector_stores`), as `client.vector_stores.*` calls it.

Vector stores, their files (`/files`, and their parsed text at `/files/{id}/content`), file batches
(`/file_batches`) and search (`/search`), in OpenAI's shapes, at `{project}/openai/v1/...` and
`{project}/openai/...` with the model endpoint's tokens. Adding a file answers at once with the file
`in_progress`; it is taken in in the background (dockyard.tools.vector_search). A vector store and the
files named in it must be the caller's: anything else answers 404 as if it did not exist.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import json_body, services
from dockyard.api.files import file_store, inference_caller
from dockyard.domain.chunking import UnsupportedFile, parse_chunking_strategy
from dockyard.domain.errors import BadRequest, ServiceUnavailable
from dockyard.identity.ownership import Caller
from dockyard.store.vector_stores import (
    COMPLETED,
    FILE_STATUSES,
    MAX_LIST_LIMIT,
    Listing,
    check_attributes,
    check_expires_after,
    check_metadata,
)
from dockyard.tools.extraction import extract
from dockyard.tools.vector_search import MAX_RESULTS, VectorSearch, check_filters

project_router = APIRouter(prefix="/api/projects/{project}")

MAX_FILES_PER_CALL = 500
_DEFAULT_LIMIT = 20


def _search(request: Request) -> VectorSearch:
    found = services(request).vector_search
    if found is None:
        raise ServiceUnavailable("This dockyard keeps no vector stores.", code="VectorStoresNotSupported")
    return found


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 512:
        raise BadRequest("name must be a string of up to 512 characters.", code="InvalidName", param="name")
    return value


def _file_ids(value: Any, param: str = "file_ids") -> list[str]:
    if value is None:
        return []
    if (not isinstance(value, list) or len(value) > MAX_FILES_PER_CALL
            or not all(isinstance(i, str) and i for i in value)):
        raise BadRequest(f"{param} must be a list of up to {MAX_FILES_PER_CALL} file ids.", code="InvalidFileIds",
                         param=param)
    return list(dict.fromkeys(value))


def _paging(request: Request) -> dict[str, Any]:
    query = request.query_params
    raw = query.get("limit")
    if raw is None or raw == "":
        limit = _DEFAULT_LIMIT
    elif raw.isdigit() and 1 <= int(raw) <= MAX_LIST_LIMIT:
        limit = int(raw)
    else:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}.", code="InvalidPaging", param="limit")
    order = query.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise BadRequest("order must be 'asc' or 'desc'.", code="InvalidPaging", param="order")
    return {"limit": limit, "order": order, "after": query.get("after") or None, "before": query.get("before") or None}


def _page(listing: Listing) -> JSONResponse:
    data = [item.to_wire() for item in listing.items]
    return JSONResponse({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None, "has_more": listing.has_more})


def _attach(request: Request, search: VectorSearch, project: str, caller: Caller, vector_store_id: str,
            file_ids: list[str], chunking: Any, attributes: Any, batch_id: str | None = None) -> list[Any]:
    """Attach the caller's files to a store and start taking them in; the attached files."""
    strategy = parse_chunking_strategy(chunking)
    attributes = check_attributes(attributes)
    files = file_store(request)
    for file_id in file_ids:
        files.get(project, caller.owner, file_id)  # FileNotFound for anything not the caller's
    attached = []
    for file_id in file_ids:
        attached.append(search.repository.add_file(project, caller.owner, vector_store_id, file_id,
                                                   chunking_strategy=strategy.to_wire(), attributes=attributes,
                                                   batch_id=batch_id))
        search.take_in(project, caller.owner, vector_store_id, file_id, strategy)
    return attached


# ---- vector stores --------------------------------------------------------------------------------------

async def create_vector_store(request: Request, project: str) -> JSONResponse:
    caller = inference_caller(request, project)
    body = await json_body(request)
    search = _search(request)
    file_ids = _file_ids(body.get("file_ids"))
    parse_chunking_strategy(body.get("chunking_strategy"))
    for file_id in file_ids:
        file_store(request).get(project, caller.owner, file_id)
    store = search.repository.create(
        project, caller.owner, name=_name(body.get("name")), expires_after=check_expires_after(
            body.get("expires_after")), metadata=check_metadata(body.get("metadata")),
        embedding_deployment=search.default_deployment)
    _attach(request, search, project, caller, store.id, file_ids, body.get("chunking_strategy"), None)
    return JSONResponse(search.repository.get(project, caller.owner, store.id).to_wire())


def list_vector_stores(request: Request, project: str) -> JSONResponse:
    caller = inference_caller(request, project)
    return _page(_search(request).repository.list_stores(project, caller.owner, **_paging(request)))


def retrieve_vector_store(request: Request, project: str, vector_store_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    return JSONResponse(_search(request).repository.get(project, caller.owner, vector_store_id).to_wire())


async def modify_vector_store(request: Request, project: str, vector_store_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    body = await json_body(request)
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = _name(body["name"])
    if "expires_after" in body:
        changes["expires_after"] = check_expires_after(body["expires_after"])
    if "metadata" in body:
        changes["metadata"] = check_metadata(body["metadata"])
    store = await run_in_threadpool(_search(request).repository.modify, project, caller.owner, vector_store_id,
                                    changes)
    return JSONResponse(store.to_wire())


def delete_vector_store(request: Request, project: str, vector_store_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    _search(request).repository.delete(project, caller.owner, vector_store_id)
    return JSONResponse({"id": vector_store_id, "object": "vector_store.deleted", "deleted": True})


async def search_vector_store(request: Request, project: str, vector_store_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    body = await json_body(request)
    query = body.get("query")
    queries = [query] if isinstance(query, str) else query
    if not isinstance(queries, list) or not queries or not all(isinstance(q, str) and q.strip() for q in queries):
        raise BadRequest("query must be a non-empty string or a list of them.", code="InvalidQuery", param="query")
    limit = body.get("max_num_results", 10)
    if type(limit) is not int or not 1 <= limit <= MAX_RESULTS:
        raise BadRequest(f"max_num_results must be an integer from 1 to {MAX_RESULTS}.", code="InvalidMaxNumResults",
                         param="max_num_results")
    ranking = body.get("ranking_options") or {}
    threshold = ranking.get("score_threshold", 0.0) if isinstance(ranking, dict) else None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise BadRequest("ranking_options.score_threshold must be a number from 0 to 1.",
                         code="InvalidRankingOptions", param="ranking_options.score_threshold")
    filters = check_filters(body.get("filters"))
    results = await _search(request).search(project, caller.owner, [vector_store_id], queries, limit,
                                            float(threshold), filters)
    return JSONResponse({"object": "vector_store.search_results.page", "search_query": queries,
                         "data": [r.to_wire() for r in results], "has_more": False, "next_page": None})


# ---- files ----------------------------------------------------------------------------------------------

async def create_vector_store_file(request: Request, project: str, vector_store_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    body = await json_body(request)
    file_id = body.get("file_id")
    if not isinstance(file_id, str) or not file_id:
        raise BadRequest("file_id is required: the id of a file you uploaded (client.files.create).",
                         code="InvalidFileId", param="file_id")
    search = _search(request)
    search.repository.get(project, caller.owner, vector_store_id)
    [attached] = _attach(request, search, project, caller, vector_store_id, [file_id],
                         body.get("chunking_strategy"), body.get("attributes"))
    return JSONResponse(attached.to_wire())


def list_vector_store_files(request: Request, project: str, vector_store_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    return _page(_search(request).repository.list_files(project, caller.owner, vector_store_id,
                                                        status=_status_filter(request), **_paging(request)))


def retrieve_vector_store_file(request: Request, project: str, vector_store_id: str, file_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    return JSONResponse(_search(request).repository.get_file(project, caller.owner, vector_store_id,
                                                             file_id).to_wire())


async def update_vector_store_file(request: Request, project: str, vector_store_id: str,
                                   file_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    body = await json_body(request)
    attributes = check_attributes(body.get("attributes"))
    updated = await run_in_threadpool(_search(request).repository.update_file_attributes, project, caller.owner,
                                      vector_store_id, file_id, attributes)
    return JSONResponse(updated.to_wire())


def delete_vector_store_file(request: Request, project: str, vector_store_id: str, file_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    _search(request).repository.remove_file(project, caller.owner, vector_store_id, file_id)
    return JSONResponse({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})


async def vector_store_file_content(request: Request, project: str, vector_store_id: str,
                                   file_id: str) -> JSONResponse:
    """The parsed text of a file in the store (`vector_stores.files.content`), in one page.

    OpenAI's page shape (`object`, `data: [{type, text}]`, `has_more`, `next_page`), which the openai
    client reads, with the `file_id`, `filename` and `attributes` its API reference also shows. The text
    is read again from the file as it was taken in (the same child-process extraction): only the chunks,
    which overlap, are kept. A file not yet (or never) taken in has no parsed text: `data` is empty.
    """
    caller = inference_caller(request, project)
    attached = _search(request).repository.get_file(project, caller.owner, vector_store_id, file_id)
    files = file_store(request)
    stored = files.get(project, caller.owner, file_id)
    data: list[dict[str, str]] = []
    if attached.status == COMPLETED:
        try:
            data.append({"type": "text", "text": await extract(files.path(stored), stored.filename)})
        except UnsupportedFile:  # it was read once; a file changed on disk since has nothing to show
            pass
    return JSONResponse({"object": "vector_store.file_content.page", "data": data, "has_more": False,
                         "next_page": None, "file_id": file_id, "filename": stored.filename,
                         "attributes": attached.attributes})


def _status_filter(request: Request) -> str | None:
    status = request.query_params.get("filter") or None
    if status is not None and status not in FILE_STATUSES:
        raise BadRequest(f"filter must be one of {', '.join(FILE_STATUSES)}.", code="InvalidFilter", param="filter")
    return status


# ---- file batches ---------------------------------------------------------------------------------------

async def create_file_batch(request: Request, project: str, vector_store_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    body = await json_body(request)
    search = _search(request)
    file_ids = _file_ids(body.get("file_ids"))
    # The newer shape: `files: [{file_id, attributes?, chunking_strategy?}]`; each file's own settings win.
    entries = body.get("files")
    if entries is not None:
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise BadRequest("files must be a list of {file_id, attributes, chunking_strategy}.",
                             code="InvalidFileIds", param="files")
        file_ids += _file_ids([e.get("file_id") for e in entries], "files[].file_id")
    if not file_ids:
        raise BadRequest("A file batch needs file_ids (or files).", code="InvalidFileIds", param="file_ids")
    parse_chunking_strategy(body.get("chunking_strategy"))
    check_attributes(body.get("attributes"))
    for file_id in file_ids:
        file_store(request).get(project, caller.owner, file_id)
    batch_id = search.repository.create_batch(project, caller.owner, vector_store_id)
    own = {e.get("file_id"): e for e in entries or []}
    for file_id in dict.fromkeys(file_ids):
        entry = own.get(file_id, {})
        _attach(request, search, project, caller, vector_store_id, [file_id],
                entry.get("chunking_strategy", body.get("chunking_strategy")),
                entry.get("attributes", body.get("attributes")), batch_id)
    return JSONResponse(search.repository.get_batch(project, caller.owner, vector_store_id, batch_id).to_wire())


def retrieve_file_batch(request: Request, project: str, vector_store_id: str, batch_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    return JSONResponse(_search(request).repository.get_batch(project, caller.owner, vector_store_id,
                                                              batch_id).to_wire())


def cancel_file_batch(request: Request, project: str, vector_store_id: str, batch_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    return JSONResponse(_search(request).repository.cancel_batch(project, caller.owner, vector_store_id,
                                                                 batch_id).to_wire())


def list_file_batch_files(request: Request, project: str, vector_store_id: str, batch_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    repository = _search(request).repository
    repository.get_batch(project, caller.owner, vector_store_id, batch_id)
    return _page(repository.list_files(project, caller.owner, vector_store_id, status=_status_filter(request),
                                       batch_id=batch_id, **_paging(request)))


# ---- routes ---------------------------------------------------------------------------------------------

_STORE = "/vector_stores/{vector_store_id}"
_ROUTES: tuple[tuple[str, Any, str], ...] = (
    ("/vector_stores", create_vector_store, "POST"),
    ("/vector_stores", list_vector_stores, "GET"),
    (_STORE, retrieve_vector_store, "GET"),
    (_STORE, modify_vector_store, "POST"),
    (_STORE, delete_vector_store, "DELETE"),
    (f"{_STORE}/search", search_vector_store, "POST"),
    (f"{_STORE}/files", create_vector_store_file, "POST"),
    (f"{_STORE}/files", list_vector_store_files, "GET"),
    (f"{_STORE}/files/{{file_id}}", retrieve_vector_store_file, "GET"),
    (f"{_STORE}/files/{{file_id}}", update_vector_store_file, "POST"),
    (f"{_STORE}/files/{{file_id}}", delete_vector_store_file, "DELETE"),
    (f"{_STORE}/files/{{file_id}}/content", vector_store_file_content, "GET"),
    (f"{_STORE}/file_batches", create_file_batch, "POST"),
    (f"{_STORE}/file_batches/{{batch_id}}", retrieve_file_batch, "GET"),
    (f"{_STORE}/file_batches/{{batch_id}}/cancel", cancel_file_batch, "POST"),
    (f"{_STORE}/file_batches/{{batch_id}}/files", list_file_batch_files, "GET"),
)
for _base in ("/openai/v1", "/openai"):
    for _path, _handler, _method in _ROUTES:
        project_router.add_api_route(f"{_base}{_path}", _handler, methods=[_method])
