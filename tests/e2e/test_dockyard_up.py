"""`dockyard up` as a process: restarts, refusals at start-up, capability host, shutdown."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import ContainerConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.core.exceptions import HttpResponseError
from azure.identity import DefaultAzureCredential
from support.process import DockyardProcess, dockyard_command, free_port

pytestmark = pytest.mark.e2e

DEFINITION = HostedAgentDefinition(
    container_configuration=ContainerConfiguration(image="myregistry.azurecr.io/my-agent:v1"),
    protocol_versions=[ProtocolVersionRecord(protocol="responses", version="v1")],
    cpu="1",
    memory="2Gi",
)


def client_for(server: DockyardProcess, monkeypatch: pytest.MonkeyPatch) -> AIProjectClient:
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    return AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential())


def test_data_survives_a_restart_and_a_kill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = DockyardProcess(home=tmp_path / "home", extra_args=("--no-engine",)).start()
    client = client_for(server, monkeypatch)
    for _ in range(3):
        client.agents.create_version(agent_name="durable", definition=DEFINITION)
    assert server.stop() == 0  # SIGTERM: graceful, exit status 0
    assert not (tmp_path / "home" / "server.json").exists()

    server.start()
    client = client_for(server, monkeypatch)
    assert [v.version for v in client.agents.list_versions(agent_name="durable")] == ["3", "2", "1"]
    assert client.agents.create_version(agent_name="durable", definition=DEFINITION).version == "4"
    server.kill()  # no chance to clean up

    server.start()
    client = client_for(server, monkeypatch)
    assert client.agents.get(agent_name="durable").versions.latest.version == "4"
    server.stop()


def test_port_taken_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            dockyard_command("up", "--home", str(tmp_path / "home"), "--port", str(port)),
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "already in use" in lines[0], result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; covered by the file case below")
def test_unwritable_home_is_one_clear_line(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = subprocess.run(dockyard_command("up", "--home", str(locked / "home"), "--port", str(free_port())),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "not writable" in result.stderr


def test_home_that_is_a_file_is_one_clear_line(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = subprocess.run(dockyard_command("up", "--home", str(not_a_folder), "--port", str(free_port())),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not writable" in lines[0] and "--home" in lines[0], result.stderr


def test_no_capability_host_answers_capability_host_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = DockyardProcess(home=tmp_path / "home", extra_args=("--no-capability-host", "--no-engine")).start()
    try:
        client = client_for(server, monkeypatch)
        with pytest.raises(HttpResponseError) as caught:
            client.agents.create_version(agent_name="needs-a-host", definition=DEFINITION)
        assert caught.value.error.code == "CapabilityHostNotFound"
        assert "capability host" in caught.value.error.message
    finally:
        server.stop()


def test_home_secrets_are_private_and_env_points_at_them(tmp_path: Path) -> None:
    server = DockyardProcess(home=tmp_path / "home", extra_args=("--no-engine",)).start()
    try:
        home = tmp_path / "home"
        for secret in ("tls/ca-key.pem", "tls/server-key.pem", "token-signing-key.pem", "identity-header"):
            assert stat.S_IMODE((home / secret).stat().st_mode) == 0o600, secret
        env = server.env()
        assert env["AZURE_AI_PROJECT_ENDPOINT"] == f"https://127.0.0.1:{server.port}/api/projects/default"
        assert env["IDENTITY_HEADER"] == (home / "identity-header").read_text().strip()
        bundle = Path(env["SSL_CERT_FILE"]).read_text()
        assert env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"]
        assert (home / "tls" / "ca.pem").read_text().strip() in bundle
        assert bundle.count("BEGIN CERTIFICATE") > 1  # the system CAs are kept too
        # The identity secret never reaches the logs.
        assert env["IDENTITY_HEADER"] not in server.logs()
    finally:
        server.process.send_signal(signal.SIGINT)  # Ctrl-C is a graceful stop as well
        assert server.process.wait(timeout=30) == 0
