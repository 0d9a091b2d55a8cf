"""Traces in (OTLP over HTTP, from the real OpenTelemetry exporter and as JSON), traces out (the API and
`dockyard traces`), and `/metrics`, against a real `dockyard up`; who may do which."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client.parser import text_string_to_metric_families
from support.process import DockyardProcess

from dockyard.identity.agents import agent_identity_header

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env(dockyard: DockyardProcess) -> dict[str, str]:
    return dockyard.env()


@pytest.fixture(scope="module")
def http(env: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(verify=ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"]), timeout=30) as client:
        yield client


def _token(http: httpx.Client, env: dict[str, str], identity_header: str | None = None) -> str:
    answer = http.get(env["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"},
                      headers={"X-IDENTITY-HEADER": identity_header or env["IDENTITY_HEADER"]})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


@pytest.fixture(autouse=True)
def ca_bundle(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """As after `eval "$(dockyard env)"`. requests lets REQUESTS_CA_BUNDLE, when set, win over the exporter's own
    certificate_file (it merges the environment over the session's verify), so the environment must be right."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", env["REQUESTS_CA_BUNDLE"])


@pytest.fixture(scope="module")
def operator(http: httpx.Client, env: dict[str, str]) -> dict[str, str]:
    return {"authorization": f"Bearer {_token(http, env)}"}


def _export(dockyard: DockyardProcess, env: dict[str, str], headers: dict[str, str], response_id: str,
            session_id: str) -> None:
    """Two spans, parent and child, through the real OTLP/HTTP protobuf exporter, as an agent's adapter sends."""
    exporter = OTLPSpanExporter(endpoint=f"{dockyard.url}/v1/traces", headers=headers,
                                certificate_file=env["REQUESTS_CA_BUNDLE"])
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-test-agent",
                                                        "session.id": session_id}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("dockyard-tests")
    with tracer.start_as_current_span("invoke_agent", attributes={"gen_ai.agent.name": "otel-test-agent",
                                                                   "gen_ai.agent.version": "3",
                                                                   "gen_ai.response.id": response_id}):
        with tracer.start_as_current_span("tool call", attributes={"tool.name": "lookup", "n": 3}):
            time.sleep(0.01)
    provider.shutdown()


def _traces(http: httpx.Client, dockyard: DockyardProcess, headers: dict[str, str], **params: str) -> list[dict]:
    answer = http.get(f"{dockyard.endpoint}/traces", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def _metric(http: httpx.Client, dockyard: DockyardProcess, headers: dict[str, str], name: str,
            **labels: str) -> float:
    answer = http.get(f"{dockyard.url}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    total = 0.0
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_spans_from_the_real_otlp_exporter_are_stored_and_read_back_as_a_tree(
    dockyard: DockyardProcess, env: dict[str, str], http: httpx.Client, operator: dict[str, str],
) -> None:
    before = _metric(http, dockyard, operator, "dockyard_spans_received_total", source="operator")
    response_id = f"caresp_{uuid.uuid4().hex}"
    session_id = uuid.uuid4().hex
    _export(dockyard, env, operator, response_id, session_id)

    listed = _traces(http, dockyard, operator, response_id=response_id)
    assert len(listed) == 1
    summary = listed[0]
    assert summary["spans"] == 2 and summary["root"] == "invoke_agent"
    assert summary["agent"] == "otel-test-agent" and summary["version"] == "3"
    assert summary["session_id"] == session_id and summary["response_id"] == response_id
    assert _traces(http, dockyard, operator, session_id=session_id)[0]["trace_id"] == summary["trace_id"]
    assert _traces(http, dockyard, operator, agent="no-such-agent") == [] or all(
        t["trace_id"] != summary["trace_id"] for t in _traces(http, dockyard, operator, agent="no-such-agent"))

    spans = http.get(f"{dockyard.endpoint}/traces/{summary['trace_id']}", headers=operator).json()["spans"]
    parent = next(s for s in spans if s["name"] == "invoke_agent")
    child = next(s for s in spans if s["name"] == "tool call")
    assert child["parent_span_id"] == parent["span_id"] and parent["parent_span_id"] is None
    assert child["attributes"] == {"tool.name": "lookup", "n": 3}
    assert child["duration_ms"] >= 10 and child["source"] == "operator" and child["service"] == "otel-test-agent"

    # The CLI reads the same routes, with the home's own identity.
    shown = subprocess.run([sys.executable, "-m", "dockyard", "traces", "--response", response_id, "--json",
                            "--home", str(dockyard.home)], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert {s["name"] for s in json.loads(shown.stdout)["spans"]} == {"invoke_agent", "tool call"}
    drawn = subprocess.run([sys.executable, "-m", "dockyard", "traces", "--trace", summary["trace_id"],
                            "--home", str(dockyard.home)], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COLUMNS": "160"})
    assert drawn.returncode == 0, drawn.stderr
    lines = drawn.stdout.splitlines()
    parent_line = next(i for i, line in enumerate(lines) if "invoke_agent" in line)
    child_line = next(i for i, line in enumerate(lines) if "tool call" in line)
    assert child_line > parent_line and lines[child_line].index("tool call") > lines[parent_line].index("invoke_agent")
    listed_cli = subprocess.run([sys.executable, "-m", "dockyard", "traces", "otel-test-agent", "--json",
                                 "--home", str(dockyard.home)], capture_output=True, text=True, timeout=60)
    assert listed_cli.returncode == 0, listed_cli.stderr
    assert summary["trace_id"] in {t["trace_id"] for t in json.loads(listed_cli.stdout)["traces"]}

    # /metrics counted exactly the spans this test sent.
    assert _metric(http, dockyard, operator, "dockyard_spans_received_total", source="operator") == before + 2


def test_otlp_json_is_decoded_with_hex_ids(dockyard: DockyardProcess, http: httpx.Client,
                                           operator: dict[str, str]) -> None:
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    now = time.time_ns()
    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-agent"}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "name": "from json", "kind": 2,
            "startTimeUnixNano": str(now - 5_000_000), "endTimeUnixNano": str(now),
            "attributes": [{"key": "ok", "value": {"boolValue": True}},
                           {"key": "list", "value": {"arrayValue": {"values": [{"intValue": "7"}]}}}],
            "status": {"code": 2, "message": "it broke"},
        }]}],
    }]}
    answer = http.post(f"{dockyard.url}/v1/traces", json=body, headers=operator)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {} and answer.headers["content-type"] == "application/json"
    spans = http.get(f"{dockyard.endpoint}/traces/{trace_id}", headers=operator).json()["spans"]
    assert len(spans) == 1
    assert spans[0]["span_id"] == span_id and spans[0]["name"] == "from json"
    assert spans[0]["attributes"] == {"ok": True, "list": [7]}
    assert spans[0]["status"] == {"code": 2, "message": "it broke"}
    assert spans[0]["duration_ms"] == pytest.approx(5.0)
    listed = _traces(http, dockyard, operator, limit="50")
    assert next(t for t in listed if t["trace_id"] == trace_id)["errors"] == 1


def test_a_sandbox_identity_may_send_spans_but_not_read_them(
    dockyard: DockyardProcess, env: dict[str, str], http: httpx.Client, operator: dict[str, str],
) -> None:
    sandbox = agent_identity_header(env["IDENTITY_HEADER"], "some-version-uid")
    response_id = f"caresp_{uuid.uuid4().hex}"
    # As the adapter's exporter sends it: OTEL_EXPORTER_OTLP_HEADERS=x-identity-header=<the sandbox's identity>.
    _export(dockyard, env, {"x-identity-header": sandbox}, response_id, uuid.uuid4().hex)
    spans = _traces(http, dockyard, operator, response_id=response_id)
    assert len(spans) == 1 and spans[0]["spans"] == 2
    trace = http.get(f"{dockyard.endpoint}/traces/{spans[0]['trace_id']}", headers=operator).json()["spans"]
    assert {s["source"] for s in trace} == {"agent"}
    assert _metric(http, dockyard, operator, "dockyard_spans_received_total", source="agent") >= 2

    agent_token = {"authorization": f"Bearer {_token(http, env, sandbox)}"}
    assert http.post(f"{dockyard.url}/v1/traces", json={"resourceSpans": []}, headers=agent_token).status_code == 200
    for path in (f"{dockyard.endpoint}/traces", f"{dockyard.url}/metrics"):
        refused = http.get(path, headers=agent_token)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "AgentIdentityNotAllowed"


def test_without_credentials_nothing_is_accepted_or_shown(dockyard: DockyardProcess, env: dict[str, str],
                                                         http: httpx.Client) -> None:
    empty = {"content-type": "application/x-protobuf"}
    for method, path in (("POST", "/v1/traces"), ("POST", "/v1/metrics"), ("POST", "/v1/logs"), ("GET", "/metrics"),
                         ("GET", "/api/projects/default/traces")):
        answer = http.request(method, f"{dockyard.url}{path}", headers=empty, content=b"")
        assert answer.status_code == 401, (path, answer.text)
        assert answer.json()["error"]["code"] == "MissingToken"
    forged = agent_identity_header("not-the-secret", "some-version-uid")
    answer = http.post(f"{dockyard.url}/v1/traces", headers={**empty, "x-identity-header": forged}, content=b"")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "InvalidIdentityHeader"
    assert "not-the-secret" not in dockyard.logs() and forged not in dockyard.logs()


def test_malformed_otlp_is_refused_with_a_reason(dockyard: DockyardProcess, http: httpx.Client,
                                                 operator: dict[str, str]) -> None:
    garbage = http.post(f"{dockyard.url}/v1/traces", content=b"\xff\xff\xff",
                        headers={**operator, "content-type": "application/x-protobuf"})
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "InvalidRequestBody"
    not_hex = http.post(f"{dockyard.url}/v1/traces", headers=operator, json={"resourceSpans": [{"scopeSpans": [
        {"spans": [{"traceId": "zz", "spanId": "00", "name": "x"}]}]}]})
    assert not_hex.status_code == 400 and "hex" in not_hex.json()["error"]["message"]
    text = http.post(f"{dockyard.url}/v1/traces", content=b"hello", headers={**operator, "content-type": "text/plain"})
    assert text.status_code == 415 and text.json()["error"]["code"] == "UnsupportedMediaType"
    bad_id = http.get(f"{dockyard.endpoint}/traces/not-a-trace", headers=operator)
    assert bad_id.status_code == 400
    missing = http.get(f"{dockyard.endpoint}/traces/{uuid.uuid4().hex}", headers=operator)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "TraceNotFound"
    # Metrics and logs are accepted, so an adapter's exporters stay quiet, and dropped.
    for signal in ("metrics", "logs"):
        answer = http.post(f"{dockyard.url}/v1/{signal}", content=b"", headers={**operator,
                                                                              "content-type": "application/x-protobuf"})
        assert answer.status_code == 200, answer.text
