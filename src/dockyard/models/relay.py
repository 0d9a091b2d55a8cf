"""Relaying a call to a model deployment's upstream and its answer back.

The agent gateway's relay (`gateway/proxy.py`) is the model here, but it is not reused: its failures
are the agent's (`AgentError`, a refused connection retried on a fresh sandbox), a model's are the
provider's, and the two hot paths stay independent. What is the same: aiohttp on the shared pool,
nothing buffered (each chunk, usually one SSE event, sent on as it arrives), small answers of known
length passed on whole, a caller who leaves closes the upstream request.

What callers meet, and why:

- The upstream cannot be reached: 502 `ModelUnavailable`, within `CONNECT_TIMEOUT_SECONDS` when
  nothing answers at all (a refused connection is immediate). It names the deployment and connection.
- It does not answer in time: 504 `ModelTimeout`.
- It answers 401 or 403: the same status with dockyard's message naming the connection, since the key
  or identity at fault is the connection's, not the caller's. The upstream's own text is logged,
  never relayed (some vendors echo part of the key).
- Any other error status (400, 404, 429, 5xx): relayed as is, body and headers (Retry-After,
  x-ratelimit-*) included. Upstreams speak OpenAI's error shape, and clients parse it and honour
  their own retry rules (openai retries 429 and 5xx, after Retry-After when given).
- A stream that breaks off: the caller gets one last error event before the stream ends, in the
  shape its API uses (`wire_errors.stream_error_event`), so no client mistakes a cut answer for a whole one.

Tokens: answers are not parsed, but the usage object an answer ends with is cheap to find, and
`on_usage` hands it to /metrics (api/metrics.py): in a whole JSON body, the last `"usage":{…}`; in a
stream, the last one seen, looked for in each chunk plus the previous chunk's last 4 KiB (so a key cut
between two chunks is still found), with nothing else kept. Escaped text in an answer (`\"usage\"`)
never matches.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
from starlette.responses import JSONResponse, Response, StreamingResponse

from dockyard.models.providers import Operation
from dockyard.models.translate import ChatChunks, ResponsesStream, chat_to_response, responses_to_chat
from dockyard.models.upstreams import Upstream
from dockyard.wire_errors import error_response, stream_error_event

log = logging.getLogger("dockyard.models")

MODEL_UNAVAILABLE = "ModelUnavailable"
MODEL_TIMEOUT = "ModelTimeout"
UPSTREAM_AUTHENTICATION_FAILED = "UpstreamAuthenticationFailed"
MODEL_STREAM_INTERRUPTED = "ModelStreamInterrupted"

# A server that accepts no connection within this is as good as down.
CONNECT_TIMEOUT_SECONDS = 5.0

# Headers that describe one hop, not the message; never relayed either way.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "content-length", "host", "server", "date", "set-cookie"}
_WHOLE_BODY_BYTES = 1 << 20
_ERROR_BODY_BYTES = 64 * 1024


_USAGE_KEY = b'"usage"'
_USAGE_WINDOW = 4096
_DECODER = json.JSONDecoder()

# Hook: (deployment, usage object) when an answer carried one; api/metrics.py counts the tokens.
_on_usage: Callable[[str, Mapping[str, Any]], None] | None = None


def on_usage(callback: Callable[[str, Mapping[str, Any]], None] | None) -> None:
    global _on_usage
    _on_usage = callback


def _usage_at_end(data: bytes) -> dict[str, Any] | None:
    """The object after the last `"usage":` in `data`, if it is one and ends within the next 4 KiB."""
    at = data.rfind(_USAGE_KEY)
    if at < 0:
        return None
    after = data[at + len(_USAGE_KEY):at + len(_USAGE_KEY) + _USAGE_WINDOW].decode(errors="ignore").lstrip()
    if not after.startswith(":"):
        return None
    try:
        value, _ = _DECODER.raw_decode(after[1:].lstrip())
    except ValueError:  # cut off (the rest comes with the next chunk), or not JSON at all
        return None
    return value if isinstance(value, dict) else None


class _UsageWatch:
    """The last usage object in a stream, found chunk by chunk without keeping the stream."""

    def __init__(self) -> None:
        self.carry = b""
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> None:
        window = self.carry + chunk
        if _USAGE_KEY in window:
            self.usage = _usage_at_end(window) or self.usage
        self.carry = window[-_USAGE_WINDOW:]


def _report_usage(deployment: str, usage: Mapping[str, Any] | None) -> None:
    if usage and _on_usage is not None:
        try:
            _on_usage(deployment, usage)
        except Exception:  # counting must never break an answer
            log.exception("counting a model answer's tokens failed")


def model_timeout(read_seconds: float) -> aiohttp.ClientTimeout:
    """The timeout of one model call: connect quickly or fail; then wait up to `read_seconds` between
    bytes (a long prompt on a CPU can take a while before its first token)."""
    return aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS, sock_read=read_seconds)


def _where(upstream: Upstream) -> str:
    return f"deployment {upstream.deployment!r} (connection {upstream.connection!r})"


def unavailable(upstream: Upstream, reason: str, request_id: str) -> Response:
    return error_response(502, MODEL_UNAVAILABLE, f"The model behind {_where(upstream)} could not be reached: "
                          f"{reason}. Check that its server is running and that the connection's target is right "
                          f"(`dockyard connection list`; request id {request_id}).")


def refused(upstream: Upstream, status: int) -> Response:
    name = upstream.connection
    return error_response(status, UPSTREAM_AUTHENTICATION_FAILED,
                          f"Connection {name!r} was refused by its upstream ({status}) when calling deployment "
                          f"{upstream.deployment!r}: check its key with `dockyard connection list`, and replace a "
                          f"wrong one with `dockyard connection remove {name}` then `dockyard connection add {name} "
                          "... --api-key-stdin` (Entra connections: dockyard's own Azure sign-in needs access to the "
                          "resource).")


async def send(client: aiohttp.ClientSession, upstream: Upstream, method: str, url: str, *,
               headers: Mapping[str, str], content: bytes | None, timeout: aiohttp.ClientTimeout,
               request_id: str) -> aiohttp.ClientResponse | Response:
    """The upstream's live answer when it succeeded (2xx), or the Response to give the caller instead."""
    try:
        answer = await client.request(method, url, headers=dict(headers), data=content, allow_redirects=False,
                                      timeout=timeout)
    except aiohttp.ConnectionTimeoutError:
        log.warning("model upstream did not accept a connection: %s", url, extra={"request_id": request_id})
        return unavailable(upstream, f"its server accepted no connection within {CONNECT_TIMEOUT_SECONDS:g} s",
                           request_id)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        log.warning("model upstream timed out: %s", url, extra={"request_id": request_id})
        return error_response(504, MODEL_TIMEOUT, f"The model behind {_where(upstream)} did not answer in time. "
                              f"Try again, or with a shorter input (request id {request_id}).")
    except aiohttp.ClientConnectorError as exc:
        log.warning("model upstream unreachable: %s: %s", url, exc, extra={"request_id": request_id})
        reason = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc.os_error or exc)
        return unavailable(upstream, f"{reason.lower()} ({exc.host}:{exc.port})", request_id)
    except aiohttp.ClientError as exc:
        log.warning("model upstream failed: %s: %r", url, exc, extra={"request_id": request_id})
        return unavailable(upstream, "the connection failed before it answered", request_id)
    if answer.status < 400:
        return answer
    try:
        detail = await answer.content.read(_ERROR_BODY_BYTES)
    except (TimeoutError, aiohttp.ClientError):
        detail = b""
    finally:
        answer.close()
    if answer.status in (401, 403):
        # The upstream's words may quote the key (OpenAI's "Incorrect API key provided: sk-…abcd"): logged only.
        log.warning("model upstream refused the connection's credentials: %s %s: %s", answer.status, url,
                    detail[:500].decode(errors="replace"), extra={"request_id": request_id})
        return refused(upstream, answer.status)
    log.info("model upstream answered %s: %s", answer.status, detail[:500].decode(errors="replace"),
             extra={"request_id": request_id})
    return Response(detail, status_code=answer.status, headers=_relayed_headers(answer))


def _relayed_headers(answer: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}


def interrupted_message(upstream: Upstream, request_id: str) -> str:
    return (f"The model behind {_where(upstream)} stopped in the middle of its answer; the answer is incomplete. "
            f"Try again (request id {request_id}).")


async def relay(client: aiohttp.ClientSession, upstream: Upstream, operation: Operation, method: str, url: str, *,
                headers: Mapping[str, str], content: bytes | None, timeout: aiohttp.ClientTimeout,
                request_id: str) -> Response:
    """Send the call upstream and relay its answer as it comes."""
    answer = await send(client, upstream, method, url, headers=headers, content=content, timeout=timeout,
                        request_id=request_id)
    if isinstance(answer, Response):
        return answer
    response_headers = _relayed_headers(answer)
    if answer.content_length is not None and answer.content_length <= _WHOLE_BODY_BYTES:
        try:
            whole = await answer.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("model answer broke off: %s: %r", url, exc, extra={"request_id": request_id})
            return unavailable(upstream, "its answer broke off", request_id)
        if _on_usage is not None:
            _report_usage(upstream.deployment, _usage_at_end(whole))
        return Response(whole, status_code=answer.status, headers=response_headers)

    async def body() -> AsyncIterator[bytes]:
        finished = False
        events = 0
        usage = _UsageWatch() if _on_usage is not None else None
        try:
            async for chunk in answer.content.iter_any():
                events += chunk.count(b"\n\n")
                yield chunk
                if usage is not None:
                    usage.feed(chunk)
            finished = True
            if usage is not None:
                _report_usage(upstream.deployment, usage.usage)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("model stream broke off: %s: %r", url, exc, extra={"request_id": request_id})
            # Sequence numbers count events from 0, so the events seen so far number the next one.
            yield stream_error_event(MODEL_STREAM_INTERRUPTED, interrupted_message(upstream, request_id),
                                     sequence_number=events, chat=operation is not Operation.RESPONSES)
        finally:
            answer.release() if finished else answer.close()

    return StreamingResponse(body(), status_code=answer.status, headers=response_headers)


async def relay_translated(client: aiohttp.ClientSession, upstream: Upstream, url: str, *,
                           headers: Mapping[str, str], request: dict[str, Any], timeout: aiohttp.ClientTimeout,
                           request_id: str) -> Response:
    """A Responses call to an upstream that speaks only Chat Completions (`url` is its chat/completions)."""
    chat = responses_to_chat(request)
    if upstream.model:
        chat["model"] = upstream.model
    answer = await send(client, upstream, "POST", url, headers=headers, timeout=timeout, request_id=request_id,
                        content=json.dumps(chat, separators=(",", ":")).encode())
    if isinstance(answer, Response):
        return answer
    if not chat.get("stream"):
        try:
            completion = await answer.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("model answer unreadable: %s: %r", url, exc, extra={"request_id": request_id})
            return unavailable(upstream, "its answer broke off or was not JSON", request_id)
        finally:
            answer.release()
        if isinstance(completion, dict):
            _report_usage(upstream.deployment, completion.get("usage"))
        return JSONResponse(chat_to_response(completion, request), status_code=answer.status)

    events = ResponsesStream(request)
    chunks = ChatChunks()

    async def body() -> AsyncIterator[bytes]:
        finished = False
        try:
            yield events.start()
            async for piece in answer.content.iter_any():
                out = b"".join(events.chunk(chunk) for chunk in chunks.feed(piece))
                if out:
                    yield out
                if chunks.done:
                    break
            finished = True
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("model stream broke off: %s: %r", url, exc, extra={"request_id": request_id})
        finally:
            answer.release() if finished else answer.close()
        if finished and (chunks.done or events.finish_reason):
            _report_usage(upstream.deployment, events.usage)
            yield events.finish()
        else:
            yield events.error(interrupted_message(upstream, request_id), MODEL_STREAM_INTERRUPTED)

    return StreamingResponse(body(), status_code=answer.status,
                             headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
