"""A failure as it goes on the wire: Azure's error envelope, or the event that ends a broken stream.

Its own module, below api/, because more than the API answers with it: the model endpoint's relay
(dockyard.models.relay) and the agent gateway's proxy (dockyard.gateway.proxy) build these answers
themselves when an upstream fails, and they must look exactly like the API's own.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse


def error_response(status_code: int, code: str, message: str, *, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """`{"error": {"code", "message"[, "param"]}}`, the envelope Azure's and OpenAI's clients read."""
    error: dict[str, Any] = {"code": code, "message": message}
    if param:
        error["param"] = param
    return JSONResponse({"error": error}, status_code=status_code, headers=headers)


def stream_error_event(code: str, message: str, *, sequence_number: int = 0, chat: bool = False) -> bytes:
    """The last event of an SSE stream that broke off, so no client mistakes a cut answer for a whole one.

    Responses-style (the default): an `error` event in openai's ResponseErrorEvent shape, which the openai
    client raises. Chat Completions (`chat`): a data line holding `{"error": …}`, which it raises too.
    """
    if chat:
        body: dict[str, Any] = {"error": {"message": message, "type": "server_error", "code": code, "param": None}}
        return b"data: " + json.dumps(body).encode() + b"\n\n"
    body = {"type": "error", "code": code, "message": message, "param": None, "sequence_number": sequence_number}
    return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"
