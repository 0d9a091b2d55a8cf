"""OTLP over HTTP in (`POST /v1/traces`, `/v1/metrics`, `/v1/logs`), and the stored traces out.

Sandboxes get `OTEL_EXPORTER_OTLP_ENDPOINT` pointing here (runtime/environment.py), so Microsoft's
hosting adapter exports its spans to dockyard. Bodies are decoded with the official OTLP messages
(`opentelemetry-proto`): protobuf as it is, JSON through protobuf's own JSON parser, after one step
the OTLP/JSON encoding asks for (trace and span ids are hex there, not protobuf's base64).

Who may send: a sandbox, with its scoped identity (the `x-identity-header` value it was given, or a
token it got with it), or the operator's token. A sandbox's spans are tagged with the agent and
version its identity belongs to, whatever their attributes claim; session and response come from the
attributes the adapter sets. Metrics and logs are accepted (so the adapter's exporters stay quiet) and
not kept: dockyard's metrics are its own `/metrics`, and an agent's logs are its container's output.

A version that names its own collector (`OTEL_EXPORTER_OTLP_ENDPOINT`, or a per-signal `…_TRACES_ENDPOINT`,
with `…_HEADERS`, in its environment variables) still exports to dockyard, and dockyard forwards each
body it receives from that version's sandboxes (traces, metrics and logs), as received, to where an
OTLP exporter with those variables would have sent it (`OtlpForwarder`). Off the request path: the
receiver queues the body (dropped and counted when 1000, or 64 MiB, wait) and one thread posts them;
`${{connections.…}}` references in the variables are resolved there, so a collector's key can live in a
connection. Failures are counted and logged at most once a minute per collector, by its address
without credentials or query.

`GET /api/projects/{project}/traces[?agent&session_id&response_id&limit]` lists recent traces and
`GET /api/projects/{project}/traces/{trace_id}` gives one trace's spans; both for the operator.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import queue
import re
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request, Response
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from starlette.concurrency import run_in_threadpool

from dockyard.api.dependencies import authenticate, authenticate_operator, project, read_body, services
from dockyard.domain.errors import BadRequest, DockyardError, NotFound, Unauthorized
from dockyard.identity.agents import AGENT_ROLE, agent_from_identity_header
from dockyard.models.deployments import resolve_references
from dockyard.store.traces import SpanRecord

log = logging.getLogger("dockyard.telemetry")

router = APIRouter()
project_router = APIRouter(prefix="/api/projects/{project}", dependencies=[Depends(authenticate_operator)])

_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


class UnsupportedMediaType(DockyardError):
    status_code = 415
    code = "UnsupportedMediaType"


# ---- receiving -------------------------------------------------------------------------------------------


def _sender(request: Request) -> tuple[str, str | None]:
    """("agent", version uid) for a sandbox's identity, ("operator", None) for a person's token."""
    header = request.headers.get("x-identity-header")
    if header and not request.headers.get("authorization"):
        uid = agent_from_identity_header(services(request).identity_secret, header)
        if uid is None:
            raise Unauthorized("The x-identity-header value is not a sandbox identity of this dockyard.",
                               code="InvalidIdentityHeader")
        return "agent", uid
    principal = authenticate(request)
    if principal.claims.get("dockyard_role") == AGENT_ROLE:
        return "agent", str(principal.claims.get("dockyard_version_uid", ""))
    return "operator", None


@dataclass(frozen=True)
class Payload:
    data: bytes  # inflated
    media: str
    received: bytes  # as sent, for forwarding
    encoding: str


async def _payload(request: Request) -> Payload:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (_PROTOBUF, _JSON):
        raise UnsupportedMediaType(f"OTLP over HTTP is sent as {_PROTOBUF} or {_JSON}, not {media or 'nothing'}.",
                                   code="UnsupportedMediaType")
    limit = services(request).settings.max_invocation_bytes
    raw = received = await read_body(request, limit)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "deflate"):
        try:
            inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
            raw = inflater.decompress(raw, limit + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise BadRequest(f"The body is not valid {encoding} ({exc}).", code="InvalidRequestBody") from None
        if len(raw) > limit or inflater.unconsumed_tail:
            raise BadRequest(f"The body inflates to more than {limit} bytes.", code="RequestBodyTooLarge")
    elif encoding not in ("", "identity"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send gzip or none.",
                                   code="UnsupportedMediaType")
    return Payload(raw, media, received, "" if encoding == "identity" else encoding)


def _hex_ids_to_base64(document: Any) -> Any:
    """OTLP/JSON writes trace and span ids in hex; protobuf's JSON mapping reads bytes as base64."""
    for resource_spans in document.get("resourceSpans", []) if isinstance(document, dict) else []:
        for scope_spans in resource_spans.get("scopeSpans", []) if isinstance(resource_spans, dict) else []:
            for span in scope_spans.get("spans", []) if isinstance(scope_spans, dict) else []:
                if not isinstance(span, dict):
                    continue
                for item in (span, *[link for link in span.get("links", []) if isinstance(link, dict)]):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        value = item.get(key)
                        if isinstance(value, str) and value:
                            try:
                                item[key] = base64.b64encode(bytes.fromhex(value)).decode()
                            except ValueError:
                                raise BadRequest(f"{key} {value!r} is not hex, as OTLP/JSON writes ids.",
                                                 code="InvalidRequestBody") from None
    return document


def decode_traces(raw: bytes, media: str) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    try:
        if media == _PROTOBUF:
            message.ParseFromString(raw)
        else:
            json_format.ParseDict(_hex_ids_to_base64(json.loads(raw)), message, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, ValueError, AttributeError, TypeError) as exc:
        raise BadRequest(f"The body is not an OTLP ExportTraceServiceRequest ({exc}).",
                         code="InvalidRequestBody") from None
    return message


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def _first(names: tuple[str, ...], *sources: dict[str, Any]) -> str:
    for source in sources:
        for name in names:
            value = source.get(name)
            if value not in (None, ""):
                return str(value)
    return ""


def span_records(message: ExportTraceServiceRequest, *, source: str, project: str, agent: str = "",
                 version: str = "") -> list[SpanRecord]:
    """The spans of an export request, tagged. `agent`/`version`, when given, win over what spans say."""
    records = []
    for resource_spans in message.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise BadRequest("A span's trace_id must be 16 bytes and its span_id 8.", code="InvalidSpan")
                attributes = _attributes(span.attributes)
                records.append(SpanRecord(
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(), parent_span_id=span.parent_span_id.hex(),
                    name=span.name, kind=span.kind, start_ns=span.start_time_unix_nano,
                    end_ns=max(span.end_time_unix_nano, span.start_time_unix_nano), status_code=span.status.code,
                    status_message=span.status.message, service=str(resource.get("service.name", "")),
                    source=source, project=_first(("dockyard.project",), resource) or project,
                    agent=agent or _first(("gen_ai.agent.name",), attributes, resource),
                    version=version or _first(("gen_ai.agent.version",), attributes, resource),
                    session_id=_first(("microsoft.session.id", "session.id"), attributes, resource),
                    response_id=_first(("gen_ai.response.id", "azure.ai.agentserver.responses.response_id"),
                                       attributes),
                    attributes=attributes, resource=resource,
                    events=[{"name": event.name, "time_unix_nano": event.time_unix_nano,
                             "attributes": _attributes(event.attributes)} for event in span.events],
                ))
    return records


@dataclass(frozen=True)
class Sender:
    """A version uid's names, and the variables that name its own collector (references unresolved)."""

    project: str = ""
    agent: str = ""
    version: str = ""
    collector: Mapping[str, str] | None = None


def collector_variables(environment: Mapping[str, str]) -> dict[str, str] | None:
    chosen = {name: value for name, value in environment.items()
              if name.startswith("OTEL_EXPORTER_OTLP_") and name.endswith(("_ENDPOINT", "_HEADERS"))}
    return chosen if any(name.endswith("_ENDPOINT") and value for name, value in chosen.items()) else None


def _version_of(request: Request, uid: str) -> Sender:
    """What a version uid is, from the store; cached, since versions never change."""
    cache: dict[str, Sender] | None = getattr(request.app.state, "otlp_senders", None)
    if cache is None:
        cache = request.app.state.otlp_senders = {}
    if uid not in cache:
        for desired in services(request).control_plane.store.desired_versions():
            variables = getattr(desired.version.definition, "environment_variables", None) or {}
            cache[desired.uid] = Sender(desired.project, desired.version.agent_name, desired.version.version,
                                        collector_variables(variables))
        # A uid no version has (deleted since its sandbox started) is remembered too: one scan, not one per export.
        cache.setdefault(uid, Sender())
    return cache[uid]


def _answer(media: str, empty: bytes) -> Response:
    return Response(empty if media == _PROTOBUF else b"{}", media_type=media)


@router.post("/v1/traces")
async def receive_traces(request: Request) -> Response:
    source, uid = _sender(request)
    payload = await _payload(request)
    message = decode_traces(payload.data, payload.media)
    the = services(request)
    sender = Sender()
    if uid is not None:
        sender = await run_in_threadpool(_version_of, request, uid)
    records = span_records(message, source=source, project=sender.project or the.settings.projects[0],
                           agent=sender.agent, version=sender.version)
    if the.traces is not None and records:
        await run_in_threadpool(the.traces.add, records)
    if the.metrics is not None:
        the.metrics.spans.labels(source).inc(len(records))
    if sender.collector:
        _forwarder(request).submit(Export("traces", payload, sender))
    return _answer(payload.media, ExportTraceServiceResponse().SerializeToString())


async def _receive_and_forward(request: Request) -> Response:
    """Metrics and logs: checked, forwarded to the sender's own collector if it names one, not kept."""
    _source, uid = _sender(request)
    payload = await _payload(request)
    if uid is not None:
        sender = await run_in_threadpool(_version_of, request, uid)
        if sender.collector:
            _forwarder(request).submit(Export(request.url.path.rsplit("/", 1)[-1], payload, sender))
    return _answer(payload.media, b"")  # an empty Export*ServiceResponse is zero bytes in protobuf


router.add_api_route("/v1/metrics", _receive_and_forward, methods=["POST"])
router.add_api_route("/v1/logs", _receive_and_forward, methods=["POST"])


# ---- forwarding to a version's own collector ------------------------------------------------------------------

FORWARD_QUEUE = 1000
FORWARD_QUEUE_BYTES = 64 << 20
FORWARD_TIMEOUT_SECONDS = 10.0
_WARN_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class Export:
    signal: str  # "traces", "metrics" or "logs"
    payload: Payload
    sender: Sender


def collector_target(variables: Mapping[str, str], signal: str) -> tuple[str, dict[str, str]] | None:
    """Where an OTLP/HTTP exporter with these variables sends `signal`, and its headers (the exporter spec's
    rules: a per-signal endpoint as it is, else the endpoint plus /v1/<signal>; per-signal headers first;
    headers are `name=value` pairs separated by commas, percent-encoded)."""
    upper = signal.upper()
    url = variables.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT") or ""
    if not url:
        base = variables.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ""
        if not base:
            return None
        url = f"{base.rstrip('/')}/v1/{signal}"
    text = variables.get(f"OTEL_EXPORTER_OTLP_{upper}_HEADERS") or variables.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    headers = {}
    for pair in text.split(","):
        name, equals, value = pair.partition("=")
        if equals and name.strip():
            headers[urllib.parse.unquote(name.strip())] = urllib.parse.unquote(value.strip())
    return url, headers


def safe_address(url: str) -> str:
    """A URL for the log: scheme, host, port and path; never user, password or query (where keys hide)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number
        return "(an unparsable URL)"
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


# (project, the sender's collector variables) -> the same, `${{connections.…}}` resolved.
Resolver = Callable[[str, Mapping[str, str]], Mapping[str, str]]


class OtlpForwarder:
    """Bodies queued by the receiver, posted by one thread to each sender's own collector."""

    def __init__(self, resolve: Resolver, counted: Callable[[str, str], None] | None = None, *,
                 max_queued: int = FORWARD_QUEUE, max_bytes: int = FORWARD_QUEUE_BYTES,
                 timeout: float = FORWARD_TIMEOUT_SECONDS) -> None:
        self.resolve = resolve
        self.counted = counted or (lambda signal, outcome: None)
        self.timeout = timeout
        self._queue: queue.Queue[Export] = queue.Queue(maxsize=max_queued)
        self.max_bytes = max_bytes
        self._queued_bytes = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._warned: dict[str, tuple[float, int]] = {}  # address -> (when last warned, failures since)

    def submit(self, export: Export) -> None:
        """Never blocks: when this many wait, the body is dropped (counted, and logged now and then)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dockyard-otlp-forward", daemon=True)
                self._thread.start()
            size = len(export.payload.received)
            fits = self._queued_bytes + size <= self.max_bytes
            if fits:
                self._queued_bytes += size
        try:
            if not fits:
                raise queue.Full
            self._queue.put_nowait(export)
        except queue.Full:
            if fits:
                with self._lock:
                    self._queued_bytes -= size
            self.counted(export.signal, "dropped")
            self._warn("queue", f"OTLP forwarding is too far behind ({self._queue.qsize()} bodies wait); dropping "
                       f"{export.signal} of {export.sender.agent} {export.sender.version}")

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            while True:
                export = self._queue.get()
                with self._lock:
                    self._queued_bytes -= len(export.payload.received)
                try:
                    self._send(client, export)
                # A forwarder that dies would queue forever: log (the type only, a message may quote a header), go on.
                except Exception as exc:  # noqa: BLE001
                    log.error("forwarding OTLP %s of %s %s failed: %s", export.signal, export.sender.agent,
                              export.sender.version, type(exc).__name__)
                    self.counted(export.signal, "failed")

    def _send(self, client: httpx.Client, export: Export) -> None:
        sender = export.sender
        try:
            variables = self.resolve(sender.project, sender.collector or {})
        except DockyardError as exc:
            self.counted(export.signal, "failed")
            self._warn(f"{sender.project}/{sender.agent}/{sender.version}", f"not forwarding OTLP of {sender.agent} "
                       f"{sender.version}: its collector variables cannot be resolved ({exc.message})")
            return
        target = collector_target(variables, export.signal)
        if target is None:
            return  # a collector for traces only: its metrics and logs stay here
        url, headers = target
        address = safe_address(url)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            self.counted(export.signal, "failed")
            self._warn(address, f"not forwarding OTLP of {sender.agent} {sender.version}: its collector {address!r} "
                       "is not an http(s) URL (dockyard forwards OTLP over HTTP)")
            return
        headers["content-type"] = export.payload.media
        if export.payload.encoding:
            headers["content-encoding"] = export.payload.encoding
        try:
            answer = client.post(url, content=export.payload.received, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # never the message: it may quote the URL
            self.counted(export.signal, "failed")
            self._warn(address, f"forwarding OTLP {export.signal} to {address} failed: {type(exc).__name__}")
            return
        if answer.status_code >= 300:
            self.counted(export.signal, "failed")
            self._warn(address, f"forwarding OTLP {export.signal} to {address} was answered {answer.status_code}")
            return
        self.counted(export.signal, "sent")

    def _warn(self, key: str, message: str) -> None:
        """At most once a minute per collector (one that is down would otherwise log every batch)."""
        now = time.monotonic()
        with self._lock:
            last, failures = self._warned.get(key, (-_WARN_EVERY_SECONDS, 0))
            if now - last < _WARN_EVERY_SECONDS:
                self._warned[key] = (last, failures + 1)
                return
            self._warned[key] = (now, 0)
        log.warning("%s%s", message, f" ({failures} more since the last warning)" if failures else "")


def _forwarder(request: Request) -> OtlpForwarder:
    forwarder: OtlpForwarder | None = getattr(request.app.state, "otlp_forwarder", None)
    if forwarder is None:
        the = services(request)
        catalog = the.catalog

        def resolve(project: str, variables: Mapping[str, str]) -> Mapping[str, str]:
            if catalog is None:
                return resolve_references(variables, _no_connections)
            return resolve_references(variables, lambda name: catalog.connection(project, name))

        metrics = the.metrics
        counted = (lambda signal, outcome: metrics.otlp_forwarded.labels(signal, outcome).inc()) if metrics else None
        forwarder = request.app.state.otlp_forwarder = OtlpForwarder(resolve, counted)
    return forwarder


def _no_connections(name: str) -> Any:
    raise NotFound(f"Connection {name!r} cannot be read: this dockyard has no connections store.",
                   code="ConnectionNotFound")


# ---- reading -----------------------------------------------------------------------------------------------


@project_router.get("/traces")
async def list_traces(request: Request, project: str = Depends(project)) -> dict[str, Any]:
    query = request.query_params
    limit_text = query.get("limit", "20")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
        raise BadRequest("limit must be a whole number from 1 to 1000.", code="InvalidParameter", param="limit")
    the = services(request)
    if the.traces is None:
        return {"object": "list", "data": []}
    summaries = await run_in_threadpool(
        the.traces.list_traces, project=project, agent=query.get("agent") or None,
        session_id=query.get("session_id") or None, response_id=query.get("response_id") or None,
        limit=int(limit_text))
    return {"object": "list", "data": [summary.to_json() for summary in summaries]}


@project_router.get("/traces/{trace_id}")
async def get_trace(request: Request, trace_id: str, project: str = Depends(project)) -> dict[str, Any]:
    if not _TRACE_ID.fullmatch(trace_id):
        raise BadRequest("A trace id is 32 lowercase hex characters.", code="InvalidParameter", param="trace_id")
    the = services(request)
    spans = await run_in_threadpool(the.traces.trace, trace_id) if the.traces is not None else []
    if not spans or all(span.project not in ("", project) for span in spans):
        raise NotFound(f"Trace {trace_id} was not found (traces are kept for a limited time).",
                       code="TraceNotFound")
    return {"object": "trace", "trace_id": trace_id, "spans": [span.to_json() for span in spans]}
