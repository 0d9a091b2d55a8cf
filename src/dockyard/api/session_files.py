"""Session files (2.x): upload, download, list and delete files in a session's home directory.

The home is the session's volume (`/session` in its container), so files outlive the sandbox: they
can be uploaded before the first request, and read after the session has gone idle. Paths and sizes
are checked in `domain.session_files`; the bytes move through the runtime, never through this module's
memory whole (uploads are spooled to disk past 1 MiB, downloads streamed).
"""

from __future__ import annotations

import tempfile
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from dockyard.api.dependencies import authenticate_caller, project, services
from dockyard.api.schemas import (
    After,
    Before,
    SessionFileList,
    SessionFileWritten,
    answers,
    raw_request,
)
from dockyard.domain.session_files import (
    SessionFileEntry,
    check_upload_size,
    page_of_entries,
    parse_session_path,
)
from dockyard.gateway.sandboxes import GatewayError
from dockyard.identity.ownership import Caller, may_enter, owner_of
from dockyard.runtime.base import Runtime, Workload
from dockyard.store.sessions import session_not_found

# Files are content: only whoever may enter the session reaches them, the operator included (see
# dockyard.identity.ownership). The router's dependency authenticates first; handlers reuse its answer.
router = APIRouter(prefix="/api/projects/{project}/agents/{agent_name}/endpoint/sessions/{session_id}",
                   dependencies=[Depends(authenticate_caller)])

_SPOOL_IN_MEMORY = 1024 * 1024
# Paging by name, ascending by default (domain.session_files.page_of_entries checks the bounds).
FileLimit = Annotated[int, Query(description="Entries per page, 1 to 100.",
                                 json_schema_extra={"minimum": 1, "maximum": 100})]
FileOrder = Annotated[str, Query(description="By name: 'asc' (default) or 'desc'.",
                                 json_schema_extra={"enum": ["asc", "desc"]})]


def _session_volume(request: Request, caller: Caller, project: str, agent_name: str,
                    session_id: str) -> tuple[Runtime, Workload]:
    """The runtime and the session's workload (which names its volume and image); 404 for no such session
    and for one the caller may not enter."""
    the = services(request)
    session = the.sessions.get(project, agent_name, session_id)
    if not may_enter(caller, owner_of(session.owner_subject, session.owner_user)):
        raise session_not_found(agent_name, session_id)
    if the.runtime is None or the.reconciler is None:
        raise GatewayError("dockyard has no container engine, so session files cannot be reached.",
                           code="ContainerRuntimeUnavailable")
    return the.runtime, the.reconciler.workload(the.sandboxes.version_of(session), session.id)


def entry_to_wire(entry: SessionFileEntry, directory: str) -> dict[str, Any]:
    """SessionDirectoryEntry as the Python SDK reads it, plus azd's `is_dir` and `path`."""
    return {
        "name": entry.name,
        "path": f"{directory}/{entry.name}" if directory else entry.name,
        "size": entry.size,
        "is_directory": entry.is_directory,
        "is_dir": entry.is_directory,
        "modified_time": entry.modified_time,
    }


@router.put("/files/content", status_code=201,
            openapi_extra=raw_request("application/octet-stream", "The file's bytes."),
            responses=answers(SessionFileWritten, status=201, description="Written"))
async def upload(request: Request, agent_name: str, session_id: str, path: str | None = None,
                 project: str = Depends(project),
                 caller: Caller = Depends(authenticate_caller)) -> dict[str, Any]:
    target = parse_session_path(path, allow_root=False)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        check_upload_size(int(declared))  # refused before a byte is read
    runtime, workload = await run_in_threadpool(_session_volume, request, caller, project, agent_name, session_id)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            check_upload_size(size)
            spool.write(chunk)  # memory, or a local temporary file past 1 MiB: quick either way
        spool.seek(0)
        await run_in_threadpool(runtime.write_session_file, workload, target, spool, size)  # type: ignore[arg-type]
    return {"path": target.relative, "bytes_written": size}


@router.get("/files/content", responses=answers(media_type="application/octet-stream"))
async def download(request: Request, agent_name: str, session_id: str, path: str | None = None,
                   project: str = Depends(project),
                 caller: Caller = Depends(authenticate_caller)) -> Response:
    target = parse_session_path(path, allow_root=False)
    runtime, workload = await run_in_threadpool(_session_volume, request, caller, project, agent_name, session_id)
    stream = await run_in_threadpool(runtime.read_session_file, workload, target)
    headers = {"content-length": str(stream.size),
               "content-disposition": f"attachment; filename*=UTF-8''{quote(target.name)}"}
    return StreamingResponse(iterate_in_threadpool(stream.chunks), media_type="application/octet-stream",
                             headers=headers)


@router.get("/files", responses=answers(SessionFileList))
async def list_files(request: Request, agent_name: str, session_id: str, path: str | None = None,
                     limit: FileLimit = 20, order: FileOrder = "asc", after: After = None, before: Before = None,
                     project: str = Depends(project),
                 caller: Caller = Depends(authenticate_caller)) -> dict[str, Any]:
    directory = parse_session_path(path, allow_root=True)
    runtime, workload = await run_in_threadpool(_session_volume, request, caller, project, agent_name, session_id)
    entries = await run_in_threadpool(runtime.list_session_files, workload, directory)
    page, has_more = page_of_entries(entries, limit=limit, order=order, after=after, before=before)
    return {
        "object": "list",
        "path": directory.relative,
        "entries": [entry_to_wire(e, directory.relative) for e in page],
        "first_id": page[0].name if page else None,
        # The SDK pages on `last_id` alone (it never reads has_more): null on the last page stops it there
        # rather than one listing (one archive of the directory) later.
        "last_id": page[-1].name if page and has_more else None,
        "has_more": has_more,
    }


@router.delete("/files", status_code=204, responses=answers(status=204, description="Deleted"))
async def delete(request: Request, agent_name: str, session_id: str, path: str | None = None,
                 recursive: bool = False, project: str = Depends(project),
                 caller: Caller = Depends(authenticate_caller)) -> Response:
    target = parse_session_path(path, allow_root=False)
    runtime, workload = await run_in_threadpool(_session_volume, request, caller, project, agent_name, session_id)
    await run_in_threadpool(runtime.delete_session_file, workload, target, recursive)
    return Response(status_code=204)
