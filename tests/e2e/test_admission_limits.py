"""Admission control on the process runtime (no engine needed): the budget holds, a session past it gets 429 with
Retry-After (or, with --on-full evict, the longest-idle session is released and the new one answers), the per-agent
session cap holds, and the operator's admission route shows what is used."""

from __future__ import annotations

import ssl
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import CodeConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.identity import DefaultAzureCredential
from support.hosted import bearer_token, tls_context
from support.process import DockyardProcess, dockyard_command

pytestmark = pytest.mark.e2e

V1 = {"api-version": "v1"}
GI = 1024**3

# The standard-library agent; `/header x-agent-session-id` answers with the session it runs for.
AGENT = (Path(__file__).parents[1] / "fixtures" / "code" / "stdlib-agent" / "main.py").read_bytes()


@pytest.fixture
def start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    started: list[DockyardProcess] = []

    def run(*args: str) -> DockyardProcess:
        server = DockyardProcess(home=tmp_path_factory.mktemp("home"), runtime="process", extra_args=args).start()
        started.append(server)
        return server

    yield run
    for server in started:
        if server.process and server.process.poll() is None:
            server.stop()
        subprocess.run(dockyard_command("down", "--home", str(server.home)), capture_output=True, timeout=60)


def deploy(dockyard: DockyardProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *names: str,
           wait: bool = True) -> None:
    """Code-based versions of 1Gi each through the real SDK, waited for until active."""
    for name, value in dockyard.env().items():
        monkeypatch.setenv(name, value)
    archive = tmp_path / "agent.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("main.py", AGENT)
    definition = HostedAgentDefinition(
        cpu="0.5", memory="1Gi", protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")],
        code_configuration=CodeConfiguration(runtime="python_3_11", entry_point=["python", "main.py"],
                                             dependency_resolution="bundled"))
    with AIProjectClient(endpoint=dockyard.endpoint, credential=DefaultAzureCredential()) as sdk:
        for name in names:
            with archive.open("rb") as code:
                created = sdk.agents.create_version_from_code(name, definition=definition, code=code)
            deadline = time.monotonic() + 120
            while wait and sdk.agents.get_version(agent_name=name, agent_version=created.version).status != "active":
                assert time.monotonic() < deadline, f"{name} did not become active"
                time.sleep(0.2)


def operator(dockyard: DockyardProcess) -> httpx.Client:
    return httpx.Client(base_url=dockyard.endpoint, verify=tls_context(dockyard), timeout=120,
                        headers={"Authorization": f"Bearer {bearer_token(dockyard)}"})


def ask(client: httpx.Client, agent: str, session: str) -> httpx.Response:
    return client.post(f"/agents/{agent}/endpoint/protocols/openai/responses", params=V1,
                       json={"input": "/header x-agent-session-id", "agent_session_id": session})


def answered(client: httpx.Client, agent: str, session: str) -> None:
    answer = ask(client, agent, session)
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"][0]["content"][0]["text"] == f"header {session}"


def status_of(client: httpx.Client, agent: str, session: str) -> str:
    return str(client.get(f"/agents/{agent}/endpoint/sessions/{session}", params=V1).json()["status"])


def test_the_budget_and_the_per_agent_cap_hold(start, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    dockyard = start("--max-memory", "4Gi", "--max-sessions-per-agent", "2")
    deploy(dockyard, tmp_path, monkeypatch, "alpha", "beta")  # two version sandboxes: 2Gi
    with operator(dockyard) as client:
        answered(client, "alpha", "a1")
        answered(client, "alpha", "a2")  # 4Gi of 4Gi
        capped = ask(client, "alpha", "a3")
        assert capped.status_code == 429, capped.text
        assert capped.json()["error"]["code"] == "TooManySessions"
        assert "--max-sessions-per-agent 2" in capped.json()["error"]["message"]
        assert 1 <= int(capped.headers["Retry-After"]) <= 300
        full = ask(client, "beta", "b1")
        assert full.status_code == 429, full.text
        error = full.json()["error"]
        assert error["code"] == "TooManySandboxes" and "--max-memory" in error["message"]
        assert 1 <= int(full.headers["Retry-After"]) <= 300
        budget = client.get("/admission", params=V1).json()
        assert budget["memory"] == {"used_bytes": 4 * GI, "budget_bytes": 4 * GI,
                                    "machine_bytes": budget["memory"]["machine_bytes"]}
        assert budget["sandboxes"] == 4 and budget["on_full"] == "reject" and budget["max_sessions_per_agent"] == 2
        shown = subprocess.run(dockyard_command("status", "--home", str(dockyard.home)), capture_output=True,
                               text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "budget: 4 sandboxes; memory 4.0Gi of 4.0Gi" in shown.stdout
        assert "2 live sessions per agent; when full: reject" in shown.stdout
        # A new version that does not fit waits, `creating`, rather than failing.
        deploy(dockyard, tmp_path, monkeypatch, "delta", wait=False)
        time.sleep(5)  # two reconcile passes
        assert client.get("/agents/delta/versions/1", params=V1).json()["status"] == "creating"
        assert "delta:1 waits for room to start" in dockyard.logs()
        # Room again once sessions go: the waiting version and the refused session start.
        for session in ("a1", "a2"):
            assert client.delete(f"/agents/alpha/endpoint/sessions/{session}", params=V1).status_code in (200, 204)
        deadline = time.monotonic() + 60
        while (answer := ask(client, "beta", "b1")).status_code == 429:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.5)
        assert answer.status_code == 200, answer.text
        while client.get("/agents/delta/versions/1", params=V1).json()["status"] != "active":
            assert time.monotonic() < deadline, "delta never found room"
            time.sleep(0.5)
        # Only the operator sees the budget.
        assert httpx.get(f"{dockyard.endpoint}/admission", params=V1,
                         verify=ssl.create_default_context(cafile=str(dockyard.home / "tls" / "ca.pem"))
                         ).status_code == 401


def test_evict_releases_the_longest_idle_session(start, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    dockyard = start("--max-memory", "3Gi", "--on-full", "evict")
    deploy(dockyard, tmp_path, monkeypatch, "gamma")  # 1Gi
    with operator(dockyard) as client:
        answered(client, "gamma", "s1")
        time.sleep(1.1)
        answered(client, "gamma", "s2")  # 3Gi of 3Gi; s1 is the longest idle
        answered(client, "gamma", "s3")
        assert status_of(client, "gamma", "s1") == "idle"
        assert status_of(client, "gamma", "s2") == "active"
        assert client.get("/admission", params=V1).json()["memory"]["used_bytes"] == 3 * GI
        # The released session resumes on demand, in place of the now longest-idle one (s2).
        time.sleep(1.1)
        answered(client, "gamma", "s1")
        assert status_of(client, "gamma", "s2") == "idle"
        assert "to make room" in dockyard.logs()


def test_a_misspelt_budget_stops_dockyard_up(tmp_path: Path) -> None:
    done = subprocess.run(dockyard_command("up", "--home", str(tmp_path / "home"), "--port", "0", "--no-engine",
                                           "--no-local-model", "--max-memory", "lots"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "--max-memory 'lots' is not a budget" in done.stderr
