"""The Invocations protocol by id and over its WebSocket, through dockyard to the echo agent on podman.

The echo agent (on Microsoft's invocations adapter 1.2.0) keeps its invocations in memory and names
its container (the hostname) in every answer, so these tests see which sandbox served each call.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest
from azure.ai.projects import AIProjectClient
from support.engine import DOCKYARD_LABEL
from support.hosted import bearer_token, deploy, tls_context
from support.process import DockyardProcess
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


@pytest.fixture(scope="module")
def agent(project: AIProjectClient, image: str) -> str:
    return deploy(project, image, protocol="invocations", env={"ECHO_PROTOCOL": "invocations"})


@pytest.fixture(scope="module")
def http(server: DockyardProcess) -> Iterator[httpx.Client]:
    with httpx.Client(verify=tls_context(server), headers={"Authorization": f"Bearer {bearer_token(server)}"},
                      timeout=120, params={"api-version": "v1"}) as client:
        yield client


def invocations_url(server: DockyardProcess, agent: str) -> str:
    return f"{server.endpoint}/agents/{agent}/endpoint/protocols/invocations"


def container_of(session: str) -> str:
    """The hostname (short id) of the session's container, as the agent reports it."""
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    found = [c for c in client.containers.list(filters={"label": f"{DOCKYARD_LABEL}.session={session}"})
             if c.labels.get(f"{DOCKYARD_LABEL}.session") == session]
    assert len(found) == 1, found
    return str(found[0].attrs["Config"]["Hostname"])


def test_get_and_cancel_reach_the_sandbox_that_ran_the_invocation(server: DockyardProcess, agent: str,
                                                                   http: httpx.Client) -> None:
    url = invocations_url(server, agent)
    started = http.post(url, params={"agent_session_id": "inv-session-one"},
                        json={"message": "slow work", "background": True})
    assert started.status_code == 202, started.text
    invocation = started.headers["x-agent-invocation-id"]
    assert started.headers["x-agent-session-id"] == "inv-session-one"
    body: dict[str, Any] = started.json()
    assert body["id"] == invocation and body["status"] == "in_progress"
    assert body["container"] == container_of("inv-session-one")

    # Another session's sandbox is busy too, so "the same container" is a real choice.
    other = http.post(url, params={"agent_session_id": "inv-session-two"}, json={"message": "elsewhere"})
    assert other.status_code == 200 and other.headers["x-agent-session-id"] == "inv-session-two", other.text

    got = http.get(f"{url}/{invocation}")  # no session named: dockyard knows where it ran
    assert got.status_code == 200, got.text
    assert got.headers["x-agent-session-id"] == "inv-session-one"
    assert got.json() == body

    cancelled = http.post(f"{url}/{invocation}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["container"] == body["container"]
    assert http.get(f"{url}/{invocation}").json()["status"] == "cancelled"


def test_a_finished_invocation_can_be_fetched_by_id(server: DockyardProcess, agent: str, http: httpx.Client) -> None:
    url = invocations_url(server, agent)
    answered = http.post(url, json={"message": "quick"})
    assert answered.status_code == 200 and answered.json()["echo"] == "quick"
    invocation, session = answered.headers["x-agent-invocation-id"], answered.headers["x-agent-session-id"]
    fetched = http.get(f"{url}/{invocation}")
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() | {"container": None} == {"id": invocation, "status": "completed", "echo": "quick",
                                                    "session": session, "container": None}


def test_unknown_or_foreign_invocations_are_404(server: DockyardProcess, project: AIProjectClient, image: str,
                                               agent: str, http: httpx.Client) -> None:
    url = invocations_url(server, agent)
    missing = http.get(f"{url}/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "InvocationNotFound"
    assert http.post(f"{url}/no-such-invocation/cancel").status_code == 404
    assert http.get(f"{url}/bad%20id").status_code == 404

    invocation = http.post(url, json={"message": "mine"}).headers["x-agent-invocation-id"]
    someone_else = deploy(project, image, protocol="invocations", env={"ECHO_PROTOCOL": "invocations"})
    foreign = http.get(f"{invocations_url(server, someone_else)}/{invocation}")
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "InvocationNotFound"


def test_the_agents_openapi_document_is_relayed(server: DockyardProcess, agent: str, http: httpx.Client) -> None:
    document = http.get(f"{invocations_url(server, agent)}/docs/openapi.json")
    assert document.status_code == 200, document.text
    assert document.json()["info"]["title"] == "echo-agent"


def ws_url(server: DockyardProcess, agent: str, **query: str) -> str:
    base = f"{server.endpoint.replace('https://', 'wss://', 1)}/agents/{agent}/endpoint/protocols/invocations_ws"
    return base + "?" + "&".join(f"{k}={v}" for k, v in {"api-version": "v1", **query}.items())


def test_websocket_is_relayed_both_ways_in_the_session(server: DockyardProcess, agent: str,
                                                       http: httpx.Client) -> None:
    # The same session over HTTP first, so the WebSocket must land in that very container.
    http.post(invocations_url(server, agent), params={"agent_session_id": "ws-session"}, json={"message": "hi"})
    container = container_of("ws-session")

    async def talk() -> tuple[list[dict[str, Any]], str | None]:
        async with connect(ws_url(server, agent, agent_session_id="ws-session"), ssl=tls_context(server),
                           additional_headers={"Authorization": f"Bearer {bearer_token(server)}"}) as socket:
            replies = []
            for text in ("one", "two", "three"):
                await socket.send(text)
                replies.append(json.loads(await socket.recv()))
            assert socket.response is not None
            return replies, socket.response.headers.get("x-agent-session-id")

    replies, session_header = asyncio.run(talk())
    assert [r["echo"] for r in replies] == ["one", "two", "three"]
    assert {r["container"] for r in replies} == {container}
    assert {r["session"] for r in replies} == {"ws-session"}
    assert session_header == "ws-session"


def test_websocket_needs_a_valid_token(server: DockyardProcess, agent: str) -> None:
    async def attempt(headers: dict[str, str]) -> int:
        try:
            async with connect(ws_url(server, agent), ssl=tls_context(server), additional_headers=headers):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    assert asyncio.run(attempt({})) == 401
    assert asyncio.run(attempt({"Authorization": "Bearer not-a-token"})) == 401
    assert asyncio.run(attempt({"Authorization": f"Bearer {bearer_token(server)}"})) == 101


def test_websocket_to_an_unknown_agent_is_404(server: DockyardProcess) -> None:
    async def attempt() -> int:
        try:
            async with connect(ws_url(server, "no-such-agent"), ssl=tls_context(server),
                               additional_headers={"Authorization": f"Bearer {bearer_token(server)}"}):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    assert asyncio.run(attempt()) == 404


def test_a_streamed_invocation_is_named_and_relayed_as_emitted(server: DockyardProcess, agent: str,
                                                                http: httpx.Client) -> None:
    with http.stream("POST", invocations_url(server, agent), json={"message": "a b c", "stream": True}) as streamed:
        assert streamed.headers["content-type"].startswith("text/event-stream")
        invocation = streamed.headers["x-agent-invocation-id"]
        words = [json.loads(line[len("data: "):])["word"] for line in streamed.iter_lines()
                 if line.startswith("data: ") and "word" in line]
    assert words == ["a", "b", "c"]
    assert http.get(f"{invocations_url(server, agent)}/{invocation}").json()["status"] == "completed"
