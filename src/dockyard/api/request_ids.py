"""Request ids on every answer, as Azure services give them.

A plain ASGI wrapper around the whole application (outside Starlette's error middleware), so even a
500 or a 404 for an unknown route carries `x-ms-request-id`, and the caller's
`x-ms-client-request-id` comes back unchanged for correlating client and server logs.
"""

from __future__ import annotations

import os
import random
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_CLIENT_REQUEST_ID = b"x-ms-client-request-id"
_MAX_CLIENT_ID = 256

# Ids for correlating logs, not secrets: drawn from a seeded generator, because reading the kernel's
# random source for each one was a measurable share of a warm request's time on these machines.
_ids = random.Random(os.urandom(32))


def new_request_id() -> str:
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


def new_call_id() -> str:
    return f"{_ids.getrandbits(128):032x}"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        client_id = next((v for k, v in scope["headers"] if k == _CLIENT_REQUEST_ID), None)
        extra = [(b"x-ms-request-id", request_id.encode())]
        if client_id is not None and len(client_id) <= _MAX_CLIENT_ID:
            extra.append((_CLIENT_REQUEST_ID, client_id))

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_ids)
