"""dockyard's own spans for the calls its gateway relays to agents, in the caller's trace or a new one.

`TracingMiddleware` opens a `GatewayCall` for each HTTP request and keeps it in a context variable.
Three one-line hooks fill it in as the request goes: `entered_session` (forwarding: the session, so
the agent and version, is known; routing is done), `cold_start` (the sandbox had to be started), and
`upstream_headers` (proxy: the call goes out now; the W3C `traceparent` it carries names dockyard's
upstream span, so the adapter's spans become its children). When the answer's last byte has gone
(after the whole stream, for a streamed answer), the middleware hands the spans to the trace writer
and counts the call in the metrics; nothing is written on the request path.

A caller's `traceparent` is honoured: the gateway span joins its trace as a child of the caller's span.
Without one, dockyard starts the trace. Requests that never reach an agent (control-plane calls, model
calls, refusals) make no span.

The spans: `gateway` (the whole call, server kind) with children `route` (picking the version and
session), `cold start` (starting the sandbox, when it was not running) and `upstream` (the agent's
answer, to its last byte), under which the agent's own spans hang.
"""

from __future__ import annotations

import contextvars
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.domain.sessions import Session
from dockyard.store.traces import SpanRecord

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ids = random.Random(os.urandom(32))
SERVICE = "dockyard"
_SERVER, _INTERNAL, _CLIENT = 2, 1, 3  # OTLP span kinds


def new_trace_id() -> str:
    return f"{_ids.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    return f"{_ids.getrandbits(64) or 1:016x}"


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) from a W3C traceparent, or None when absent or malformed."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip().lower())
    if match is None or set(match[1]) == {"0"} or set(match[2]) == {"0"}:
        return None
    return match[1], match[2], match[3]


@dataclass
class GatewayCall:
    method: str
    path: str
    trace_id: str
    parent_span_id: str
    flags: str
    start_ns: int = field(default_factory=time.time_ns)
    span_id: str = field(default_factory=new_span_id)
    upstream_span_id: str = field(default_factory=new_span_id)
    session: Session | None = None
    routed_ns: int = 0
    upstream_ns: int = 0
    cold: bool = False
    response_id: str = ""
    invocation_id: str = ""
    status: int = 0

    def spans(self, end_ns: int) -> list[SpanRecord]:
        session = self.session
        error = 2 if self.status >= 500 or self.status == 499 else 0

        def span(span_id: str, parent: str, kind: int, name: str, start_ns: int, stop_ns: int, status: int = 0,
                 attributes: dict[str, Any] | None = None) -> SpanRecord:
            return SpanRecord(
                trace_id=self.trace_id, span_id=span_id, parent_span_id=parent, kind=kind, name=name,
                start_ns=start_ns, end_ns=stop_ns, status_code=status, source="gateway", service=SERVICE,
                project=session.project if session else "", agent=session.agent_name if session else "",
                version=session.version if session else "", session_id=session.id if session else "",
                response_id=self.response_id, attributes=attributes or {})

        attributes: dict[str, Any] = {"http.request.method": self.method, "url.path": self.path,
                                      "http.response.status_code": self.status, "dockyard.cold_start": self.cold}
        if self.invocation_id:
            attributes["azure.ai.agentserver.invocations.invocation_id"] = self.invocation_id
        routed = self.routed_ns or end_ns
        spans = [span(self.span_id, self.parent_span_id, _SERVER, f"gateway {self.method} {_shape(self.path)}",
                      self.start_ns, end_ns, error, attributes),
                 span(new_span_id(), self.span_id, _INTERNAL, "route", self.start_ns, routed)]
        if self.upstream_ns:
            if self.cold:
                spans.append(span(new_span_id(), self.span_id, _INTERNAL, "cold start", routed, self.upstream_ns))
            spans.append(span(self.upstream_span_id, self.span_id, _CLIENT, "upstream", self.upstream_ns, end_ns,
                              error))
        return spans


def _shape(path: str) -> str:
    """The route, not the ids in it: `/api/projects/default/openai/v1/responses` -> `responses`."""
    for marker in ("/protocols/invocations", "/responses", "/invocations"):
        index = path.find(marker)
        if index >= 0:
            return path[index + 1:].split("/")[0] if marker != "/protocols/invocations" else "invocations"
    return path


_current: contextvars.ContextVar[GatewayCall | None] = contextvars.ContextVar("dockyard_gateway_call", default=None)


@contextmanager
def active(call: GatewayCall) -> Iterator[GatewayCall]:
    """Make `call` the one the hooks below fill in, for the code run inside (and the tasks and threads it starts)."""
    token = _current.set(call)
    try:
        yield call
    finally:
        _current.reset(token)


def entered_session(session: Session) -> None:
    """Hook: the call's session (and with it agent and version) is known; routing is over."""
    call = _current.get()
    if call is not None:
        call.session = session
        call.routed_ns = call.routed_ns or time.time_ns()


def cold_start(session: Session) -> None:
    """Hook: the session's sandbox was not running and is being started for this call."""
    call = _current.get()
    if call is not None:
        call.cold = True
    if _on_cold_start is not None:
        _on_cold_start(session)


def upstream_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """Hook: the call goes to the sandbox now; its headers gain the traceparent of the upstream span."""
    call = _current.get()
    if call is None:
        return headers
    call.upstream_ns = call.upstream_ns or time.time_ns()
    call.response_id = headers.get("x-agent-response-id", call.response_id)
    call.invocation_id = headers.get("x-agent-invocation-id", call.invocation_id)
    return {**headers, "traceparent": f"00-{call.trace_id}-{call.upstream_span_id}-{call.flags}"}


# Set by the metrics module when it is in use: counts cold starts whether or not a call is being traced.
_on_cold_start: Callable[[Session], None] | None = None


def on_cold_start(callback: Callable[[Session], None] | None) -> None:
    global _on_cold_start
    _on_cold_start = callback


_GATEWAY_PATHS = ("/responses", "/invocations")


class TracingMiddleware:
    """Opens a GatewayCall for each request that may reach an agent; records it once answered."""

    def __init__(self, app: ASGIApp, finished: Callable[[GatewayCall, int], None]) -> None:
        self.app = app
        self.finished = finished

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not any(marker in path for marker in _GATEWAY_PATHS):
            await self.app(scope, receive, send)
            return
        traceparent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"traceparent"), None)
        parent = parse_traceparent(traceparent)
        trace_id, parent_span_id, flags = parent if parent is not None else (new_trace_id(), "", "01")
        call = GatewayCall(method=scope["method"], path=path, trace_id=trace_id, parent_span_id=parent_span_id,
                           flags=flags)
        done = False

        async def send_and_watch(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.start":
                call.status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False) and not done:
                done = True
                self._finish(call)

        try:
            with active(call):
                await self.app(scope, receive, send_and_watch)
        finally:
            if not done:  # the caller left, or the app failed before the last byte
                done = True
                call.status = call.status or 499
                self._finish(call)

    def _finish(self, call: GatewayCall) -> None:
        if call.session is None:
            return  # never reached an agent: not a gateway call
        self.finished(call, time.time_ns())
