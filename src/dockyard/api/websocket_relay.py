"""Relaying a WebSocket to a session's sandbox: every message both ways, as it comes, and the close too.

The caller is checked as any HTTP call is (token, api-version, agent, session) before the upgrade is
accepted; a refusal is answered as an HTTP error in the Azure envelope where the server can send one
(the WebSocket denial response), else as a policy-violation close. The sandbox's own answer to the
upgrade decides the subprotocol; the session is answered in `x-agent-session-id`, as for HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlencode

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from dockyard.api.dependencies import authenticate_caller, services
from dockyard.api.forwarding import check_api_version, open_session, platform_headers, running_target
from dockyard.api.request_ids import new_request_id
from dockyard.domain.errors import DockyardError
from dockyard.domain.sessions import Session
from dockyard.wire_errors import error_response

log = logging.getLogger("dockyard.gateway")

_POLICY_VIOLATION = 1008
_UNSENDABLE = {1005, 1006, 1015}  # codes that report a close, never sent in one
_TOUCH_SECONDS = 30.0  # well inside the shortest idle timeout Foundry allows (120 s)


async def relay_websocket(websocket: WebSocket, project: str, agent_name: str, path: str) -> None:
    try:
        check_api_version(websocket)  # type: ignore[arg-type]  # both are HTTPConnections
        caller = authenticate_caller(websocket)  # type: ignore[arg-type]
        session_id = websocket.query_params.get("agent_session_id") or websocket.headers.get("x-agent-session-id")
        session = await open_session(websocket, project, agent_name, session_id, caller=caller)  # type: ignore[arg-type]
        headers = {k: v for k, v in platform_headers(websocket, session, caller).items()  # type: ignore[arg-type]
                   if k not in ("content-type", "accept")}
        headers["x-request-id"] = headers.get("x-request-id") or new_request_id()
        upstream = await _connect(websocket, session, path, headers)
    except DockyardError as exc:
        await _refuse(websocket, exc)
        return
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol,
                               headers=[(b"x-agent-session-id", session.id.encode())])
        keep_alive = asyncio.create_task(_keep_in_use(websocket, session))
        try:
            await _pump(websocket, upstream)
        finally:
            keep_alive.cancel()


async def _keep_in_use(websocket: WebSocket, session: Session) -> None:
    """An open WebSocket is use: mark the session used while it lasts, or the idle release would cut it."""
    sandboxes = services(websocket).sandboxes  # type: ignore[arg-type]
    while True:
        sandboxes.touch(session.id)
        await asyncio.sleep(_TOUCH_SECONDS)


async def _connect(websocket: WebSocket, session: Session, path: str, headers: dict[str, str]) -> ClientConnection:
    """The sandbox's WebSocket; a warm sandbox that turns out gone is started again and tried once more."""
    the = services(websocket)  # type: ignore[arg-type]
    requested = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    for attempt in (1, 2):
        sandbox = await running_target(websocket, session)  # type: ignore[arg-type]
        url = f"{sandbox.endpoint.replace('http://', 'ws://', 1)}{path}?{urlencode({'agent_session_id': session.id})}"
        try:
            return await connect(url, additional_headers=headers, subprotocols=requested or None,  # type: ignore[arg-type]
                                 proxy=None, compression=None, open_timeout=10,
                                 max_size=the.settings.max_invocation_bytes)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 404:
                raise DockyardError(f"The agent serves no WebSocket at {path} (its hosting adapter answers 404: "
                                    "register one with @app.ws_handler).", code="WebSocketNotServed") from None
            raise DockyardError(f"The agent refused the WebSocket (it answered {status}).",
                                code="AgentError") from None
        except (TimeoutError, OSError, InvalidHandshake) as exc:
            the.sandboxes.forget(session.id)
            if attempt == 2:
                log.warning("agent WebSocket unreachable: %s: %r", url, exc,
                            extra={"request_id": headers["x-request-id"]})
                error = DockyardError("The agent's sandbox could not be reached. Try again; if it persists, check the "
                                      "version's status and logs.", code="AgentUnavailable")
                error.status_code = 502
                raise error from None
    raise AssertionError("unreachable")


async def _refuse(websocket: WebSocket, error: DockyardError) -> None:
    response = error_response(error.status_code, error.code, error.message, param=error.param)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=_POLICY_VIOLATION, reason=f"{error.code}: {error.message}"[:120])


async def _pump(websocket: WebSocket, upstream: ClientConnection) -> None:
    """Both directions at once; when either side closes, the other is closed with the same code."""

    async def from_caller() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                code = int(message.get("code") or 1000)
                await upstream.close(code=1000 if code in _UNSENDABLE else code, reason=message.get("reason") or "")
                return
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])

    async def from_agent() -> None:
        try:
            async for message in upstream:
                if isinstance(message, str):
                    await websocket.send_text(message)
                else:
                    await websocket.send_bytes(message)
        except ConnectionClosed:
            pass
        code = upstream.close_code or 1000
        try:
            await websocket.close(code=1011 if code in _UNSENDABLE else code, reason=upstream.close_reason or "")
        except (RuntimeError, WebSocketDisconnect):
            pass  # the caller closed first

    tasks = [asyncio.create_task(from_caller()), asyncio.create_task(from_agent())]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() is not None and not isinstance(task.exception(), (ConnectionClosed,
                                                                                   WebSocketDisconnect)):
                log.warning("WebSocket relay ended with %r", task.exception())
    finally:
        for task in tasks:
            task.cancel()
