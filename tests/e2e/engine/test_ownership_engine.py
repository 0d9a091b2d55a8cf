"""Each caller sees only its own (issue 13 §1), against a real dockyard running real echo-agent sandboxes.

Callers: two named users (`client_id` at dockyard's identity endpoint, as `DefaultAzureCredential(
managed_identity_client_id=...)` asks for a user-assigned identity), two agents' own identities, the
operator (`dockyard env`), and delegated end users (`x-ms-user-identity`) through the real
azure-ai-projects and openai clients. Every operation on what another caller made must answer exactly as
the same operation on an id that does not exist.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import VersionRefIndicator
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from support.hosted import bearer_token, deploy, tls_context
from support.process import DockyardProcess

from dockyard.home import Home
from dockyard.identity.agents import agent_identity_header

pytestmark = pytest.mark.engine

V1 = {"api-version": "v1"}


@dataclass
class Caller:
    name: str
    http: httpx.Client


def _client(server: DockyardProcess, name: str, token: str) -> Caller:
    return Caller(name, httpx.Client(base_url=server.endpoint, verify=tls_context(server), timeout=180,
                                     headers={"Authorization": f"Bearer {token}"}))


@pytest.fixture(scope="module")
def agents(project: AIProjectClient, image: str) -> tuple[str, str]:
    """Two Responses agents: the one everybody calls, and another one for the cross-agent URL."""
    return deploy(project, image), deploy(project, image)


@pytest.fixture(scope="module")
def invocations_agent(project: AIProjectClient, image: str) -> str:
    return deploy(project, image, protocol="invocations", env={"ECHO_PROTOCOL": "invocations"})


@pytest.fixture(scope="module")
def callers(server: DockyardProcess) -> Iterator[dict[str, Caller]]:
    secret = Home(server.home).identity_secret()
    made = {
        "operator": _client(server, "operator", bearer_token(server)),
        "alice": _client(server, "alice", bearer_token(server, client_id="alice")),
        "bob": _client(server, "bob", bearer_token(server, client_id="bob")),
        # Two agents' own identities, as their containers get them (the identity endpoint is stateless:
        # any version uid with the right HMAC is that version's identity).
        "agent-a": _client(server, "agent-a",
                              bearer_token(server, identity_header=agent_identity_header(secret, "a" * 32))),
        "agent-b": _client(server, "agent-b",
                              bearer_token(server, identity_header=agent_identity_header(secret, "b" * 32))),
    }
    yield made
    for caller in made.values():
        caller.http.close()


@dataclass
class Made:
    """What one caller made on the agent: a session, a response in it, a file in its home."""

    session: str
    response: str


def _make(caller: Caller, agent: str) -> Made:
    created = caller.http.post(f"/agents/{agent}/endpoint/sessions", params=V1,
                               json={"version_indicator": {"type": "version_ref", "agent_version": "1"}})
    assert created.status_code == 201, created.text
    session = created.json()["agent_session_id"]
    answered = caller.http.post(f"/agents/{agent}/endpoint/protocols/openai/responses", params=V1,
                                json={"input": f"hello from {caller.name}", "agent_session_id": session})
    assert answered.status_code == 200, answered.text
    assert answered.json()["output"][0]["content"][0]["text"] == f"echo: hello from {caller.name}"
    uploaded = caller.http.put(f"/agents/{agent}/endpoint/sessions/{session}/files/content",
                               params={**V1, "path": "notes.txt"}, content=b"private")
    assert uploaded.status_code == 201, uploaded.text
    return Made(session=session, response=answered.json()["id"])


def _attempts(agent: str, made: Made) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation a caller could try on a session and a response: (method, path, request kwargs)."""
    s, r = made.session, made.response
    base = f"/agents/{agent}/endpoint"
    return [
        ("GET", f"{base}/sessions/{s}", {"params": V1}),
        ("POST", f"{base}/sessions/{s}:stop", {"params": V1}),
        ("DELETE", f"{base}/sessions/{s}", {"params": V1}),
        ("GET", f"{base}/sessions/{s}/files", {"params": V1}),
        ("GET", f"{base}/sessions/{s}/files/content", {"params": {**V1, "path": "notes.txt"}}),
        ("PUT", f"{base}/sessions/{s}/files/content", {"params": {**V1, "path": "planted.txt"}, "content": b"x"}),
        ("DELETE", f"{base}/sessions/{s}/files", {"params": {**V1, "path": "notes.txt"}}),
        ("POST", f"{base}/protocols/openai/responses", {"params": V1, "json": {"input": "hi", "agent_session_id": s}}),
        ("POST", f"{base}/protocols/openai/responses", {"params": V1,
                                                         "json": {"input": "go on", "previous_response_id": r}}),
        ("GET", f"{base}/protocols/openai/responses/{r}", {"params": V1}),
        ("GET", f"{base}/protocols/openai/responses/{r}/input_items", {"params": V1}),
        ("POST", f"{base}/protocols/openai/responses/{r}/cancel", {"params": V1}),
        ("DELETE", f"{base}/protocols/openai/responses/{r}", {"params": V1}),
        ("GET", f"/openai/v1/responses/{r}", {}),
        ("DELETE", f"/openai/v1/responses/{r}", {}),
        ("POST", "/openai/v1/responses", {"json": {"input": "go on", "previous_response_id": r,
                                                   "agent_reference": {"type": "agent_reference", "name": agent}}}),
    ]


def _missing() -> Made:
    return Made(session=uuid.uuid4().hex, response=f"caresp_{uuid.uuid4().hex[:16]}00{uuid.uuid4().hex}")


def _error(answer: httpx.Response, made: Made) -> tuple[int, dict[str, Any]]:
    """The answer with the ids in its message replaced, so answers about two ids compare."""
    body = answer.json()
    error = dict(body["error"])
    error["message"] = error["message"].replace(made.session, "<session>").replace(made.response, "<response>")
    return answer.status_code, error


def _assert_all_missing(caller: Caller, agent: str, theirs: Made) -> None:
    missing = _missing()
    for (method, path, kwargs), (_, missing_path, missing_kwargs) in zip(
            _attempts(agent, theirs), _attempts(agent, missing), strict=True):
        answer = caller.http.request(method, path, **kwargs)
        if (method, path) == ("POST", f"/agents/{agent}/endpoint/protocols/openai/responses") and \
                "agent_session_id" in kwargs["json"]:
            # A session id that does not exist is made for the caller: another's must answer 404 instead.
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "SessionNotFound", answer.text
            continue
        reference = caller.http.request(method, missing_path, **missing_kwargs)
        assert answer.status_code == 404, f"{caller.name} {method} {path}: {answer.status_code} {answer.text}"
        assert _error(answer, theirs) == _error(reference, missing), f"{caller.name} {method} {path}"


@pytest.mark.parametrize(("owner", "other"), [("alice", "bob"), ("bob", "alice"), ("agent-a", "agent-b"),
                                              ("agent-b", "agent-a"), ("alice", "agent-a"), ("agent-b", "bob")])
def test_another_callers_sessions_responses_and_files_are_404(callers: dict[str, Caller], agents: tuple[str, str],
                                                               owner: str, other: str) -> None:
    agent = agents[0]
    theirs = _make(callers[owner], agent)
    listed = callers[other].http.get(f"/agents/{agent}/endpoint/sessions", params=V1)
    assert listed.status_code == 200
    assert theirs.session not in {s["agent_session_id"] for s in listed.json()["data"]}
    _assert_all_missing(callers[other], agent, theirs)
    # Nothing of the owner's was touched: the session, the response and the file are all still there.
    mine = callers[owner].http
    assert mine.get(f"/agents/{agent}/endpoint/sessions/{theirs.session}", params=V1).status_code == 200
    assert mine.get(f"/openai/v1/responses/{theirs.response}").json()["id"] == theirs.response
    kept = mine.get(f"/agents/{agent}/endpoint/sessions/{theirs.session}/files/content",
                    params={**V1, "path": "notes.txt"})
    assert kept.content == b"private"
    names = {e["name"] for e in mine.get(f"/agents/{agent}/endpoint/sessions/{theirs.session}/files",
                                         params=V1).json()["entries"]}
    assert "planted.txt" not in names
    # And the owner may continue its own chain.
    go_on = mine.post(f"/agents/{agent}/endpoint/protocols/openai/responses", params=V1,
                      json={"input": "go on", "previous_response_id": theirs.response,
                            "agent_session_id": theirs.session})
    assert go_on.status_code == 200, go_on.text


def test_a_response_resolves_only_through_its_own_agents_url(callers: dict[str, Caller],
                                                             agents: tuple[str, str]) -> None:
    mine, elsewhere = agents
    alice = callers["alice"].http
    made = _make(callers["alice"], mine)
    missing = _missing()
    for suffix, method in (("", "GET"), ("/input_items", "GET"), ("/cancel", "POST"), ("", "DELETE")):
        through_b = alice.request(method, f"/agents/{elsewhere}/endpoint/protocols/openai/responses/"
                                  f"{made.response}{suffix}", params=V1)
        reference = alice.request(method, f"/agents/{elsewhere}/endpoint/protocols/openai/responses/"
                                  f"{missing.response}{suffix}", params=V1)
        assert through_b.status_code == 404, through_b.text
        assert _error(through_b, made) == _error(reference, missing)
    continued = alice.post(f"/agents/{elsewhere}/endpoint/protocols/openai/responses", params=V1,
                           json={"input": "go on", "previous_response_id": made.response})
    assert continued.status_code == 404 and continued.json()["error"]["code"] == "ResponseNotFound"
    # Its own agent's URL, and the project's (which names no agent), still find it.
    assert alice.get(f"/agents/{mine}/endpoint/protocols/openai/responses/{made.response}",
                     params=V1).status_code == 200
    assert alice.get(f"/openai/v1/responses/{made.response}").status_code == 200


def test_an_agents_identity_invokes_other_agents_but_sees_only_what_it_made(
        callers: dict[str, Caller], agents: tuple[str, str]) -> None:
    agent_a = callers["agent-a"].http
    # Agent-to-agent: no named session, so the caller's own shared session of the version.
    first = agent_a.post(f"/agents/{agents[0]}/endpoint/protocols/openai/responses", params=V1, json={"input": "a2a"})
    assert first.status_code == 200, first.text
    alices = callers["alice"].http.post(f"/agents/{agents[0]}/endpoint/protocols/openai/responses", params=V1,
                                        json={"input": "mine"})
    assert alices.status_code == 200
    assert first.json()["agent_session_id"] != alices.json()["agent_session_id"]
    assert agent_a.get(f"/openai/v1/responses/{first.json()['id']}").status_code == 200
    assert agent_a.get(f"/openai/v1/responses/{alices.json()['id']}").status_code == 404
    # Managing agents stays refused to an agent's identity.
    assert agent_a.get("/agents", params=V1).status_code == 403


def test_the_operator_lists_stops_and_deletes_any_session_but_reads_no_content(
        callers: dict[str, Caller], agents: tuple[str, str]) -> None:
    agent = agents[0]
    alices, bobs = _make(callers["alice"], agent), _make(callers["bob"], agent)
    operator = callers["operator"].http
    listed = {s["agent_session_id"] for s in operator.get(f"/agents/{agent}/endpoint/sessions", params=V1)
              .json()["data"]}
    assert {alices.session, bobs.session} <= listed
    assert operator.get(f"/agents/{agent}/endpoint/sessions/{alices.session}", params=V1).status_code == 200
    # Content stays its owner's: response, input items, files; and the operator cannot continue the chain.
    assert operator.get(f"/openai/v1/responses/{alices.response}").status_code == 404
    assert operator.get(f"/openai/v1/responses/{alices.response}/input_items").status_code == 404
    assert operator.get(f"/agents/{agent}/endpoint/sessions/{alices.session}/files/content",
                        params={**V1, "path": "notes.txt"}).status_code == 404
    assert operator.post(f"/agents/{agent}/endpoint/protocols/openai/responses", params=V1,
                         json={"input": "x", "agent_session_id": alices.session}).status_code == 404
    # But it stops one and deletes the other.
    assert operator.post(f"/agents/{agent}/endpoint/sessions/{alices.session}:stop", params=V1).status_code == 204
    assert callers["alice"].http.get(f"/agents/{agent}/endpoint/sessions/{alices.session}",
                                     params=V1).json()["status"] == "idle"
    assert operator.delete(f"/agents/{agent}/endpoint/sessions/{bobs.session}", params=V1).status_code == 204
    assert callers["bob"].http.get(f"/agents/{agent}/endpoint/sessions/{bobs.session}",
                                   params=V1).status_code == 404


def test_invocations_are_their_callers(callers: dict[str, Caller], invocations_agent: str) -> None:
    url = f"/agents/{invocations_agent}/endpoint/protocols/invocations"
    alice, bob = callers["alice"].http, callers["bob"].http
    started = alice.post(url, params=V1, json={"message": "mine", "background": True})
    assert started.status_code == 202, started.text
    invocation, session = started.headers["x-agent-invocation-id"], started.headers["x-agent-session-id"]
    missing = str(uuid.uuid4())
    for suffix, method in (("", "GET"), ("/cancel", "POST")):
        theirs = bob.request(method, f"{url}/{invocation}{suffix}", params=V1)
        reference = bob.request(method, f"{url}/{missing}{suffix}", params=V1)
        assert theirs.status_code == 404, theirs.text
        assert theirs.json()["error"]["message"].replace(invocation, "<id>") == \
            reference.json()["error"]["message"].replace(missing, "<id>")
    assert bob.post(url, params={**V1, "agent_session_id": session}, json={"message": "in yours"}).status_code == 404
    assert alice.get(f"{url}/{invocation}", params=V1).json()["status"] == "in_progress"
    assert alice.post(f"{url}/{invocation}/cancel", params=V1).status_code == 200


@pytest.fixture(scope="module")
def alice_sdk(server: DockyardProcess) -> Iterator[AIProjectClient]:
    """The 2.x SDK as the named user alice: DefaultAzureCredential asking for a user-assigned identity."""
    saved = dict(os.environ)
    os.environ.update(server.env())
    try:
        credential = DefaultAzureCredential(managed_identity_client_id="alice")
        with AIProjectClient(endpoint=server.endpoint, credential=credential) as client:
            yield client
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_a_delegated_user_cannot_continue_another_users_chain(alice_sdk: AIProjectClient,
                                                              agents: tuple[str, str]) -> None:
    """Microsoft's sample_agent_user_identity_isolation.py, step for step, with the real clients."""
    user_1, user_2 = str(uuid.uuid4()), str(uuid.uuid4())
    with alice_sdk.get_openai_client(agent_name=agents[0]) as client:
        first = client.responses.create(input="1 + 1 = ?", extra_headers={"x-ms-user-identity": user_1})
        assert first.output_text == "echo: 1 + 1 = ?"
        with pytest.raises(openai.NotFoundError):
            client.responses.create(input="Add 10 to previous result", previous_response_id=first.id,
                                    extra_headers={"x-ms-user-identity": user_2})
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(first.id, extra_headers={"x-ms-user-identity": user_2})
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(first.id)  # alice herself, not delegating, is not user_1 either
        again = client.responses.create(input="Add 10 to previous result", previous_response_id=first.id,
                                        extra_headers={"x-ms-user-identity": user_1})
        assert again.output_text == "echo: Add 10 to previous result"
        assert client.responses.retrieve(first.id, extra_headers={"x-ms-user-identity": user_1}).id == first.id
        with pytest.raises(openai.BadRequestError):
            client.responses.create(input="x", extra_headers={"x-ms-user-identity": "no spaces allowed"})


def test_delegated_sessions_are_the_callers_delegated_side(alice_sdk: AIProjectClient, project: AIProjectClient,
                                                           agents: tuple[str, str]) -> None:
    """A session made for a delegated user is shared by the caller's delegated users (Foundry's session
    pools), and closed to the caller undelegated and to every other caller."""
    agent = agents[0]
    made = alice_sdk.agents.create_session(agent_name=agent, version_indicator=VersionRefIndicator(agent_version="1"),
                                           headers={"x-ms-user-identity": "user-1"})
    session = made.agent_session_id
    assert alice_sdk.agents.get_session(agent_name=agent, session_id=session,
                                        headers={"x-ms-user-identity": "user-2"}).agent_session_id == session
    with pytest.raises(ResourceNotFoundError):
        alice_sdk.agents.get_session(agent_name=agent, session_id=session)
    listed = {s.agent_session_id for s in alice_sdk.agents.list_sessions(agent_name=agent)}
    assert session not in listed
    delegated = {s.agent_session_id for s in alice_sdk.agents.list_sessions(
        agent_name=agent, headers={"x-ms-user-identity": "user-9"})}
    assert session in delegated
    # The operator sees and may delete it; the files inside stay closed to it.
    with pytest.raises(HttpResponseError) as refused:
        list(project.agents.list_session_files(agent_name=agent, session_id=session))
    assert refused.value.status_code == 404
    project.agents.delete_session(agent_name=agent, session_id=session)
    with pytest.raises(ResourceNotFoundError):
        alice_sdk.agents.get_session(agent_name=agent, session_id=session, headers={"x-ms-user-identity": "user-1"})
