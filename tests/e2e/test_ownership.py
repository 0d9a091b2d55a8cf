"""Ownership without a container engine: who a token is, the edge's checks, and stored owners.

tests/e2e/engine/test_ownership_engine.py shows every operation on running sandboxes; this module shows
what needs none: named users from the identity endpoint (the App Service protocol's `client_id`, which
`DefaultAzureCredential(managed_identity_client_id=...)` sends), `x-ms-user-identity` checked at the edge,
sessions answered as missing to another caller, the sandbox's `x-agent-user-id`, and rows stored before
owners were recorded staying the operator's.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import jwt
import pytest
from alembic import command
from alembic.config import Config
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import CodeConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.identity import DefaultAzureCredential
from sqlalchemy import text
from starlette.requests import Request
from support.process import DockyardProcess, dockyard_command

from dockyard.api.dependencies import caller_of
from dockyard.api.forwarding import platform_headers
from dockyard.domain.sessions import Session, SessionStatus
from dockyard.home import Home
from dockyard.identity.agents import agent_identity_header
from dockyard.identity.ownership import Owner, may_enter, may_follow, may_manage, owner_of
from dockyard.identity.tokens import Principal
from dockyard.store import database
from dockyard.store.database import migrate, open_engine, sqlite_url
from dockyard.store.sessions import SessionStore

pytestmark = pytest.mark.e2e

# The standard-library agent; `/header x-agent-user-id` answers with the header Microsoft's adapter partitions
# a user's responses by.
USER_AGENT = (Path(__file__).parents[1] / "fixtures" / "code" / "stdlib-agent" / "main.py").read_bytes()


@pytest.fixture(scope="module")
def dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    """A dockyard with the process runtime (and no engine): code-based sandboxes run as processes."""
    server = DockyardProcess(home=tmp_path_factory.mktemp("home"), runtime="process").start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()
    subprocess.run(dockyard_command("down", "--home", str(server.home)), capture_output=True, timeout=60)

V1 = {"api-version": "v1"}


@pytest.fixture(scope="module")
def tls(dockyard: DockyardProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(dockyard.home / "tls" / "ca.pem"))


def token(dockyard: DockyardProcess, tls: ssl.SSLContext, *, header: str | None = None,
          **params: str) -> httpx.Response:
    return httpx.get(f"{dockyard.url}/msi/token", verify=tls,
                     params={"api-version": "2019-08-01", "resource": "https://ai.azure.com", **params},
                     headers={"X-IDENTITY-HEADER": header or Home(dockyard.home).identity_secret()})


def claims(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    return jwt.decode(answer.json()["access_token"], options={"verify_signature": False})


@pytest.fixture(scope="module")
def http(dockyard: DockyardProcess, tls: ssl.SSLContext) -> Iterator[dict[str, httpx.Client]]:
    clients = {name: httpx.Client(base_url=dockyard.endpoint, verify=tls, timeout=60, headers={
        "Authorization": f"Bearer {token(dockyard, tls, **params).json()['access_token']}"})
        for name, params in (("operator", {}), ("alice", {"client_id": "alice"}), ("bob", {"client_id": "bob"}))}
    yield clients
    for client in clients.values():
        client.close()


def test_named_users_come_from_the_identity_endpoint(dockyard: DockyardProcess, tls: ssl.SSLContext) -> None:
    operator, alice = claims(token(dockyard, tls)), claims(token(dockyard, tls, client_id="alice"))
    assert operator["sub"] == "local-developer" and "dockyard_role" not in operator
    assert (alice["sub"], alice["dockyard_role"]) == ("user:alice", "user")
    assert alice["oid"] != operator["oid"] != claims(token(dockyard, tls, client_id="bob"))["oid"]
    refused = token(dockyard, tls, client_id="not a name")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "InvalidClientId"
    # An agent's identity is its own: it cannot ask to be a user.
    agent = agent_identity_header(Home(dockyard.home).identity_secret(), "c" * 32)
    assert token(dockyard, tls, header=agent, client_id="alice").status_code == 400
    assert claims(token(dockyard, tls, header=agent))["dockyard_role"] == "agent"


def test_default_azure_credential_asks_for_a_named_user(dockyard: DockyardProcess,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in dockyard.env().items():
        monkeypatch.setenv(name, value)
    for credential in (DefaultAzureCredential(managed_identity_client_id="alice"), None):
        if credential is None:  # AZURE_CLIENT_ID is what DefaultAzureCredential reads for it from the environment
            monkeypatch.setenv("AZURE_CLIENT_ID", "bob")
            credential = DefaultAzureCredential()
        with credential:
            got = jwt.decode(credential.get_token("https://ai.azure.com/.default").token,
                             options={"verify_signature": False})
        assert got["sub"] == ("user:alice" if "AZURE_CLIENT_ID" not in os.environ else "user:bob")


def test_a_bad_delegated_user_is_a_400(http: dict[str, httpx.Client]) -> None:
    for bad in ("", "has space", "x" * 257, "semi;colon"):
        answer = http["alice"].post("/agents/anyone/endpoint/protocols/openai/responses", params=V1,
                                    json={"input": "hi"}, headers={"x-ms-user-identity": bad})
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["error"]["code"] == "InvalidUserIdentity"
    listed = http["alice"].get("/agents/anyone/endpoint/sessions", params=V1, headers={"x-ms-user-identity": "a b"})
    assert listed.status_code == 400


def test_another_callers_session_answers_as_a_missing_one(dockyard: DockyardProcess, tmp_path: Path,
                                                          http: dict[str, httpx.Client],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A code-based agent on the process runtime, deployed by alice with the real SDK as a named user."""
    for name, value in dockyard.env().items():
        monkeypatch.setenv(name, value)
    archive = tmp_path / "agent.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("main.py", USER_AGENT)
    definition = HostedAgentDefinition(
        cpu="0.5", memory="1Gi", protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")],
        code_configuration=CodeConfiguration(runtime="python_3_11", entry_point=["python", "main.py"],
                                             dependency_resolution="bundled"))
    credential = DefaultAzureCredential(managed_identity_client_id="alice")
    with AIProjectClient(endpoint=dockyard.endpoint, credential=credential) as sdk, archive.open("rb") as code:
        created = sdk.agents.create_version_from_code("owned", definition=definition, code=code)
        deadline = time.monotonic() + 120
        while sdk.agents.get_version(agent_name="owned", agent_version=created.version).status != "active":
            assert time.monotonic() < deadline, "the code-based version did not become active"
            time.sleep(0.2)
        openai = sdk.get_openai_client(agent_name="owned")
        # The sandbox's x-agent-user-id: the delegated end user, else the caller's own object id.
        who = "/header x-agent-user-id"
        assert openai.responses.create(input=who, extra_headers={"x-ms-user-identity": "end-user-7"}
                                       ).output_text == "header end-user-7"
        alice_oid = claims(token(dockyard, ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"]),
                                 client_id="alice"))["oid"]
        assert openai.responses.create(input=who).output_text == f"header {alice_oid}"
    alice, bob, operator = http["alice"], http["bob"], http["operator"]
    made = alice.post("/agents/owned/endpoint/sessions", params=V1, json={"agent_session_id": "alices-session"})
    assert made.status_code == 201, made.text
    theirs = bob.get("/agents/owned/endpoint/sessions/alices-session", params=V1)
    missing = bob.get("/agents/owned/endpoint/sessions/nobodys-session", params=V1)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["message"].replace("alices-session", "?") == \
        missing.json()["error"]["message"].replace("nobodys-session", "?")
    assert bob.get("/agents/owned/endpoint/sessions", params=V1).json()["data"] == []
    assert bob.delete("/agents/owned/endpoint/sessions/alices-session", params=V1).status_code == 404
    assert bob.post("/agents/owned/endpoint/protocols/openai/responses", params=V1,
                    json={"input": "who", "agent_session_id": "alices-session"}).status_code == 404
    taken = bob.post("/agents/owned/endpoint/sessions", params=V1, json={"agent_session_id": "alices-session"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "SessionIdInUse"
    assert "alices-session" in {s["agent_session_id"] for s in operator.get("/agents/owned/endpoint/sessions",
                                                                            params=V1).json()["data"]}
    assert alice.get("/agents/owned/endpoint/sessions/alices-session", params=V1).status_code == 200
    # Logs: a session's log is its owner's (and the operator's); the version's own sandbox log the operator's.
    logs = f"/agents/owned/versions/{created.version}/sessions/{{}}:logstream"
    theirs_log = bob.get(logs.format("alices-session"), params=V1)
    assert theirs_log.status_code == 404 and theirs_log.json()["error"]["code"] == "SessionNotFound"
    version_log = alice.get(logs.format("default"), params=V1)
    assert version_log.status_code == 403 and version_log.json()["error"]["code"] == "OperatorOnly"
    with operator.stream("GET", logs.format("default"), params=V1) as followed:
        assert followed.status_code == 200


def _request(headers: dict[str, str]) -> Request:
    # platform_headers signs the call id with the app's identity secret (dockyard.identity.call_ids).
    app = SimpleNamespace(state=SimpleNamespace(services=SimpleNamespace(identity_secret="test-secret")))
    return Request({"type": "http", "method": "POST", "path": "/", "query_string": b"", "state": {}, "app": app,
                    "headers": [(k.encode(), v.encode()) for k, v in headers.items()]})


def test_the_sandbox_sees_the_delegated_user_else_the_callers_object_id() -> None:
    principal = Principal(subject="user:alice", claims={"sub": "user:alice", "oid": "oid-of-alice"})
    session = Session(id="s", project="default", agent_name="a", version_uid="u", version="1",
                      status=SessionStatus.ACTIVE, idle_timeout_seconds=60, created_at=0, last_accessed_at=0.0)
    delegated = caller_of(principal, "end-user-7")
    assert platform_headers(_request({}), session, delegated)["x-agent-user-id"] == "end-user-7"
    itself = caller_of(principal, None)
    assert platform_headers(_request({}), session, itself)["x-agent-user-id"] == "oid-of-alice"
    assert not itself.operator and not caller_of(
        Principal("local-developer", {"dockyard_role": "agent"}), None).operator


def test_rows_stored_before_owners_are_the_operators(tmp_path: Path) -> None:
    engine = open_engine(sqlite_url(tmp_path / "dockyard.db"))
    config = Config()
    config.set_main_option("script_location", str(Path(database.__file__).parent / "migrations"))
    with engine.begin() as connection:  # a store as 0005 left it, with a session and a response in it
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
        connection.execute(text(
            "INSERT INTO sessions (id, project, agent_name, version_uid, version, status, idle_timeout_seconds, "
            f"created_at, last_accessed_at) VALUES ('old', 'default', 'a', 'u', '1', 'idle', 900, 1, {time.time()})"))
        connection.execute(text("INSERT INTO response_routes (response_id, session_id, created_at) "
                                "VALUES ('caresp_old', 'old', 1)"))
    migrate(engine)  # to 0006 and on, as `dockyard up` does
    store = SessionStore(engine)
    old = store.by_id("old")
    route = store.response_route("caresp_old")
    assert old is not None and route is not None
    owner = owner_of(old.owner_subject, old.owner_user)
    assert owner is None and owner_of(route.owner_subject, route.owner_user) is None
    operator = caller_of(Principal("local-developer", {"oid": "o"}), None)
    alice = caller_of(Principal("user:alice", {"oid": "a"}), None)
    assert may_enter(operator, owner) and may_follow(operator, owner)
    assert not may_enter(alice, owner) and not may_manage(alice, owner) and not may_follow(alice, owner)
    # And the operator delegating is not the operator's own undelegated side.
    assert not may_follow(caller_of(Principal("local-developer", {"oid": "o"}), "u1"), Owner("local-developer"))
