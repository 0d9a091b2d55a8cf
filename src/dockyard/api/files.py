"""The Files API (`/openai/v1/files`), as `client.files.create/list/retrieve/content/delete` call it.

Served where the project's other OpenAI paths are (api/inference.py): `{project}/openai/v1/files` and
`{project}/openai/files` (2.0.0b3's client), with the same tokens (either audience, an agent's own
identity included). The upload is multipart (`file`, `purpose`), parsed as it streams in and written
straight to disk: a file past `--max-file-bytes` gets 413 as soon as it passes the limit, holding no
more than a chunk in memory. A file is its uploader's; another caller gets 404 FileNotFound.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api import multipart
from dockyard.api.dependencies import caller_of, services
from dockyard.api.inference import authenticate_inference
from dockyard.domain.errors import BadRequest, DockyardError, NotFound, ServiceUnavailable
from dockyard.identity.ownership import USER_IDENTITY_HEADER, Caller
from dockyard.store.files import MAX_LIST_LIMIT, FileStore, Incoming, file_too_large

project_router = APIRouter(prefix="/api/projects/{project}")

# The form's small fields (purpose, expires_after[...]) and the framing around the parts.
_FIELD_BYTES = 4096
_FRAMING_BYTES = 64 * 1024


def file_store(request: Request) -> FileStore:
    files = services(request).files
    if files is None:
        raise ServiceUnavailable("This dockyard keeps no files.", code="FilesNotSupported")
    return files


def inference_caller(request: Request, project: str) -> Caller:
    """Who calls, on the model endpoint's terms (either audience), for a project that exists."""
    principal = authenticate_inference(request)
    projects = services(request).settings.projects
    if project not in projects:
        raise NotFound(f"Project {project!r} does not exist on this dockyard. Known projects: {', '.join(projects)}.",
                       code="ProjectNotFound")
    return caller_of(principal, request.headers.get(USER_IDENTITY_HEADER))


class _UploadForm(multipart.StreamedForm):
    """A files.create body: `file` to an Incoming file on disk, the other fields (small) to memory."""

    def __init__(self, files: FileStore, limit: int) -> None:
        super().__init__()
        self.files = files
        self.limit = limit
        self.fields: dict[str, bytearray] = {}
        self.file: Incoming | None = None
        self.filename: str | None = None
        self._part: str | None = None

    def discard(self) -> None:
        if self.file is not None:
            self.file.discard()

    def begin_part(self, name: str, filename: str | None) -> None:
        if name == "file":
            if self.file is not None:
                raise BadRequest("The upload has more than one 'file' part.", code="InvalidRequestBody", param="file")
            self.filename = filename
            self.file = self.files.receive(self.limit)
        elif len(self.fields) > 16:
            raise BadRequest("The upload has too many form fields.", code="InvalidRequestBody")
        else:
            self.fields[name] = bytearray()
        self._part = name

    def part_data(self, data: bytes) -> None:
        if self._part == "file":
            assert self.file is not None
            self.file.write(data)
        elif self._part is not None:
            value = self.fields[self._part]
            value.extend(data)
            if len(value) > _FIELD_BYTES:
                raise BadRequest(f"The form field {self._part!r} is too long.", code="InvalidRequestBody",
                                 param=self._part)


async def _receive(request: Request, files: FileStore, limit: int) -> _UploadForm:
    boundary = multipart.boundary_of(request)
    if boundary is None:
        raise BadRequest("Upload a file as multipart/form-data with a 'file' part and a 'purpose' field "
                         "(client.files.create(file=..., purpose='assistants')).", code="InvalidRequestBody")
    form = _UploadForm(files, limit)
    await multipart.receive(request, form, boundary, limit + _FRAMING_BYTES + 16 * _FIELD_BYTES,
                            lambda: file_too_large(limit))
    if not form.ended or form.file is None:
        form.discard()
        raise BadRequest("The upload has no 'file' part (or ended early).", code="InvalidRequestBody", param="file")
    return form


async def create_file(request: Request, project: str) -> JSONResponse:
    caller = inference_caller(request, project)
    files = file_store(request)
    form = await _receive(request, files, services(request).settings.max_file_bytes)
    assert form.file is not None
    purpose = form.fields.get("purpose", bytearray()).decode("utf-8", "replace")
    try:
        stored = await run_in_threadpool(files.commit, form.file, project, caller.owner, form.filename or "",
                                         purpose)
    except DockyardError:
        form.discard()
        raise
    return JSONResponse(stored.to_wire())


def list_files(request: Request, project: str) -> JSONResponse:
    caller = inference_caller(request, project)
    query = request.query_params
    limit = _int(query.get("limit"), MAX_LIST_LIMIT, "limit", 1, MAX_LIST_LIMIT)
    order = query.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise BadRequest("order must be 'asc' or 'desc'.", code="InvalidPaging", param="order")
    page = file_store(request).list(project, caller.owner, purpose=query.get("purpose") or None, limit=limit,
                                    after=query.get("after") or None, order=order)
    data = [f.to_wire() for f in page.items]
    return JSONResponse({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None, "has_more": page.has_more})


def retrieve_file(request: Request, project: str, file_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    return JSONResponse(file_store(request).get(project, caller.owner, file_id).to_wire())


def file_content(request: Request, project: str, file_id: str) -> StreamingResponse:
    caller = inference_caller(request, project)
    files = file_store(request)
    stored = files.get(project, caller.owner, file_id)
    handle = files.path(stored).open("rb")
    return StreamingResponse(_chunks(handle), media_type="application/octet-stream",
                             headers={"content-length": str(os.fstat(handle.fileno()).st_size),
                                      "content-disposition": f'attachment; filename="{_quoted(stored.filename)}"'})


def delete_file(request: Request, project: str, file_id: str) -> JSONResponse:
    caller = inference_caller(request, project)
    file_store(request).delete(project, caller.owner, file_id)
    search = services(request).vector_search
    if search is not None:
        search.repository.remove_file_everywhere(file_id)
    return JSONResponse({"id": file_id, "object": "file", "deleted": True})


def _chunks(handle: Any) -> Iterator[bytes]:
    with handle:
        while block := handle.read(1 << 20):
            yield block


def _quoted(filename: str) -> str:
    return "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in filename)


def _int(value: str | None, default: int, name: str, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}.", code="InvalidPaging", param=name)
    return int(value)


# ---- routes -------------------------------------------------------------------------------------------

for _base in ("/openai/v1", "/openai"):
    for _path, _handler, _method in (
        ("/files", create_file, "POST"),
        ("/files", list_files, "GET"),
        ("/files/{file_id}", retrieve_file, "GET"),
        ("/files/{file_id}/content", file_content, "GET"),
        ("/files/{file_id}", delete_file, "DELETE"),
    ):
        project_router.add_api_route(f"{_base}{_path}", _handler, methods=[_method])
