"""A version that names its own collector: its sandboxes still export to dockyard (which keeps the spans), and
dockyard forwards each OTLP body, as received, to that collector with the version's headers (a key kept in a
connection). The collector here is a real OTLP/HTTP receiver in the test (an http.server counting what it is
sent); spans come from the real OpenTelemetry exporter with the version's sandbox identity, as the adapter sends."""

from __future__ import annotations

import gzip
import http.server
import json
import socketserver
import sqlite3
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client.parser import text_string_to_metric_families
from support.process import DockyardProcess, dockyard_command, free_port

from dockyard.identity.agents import agent_identity_header

pytestmark = pytest.mark.e2e

COLLECTOR_KEY = "collector-key-" + uuid.uuid4().hex


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Collector:
    """An OTLP/HTTP receiver: answers 200 to every POST and keeps what it was sent."""

    port: int = 0
    received: list[Received] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for(self, ready: Callable[[list[Received]], bool], timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not ready(self.received):
            time.sleep(0.05)
        assert ready(self.received), self.received
        return self.received


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    collected = Collector()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            collected.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("content-type", self.headers.get("content-type", "application/x-protobuf"))
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    collected.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield collected
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def env(dockyard: DockyardProcess) -> dict[str, str]:
    return dockyard.env()


@pytest.fixture(scope="module")
def http_client(env: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(verify=ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"]), timeout=30) as client:
        token = client.get(env["IDENTITY_ENDPOINT"], headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
                           params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"})
        client.headers["authorization"] = f"Bearer {token.json()['access_token']}"
        yield client


@pytest.fixture(autouse=True)
def ca_bundle(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", env["REQUESTS_CA_BUNDLE"])


def create_version(dockyard: DockyardProcess, http: httpx.Client, name: str, environment: dict[str, str]) -> str:
    """A version with these variables; its uid (which names its sandboxes' identity) read from dockyard's store."""
    answer = http.post(f"{dockyard.endpoint}/agents/{name}/versions", params={"api-version": "v1"},
                       headers={"Foundry-Features": "HostedAgents=V1Preview"},
                       json={"definition": {"kind": "hosted", "image": "myregistry.azurecr.io/agent:v1", "cpu": "1",
                                            "memory": "2Gi", "environment_variables": environment,
                                            "container_protocol_versions": [{"protocol": "responses",
                                                                             "version": "v1"}]}})
    assert answer.status_code == 200, answer.text
    with sqlite3.connect(f"file:{dockyard.home / 'dockyard.db'}?mode=ro", uri=True) as store:
        [(uid,)] = store.execute("SELECT v.uid FROM agent_versions v JOIN agents a ON a.id = v.agent_id "
                                 "WHERE a.name = ?", (name,)).fetchall()
    return str(uid)


def export_spans(dockyard: DockyardProcess, env: dict[str, str], identity: str, span_name: str, *,
                 gzipped: bool = False) -> None:
    exporter = OTLPSpanExporter(endpoint=f"{dockyard.url}/v1/traces", headers={"x-identity-header": identity},
                                certificate_file=env["REQUESTS_CA_BUNDLE"],
                                compression=Compression.Gzip if gzipped else Compression.NoCompression)
    provider = TracerProvider(resource=Resource.create({"service.name": "forwarded-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("dockyard-tests").start_as_current_span(span_name):
        pass
    provider.shutdown()


def forwarded(dockyard: DockyardProcess, http: httpx.Client, outcome: str) -> float:
    answer = http.get(f"{dockyard.url}/metrics")
    assert answer.status_code == 200, answer.text
    return sum(sample.value for family in text_string_to_metric_families(answer.text) for sample in family.samples
               if sample.name == "dockyard_otlp_forwarded_total" and sample.labels.get("outcome") == outcome)


def span_names(body: bytes) -> set[str]:
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    return {span.name for rs in message.resource_spans for ss in rs.scope_spans for span in ss.spans}


def test_spans_are_kept_and_forwarded_as_received_with_the_versions_headers(
    dockyard: DockyardProcess, env: dict[str, str], http_client: httpx.Client, collector: Collector,
) -> None:
    added = subprocess.run(dockyard_command("connection", "add", "collector", "--base-url", f"{collector.endpoint}/v1",
                                            "--api-key-stdin", "--home", str(dockyard.home)),
                           input=COLLECTOR_KEY + "\n", capture_output=True, text=True, check=False)
    assert added.returncode == 0, added.stdout + added.stderr
    name = f"forwarded-{uuid.uuid4().hex[:8]}"
    uid = create_version(dockyard, http_client, name, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-team=blue,x-collector-key=${{connections.collector.credentials.key}}",
    })
    identity = agent_identity_header(env["IDENTITY_HEADER"], uid)
    sent_before = forwarded(dockyard, http_client, "sent")

    export_spans(dockyard, env, identity, "plain span")
    export_spans(dockyard, env, identity, "gzipped span", gzipped=True)
    posts = collector.wait_for(lambda got: sum(r.path == "/v1/traces" for r in got) >= 2)
    plain, zipped = (next(r for r in posts if r.path == "/v1/traces" and r.headers.get("content-encoding") == coding)
                     for coding in (None, "gzip"))
    for post in (plain, zipped):
        assert post.headers["content-type"] == "application/x-protobuf"
        assert post.headers["x-collector-key"] == COLLECTOR_KEY and post.headers["x-team"] == "blue"
        assert "x-identity-header" not in post.headers  # the sandbox's identity stays with dockyard
    assert span_names(plain.body) == {"plain span"}
    assert zipped.body[:2] == b"\x1f\x8b" and span_names(gzip.decompress(zipped.body)) == {"gzipped span"}

    # dockyard kept them too, tagged with the version.
    listed = http_client.get(f"{dockyard.endpoint}/traces", params={"agent": name}).json()["data"]
    assert {t["root"] for t in listed} == {"plain span", "gzipped span"} and {t["version"] for t in listed} == {"1"}
    deadline = time.monotonic() + 10  # counted once the collector's answer is read, just after it has the body
    while forwarded(dockyard, http_client, "sent") < sent_before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert forwarded(dockyard, http_client, "sent") == sent_before + 2

    # Metrics and logs go to the collector's /v1/metrics and /v1/logs (as JSON here, the body unchanged).
    for signal in ("metrics", "logs"):
        body = json.dumps({"resourceMetrics" if signal == "metrics" else "resourceLogs": []}).encode()
        answer = http_client.post(f"{dockyard.url}/v1/{signal}", content=body, headers={
            "authorization": "", "x-identity-header": identity, "content-type": "application/json"})
        assert answer.status_code == 200, answer.text
        got = collector.wait_for(lambda got, signal=signal: any(r.path == f"/v1/{signal}" for r in got))
        assert next(r for r in got if r.path == f"/v1/{signal}").body == body

    # Another sandbox, of a version without a collector: nothing forwarded.
    plain_uid = create_version(dockyard, http_client, f"unforwarded-{uuid.uuid4().hex[:8]}", {})
    count = len(collector.received)
    export_spans(dockyard, env, agent_identity_header(env["IDENTITY_HEADER"], plain_uid), "kept here only")
    time.sleep(1)
    assert len(collector.received) == count
    assert COLLECTOR_KEY not in dockyard.logs()


def test_a_collector_that_is_down_costs_the_sandbox_nothing_and_is_logged_without_its_key(
    dockyard: DockyardProcess, env: dict[str, str], http_client: httpx.Client,
) -> None:
    secret = "query-secret-" + uuid.uuid4().hex
    port = free_port()
    name = f"down-{uuid.uuid4().hex[:8]}"
    uid = create_version(dockyard, http_client, name, {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://user:{secret}@127.0.0.1:{port}/ingest?token={secret}",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"authorization=Bearer%20{secret}",
    })
    failed_before = forwarded(dockyard, http_client, "failed")
    started = time.monotonic()
    export_spans(dockyard, env, agent_identity_header(env["IDENTITY_HEADER"], uid), "collector is down")
    assert time.monotonic() - started < 5  # the export is answered without waiting for the collector
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and forwarded(dockyard, http_client, "failed") == failed_before:
        time.sleep(0.1)
    assert forwarded(dockyard, http_client, "failed") == failed_before + 1
    listed = http_client.get(f"{dockyard.endpoint}/traces", params={"agent": name}).json()["data"]
    assert [t["root"] for t in listed] == ["collector is down"]
    logs = dockyard.logs()
    assert f"http://127.0.0.1:{port}/ingest" in logs and "ConnectError" in logs
    assert secret not in logs
