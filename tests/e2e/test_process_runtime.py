"""Code-based versions on the process runtime, with no container engine: the real SDK end to end.

`dockyard up --runtime process` with every engine hidden; the version is created with the 2.x SDK's
create_version_from_code, called through the openai client `get_openai_client(agent_name=…)` makes,
and survives `kill -9` of dockyard: the next start adopts the same process (same pid), never a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import (
    CodeConfiguration,
    ContainerConfiguration,
    HostedAgentDefinition,
    ProtocolVersionRecord,
    VersionRefIndicator,
)
from azure.identity import DefaultAzureCredential
from support.process import DockyardProcess, dockyard_command

pytestmark = pytest.mark.e2e

# A Responses agent on the standard library alone: enough of the container contract for the openai client.
AGENT = (Path(__file__).parents[1] / "fixtures" / "code" / "stdlib-agent" / "main.py").read_bytes()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DockyardProcess]:
    dockyard = DockyardProcess(home=tmp_path / "home", runtime="process").start()
    yield dockyard
    if dockyard.process and dockyard.process.poll() is None:
        dockyard.stop()
    # What outlives the test would outlive the run: stop the home's agent processes too.
    subprocess.run(dockyard_command("down", "--home", str(dockyard.home)), capture_output=True, timeout=60)


def client_for(server: DockyardProcess, monkeypatch: pytest.MonkeyPatch) -> AIProjectClient:
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    return AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential())


def code_definition() -> HostedAgentDefinition:
    return HostedAgentDefinition(
        cpu="0.5", memory="1Gi",
        code_configuration=CodeConfiguration(runtime="python_3_11", entry_point=["python", "main.py"],
                                             dependency_resolution="bundled"),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")],
        environment_variables={"GREETING": "hello"},
    )


def wait_for_status(client: AIProjectClient, name: str, version: str, wanted: set[str], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = client.agents.get_version(agent_name=name, agent_version=version)
        if found.status in wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def supervisors(home: Path) -> list[int]:
    """The process runtime's running agent pids for a home, as its state files record them."""
    pids = []
    for state in (home / "processes").glob("*/state.json"):
        record = json.loads(state.read_text())
        if record.get("running"):
            os.kill(record["child_pid"], 0)  # and really running
            pids.append(record["child_pid"])
    return pids


def test_code_version_runs_as_a_process_and_is_adopted_after_kill_9(
    server: DockyardProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(server, monkeypatch)
    archive = tmp_path / "agent.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("main.py", AGENT)
    name = f"proc-{uuid.uuid4().hex[:8]}"
    with archive.open("rb") as code:
        created = client.agents.create_version_from_code(name, definition=code_definition(), code=code)
    version = wait_for_status(client, name, created.version, {"active", "failed"})
    assert version.status == "active", version.as_dict()

    openai = client.get_openai_client(agent_name=name)
    assert openai.responses.create(input="hi there").output_text == "hi there"
    assert openai.responses.create(input="/env GREETING").output_text == "env hello"
    endpoint = openai.responses.create(input="/env FOUNDRY_PROJECT_ENDPOINT").output_text
    assert endpoint == f"env {server.endpoint}"  # the agent reaches dockyard on loopback
    pid = int(openai.responses.create(input="/pid").output_text.split()[1])
    # The version's sandbox, and the shared session's that answered (calls naming no session share one).
    before = sorted(supervisors(server.home))
    assert pid in before and len(before) == 2

    server.kill()  # kill -9: no shutdown, nothing cleaned up
    os.kill(pid, 0)  # the agent outlives it
    restarted = DockyardProcess(home=server.home, port=server.port, runtime="process").start()
    try:
        client = client_for(restarted, monkeypatch)
        assert wait_for_status(client, name, created.version, {"active"}).status == "active"
        openai = client.get_openai_client(agent_name=name)
        assert int(openai.responses.create(input="/pid").output_text.split()[1]) == pid  # adopted, not restarted
        time.sleep(3)  # a few reconcile passes: still one process
        assert sorted(supervisors(server.home)) == before
    finally:
        restarted.stop()
    server.process = restarted.process


def test_image_based_version_fails_once_without_an_engine(
    server: DockyardProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(server, monkeypatch)
    name = f"image-{uuid.uuid4().hex[:8]}"
    created = client.agents.create_version(name, definition=HostedAgentDefinition(
        cpu="1", memory="2Gi", container_configuration=ContainerConfiguration(image="localhost:5000/echo:v1"),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")]))
    failed = wait_for_status(client, name, created.version, {"failed"})
    assert failed.status == "failed"
    error = failed.as_dict()["error"]
    assert error["code"] == "ContainerRuntimeUnavailable" and "podman" in error["message"]
    # No flapping: it stays failed over several passes (the reconciler runs every 2 s).
    for _ in range(10):
        time.sleep(0.5)
        assert client.agents.get_version(agent_name=name, agent_version=created.version).status == "failed"


def upload(client: AIProjectClient, name: str, files: dict[str, bytes], tmp_path: Path,
           definition: HostedAgentDefinition | None = None) -> Any:
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path, data in files.items():
            bundle.writestr(path, data)
    with archive.open("rb") as code:
        return client.agents.create_version_from_code(name, definition=definition or code_definition(), code=code)


def test_bundled_packages_sessions_and_session_files(server: DockyardProcess, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_for(server, monkeypatch)
    name = f"files-{uuid.uuid4().hex[:8]}"
    created = upload(client, name, {"main.py": AGENT, "packages/greeting/__init__.py": b"VALUE = 'bundled'\n"},
                     tmp_path)
    assert wait_for_status(client, name, created.version, {"active", "failed"}).status == "active"
    openai = client.get_openai_client(agent_name=name)
    assert openai.responses.create(input="/import greeting").output_text == "import bundled"

    session = client.agents.create_session(agent_name=name, version_indicator=VersionRefIndicator(
        agent_version=created.version)).agent_session_id

    def ask(text: str) -> str:
        return str(openai.responses.create(input=text, extra_body={"agent_session_id": session}).output_text)

    session_home = server.home / "sessions" / session
    assert ask("/env HOME") == f"env {session_home}"
    assert ask("/env AGENTSERVER_STATE_ROOT") == f"env {session_home}/agentserver"
    client.agents.upload_session_file(agent_name=name, session_id=session, content=b"from the caller",
                                      path="inbox/note.txt")
    assert (session_home / "inbox" / "note.txt").read_bytes() == b"from the caller"
    listed = {e.name: e for e in client.agents.list_session_files(agent_name=name, session_id=session)}
    assert listed["inbox"].is_directory
    assert b"".join(client.agents.download_session_file(agent_name=name, session_id=session,
                                                        path="inbox/note.txt")) == b"from the caller"
    client.agents.delete_session_file(agent_name=name, session_id=session, path="inbox", recursive=True)
    assert not (session_home / "inbox").exists()
    client.agents.delete_session(agent_name=name, session_id=session)
    deadline = time.monotonic() + 30
    while session_home.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not session_home.exists()  # the session's home goes with the session


def test_a_crashing_entry_point_ends_in_crash_loop_back_off(server: DockyardProcess, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_for(server, monkeypatch)
    name = f"crash-{uuid.uuid4().hex[:8]}"
    crash = b"import sys\nprint('about to fail', flush=True)\nraise SystemExit(3)\n"
    created = upload(client, name, {"main.py": crash}, tmp_path)
    failed = wait_for_status(client, name, created.version, {"active", "failed"}, timeout=90)
    error = failed.as_dict()["error"]
    assert failed.status == "failed" and error["code"] == "CrashLoopBackOff", error
    assert "exit code 3" in error["message"] and "about to fail" in error["message"]
    assert not any((server.home / "processes").iterdir())  # stopped and gone


def test_an_import_that_fails_names_the_missing_module(server: DockyardProcess, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Code that imports what the bundle does not hold (forgotten in packages/, or not in requirements.txt)."""
    client = client_for(server, monkeypatch)
    name = f"imports-{uuid.uuid4().hex[:8]}"
    created = upload(client, name, {"main.py": b"import agent_helpers_not_bundled\n"}, tmp_path)
    failed = wait_for_status(client, name, created.version, {"active", "failed"}, timeout=90)
    error = failed.as_dict()["error"]
    assert failed.status == "failed" and error["code"] == "CrashLoopBackOff", error
    assert "ModuleNotFoundError: No module named 'agent_helpers_not_bundled'" in error["message"]
    assert not any((server.home / "processes").iterdir())


def test_remote_build_runs_microsofts_hosting_adapter_as_a_process(server: DockyardProcess, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The echo agent on azure-ai-agentserver-responses, its dependencies installed by dockyard with pip."""
    client = client_for(server, monkeypatch)
    source = Path(__file__).parents[1] / "fixtures" / "images" / "echo-agent"
    name = f"adapter-{uuid.uuid4().hex[:8]}"
    definition = HostedAgentDefinition(
        cpu="1", memory="2Gi",
        code_configuration=CodeConfiguration(runtime="python_3_11", entry_point=["python", "main.py"],
                                             dependency_resolution="remote_build"),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="2.0.0")],
    )
    created = upload(client, name, {f: (source / f).read_bytes() for f in ("main.py", "invocations_app.py",
                                                                           "requirements.txt")},
                     tmp_path, definition)
    version = wait_for_status(client, name, created.version, {"active", "failed"}, timeout=900)
    assert version.status == "active", version.as_dict()
    openai = client.get_openai_client(agent_name=name)
    assert openai.responses.create(input="hello there").output_text == "echo: hello there"
    # DefaultAzureCredential in the agent gets a token from dockyard's identity endpoint, over loopback TLS.
    assert openai.responses.create(input="/token").output_text.startswith("token: ok")
    logs = "\n".join((server.home / "processes").glob("*/output.log").__next__().read_text().splitlines())
    assert "echo-agent: starting on port" in logs


def test_memory_past_the_definitions_limit_fails_with_oom_killed(server: DockyardProcess, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_for(server, monkeypatch)
    name = f"oom-{uuid.uuid4().hex[:8]}"
    definition = code_definition()
    definition.environment_variables = {"ALLOCATE_MB": "1400"}  # past memory 1Gi
    created = upload(client, name, {"main.py": AGENT}, tmp_path, definition)
    failed = wait_for_status(client, name, created.version, {"active", "failed"}, timeout=90)
    error = failed.as_dict()["error"]
    assert failed.status == "failed" and error["code"] == "OOMKilled", error
    assert "1Gi" in error["message"]
