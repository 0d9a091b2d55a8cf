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

import aiohttp
from starlette.responses import Response, StreamingResponse

from dockyard.gateway.tracing import upstream_headers
from dockyard.wire_errors import error_response, stream_error_event

log = logging.getLogger("dockyard.gateway")

# Headers that describe one hop, not the message; never relayed.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "content-length", "host", "server", "date"}


_WHOLE_BODY_BYTES = 1 << 20
AGENT_STREAM_INTERRUPTED = "AgentStreamInterrupted"


class SandboxUnreachable(Exception):
    """The sandbox refused the connection: the request was not delivered."""


def unreachable(request_id: str) -> Response:
    return error_response(502, "AgentUnavailable", "The agent's sandbox could not be reached. Try again; if it "
                          f"persists, check the version's status and logs (request id {request_id}).")


def sandbox_client(timeout_seconds: float) -> aiohttp.ClientSession:
    """The gateway's connection pool to sandboxes; made inside the running event loop.

    aiohttp rather than httpx here, on the hottest path: its parser is compiled and its pool does not
    poll each idle connection before reuse, which together took about a millisecond off every call.
    """
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=timeout_seconds),
        connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, force_close=False),
        auto_decompress=False,  # relay the bytes as the agent encoded them
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def relay(
    client: aiohttp.ClientSession, method: str, url: str, *, headers: Mapping[str, str], content: bytes | None,
    extra_response_headers: Mapping[str, str] | None = None, request_id: str = "",
) -> Response:
    headers = upstream_headers(headers)  # dockyard's gateway span: traceparent to the agent
    try:
        upstream = await client.request(method, url, headers=dict(headers), data=content, allow_redirects=False)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        log.warning("agent timed out: %s %s", method, url, extra={"request_id": request_id})
        return error_response(504, "AgentTimeout", "The agent did not answer in time. Try again; if it persists, "
                              f"check the agent's logs (request id {request_id}).")
    except aiohttp.ClientConnectorError as exc:
        # Nothing reached the agent, so the caller may safely try another (freshly started) sandbox.
        raise SandboxUnreachable(str(exc)) from None
    except aiohttp.ClientError as exc:
        log.warning("agent unreachable: %s %s: %s", method, url, exc, extra={"request_id": request_id})
        return unreachable(request_id)
    if upstream.status >= 500:
        detail = (await upstream.content.read(2000))
        upstream.close()
        log.warning("agent answered %s: %s", upstream.status, detail.decode(errors="replace"),
                    extra={"request_id": request_id})
        return error_response(502, "AgentError", f"The agent failed to handle the request (it answered "
                              f"{upstream.status}). Its logs have the details (request id {request_id}).")
    response_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
    response_headers.update(extra_response_headers or {})
    if upstream.content_length is not None and upstream.content_length <= _WHOLE_BODY_BYTES:
        # A small answer of known length (not a stream) is passed on in one piece: streaming it would
        # cost a watcher task and chunked framing for nothing.
        try:
            content = await upstream.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("agent answer broke off: %s %s: %r", method, url, exc, extra={"request_id": request_id})
            return unreachable(request_id)
        return Response(content, status_code=upstream.status, headers=response_headers)

    is_event_stream = upstream.headers.get("content-type", "").startswith("text/event-stream")

    async def body() -> AsyncIterator[bytes]:
        finished = False
        events = 0
        try:
            async for chunk in upstream.content.iter_any():
                if is_event_stream:
                    events += chunk.count(b"\n\n")
                yield chunk
            finished = True
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("agent stream broke off: %s %s: %r", method, url, exc, extra={"request_id": request_id})
            if is_event_stream:
                # The sandbox died mid-answer: say so in the stream, before it ends, in the shape clients read.
                yield stream_error_event(AGENT_STREAM_INTERRUPTED, "The agent's sandbox stopped in the middle of its "
                                         f"answer; the answer is incomplete. Try again; its logs say why (request id "
                                         f"{request_id}).", sequence_number=events)
        finally:
            # A caller who left mid-stream closes the agent's connection too, so the agent sees it.
            upstream.release() if finished else upstream.close()

    return StreamingResponse(body(), status_code=upstream.status, headers=response_headers)
