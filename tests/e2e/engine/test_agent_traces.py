"""A request's whole trace, from dockyard's gateway into the agent: the echo agent's own adapter (Microsoft's
azure-ai-agentserver, exporting with the real OTLP exporter to where dockyard pointed it) and dockyard's
gateway span in one trace, shown by `dockyard traces`; its log stream free of console span dumps; and
/metrics counting the calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from azure.ai.projects import AIProjectClient
from prometheus_client.parser import text_string_to_metric_families
from support.hosted import bearer_token, deploy, tls_context
from support.process import DockyardProcess

pytestmark = [pytest.mark.e2e, pytest.mark.engine]

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def agent(project: AIProjectClient, image: str) -> str:
    return deploy(project, image)


@pytest.fixture(scope="module")
def http(server: DockyardProcess) -> Any:
    with httpx.Client(verify=tls_context(server), timeout=120,
                      headers={"Authorization": f"Bearer {bearer_token(server)}"}) as client:
        yield client


def _respond(http: httpx.Client, server: DockyardProcess, agent: str, text: str,
             headers: dict[str, str] | None = None) -> tuple[str, str]:
    """(response id, session id) of one Responses call to the agent."""
    answer = http.post(f"{server.endpoint}/agents/{agent}/endpoint/protocols/openai/responses",
                       params={"api-version": "v1"}, json={"input": text}, headers=headers or {})
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"][0]["content"][0]["text"] == f"echo: {text}"
    return answer.json()["id"], answer.headers["x-agent-session-id"]


def _trace_with_agent_spans(server: DockyardProcess, agent: str, response_id: str) -> dict[str, Any]:
    """`dockyard traces NAME --response ID --json`, once the agent's batch of spans has arrived (its exporter
    sends every few seconds)."""
    deadline = time.monotonic() + 60
    while True:
        shown = subprocess.run([sys.executable, "-m", "dockyard", "traces", agent, "--response", response_id, "--json",
                                "--home", str(server.home)], capture_output=True, text=True, timeout=60)
        if shown.returncode == 0:
            trace = json.loads(shown.stdout)
            if any(span["source"] == "agent" for span in trace["spans"]):
                return trace
        assert time.monotonic() < deadline, f"no agent spans arrived: {shown.stdout} {shown.stderr}"
        time.sleep(1)


def test_the_agents_spans_and_the_gateway_span_make_one_trace(server: DockyardProcess, agent: str,
                                                              http: httpx.Client) -> None:
    response_id, session_id = _respond(http, server, agent, "trace me")
    trace = _trace_with_agent_spans(server, agent, response_id)
    spans = trace["spans"]
    assert {span["trace_id"] for span in spans} == {trace["trace_id"]}
    by_id = {span["span_id"]: span for span in spans}
    gateway = next(span for span in spans if span["name"] == "gateway POST responses")
    assert gateway["source"] == "gateway" and gateway["parent_span_id"] is None  # the caller sent no traceparent
    assert gateway["agent"] == agent and gateway["version"] == "1" and gateway["session_id"] == session_id
    assert gateway["response_id"] == response_id and gateway["attributes"]["http.response.status_code"] == 200
    upstream = next(span for span in spans if span["name"] == "upstream")
    assert upstream["parent_span_id"] == gateway["span_id"]
    # The first call in a session starts its sandbox.
    assert any(span["name"] == "cold start" for span in spans) and gateway["attributes"]["dockyard.cold_start"]

    agent_spans = [span for span in spans if span["source"] == "agent"]
    # Tagged by the sandbox's identity, whatever the spans say about themselves.
    assert {(span["agent"], span["version"]) for span in agent_spans} == {(agent, "1")}
    # The adapter's outermost span hangs under dockyard's upstream span: traceparent reached it.
    tops = [span for span in agent_spans if span["parent_span_id"] not in by_id
            or by_id[span["parent_span_id"]]["source"] != "agent"]
    assert tops and all(span["parent_span_id"] == upstream["span_id"] for span in tops), tops
    assert any(span["response_id"] == response_id for span in agent_spans)
    assert all(span["session_id"] == session_id for span in agent_spans)

    # The tree as a person sees it: the agent's span drawn under dockyard's upstream span.
    drawn = subprocess.run([sys.executable, "-m", "dockyard", "traces", "--trace", trace["trace_id"],
                            "--home", str(server.home)], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COLUMNS": "200"})
    assert drawn.returncode == 0, drawn.stderr
    lines = drawn.stdout.splitlines()
    upstream_line = next(i for i, line in enumerate(lines) if "upstream" in line)
    top_line = next(i for i, line in enumerate(lines) if tops[0]["name"] in line and i > upstream_line)
    assert lines[top_line].index(tops[0]["name"]) > lines[upstream_line].index("upstream")


def test_a_callers_traceparent_is_joined(server: DockyardProcess, agent: str, http: httpx.Client) -> None:
    response_id, _session = _respond(http, server, agent, "joined",
                                     headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    trace = _trace_with_agent_spans(server, agent, response_id)
    assert trace["trace_id"] == CALLER_TRACE
    gateway = next(span for span in trace["spans"] if span["name"].startswith("gateway "))
    assert gateway["parent_span_id"] == CALLER_SPAN


def test_the_log_stream_shows_the_agents_own_lines_and_no_span_dumps(server: DockyardProcess, agent: str,
                                                                     http: httpx.Client) -> None:
    _response, session_id = _respond(http, server, agent, "quiet logs")
    shown = subprocess.run([sys.executable, "-m", "dockyard", "logs", agent, "--session", session_id, "--json",
                            "--home", str(server.home)], capture_output=True, text=True, timeout=90)
    assert shown.returncode == 0, shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    output = [line["message"] for line in lines if line["stream"] != "status"]
    # The agent's own line among the first few: before, the adapter's console exporter wrote hundreds of lines
    # of pretty-printed JSON records (`"trace_id": "0x…"`, `"span_id"`, `"resource"`) ahead of it. What comes
    # first now is the adapter's own start-up (about ten lines with FOUNDRY_HOSTING_ENVIRONMENT set: its
    # experimental-API warnings, "storage_provider=FoundryStorageProvider", its resilience notice), as in Foundry.
    starting = next(i for i, line in enumerate(output) if line.startswith("echo-agent: starting on port"))
    assert starting < 20, "\n".join(output[:starting + 1])
    assert any("storage_provider=FoundryStorageProvider" in line for line in output)  # stderr: any order
    assert not any('"trace_id"' in line or '"span_id"' in line or '"resource"' in line for line in output), output
    # The adapter's own lines per request are about ten (inbound, created, storage calls, completed); a span dump
    # was hundreds. The session may have served other tests' calls too (the caller's shared session).
    requests = sum("Inbound POST /responses started" in line for line in output)
    assert len(output) < 25 + 12 * max(requests, 1), "\n".join(output)


def test_metrics_count_the_calls(server: DockyardProcess, project: AIProjectClient, image: str,
                                 http: httpx.Client) -> None:
    name = deploy(project, image)
    for text in ("one", "two", "three"):
        _respond(http, server, name, text)
    missing = http.post(f"{server.endpoint}/agents/{name}/endpoint/protocols/openai/responses/caresp_nope/cancel",
                        params={"api-version": "v1"})
    assert missing.status_code == 404  # never reached the agent: not counted
    deadline = time.monotonic() + 10
    while True:  # the last call is counted once its answer has gone out, a moment after the client has it
        samples = _samples(http, server)
        requests = samples.get(("dockyard_agent_requests_total", (("agent", name), ("project", "default"),
                                                                  ("status", "200"), ("version", "1"))))
        if requests == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert requests == 3
    labels = (("agent", name), ("project", "default"), ("version", "1"))
    assert samples[("dockyard_agent_request_duration_seconds_count", labels)] == 3
    assert samples[("dockyard_cold_starts_total", labels)] == 1
    assert samples.get(("dockyard_agent_errors_total", labels), 0) == 0
    assert samples[("dockyard_live_sessions", labels)] == 1
    assert samples[("dockyard_sandbox_restarts", labels)] == 0


def _samples(http: httpx.Client, server: DockyardProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = http.get(f"{server.url}/metrics")
    assert answer.status_code == 200, answer.text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}
