"""Every failure answered in Azure's error envelope, `{"error": {"code", "message"}}`.

Handlers here cover dockyard's own errors, Starlette's (unknown route, wrong method) and anything
unexpected; an unexpected error is logged with its request id and answered without internals. The
envelope itself is `dockyard.wire_errors`, which the model relay and the agent gateway answer with too.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dockyard.domain.errors import DockyardError, Unauthorized
from dockyard.wire_errors import error_response

log = logging.getLogger("dockyard.api")

_HTTP_CODES = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge", 415: "UnsupportedMediaType"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DockyardError)
    async def _dockyard_error(_request: Request, exc: DockyardError) -> JSONResponse:
        # An error may carry headers of its own (TooManySandboxes: Retry-After).
        headers: dict[str, str] | None = getattr(exc, "headers", None)
        if isinstance(exc, Unauthorized):
            description = exc.message.replace('"', "'")
            headers = {
                "WWW-Authenticate": f'Bearer realm="dockyard", error="invalid_token", error_description="{description}"'
            }
        return error_response(exc.status_code, exc.code, exc.message, param=exc.param, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "HttpError")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"No route matches {request.method} {request.url.path}."
        return error_response(exc.status_code, code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p not in ('query', 'path', 'body'))}: {err.get('msg')}"
            for err in exc.errors()
        )
        return error_response(400, "BadRequest", f"The request is not valid: {problems}.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request.scope.get("state", {}).get("request_id", "")
        log.exception("unhandled error", extra={"request_id": request_id, "path": request.url.path})
        return error_response(
            500,
            "InternalServerError",
            f"dockyard failed to handle this request. Its log has the details under request id {request_id}.",
        )
