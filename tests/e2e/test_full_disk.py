"""dockyard's home on a full disk (issue 13 §7): clear errors, a sound database, and recovery without a restart.

The home lives on a small tmpfs of its own (mounting one needs root; the test skips otherwise). With a
code-based agent running on the process runtime (no engine needed), a file fills what is left of the
disk; then every kind of write is tried: a version (JSON and a code upload), a session, a session file,
and invocations. Each must answer cleanly (507 InsufficientStorage saying the disk is full, or a success
where nothing needs the disk), never a 500 or a dropped connection. `PRAGMA integrity_check` must pass,
and once the file is gone the same calls succeed on the same dockyard.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import CodeConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.core.exceptions import HttpResponseError
from support.hosted import bearer_token, project_client, tls_context
from support.process import DockyardProcess, dockyard_command

pytestmark = pytest.mark.e2e

AGENT = (Path(__file__).parents[1] / "fixtures" / "code" / "stdlib-agent" / "main.py").read_bytes()
DISK_SIZE = "64m"


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the home needs root")
    # The home is the mount itself: the log dockyard writes beside its home stays on the big disk.
    mountpoint = tmp_path_factory.mktemp("small-disk") / "home"
    mountpoint.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(mountpoint)],
                   check=True, capture_output=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=False, capture_output=True)


@pytest.fixture(scope="module")
def server(disk: Path) -> Iterator[DockyardProcess]:
    running = DockyardProcess(home=disk, runtime="process").start()
    try:
        yield running
    finally:
        if running.process and running.process.poll() is None:
            running.stop()
        subprocess.run(dockyard_command("down", "--home", str(running.home)), capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def project(server: DockyardProcess) -> Iterator[AIProjectClient]:
    with project_client(server) as client:
        yield client


def code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("main.py", AGENT)
        bundle.writestr("padding.txt", uuid.uuid4().hex)  # a new hash each time: a new bundle to store
    return buffer.getvalue()


def code_definition() -> HostedAgentDefinition:
    return HostedAgentDefinition(
        cpu="0.5", memory="1Gi",
        code_configuration=CodeConfiguration(runtime="python_3_11", entry_point=["python", "main.py"],
                                             dependency_resolution="bundled"),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")],
    )


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses a byte more."""
    filler = disk / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (1024 * 1024, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def is_insufficient_storage(answer: httpx.Response) -> bool:
    if answer.status_code != 507:
        return False
    error = answer.json()["error"]
    return error["code"] == "InsufficientStorage" and "space" in error["message"]


class Calls:
    """The writes a user makes, each as one HTTP call through the same kept-alive connection."""

    def __init__(self, server: DockyardProcess, project: AIProjectClient, agent: str, session: str) -> None:
        self.server = server
        self.project = project
        self.agent = agent
        self.session = session
        self.http = httpx.Client(verify=tls_context(server), timeout=60, base_url=server.endpoint,
                                 params={"api-version": "v1"},
                                 headers={"Authorization": f"Bearer {bearer_token(server)}"})

    def create_version(self) -> httpx.Response:
        definition = {"kind": "hosted", "cpu": "0.5", "memory": "1Gi",
                      "container_configuration": {"image": "localhost:5000/echo:v1"},
                      "protocol_versions": [{"protocol": "responses", "version": "v1"}],
                      "metadata": {"padding": "x" * 400}}
        return self.http.post(f"/agents/{self.agent}-json/versions", json={"definition": definition})

    def upload_code(self) -> tuple[int, str]:
        try:
            self.project.agents.create_version_from_code(self.agent, definition=code_definition(),
                                                         code=io.BytesIO(code_zip()))
        except HttpResponseError as exc:
            return exc.status_code or 0, exc.error.code if exc.error else ""
        return 200, ""

    def create_session(self) -> httpx.Response:
        return self.http.post(f"/agents/{self.agent}/endpoint/sessions",
                              json={"version_indicator": {"type": "version_ref", "agent_version": "1"}})

    def upload_file(self) -> httpx.Response:
        return self.http.put(f"/agents/{self.agent}/endpoint/sessions/{self.session}/files/content",
                             params={"path": f"notes/{uuid.uuid4().hex}.bin"}, content=os.urandom(256 * 1024))

    def invoke(self) -> httpx.Response:
        return self.http.post(f"/agents/{self.agent}/endpoint/protocols/openai/responses",
                              json={"input": "still there?", "agent_session_id": self.session})

    def read(self) -> httpx.Response:
        return self.http.get(f"/agents/{self.agent}")


def test_a_full_disk_gives_clear_errors_and_recovers_when_space_returns(
        disk: Path, server: DockyardProcess, project: AIProjectClient) -> None:
    agent = f"disk-{uuid.uuid4().hex[:6]}"
    created = project.agents.create_version_from_code(agent, definition=code_definition(), code=io.BytesIO(code_zip()))
    deadline = time.monotonic() + 120
    while project.agents.get_version(agent_name=agent, agent_version=created.version).status != "active":
        assert time.monotonic() < deadline, "the code version did not become active"
        time.sleep(0.2)
    calls = Calls(server, project, agent, session="")
    made = calls.create_session()
    assert made.status_code == 201, made.text
    calls.session = made.json()["agent_session_id"]
    assert calls.invoke().status_code == 200
    assert calls.upload_file().status_code == 201

    filler = fill(disk)
    try:
        answers: dict[str, Any] = {
            "create_version": calls.create_version(),
            "upload_code": calls.upload_code(),
            "create_session": calls.create_session(),
            "upload_file": calls.upload_file(),
            "invoke": [calls.invoke() for _ in range(3)],
            "read": calls.read(),
        }
        print({k: (v.status_code, v.text[:200]) if isinstance(v, httpx.Response) else v for k, v in answers.items()
               if k != "invoke"}, [a.status_code for a in answers["invoke"]])
        for name in ("create_version", "create_session", "upload_file"):
            assert is_insufficient_storage(answers[name]), (name, answers[name].status_code, answers[name].text)
        assert answers["upload_code"] == (507, "InsufficientStorage")
        # What needs no disk goes on: the agent answers, the API reads.
        assert [a.status_code for a in answers["invoke"]] == [200, 200, 200], [a.text for a in answers["invoke"]]
        assert answers["read"].status_code == 200
        assert server.process is not None and server.process.poll() is None
    finally:
        filler.unlink()

    with sqlite3.connect(f"file:{server.home / 'dockyard.db'}?mode=ro", uri=True) as database:
        assert database.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    # Space back: the same calls succeed on the same dockyard, through the same connection.
    assert calls.create_version().status_code == 200
    assert calls.upload_code() == (200, "")
    made = calls.create_session()
    assert made.status_code == 201, made.text
    assert calls.upload_file().status_code == 201
    assert calls.invoke().status_code == 200
    listed = calls.http.get(f"/agents/{agent}/endpoint/sessions/{calls.session}/files", params={"path": "notes"})
    assert listed.status_code == 200 and len(json.loads(listed.text)["entries"]) == 2, listed.text
    calls.http.close()
