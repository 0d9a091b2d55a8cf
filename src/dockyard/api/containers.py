"""OpenAI's container routes for the code interpreter's files: `client.containers.retrieve` and `.files.*`.

`GET {project}/openai/v1/containers/{id}`, `…/files` (a page), `…/files/{file_id}` and
`…/files/{file_id}/content` (the bytes), also under 2.0.0b3's `{project}/openai`. A container and its files
are the caller's that made it, exactly (dockyard.identity.ownership): anyone else gets the 404 of a
container that does not exist. Files are what `container_file_citation` annotations name; the code wrote
them, so they are read without following links (dockyard.tools.code_containers).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from dockyard.api.dependencies import authenticate_caller, project, services
from dockyard.domain.errors import BadRequest
from dockyard.identity.ownership import Caller
from dockyard.tools.code_containers import CodeContainer, ContainerStore, container_not_found
from dockyard.tools.code_interpreter import TYPE, CodeInterpreterKind

router = APIRouter(prefix="/api/projects/{project}", dependencies=[Depends(authenticate_caller)])
_BASES = ("/openai/v1", "/openai")
_MAX_LIMIT = 100


def _store(request: Request) -> ContainerStore | None:
    kind = services(request).tool_kinds.get(TYPE)
    return kind.containers if isinstance(kind, CodeInterpreterKind) else None


def _container(request: Request, project: str, caller: Caller, container_id: str) -> tuple[ContainerStore,
                                                                                            CodeContainer]:
    store = _store(request)
    if store is None:
        raise container_not_found(container_id)
    return store, store.get(project, caller, container_id)


async def retrieve_container(request: Request, container_id: str, project: str = Depends(project),
                             caller: Caller = Depends(authenticate_caller)) -> dict[str, Any]:
    store, container = await run_in_threadpool(_container, request, project, caller, container_id)
    return container.to_wire(store.idle_seconds)


async def list_files(request: Request, container_id: str, limit: int = 20, order: str = "desc",
                     after: str | None = None, project: str = Depends(project),
                     caller: Caller = Depends(authenticate_caller)) -> dict[str, Any]:
    if not 1 <= limit <= _MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {_MAX_LIMIT}.", code="InvalidLimit", param="limit")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be 'asc' or 'desc'.", code="InvalidOrder", param="order")
    _store_, container = await run_in_threadpool(_container, request, project, caller, container_id)
    files = sorted(container.files.values(), key=lambda f: (f.created_at, f.id), reverse=order == "desc")
    if after is not None:
        ids = [f.id for f in files]
        files = files[ids.index(after) + 1:] if after in ids else []
    page = files[:limit]
    has_more = len(files) > limit
    return {"object": "list", "data": [f.to_wire(container.id) for f in page],
            "first_id": page[0].id if page else None,
            # The SDK pages on last_id: null on the last page stops it there.
            "last_id": page[-1].id if page else None, "has_more": has_more}


async def retrieve_file(request: Request, container_id: str, file_id: str, project: str = Depends(project),
                        caller: Caller = Depends(authenticate_caller)) -> dict[str, Any]:
    store, container = await run_in_threadpool(_container, request, project, caller, container_id)
    return store.file(container, file_id).to_wire(container.id)


async def file_content(request: Request, container_id: str, file_id: str, project: str = Depends(project),
                       caller: Caller = Depends(authenticate_caller)) -> Response:
    store, container = await run_in_threadpool(_container, request, project, caller, container_id)
    entry = store.file(container, file_id)
    size, chunks = await run_in_threadpool(store.open_file, container, entry)
    headers = {"content-length": str(size),
               "content-disposition": f"attachment; filename*=UTF-8''{quote(entry.filename)}"}
    return StreamingResponse(iterate_in_threadpool(chunks), media_type="application/octet-stream", headers=headers)


for _base in _BASES:
    router.add_api_route(f"{_base}/containers/{{container_id}}", retrieve_container, methods=["GET"])
    router.add_api_route(f"{_base}/containers/{{container_id}}/files", list_files, methods=["GET"])
    router.add_api_route(f"{_base}/containers/{{container_id}}/files/{{file_id}}", retrieve_file, methods=["GET"])
    router.add_api_route(f"{_base}/containers/{{container_id}}/files/{{file_id}}/content", file_content,
                         methods=["GET"])
