"""Reading a multipart/form-data body as it streams in, without holding a part in memory.

Both uploads (a code-based version's zip, a file for /openai/v1/files) can be hundreds of megabytes, so
the body is fed to python-multipart's push parser chunk by chunk and each part's bytes go wherever the
upload wants them (a file on disk, a small buffer) as they arrive. `StreamedForm` does the bookkeeping
every upload needs (a part's headers, its name and filename); a subclass says where a part's bytes go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from dockyard.domain.errors import BadRequest, DockyardError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks


class StreamedForm:
    """The parser's callbacks: each part's headers gathered, then `begin_part` and `part_data` called."""

    def __init__(self) -> None:
        self.ended = False
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()

    def begin_part(self, name: str, filename: str | None) -> None:
        """A part starts; raise BadRequest to refuse it."""
        raise NotImplementedError

    def part_data(self, data: bytes) -> None:
        """Bytes of the current part, in order."""
        raise NotImplementedError

    def discard(self) -> None:
        """The upload failed: remove whatever was received to disk."""

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._headers.clear,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self.part_data(data[start:end]),
            "on_end": self._end,
        }

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition"))
        raw_filename = options.get(b"filename")
        self.begin_part(options.get(b"name", b"").decode("utf-8", "replace"),
                        raw_filename.decode("utf-8", "replace") if raw_filename is not None else None)

    def _end(self) -> None:
        self.ended = True


def boundary_of(request: Request) -> bytes | None:
    """The body's multipart boundary; None when it is not multipart/form-data or names none."""
    content_type, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    return boundary if content_type == b"multipart/form-data" and boundary else None


async def receive(request: Request, form: StreamedForm, boundary: bytes, limit: int,
                  too_large: Callable[[], DockyardError]) -> None:
    """Feed the body to `form`; past `limit` bytes in all (declared or received), `too_large()` is raised.

    On any failure the form's received parts are discarded before the error goes up.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large()
    try:
        parser = MultipartParser(boundary, form.callbacks(), max_size=limit)
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:  # each part has a limit of its own; this bounds what lies around them
                raise too_large()
            if chunk:
                await run_in_threadpool(parser.write, chunk)
        parser.finalize()
    except (FormParserError, ValueError) as exc:
        form.discard()
        raise BadRequest(f"The multipart/form-data body cannot be parsed ({exc}).", code="InvalidRequestBody") from None
    except BaseException:
        form.discard()
        raise
