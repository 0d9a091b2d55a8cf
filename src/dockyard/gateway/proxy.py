"""Relaying a request to a sandbox and its answer back, streamed both ways.

Nothing is buffered: each chunk the agent writes (an SSE event, usually) is sent on as it arrives, and
a caller who goes away closes the upstream request, so the agent sees the disconnect too. Failures are
answered in the Azure envelope and say whose they are: `AgentUnavailable`/`AgentTimeout` (the
platform could not reach the agent) or `AgentError` (the agent failed); the agent's internals (stack
traces, addresses) stay in dockyard's log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

import httpx
from starlette.responses import Response, StreamingResponse

from dockyard.api.errors import error_response

log = logging.getLogger("dockyard.gateway")

# Headers that describe one hop, not the message; never relayed.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "content-length", "host", "server", "date"}


class SandboxUnreachable(Exception):
    """The sandbox refused the connection: the request was not delivered."""


def unreachable(request_id: str) -> Response:
    return error_response(502, "AgentUnavailable", "The agent's sandbox could not be reached. Try again; if it "
                          f"persists, check the version's status and logs (request id {request_id}).")


async def relay(
    client: httpx.AsyncClient, method: str, url: str, *, headers: Mapping[str, str], content: bytes | None,
    extra_response_headers: Mapping[str, str] | None = None, request_id: str = "",
) -> Response:
    upstream_request = client.build_request(method, url, headers=dict(headers), content=content)
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.TimeoutException:
        log.warning("agent timed out: %s %s", method, url, extra={"request_id": request_id})
        return error_response(504, "AgentTimeout", "The agent did not answer in time. Try again; if it persists, "
                              f"check the agent's logs (request id {request_id}).")
    except httpx.ConnectError as exc:
        # Nothing reached the agent, so the caller may safely try another (freshly started) sandbox.
        raise SandboxUnreachable(str(exc)) from None
    except httpx.HTTPError as exc:
        log.warning("agent unreachable: %s %s: %s", method, url, exc, extra={"request_id": request_id})
        return unreachable(request_id)
    if upstream.status_code >= 500:
        detail = (await upstream.aread())[:2000]
        await upstream.aclose()
        log.warning("agent answered %s: %s", upstream.status_code, detail.decode(errors="replace"),
                    extra={"request_id": request_id})
        return error_response(502, "AgentError", f"The agent failed to handle the request (it answered "
                              f"{upstream.status_code}). Its logs have the details (request id {request_id}).")
    response_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
    response_headers.update(extra_response_headers or {})

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()

    return StreamingResponse(body(), status_code=upstream.status_code, headers=response_headers)
