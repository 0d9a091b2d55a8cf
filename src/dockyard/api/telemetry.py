"""OTLP over HTTP in (`POST /v1/traces`, `/v1/metrics`, `/v1/logs`), and the stored traces out.

Sandboxes get `OTEL_EXPORTER_OTLP_ENDPOINT` pointing here (runtime/environment.py), so Microsoft's
hosting adapter exports its spans to dockyard. Bodies are decoded with the official OTLP messages
(`opentelemetry-proto`): protobuf as it is, JSON through protobuf's own JSON parser, after one step
the OTLP/JSON encoding asks for (trace and span ids are hex there, not protobuf's base64).

Who may send: a sandbox, with its scoped identity (the `x-identity-header` value it was given, or a
token it got with it), or the operator's token. A sandbox's spans are tagged with the agent and
version its identity belongs to, whatever their attributes claim; session and response come from the
attributes the adapter sets. Metrics and logs are accepted (so the adapter's exporters stay quiet) and
discarded: dockyard's metrics are its own `/metrics`, and an agent's logs are its container's output.

`GET /api/projects/{project}/traces[?agent&session_id&response_id&limit]` lists recent traces and
`GET /api/projects/{project}/traces/{trace_id}` gives one trace's spans; both for the operator.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import zlib
from typing import Any

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
from dockyard.store.traces import SpanRecord

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


async def _payload(request: Request) -> tuple[bytes, str]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (_PROTOBUF, _JSON):
        raise UnsupportedMediaType(f"OTLP over HTTP is sent as {_PROTOBUF} or {_JSON}, not {media or 'nothing'}.",
                                   code="UnsupportedMediaType")
    limit = services(request).settings.max_invocation_bytes
    raw = await read_body(request, limit)
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
    return raw, media


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


def _version_of(request: Request, uid: str) -> tuple[str, str, str]:
    """(project, agent, version) of a version uid, from the store; cached, since versions never change."""
    cache: dict[str, tuple[str, str, str]] | None = getattr(request.app.state, "version_names", None)
    if cache is None:
        cache = request.app.state.version_names = {}
    if uid not in cache:
        for desired in services(request).control_plane.store.desired_versions():
            cache[desired.uid] = (desired.project, desired.version.agent_name, desired.version.version)
        # A uid no version has (deleted since its sandbox started) is remembered too: one scan, not one per export.
        cache.setdefault(uid, ("", "", ""))
    return cache[uid]


def _answer(media: str, empty: bytes) -> Response:
    return Response(empty if media == _PROTOBUF else b"{}", media_type=media)


@router.post("/v1/traces")
async def receive_traces(request: Request) -> Response:
    source, uid = _sender(request)
    raw, media = await _payload(request)
    message = decode_traces(raw, media)
    the = services(request)
    project_name, agent, version = ("", "", "")
    if uid is not None:
        project_name, agent, version = await run_in_threadpool(_version_of, request, uid)
    records = span_records(message, source=source, project=project_name or the.settings.projects[0],
                           agent=agent, version=version)
    if the.traces is not None and records:
        await run_in_threadpool(the.traces.add, records)
    if the.metrics is not None:
        the.metrics.spans.labels(source).inc(len(records))
    return _answer(media, ExportTraceServiceResponse().SerializeToString())


async def _discard(request: Request) -> Response:
    _sender(request)
    _raw, media = await _payload(request)
    return _answer(media, b"")  # an empty Export*ServiceResponse is zero bytes in protobuf


router.add_api_route("/v1/metrics", _discard, methods=["POST"])
router.add_api_route("/v1/logs", _discard, methods=["POST"])


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
