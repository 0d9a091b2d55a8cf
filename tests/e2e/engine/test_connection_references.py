"""`${{connections.…}}` in a version's environment, resolved when its container starts, on a real engine.

The echo agent answers `/env NAME` with the value its container sees, so what the platform injected is
read from inside the sandbox, as the agent's own code would read it.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import ContainerConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from support.hosted import deploy
from support.process import DockyardProcess, dockyard_command

pytestmark = [pytest.mark.e2e, pytest.mark.engine]

KEY = "sk-engine-secret-31415"


def cli(server: DockyardProcess, *args: str, stdin: str = "") -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "DOCKYARD_"))}
    result = subprocess.run(dockyard_command(*args, "--home", str(server.home)), input=stdin, capture_output=True,
                            text=True, timeout=120, env=clean)
    assert result.returncode == 0, result.stderr


def env_in_container(project: AIProjectClient, agent: str, name: str) -> str:
    return project.get_openai_client(agent_name=agent).responses.create(input=f"/env {name}").output_text


def test_references_resolve_inside_the_container_and_statsbeat_is_off(server: DockyardProcess,
                                                                       project: AIProjectClient, image: str) -> None:
    cli(server, "connection", "add", "openai", "--base-url", "https://api.openai.com/v1", "--api-key-stdin",
        stdin=KEY)
    agent = deploy(project, image, env={
        "OPENAI_API_KEY": "${{connections.openai.credentials.key}}",
        "OPENAI_BASE_URL": "${{connections.openai.target}}",
    })
    assert env_in_container(project, agent, "OPENAI_API_KEY") == f"env OPENAI_API_KEY={KEY}"
    assert env_in_container(project, agent, "OPENAI_BASE_URL") == "env OPENAI_BASE_URL=https://api.openai.com/v1"
    assert env_in_container(project, agent, "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL") == \
        "env APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL=true"
    # The version keeps the reference; the key shows neither in the API nor in dockyard's log.
    version = project.agents.get_version(agent_name=agent, agent_version="1")
    assert version.definition["environment_variables"]["OPENAI_API_KEY"] == "${{connections.openai.credentials.key}}"
    assert KEY not in server.logs()
    # A running sandbox keeps what it started with: removing the connection does not stop it.
    cli(server, "connection", "remove", "openai")
    time.sleep(5)  # two reconcile passes and more
    assert project.agents.get_version(agent_name=agent, agent_version="1").status == "active"
    assert env_in_container(project, agent, "OPENAI_API_KEY") == f"env OPENAI_API_KEY={KEY}"


def test_a_missing_connection_fails_the_version_saying_how_to_fix_it(project: AIProjectClient, image: str) -> None:
    name = f"refs-{uuid.uuid4().hex[:6]}"
    definition = HostedAgentDefinition(
        cpu="0.5", memory="1Gi", container_configuration=ContainerConfiguration(image=image),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="2.0.0")],
        environment_variables={"API_KEY": "${{connections.nowhere.credentials.key}}"},
    )
    version = project.agents.create_version(agent_name=name, definition=definition)
    deadline = time.monotonic() + 60
    while (current := project.agents.get_version(agent_name=name, agent_version=version.version)).status == "creating":
        assert time.monotonic() < deadline, "the version neither failed nor became active"
        time.sleep(0.2)
    assert current.status == "failed"
    error = current["error"]
    assert error["code"] == "ConnectionNotFound"
    assert "API_KEY" in error["message"] and "dockyard connection add nowhere" in error["message"]

