"""The project's response storage API against a live dockyard, called exactly as Microsoft's adapter calls it.

No sandbox is needed to show the API's rules: the identity endpoint gives any version's agent token (it is
stateless, tests/e2e/engine/test_ownership_engine.py does the same) and call ids are minted as the gateway
mints them. tests/e2e/engine/test_adapter_response_storage.py shows the real adapter using it.
"""

from __future__ import annotations

import base64
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from azure.ai.projects import AIProjectClient
from azure.identity import DefaultAzureCredential
from support.process import DockyardProcess, dockyard_command

from dockyard.home import Home
from dockyard.identity.agents import agent_identity_header
from dockyard.identity.call_ids import CallScope, mint_call_id
from dockyard.identity.ownership import OPERATOR_SUBJECT, Owner

pytestmark = pytest.mark.e2e

AGENT_UID, OTHER_UID = "a" * 32, "b" * 32
V1 = {"api-version": "v1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    dockyard = DockyardProcess(home=tmp_path_factory.mktemp("home"), runtime="process").start()
    yield dockyard
    if dockyard.process and dockyard.process.poll() is None:
        dockyard.stop()
    subprocess.run(dockyard_command("down", "--home", str(dockyard.home)), capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def env(server: DockyardProcess) -> dict[str, str]:
    """`dockyard env`'s exports (a subprocess each time: read once)."""
    return server.env()


def tls(env: dict[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])


def token(env: dict[str, str], identity_header: str | None = None, **params: str) -> str:
    answer = httpx.get(env["IDENTITY_ENDPOINT"], verify=tls(env),
                       params={"api-version": "2019-08-01", "resource": "https://ai.azure.com", **params},
                       headers={"X-IDENTITY-HEADER": identity_header or env["IDENTITY_HEADER"]})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


class Sandbox:
    """What the adapter inside one version's sandbox sends: its token, and the call id of the request it serves."""

    def __init__(self, server: DockyardProcess, env: dict[str, str], uid: str, agent: str) -> None:
        self.secret = Home(server.home).identity_secret()
        self.uid, self.agent = uid, agent
        agent_token = token(env, agent_identity_header(self.secret, uid))
        self.http = httpx.Client(base_url=f"{server.endpoint}/storage/", verify=tls(env),
                                 headers={"Authorization": f"Bearer {agent_token}"})

    def call_id(self, owner: Owner) -> str:
        return mint_call_id(self.secret, CallScope(self.uid, "default", self.agent, owner))

    def send(self, method: str, path: str, owner: Owner, **kwargs: Any) -> httpx.Response:
        headers = {"x-agent-foundry-call-id": self.call_id(owner), **kwargs.pop("headers", {})}
        return self.http.request(method, path, params={**V1, **kwargs.pop("params", {})}, headers=headers, **kwargs)


ALICE, BOB = Owner("user:alice"), Owner("user:bob")
OPERATOR = Owner(OPERATOR_SUBJECT)


def message(item_id: str, text: str, role: str = "user") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": role, "status": "completed",
            "content": [{"type": "input_text" if role == "user" else "output_text", "text": text}]}


def response(response_id: str, *output: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    return {"id": response_id, "object": "response", "status": status, "output": list(output), "background": False,
            "metadata": {"_internal_metadata": {"x": 1}},
            "internal_metadata": {"kept": "by the adapter, never shown"}}


def test_one_turn_and_the_next_as_the_adapter_stores_them(server: DockyardProcess, env: dict[str, str]) -> None:
    sandbox = Sandbox(server, env, AGENT_UID, "helper")
    first, second = "caresp_1" + "0" * 50, "caresp_2" + "0" * 50
    created = sandbox.send("POST", "responses", ALICE, json={
        "response": response(first, status="in_progress"), "input_items": [message("msg_in1", "hello")],
        "history_item_ids": []})
    assert created.status_code == 201, created.text
    again = sandbox.send("POST", "responses", ALICE, json={"response": response(first), "input_items": [],
                                                            "history_item_ids": []})
    assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]
    final = response(first, message("msg_out1", "echo: hello", "assistant"))
    assert sandbox.send("POST", f"responses/{first}", ALICE, json=final).status_code == 200
    assert sandbox.send("GET", f"responses/{first}", ALICE).json() == final

    history = sandbox.send("GET", "history/item_ids", ALICE, params={"previous_response_id": first, "limit": "100"})
    assert history.json() == ["msg_in1", "msg_out1"]
    assert sandbox.send("POST", "responses", ALICE, json={
        "response": response(second), "input_items": [message("msg_in2", "again")],
        "history_item_ids": history.json()}).status_code == 201
    items = sandbox.send("GET", f"responses/{second}/input_items", ALICE, params={"limit": "100", "order": "asc"})
    assert [item["id"] for item in items.json()["data"]] == ["msg_in1", "msg_out1", "msg_in2"]
    batch = sandbox.send("POST", "items/batch/retrieve", ALICE, json={"item_ids": ["msg_out1", "msg_gone", "msg_in2"]})
    assert batch.json() == [message("msg_out1", "echo: hello", "assistant"), None, message("msg_in2", "again")]

    assert sandbox.send("DELETE", f"responses/{second}", ALICE).json()["deleted"] is True
    assert sandbox.send("GET", f"responses/{second}", ALICE).status_code == 404
    assert sandbox.send("GET", f"responses/{second}/input_items", ALICE).status_code == 404


def test_another_caller_or_agent_meets_what_does_not_exist(server: DockyardProcess, env: dict[str, str]) -> None:
    sandbox, other = Sandbox(server, env, AGENT_UID, "helper"), Sandbox(server, env, OTHER_UID, "other")
    kept = "caresp_3" + "0" * 50
    assert sandbox.send("POST", "responses", ALICE, json={
        "response": {**response(kept), "conversation": {"id": "conv_alice"}},
        "input_items": [message("msg_secret", "alice's")], "history_item_ids": []}).status_code == 201
    # Bob through the same agent, and Alice through another agent (whose sandbox mints its own call ids).
    for client, owner in ((sandbox, BOB), (other, ALICE)):
        missing = client.send("GET", f"responses/{kept}", owner)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResponseNotFound"
        assert client.send("GET", "history/item_ids", owner,
                           params={"previous_response_id": kept, "limit": "10"}).status_code == 404
        assert client.send("GET", "history/item_ids", owner, params={"conversation_id": "conv_alice",
                                                                     "limit": "10"}).json() == []
        assert client.send("POST", "items/batch/retrieve", owner, json={"item_ids": ["msg_secret"]}).json() == [None]
        assert client.send("DELETE", f"responses/{kept}", owner).status_code == 404
    assert sandbox.send("GET", "history/item_ids", ALICE, params={"conversation_id": "conv_alice",
                                                                  "limit": "10"}).json() == ["msg_secret"]


def test_only_a_sandbox_with_a_call_id_it_was_sent_gets_in(server: DockyardProcess, env: dict[str, str]) -> None:
    sandbox, other = Sandbox(server, env, AGENT_UID, "helper"), Sandbox(server, env, OTHER_UID, "other")
    url = f"{server.endpoint}/storage/responses/caresp_x"
    verify = tls(env)
    call_id = {"x-agent-foundry-call-id": sandbox.call_id(ALICE)}
    assert httpx.get(url, params=V1, headers=call_id, verify=verify).json()["error"]["code"] == "MissingToken"
    person = httpx.get(url, params=V1, verify=verify,
                       headers={**call_id, "Authorization": f"Bearer {token(env)}"})
    assert (person.status_code, person.json()["error"]["code"]) == (403, "AgentIdentityRequired")
    cases = [
        (sandbox.http.get("responses/caresp_x", params=V1), 400, "CallIdRequired"),
        (sandbox.http.get("responses/caresp_x", params={"api-version": "2025-11-15-preview"}, headers=call_id), 400,
         "UnsupportedApiVersion"),
        (sandbox.http.get("responses/caresp_x", params=V1,
                          headers={"x-agent-foundry-call-id": "0123456789abcdef0123456789abcdef"}),
         401, "InvalidCallId"),
        # Another version's sandbox replaying this one's call id.
        (other.http.get("responses/caresp_x", params=V1, headers=call_id), 403, "CallIdNotForThisAgent"),
    ]
    for answer, status, code in cases:
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text


def test_the_gateway_answers_from_storage_when_the_sandbox_is_gone(server: DockyardProcess, env: dict[str, str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored response no live session holds (its session deleted, here never made) is the caller's to read,
    list and delete through the openai client; anyone else gets the 404 of a missing response."""
    sandbox = Sandbox(server, env, AGENT_UID, "helper")
    gone = "caresp_4" + "0" * 50
    sandbox.send("POST", "responses", OPERATOR, json={
        "response": response(gone, message("msg_out4", "stored answer", "assistant")),
        "input_items": [message("msg_in4", "stored question")], "history_item_ids": []})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    operator = AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential()).get_openai_client()
    got = operator.responses.retrieve(gone)
    assert got.output_text == "stored answer" and got.metadata is None
    assert "internal_metadata" not in got.model_dump()
    assert [item.id for item in operator.responses.input_items.list(gone)] == ["msg_in4"]
    bob = AIProjectClient(endpoint=server.endpoint,
                          credential=DefaultAzureCredential(managed_identity_client_id="bob")).get_openai_client()
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(gone)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(gone)
    with pytest.raises(openai.BadRequestError):
        operator.responses.cancel(gone)  # as the adapter answers for a finished synchronous response
    operator.responses.delete(gone)
    with pytest.raises(openai.NotFoundError):
        operator.responses.retrieve(gone)


def b64(text: str) -> str:
    """A store name or item key as FoundryStateStore puts it in the path."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_state_stores_as_agent_frameworks_hosting_uses_them(server: DockyardProcess, env: dict[str, str]) -> None:
    """FoundryStateStore's calls (azure-ai-agentserver-core 2.3): get-or-create, items with ETags, key listings;
    the real client is shown by tests/e2e/engine/test_model_agents.py."""
    sandbox = Sandbox(server, env, AGENT_UID, "helper")
    store = f"state_stores/{b64('agent_sessions/v2/abc')}"
    assert sandbox.send("GET", store, ALICE).json()["error"]["code"] == "StateStoreNotFound"
    made = sandbox.send("POST", "state_stores", ALICE, json={
        "name": "agent_sessions/v2/abc", "user_isolation": True, "item_ttl_seconds": 3600})
    assert made.status_code == 201 and made.json()["name"] == "agent_sessions/v2/abc", made.text
    assert sandbox.send("POST", "state_stores", BOB, json={"name": "agent_sessions/v2/abc"}).status_code == 409

    item = f"{store}/items/{b64('session-1')}"
    written = sandbox.send("PUT", item, ALICE, json={"value": {"turns": 1}, "tags": {"kind": "session"}})
    assert written.status_code == 200 and "value" not in written.json()
    etag = written.json()["etag"]
    assert sandbox.send("GET", item, ALICE).json()["value"] == {"turns": 1}
    assert sandbox.send("GET", item, BOB).status_code == 404  # user isolation: Bob's partition is empty
    assert sandbox.send("PUT", item, ALICE, json={"value": {"turns": 2}}, headers={"If-Match": etag}).status_code == 200
    stale = sandbox.send("PUT", item, ALICE, json={"value": {"turns": 3}}, headers={"If-Match": etag})
    assert stale.status_code == 412 and stale.headers["etag"] == sandbox.send("GET", item, ALICE).json()["etag"]
    sandbox.send("POST", f"{store}/items", ALICE, json={"key": "session-2", "value": {}, "tags": {"kind": "other"}})
    keys = sandbox.send("GET", f"{store}/items:keys", ALICE, params={"tags.kind": "other", "order": "asc"})
    assert [entry["key"] for entry in keys.json()["data"]] == ["session-2"] and keys.json()["has_more"] is False
    listed = sandbox.send("GET", f"{store}/items:keys", ALICE, params={"limit": "1"}).json()
    assert listed["has_more"] is True and listed["first_id"] == listed["last_id"]

    other = Sandbox(server, env, OTHER_UID, "other")  # another agent has no such store
    assert other.send("GET", store, ALICE).status_code == 404
    assert sandbox.send("DELETE", store, BOB).json()["deleted"] is True
    assert sandbox.send("GET", item, ALICE).json()["error"]["code"] == "StateStoreNotFound"


def test_state_stores_refuse_what_they_cannot_serve(server: DockyardProcess, env: dict[str, str]) -> None:
    sandbox = Sandbox(server, env, AGENT_UID, "helper")
    sandbox.send("POST", "state_stores", ALICE, json={"name": "approvals", "user_isolation": True})
    cases = [
        (sandbox.send("GET", "state_stores/!!!", ALICE), 400, "InvalidPathSegment"),
        (sandbox.send("POST", "state_stores", ALICE, json={"name": "x", "item_ttl_seconds": 0}), 400,
         "InvalidRequestBody"),
        (sandbox.send("PUT", f"state_stores/{b64('approvals')}/items/{b64('k')}", ALICE, json={"value": [1]}), 400,
         "InvalidRequestBody"),
        (sandbox.send("GET", "state_stores", ALICE, params={"limit": "500"}), 400, "InvalidPaging"),
        # Without a call id the items are the agent's own, but this token's version does not exist.
        (sandbox.http.get("state_stores", params=V1), 403, "AgentIdentityNotForThisProject"),
        (httpx.get(f"{server.endpoint}/storage/state_stores", params=V1, verify=tls(env),
                   headers={"Authorization": f"Bearer {token(env)}"}), 403, "AgentIdentityRequired"),
    ]
    for answer, status, code in cases:
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text
    # A user the agent delegates for (x-ms-user-id) is kept apart from the callers dockyard vouches for.
    item = f"state_stores/{b64('approvals')}/items/{b64('pending')}"
    sandbox.send("PUT", item, ALICE, json={"value": {"for": "alice"}})
    delegated = sandbox.send("GET", item, ALICE, headers={"x-ms-user-id": "user:alice"})
    assert delegated.status_code == 404
