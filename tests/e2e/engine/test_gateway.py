"""Invoking hosted agents through dockyard with the OpenAI client that azure-ai-projects hands out.

The echo agent runs on Microsoft's hosting adapter in real containers; the clients are the real
`openai` package as both SDK generations configure it.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
from typing import Any

import docker
import httpx
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import (
    ContainerConfiguration,
    HostedAgentDefinition,
    ProtocolVersionRecord,
    VersionRefIndicator,
)
from support.engine import DOCKYARD_LABEL
from support.hosted import bearer_token, deploy, tls_context
from support.process import DockyardProcess

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


@pytest.fixture(scope="module")
def agent(project: AIProjectClient, image: str) -> str:
    return deploy(project, image, env={"ECHO_WORD_DELAY_SECONDS": "0.3"})


def session_containers(agent_name: str) -> list[Any]:
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    found = client.containers.list(all=True, filters={"label": f"{DOCKYARD_LABEL}.agent={agent_name}"})
    return [c for c in found if c.labels.get(f"{DOCKYARD_LABEL}.session")]


@pytest.mark.docker_too
def test_responses_through_both_2x_bases(project: AIProjectClient, agent: str) -> None:
    by_agent = project.get_openai_client(agent_name=agent).responses.create(input="hello there")
    assert by_agent.output_text == "echo: hello there"
    by_reference = project.get_openai_client().responses.create(
        input="by reference", extra_body={"agent_reference": {"name": agent, "type": "agent_reference"}})
    assert by_reference.output_text == "echo: by reference"


@pytest.mark.docker_too
def test_streaming_relays_each_event_as_emitted(project: AIProjectClient, agent: str,
                                                server: DockyardProcess) -> None:
    stream = project.get_openai_client(agent_name=agent).responses.create(input="one two three four", stream=True)
    assert "".join(e.delta for e in stream if e.type == "response.output_text.delta") == "echo: one two three four"
    # The timing is read off the wire: openai 3.54 on httpx2 hands a stream's events over only once the
    # answer has ended (seen against the agent's own port too, without dockyard), so its iterator cannot
    # tell a relayed stream from a buffered one.
    url = f"{server.endpoint}/agents/{agent}/endpoint/protocols/openai/responses"
    deltas: list[tuple[float, str]] = []
    with httpx.Client(verify=tls_context(server), timeout=60) as http, http.stream(
            "POST", url, params={"api-version": "v1"}, headers={"Authorization": f"Bearer {bearer_token(server)}"},
            json={"input": "one two three four", "stream": True}) as streamed:
        for line in streamed.iter_lines():
            if line.startswith("data: ") and (event := json.loads(line[len("data: "):]))["type"].endswith(".delta"):
                deltas.append((time.monotonic(), event["delta"]))
    assert "".join(d for _, d in deltas) == "echo: one two three four"
    assert len(deltas) >= 2
    gaps = [later - earlier for (earlier, _), (later, _) in zip(deltas, deltas[1:], strict=False)]
    # The agent waits 0.3 s between words: a buffering proxy would deliver them all at once, in one block.
    assert sum(gap > 0.2 for gap in gaps) >= 2, gaps
    assert deltas[-1][0] - deltas[0][0] > 0.6, gaps


def test_background_then_get_reaches_the_same_sandbox(project: AIProjectClient, agent: str) -> None:
    client = project.get_openai_client(agent_name=agent)
    started = client.responses.create(input="in the background", background=True)
    assert started.status in ("queued", "in_progress", "completed")
    deadline = time.monotonic() + 60
    while True:
        current = client.responses.retrieve(started.id)
        if current.status == "completed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert current.status == "completed" and current.output_text == "echo: in the background"
    items = client.responses.input_items.list(started.id)
    assert any("in the background" in json.dumps(item.model_dump()) for item in items)


def test_cancel_a_background_response(project: AIProjectClient, agent: str) -> None:
    client = project.get_openai_client(agent_name=agent)
    started = client.responses.create(input=" ".join(["word"] * 40), background=True)
    cancelled = client.responses.cancel(started.id)
    assert cancelled.status in ("cancelled", "completed")
    assert client.responses.retrieve(started.id).status in ("cancelled", "completed")


def test_two_calls_in_one_session_reach_the_same_container(project: AIProjectClient, agent: str) -> None:
    client = project.get_openai_client(agent_name=agent)
    first = client.responses.with_raw_response.create(input="first")
    session = first.headers["x-agent-session-id"]
    second = client.responses.with_raw_response.create(input="second", extra_headers={"x-agent-session-id": session})
    assert second.headers["x-agent-session-id"] == session
    assert second.parse().output_text == "echo: second"
    mine = [c for c in session_containers(agent) if c.labels[f"{DOCKYARD_LABEL}.session"] == session]
    assert len(mine) == 1
    # And the conversation carries on in that sandbox: previous_response_id resolves there.
    third = client.responses.create(input="third", previous_response_id=second.parse().id,
                                    extra_headers={"x-agent-session-id": session})
    assert third.output_text == "echo: third"


def test_idle_session_is_released_and_resumes_transparently(project: AIProjectClient, image: str) -> None:
    name = deploy(project, image, session_configuration={"idle_timeout_seconds": 2})
    client = project.get_openai_client(agent_name=name)
    first = client.responses.with_raw_response.create(input="before the nap")
    session = first.headers["x-agent-session-id"]
    deadline = time.monotonic() + 30
    while session_containers(name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_containers(name) == []  # compute released
    assert project.agents.get_version(agent_name=name, agent_version="1").status == "active"
    again = client.responses.create(input="after the nap", previous_response_id=first.parse().id,
                                    extra_headers={"x-agent-session-id": session})
    assert again.output_text == "echo: after the nap"
    # The first response is still there: its state lives on the session's volume, not in the container.
    assert client.responses.retrieve(first.parse().id).output_text == "echo: before the nap"


def test_disable_and_enable(project: AIProjectClient, server: DockyardProcess, agent: str) -> None:
    with httpx.Client(verify=tls_context(server), headers={"Authorization": f"Bearer {bearer_token(server)}"},
                      params={"api-version": "v1"}) as http:
        assert http.post(f"{server.endpoint}/agents/{agent}:disable").status_code == 204
        assert project.agents.get(agent_name=agent).state == "disabled"
        refused = http.post(f"{server.endpoint}/agents/{agent}/endpoint/protocols/openai/responses",
                            json={"input": "x"})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "AgentDisabled"
        assert http.post(f"{server.endpoint}/agents/{agent}:enable").status_code == 204
    assert project.get_openai_client(agent_name=agent).responses.create(input="back").output_text == "echo: back"


def test_bad_input_is_refused_without_leaking_internals(server: DockyardProcess, agent: str) -> None:
    with httpx.Client(verify=tls_context(server), headers={"Authorization": f"Bearer {bearer_token(server)}"},
                      timeout=60) as http:
        base = f"{server.endpoint}/openai/v1/responses"
        unknown = http.post(base, json={"input": "x", "agent_reference": {"type": "agent_reference", "name": "nobody"}})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "AgentNotFound"
        malformed = http.post(base, content=b"{nope", headers={"content-type": "application/json"})
        assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "InvalidRequestBody"
        huge = http.post(base, content=b'{"input": "' + b"x" * (17 * 1024 * 1024) + b'"}',
                         headers={"content-type": "application/json"})
        assert huge.status_code == 413
        no_agent = http.post(base, json={"input": "x"})
        assert no_agent.status_code == 400 and no_agent.json()["error"]["code"] == "AgentReferenceRequired"
        missing = http.get(f"{base}/caresp_0000000000000000000000000000000000000000000000000000")
        assert missing.status_code == 404
        for answer in (unknown, malformed, no_agent, missing):
            text = answer.text
            assert "127.0.0.1:" not in text and "Traceback" not in text and "10.88." not in text


@pytest.mark.docker_too
def test_legacy_sdk_openai_client(server: DockyardProcess, agent: str) -> None:
    from support.legacy_venv import legacy_python

    script = f"""
import json, os
from azure.identity import DefaultAzureCredential
from azure.ai.projects import AIProjectClient
client = AIProjectClient(endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"], credential=DefaultAzureCredential())
openai = client.get_openai_client()
answer = openai.responses.create(input="from 2.0.0b3",
                                 extra_body={{"agent": {{"name": {agent!r}, "type": "agent_reference"}}}})
print(json.dumps({{"text": answer.output_text}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")} | server.env()
    result = subprocess.run([str(legacy_python()), "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"text": "echo: from 2.0.0b3"}


@pytest.mark.docker_too
def test_sessions_api_and_traffic_settings_through_the_sdk(project: AIProjectClient, image: str) -> None:
    from azure.ai.projects.models import (
        AgentEndpointConfig,
        FixedRatioVersionSelectionRule,
        VersionRefIndicator,
        VersionSelector,
    )

    name = deploy(project, image)
    project.agents.create_version(agent_name=name, definition=HostedAgentDefinition(
        cpu="0.5", memory="1Gi", container_configuration=ContainerConfiguration(image=image),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="2.0.0")]))
    deadline = time.monotonic() + 120
    while project.agents.get_version(agent_name=name, agent_version="2").status != "active":
        assert time.monotonic() < deadline
        time.sleep(0.2)

    split = AgentEndpointConfig(version_selector=VersionSelector(version_selection_rules=[
        FixedRatioVersionSelectionRule(agent_version="1", traffic_percentage=80),
        FixedRatioVersionSelectionRule(agent_version="2", traffic_percentage=20),
    ]))
    updated = project.agents.update_details(agent_name=name, agent_endpoint=split)
    rules = updated["agent_endpoint"]["version_selector"]["version_selection_rules"]
    assert [(r["agent_version"], r["traffic_percentage"]) for r in rules] == [("1", 80), ("2", 20)]

    # 200 calls that name no session: each draws a version, and lands in that version's shared session.
    client = project.get_openai_client(agent_name=name)
    served_by: dict[str, int] = {}
    for turn in range(200):
        answer = client.responses.with_raw_response.create(input=f"call {turn}")
        assert answer.parse().output_text == f"echo: call {turn}"
        session_id = answer.headers["x-agent-session-id"]
        served_by[session_id] = served_by.get(session_id, 0) + 1
    versions = {project.agents.get_session(agent_name=name, session_id=s).version_indicator.agent_version: n
                for s, n in served_by.items()}
    assert set(versions) == {"1", "2"}, versions
    assert abs(versions["1"] / 200 - 0.8) <= 0.08, versions
    assert len([c for c in session_containers(name) if c.status == "running"]) == 2  # one sandbox per version

    pinned = project.agents.create_session(agent_name=name, version_indicator=VersionRefIndicator(agent_version="2"))
    assert pinned.status == "active" and pinned.version_indicator.agent_version == "2"
    assert project.agents.get_session(agent_name=name, session_id=pinned.agent_session_id).status == "active"
    listed = [s.agent_session_id for s in project.agents.list_sessions(agent_name=name)]
    assert pinned.agent_session_id in listed
    project.agents.stop_session(agent_name=name, session_id=pinned.agent_session_id)
    assert project.agents.get_session(agent_name=name, session_id=pinned.agent_session_id).status == "idle"
    assert [c for c in session_containers(name)
            if c.labels[f"{DOCKYARD_LABEL}.session"] == pinned.agent_session_id] == []
    project.agents.delete_session(agent_name=name, session_id=pinned.agent_session_id)
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        project.agents.get_session(agent_name=name, session_id=pinned.agent_session_id)


def test_live_sessions_block_a_delete_unless_forced(project: AIProjectClient, image: str) -> None:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    name = deploy(project, image)
    answer = project.get_openai_client(agent_name=name).responses.with_raw_response.create(input="keep me busy")
    session = answer.headers["x-agent-session-id"]
    with pytest.raises(HttpResponseError) as caught:
        project.agents.delete_version(agent_name=name, agent_version="1")
    assert caught.value.status_code == 409 and caught.value.error.code == "ActiveSessionsExist"
    with pytest.raises(HttpResponseError):
        project.agents.delete(agent_name=name)
    assert project.agents.delete(agent_name=name, force=True).deleted is True
    with pytest.raises(ResourceNotFoundError):
        project.agents.get(agent_name=name)
    deadline = time.monotonic() + 30
    while session_containers(name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_containers(name) == [], session


@pytest.mark.docker_too
def test_invocations_are_relayed_streaming_included(project: AIProjectClient, server: DockyardProcess,
                                                   image: str) -> None:
    name = deploy(project, image, env={"ECHO_PROTOCOL": "invocations", "ECHO_WORD_DELAY_SECONDS": "0.3"},
                  protocol="invocations")
    env = server.env()
    verify = ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])
    token = httpx.get(env["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"},
                      headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]}, verify=verify).json()["access_token"]
    url = f"{server.endpoint}/agents/{name}/endpoint/protocols/invocations"
    with httpx.Client(verify=verify, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        first = http.post(url, params={"api-version": "v1"}, json={"message": "hello invocations"})
        assert first.status_code == 200, first.text
        session = first.headers["x-agent-session-id"]
        assert first.json() == {"echo": "hello invocations", "session": session}
        again = http.post(url, params={"api-version": "v1", "agent_session_id": session}, json={"message": "again"})
        assert again.json() == {"echo": "again", "session": session}

        arrivals: list[float] = []
        with http.stream("POST", url, params={"api-version": "v1", "agent_session_id": session},
                         json={"message": "one two three", "stream": True}) as streamed:
            assert streamed.headers["content-type"].startswith("text/event-stream")
            for line in streamed.iter_lines():
                if line.startswith("event: word"):
                    arrivals.append(time.monotonic())
        assert len(arrivals) == 3 and arrivals[-1] - arrivals[0] > 0.45  # relayed as emitted, 0.3 s apart
    assert len([c for c in session_containers(name) if c.labels[f"{DOCKYARD_LABEL}.session"] == session]) == 1


@pytest.mark.docker_too
def test_a_sandbox_killed_mid_stream_ends_the_stream_with_an_error_event(project: AIProjectClient, agent: str,
                                                                          server: DockyardProcess) -> None:
    """Before, the client saw a broken chunked read and no event saying why (issue 13)."""
    session = project.agents.create_session(agent_name=agent, version_indicator=VersionRefIndicator(agent_version="1")
                                            ).agent_session_id
    url = f"{server.endpoint}/agents/{agent}/endpoint/protocols/openai/responses"
    words = " ".join(f"w{i}" for i in range(40))  # 40 words, 0.3 s apart: 12 s of stream
    events: list[dict[str, Any]] = []
    with httpx.Client(verify=tls_context(server), timeout=60) as http, http.stream(
            "POST", url, params={"api-version": "v1"}, headers={"Authorization": f"Bearer {bearer_token(server)}"},
            json={"input": words, "stream": True, "agent_session_id": session}) as streamed:
        assert streamed.status_code == 200
        killed = False
        for line in streamed.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(json.loads(line[len("data: "):]))
            if events[-1].get("type") == "response.output_text.delta" and not killed:
                mine = [c for c in session_containers(agent) if c.labels[f"{DOCKYARD_LABEL}.session"] == session]
                assert len(mine) == 1
                mine[0].kill()
                killed = True
    assert killed
    assert events[-1]["type"] == "error" and events[-1]["code"] == "AgentStreamInterrupted", events[-3:]
    assert "incomplete" in events[-1]["message"]
    assert not any(e.get("type") == "response.completed" for e in events)
