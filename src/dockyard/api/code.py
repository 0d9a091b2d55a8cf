"""Code-based versions on the wire: the multipart upload `create_version_from_code` sends, and `download_code`.

The 2.x SDK posts `multipart/form-data` to the same route as a JSON create: a `metadata` part (JSON:
definition, description, metadata) and a `code` part (the zip), with the zip's SHA-256 in the
`x-ms-code-zip-sha256` header. The body is parsed as it streams in (python-multipart), the zip written
straight to disk while it is hashed, so an upload never sits in memory whole and one past the limit is
refused (413) as soon as it passes it, with what was received deleted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool

from dockyard.api import multipart
from dockyard.api.dependencies import parse_json_object, project, services, wire_shape
from dockyard.api.schemas import CreateVersionRequest, answers, validated
from dockyard.domain import code_archives
from dockyard.domain.definitions import WireShape
from dockyard.domain.errors import BadRequest, PayloadTooLarge
from dockyard.store.code_bundles import CodeBundles, Incoming

# Mounted by api/agents.py under its prefix and operator check, beside the versions it serves.
router = APIRouter()

# The metadata part is a definition and a few strings; a megabyte is far more than any needs.
MAX_METADATA_BYTES = 1024 * 1024
# Room for the parts' headers and boundaries around the two parts.
_FRAMING_BYTES = 64 * 1024
PARTS = ("metadata", "code")
# The multipart create as the OpenAPI document shows it, beside the JSON one (api/agents.py).
MULTIPART = {"multipart/form-data": {"schema": {
    "type": "object", "required": list(PARTS),
    "properties": {"metadata": {"type": "string", "description": "JSON: definition (with code_configuration), "
                                "description, metadata (schemas.CreateVersionRequest)."},
                   "code": {"type": "string", "format": "binary", "description": "The zip."}},
}}}


def is_multipart(request: Request) -> bool:
    content_type, _ = parse_options_header(request.headers.get("content-type"))
    return content_type == b"multipart/form-data"


async def receive_upload(request: Request, bundles: CodeBundles) -> tuple[dict[str, Any], Incoming]:
    """The metadata part as a JSON object, and the code part received to disk (the caller discards it)."""
    _, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("The multipart/form-data Content-Type has no boundary.", code="InvalidRequestBody")
    form = _UploadForm(bundles)
    await multipart.receive(request, form, boundary,
                            code_archives.MAX_UPLOAD_BYTES + MAX_METADATA_BYTES + _FRAMING_BYTES,
                            code_archives.upload_too_large)
    return form.finish()


class _UploadForm(multipart.StreamedForm):
    """A create_version_from_code body: the metadata part to memory, the code part to disk."""

    def __init__(self, bundles: CodeBundles) -> None:
        super().__init__()
        self.bundles = bundles
        self.metadata: bytearray | None = None
        self.code: Incoming | None = None
        self._part: str | None = None

    def finish(self) -> tuple[dict[str, Any], Incoming]:
        missing = [name for name, value in zip(PARTS, (self.metadata, self.code), strict=True) if value is None]
        if not self.ended or missing:
            self.discard()
            what = f"has no {' and no '.join(repr(m) for m in missing)} part" if missing else "ended early"
            raise BadRequest(
                f"The multipart/form-data body {what}. create_version_from_code sends a 'metadata' part (JSON: "
                "definition, description, metadata) and a 'code' part (the zip).",
                code="InvalidRequestBody",
            )
        assert self.metadata is not None and self.code is not None
        try:
            metadata = validated(CreateVersionRequest, parse_json_object(bytes(self.metadata),
                                                                         what="The 'metadata' part"))
        except BadRequest:
            self.discard()
            raise
        return metadata, self.code

    def discard(self) -> None:
        if self.code is not None:
            self.code.discard()

    def begin_part(self, name: str, filename: str | None) -> None:
        if name not in PARTS:
            raise BadRequest(
                f"Unexpected multipart part {name!r}: create_version_from_code sends only 'metadata' and 'code'.",
                code="InvalidRequestBody",
            )
        if (self.metadata if name == "metadata" else self.code) is not None:
            raise BadRequest(f"The multipart body has more than one {name!r} part.", code="InvalidRequestBody")
        if name == "metadata":
            self.metadata = bytearray()
        else:
            self.code = self.bundles.receive()
        self._part = name

    def part_data(self, data: bytes) -> None:
        if self._part == "code":
            assert self.code is not None
            self.code.write(data)
        elif self._part == "metadata":
            assert self.metadata is not None
            self.metadata.extend(data)
            if len(self.metadata) > MAX_METADATA_BYTES:
                raise PayloadTooLarge(
                    f"The 'metadata' part is larger than {MAX_METADATA_BYTES} bytes; it holds only the definition, "
                    "description and metadata.",
                    code="RequestBodyTooLarge",
                )


async def create_version_from_code(request: Request, project: str, agent_name: str) -> Any:
    """The multipart create: headers and name checked first, then the body streamed, then the version made."""
    control = services(request).control_plane
    control.check_can_create(agent_name)
    bundles = services(request).bundles
    if bundles is None:
        raise BadRequest("This dockyard keeps no code bundles.", code="CodeBundlesNotSupported")
    content_hash = code_archives.parse_content_hash(request.headers.get("x-ms-code-zip-sha256"))
    metadata, code = await receive_upload(request, bundles)
    try:
        return await run_in_threadpool(control.create_version_from_code, project, agent_name, metadata, code,
                                       content_hash)
    finally:
        code.discard()


@router.get("/agents/{agent_name}/code:download", responses=answers(media_type="application/zip"))
def download_code(
    request: Request, agent_name: str, _shape: WireShape = Depends(wire_shape), project: str = Depends(project),
    agent_version: str | None = Query(None),
) -> StreamingResponse:
    version, content_hash = services(request).control_plane.code_of(project, agent_name, agent_version)
    bundles = services(request).bundles
    if bundles is None:
        raise BadRequest("This dockyard keeps no code bundles.", code="CodeBundlesNotSupported")
    archive = bundles.open_archive(content_hash)
    return StreamingResponse(
        _chunks(archive),
        media_type="application/zip",
        headers={
            "content-length": str(os.fstat(archive.fileno()).st_size),
            "content-disposition": f'attachment; filename="{agent_name}-{version.version}.zip"',
            "x-ms-agent-version": version.version,
            "x-ms-code-zip-sha256": content_hash,
        },
    )


def _chunks(archive: BinaryIO, size: int = 1024 * 1024) -> Iterator[bytes]:
    with archive:
        while chunk := archive.read(size):
            yield chunk
