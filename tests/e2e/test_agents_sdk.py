"""The newest azure-ai-projects, with DefaultAzureCredential, against a real `dockyard up`.

Nothing here talks to dockyard except through the SDK and the environment `dockyard env` prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import ContainerConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from support.process import DockyardProcess

pytestmark = pytest.mark.e2e

IMAGE = "myregistry.azurecr.io/my-agent:v1"
SCRIPTS = Path(__file__).parent / "scripts"


def definition(*, tools: list[dict[str, str]] | None = None, **overrides: object) -> HostedAgentDefinition:
    fields: dict[str, object] = {
        "cpu": "1",
        "memory": "2Gi",
        "container_configuration": ContainerConfiguration(image=IMAGE),
        "protocol_versions": [ProtocolVersionRecord(protocol="responses", version="v1")],
        "environment_variables": {"MODEL_NAME": "gpt-4o-mini"},
    }
    fields.update(overrides)
    result = HostedAgentDefinition(**fields)  # type: ignore[arg-type]
    if tools is not None:
        # 2.x's model has no `tools` attribute, but the wire accepts and returns them as given.
        result["tools"] = tools
    return result


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(sdk_env: dict[str, str]) -> AIProjectClient:
    return AIProjectClient(endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"], credential=DefaultAzureCredential())


def test_create_get_list_delete_version(client: AIProjectClient) -> None:
    name = unique("crud")
    created = client.agents.create_version(
        agent_name=name,
        definition=definition(tools=[{"type": "code_interpreter"}]),
        description="an echo agent",
        metadata={"team": "dockyard"},
    )
    assert (created.name, created.version, created.id) == (name, "1", f"{name}:1")
    assert created.status == "creating"  # no runtime yet: never "active"
    assert created.definition.container_configuration.image == IMAGE
    assert created.definition.protocol_versions[0].protocol == "responses"
    assert created.definition.environment_variables == {"MODEL_NAME": "gpt-4o-mini"}
    assert created["definition"]["tools"] == [{"type": "code_interpreter"}]
    assert created.description == "an echo agent" and created.metadata == {"team": "dockyard"}
    assert created.created_at.year >= 2025

    second = client.agents.create_version(agent_name=name, definition=definition(cpu="2", memory="4Gi"))
    assert second.version == "2"
    fetched = client.agents.get_version(agent_name=name, agent_version="1")
    assert fetched.id == created.id and fetched.definition.cpu == "1"

    agent = client.agents.get(agent_name=name)
    assert agent.name == name and agent.versions.latest.version == "2"
    assert name in [a.name for a in client.agents.list()]
    assert [v.version for v in client.agents.list_versions(agent_name=name)] == ["2", "1"]

    deleted = client.agents.delete_version(agent_name=name, agent_version="1")
    assert deleted.deleted is True and deleted.version == "1"
    with pytest.raises(ResourceNotFoundError):
        client.agents.get_version(agent_name=name, agent_version="1")
    assert client.agents.get(agent_name=name).versions.latest.version == "2"

    gone = client.agents.delete(agent_name=name, force=True)
    assert gone.deleted is True and gone.name == name
    with pytest.raises(ResourceNotFoundError):
        client.agents.get(agent_name=name)


def test_paging_across_pages_in_both_orders(client: AIProjectClient) -> None:
    name = unique("paging")
    for _ in range(7):
        client.agents.create_version(agent_name=name, definition=definition())
    # limit=2 makes the SDK walk four pages, following last_id, until an empty last_id.
    listed = [v.version for v in client.agents.list_versions(agent_name=name, limit=2)]
    assert listed == ["7", "6", "5", "4", "3", "2", "1"]
    ascending = client.agents.list_versions(agent_name=name, limit=2, order="asc")
    assert [v.version for v in ascending] == ["1", "2", "3", "4", "5", "6", "7"]
    pages = list(client.agents.list_versions(agent_name=name, limit=3, order="asc").by_page())
    # The SDK ignores has_more and stops only on an empty last_id: the final, empty page must carry null.
    assert [[v.version for v in page] for page in pages] == [["1", "2", "3"], ["4", "5", "6"], ["7"], []]
    before = client.agents.list_versions(agent_name=name, limit=2, order="asc", before=f"{name}:5")
    assert [v.version for v in next(iter(before.by_page()))] == ["3", "4"]

    agents = [unique("pages") for _ in range(5)]
    for agent in agents:
        client.agents.create_version(agent_name=agent, definition=definition())
    listed = [a.name for a in client.agents.list(limit=2, order="asc")]
    assert [a for a in listed if a in agents] == agents
    listed_desc = [a.name for a in client.agents.list(limit=2)]
    assert [a for a in listed_desc if a in agents] == list(reversed(agents))


@pytest.mark.parametrize(
    ("overrides", "code", "words"),
    [
        ({"cpu": "4.25"}, "InvalidCpu", ["cpu", "0.5", "4"]),
        ({"cpu": "0.25"}, "InvalidCpu", ["cpu", "0.5", "4"]),
        ({"memory": "8.5Gi"}, "InvalidMemory", ["memory", "1Gi", "8Gi"]),
        ({"memory": "512Mi"}, "InvalidMemory", ["memory", "1Gi", "8Gi"]),
        ({"protocol_versions": [ProtocolVersionRecord(protocol="responses", version="v9")]},
         "ProtocolVersionNotSupported", ["responses", "v1", "invocations"]),
        ({"protocol_versions": [ProtocolVersionRecord(protocol="activity", version="v1")]},
         "ProtocolVersionNotSupported", ["activity"]),
        ({"container_configuration": ContainerConfiguration(image="Not An Image")}, "InvalidContainerImage", ["image"]),
        ({"tools": [{"type": "mcp", "server_label": "x", "server_url": "not a url"}]}, "InvalidTool", ["server_url"]),
        ({"tools": [{"type": "mcp", "server_url": "https://mcp.example.com"}]}, "InvalidTool", ["server_label"]),
    ],
)
def test_invalid_definitions_are_refused_with_foundry_codes(
    client: AIProjectClient, overrides: dict[str, object], code: str, words: list[str]
) -> None:
    name = unique("bad")
    with pytest.raises(HttpResponseError) as caught:
        client.agents.create_version(agent_name=name, definition=definition(**overrides))
    assert caught.value.status_code == 400
    assert caught.value.error.code == code
    for word in words:
        assert word in caught.value.error.message
    with pytest.raises(ResourceNotFoundError):
        client.agents.get(agent_name=name)  # nothing half-created


def test_unit_spellings_kubernetes_accepts(client: AIProjectClient) -> None:
    version = client.agents.create_version(agent_name=unique("units"),
                                           definition=definition(cpu="500m", memory="1024Mi"))
    assert (version.definition.cpu, version.definition.memory) == ("500m", "1024Mi")


def test_bad_agent_name_states_the_rule(client: AIProjectClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.agents.create_version(agent_name="1-starts-with-digit", definition=definition())
    assert caught.value.status_code == 400 and caught.value.error.code == "InvalidAgentName"
    assert "starts with a letter" in caught.value.error.message and "63" in caught.value.error.message


def test_not_found_errors(client: AIProjectClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        client.agents.get(agent_name="no-such-agent")
    assert caught.value.error.code == "AgentNotFound"
    name = unique("nf")
    client.agents.create_version(agent_name=name, definition=definition())
    with pytest.raises(ResourceNotFoundError) as caught:
        client.agents.get_version(agent_name=name, agent_version="9")
    assert caught.value.error.code == "AgentVersionNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.agents.delete_version(agent_name=name, agent_version="9")


def test_unknown_project_is_404(sdk_env: dict[str, str]) -> None:
    endpoint = os.environ["AZURE_AI_PROJECT_ENDPOINT"].replace("/projects/default", "/projects/elsewhere")
    client = AIProjectClient(endpoint=endpoint, credential=DefaultAzureCredential())
    with pytest.raises(ResourceNotFoundError) as caught:
        client.agents.get(agent_name="anything")
    assert caught.value.error.code == "ProjectNotFound"


def test_twenty_concurrent_creates_number_versions_once_each(client: AIProjectClient) -> None:
    name = unique("race")
    barrier = threading.Barrier(20)
    versions: list[str] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait()
            versions.append(client.agents.create_version(agent_name=name, definition=definition()).version)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(versions, key=int) == [str(n) for n in range(1, 21)]
    listed = sorted(v.version for v in client.agents.list_versions(agent_name=name))
    assert listed == sorted(str(n) for n in range(1, 21))


def test_async_client(dockyard: DockyardProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")} | dockyard.env()
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "async_flow.py"), unique("async")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "created": "1", "status": "creating", "listed": ["2", "1"], "latest": "2", "deleted": True,
    }
