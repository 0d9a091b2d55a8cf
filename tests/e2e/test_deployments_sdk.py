"""`client.deployments` and `client.connections` of the newest azure-ai-projects against a real `dockyard up`.

Deployments and connections are made the way a person makes them, with `dockyard model add` and
`dockyard connection add` on the same home, before dockyard starts and while it runs.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import ApiKeyCredentials, ConnectionType, ModelDeployment
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from support.process import DockyardProcess, dockyard_command

from dockyard.identity.agents import agent_identity_header

pytestmark = pytest.mark.e2e

KEY = "sk-e2e-secret-key-0123456789"
AZURE_KEY = "azure-e2e-secret-9876543210"
REGISTRY_PASSWORD = "registry-e2e-password-555"
SECRETS = (KEY, AZURE_KEY, REGISTRY_PASSWORD)


def cli(home: Path, *args: str, stdin: str = "") -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "DOCKYARD_"))}
    result = subprocess.run(dockyard_command(*args, "--home", str(home)), input=stdin, capture_output=True, text=True,
                            timeout=120, env=clean)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    """A dockyard whose home already has deployments, connections and a registry connection."""
    home = tmp_path_factory.mktemp("home")
    cli(home, "connection", "add", "openai", "--base-url", "https://api.openai.com/v1", "--api-key-stdin", stdin=KEY)
    cli(home, "model", "add", "gpt-4o", "--connection", "openai", "--model-version", "2024-11-20")
    cli(home, "model", "add", "chat", "--azure-endpoint", "https://example.openai.azure.com", "--model",
        "my-azure-deployment", "--model-name", "gpt-4o", "--model-version", "2024-11-20", "--api-key-stdin",
        stdin=AZURE_KEY)
    cli(home, "model", "add", "gpt-4o-mini", "--local")
    cli(home, "model", "add", "llama", "--base-url", "http://127.0.0.1:9/v1", "--publisher", "Meta", "--chat-only")
    cli(home, "registry", "add", "acr", "--server", "myacr.azurecr.io", "--username", "puller", "--password-stdin",
        stdin=REGISTRY_PASSWORD)
    server = DockyardProcess(home=home, extra_args=("--no-engine", "--no-local-model")).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


def tls(dockyard: DockyardProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(dockyard.home / "tls" / "ca.pem"))


@pytest.fixture
def client(sdk_env: dict[str, str]) -> AIProjectClient:
    return AIProjectClient(endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"], credential=DefaultAzureCredential())


class AgentIdentity:
    """The managed identity an agent container gets: a token from dockyard's identity endpoint, scoped to it."""

    def __init__(self, dockyard: DockyardProcess) -> None:
        secret = (dockyard.home / "identity-header").read_text().strip()
        self.header = agent_identity_header(secret, "0123456789abcdef0123456789abcdef")
        self.url = f"{dockyard.url}/msi/token"
        self.ca = tls(dockyard)

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        resource = scopes[0].removesuffix("/.default")
        answer = httpx.get(self.url, params={"api-version": "2019-08-01", "resource": resource},
                           headers={"X-IDENTITY-HEADER": self.header}, verify=self.ca).json()
        return AccessToken(answer["access_token"], int(answer["expires_on"]))


def test_deployments_list_and_get(client: AIProjectClient) -> None:
    deployments = {d.name: d for d in client.deployments.list()}
    assert sorted(deployments) == ["chat", "gpt-4o", "gpt-4o-mini", "llama"]
    gpt = deployments["gpt-4o"]
    assert isinstance(gpt, ModelDeployment)
    assert (gpt.type, gpt.model_name, gpt.model_version, gpt.model_publisher, gpt.connection_name) == (
        "ModelDeployment", "gpt-4o", "2024-11-20", "OpenAI", "openai")
    assert gpt.capabilities == {"chat_completion": "true", "responses": "true"}
    assert gpt.sku.capacity == 1 and gpt.sku.name == "Standard"
    assert deployments["llama"].capabilities == {"chat_completion": "true"}
    got = client.deployments.get("chat")
    assert isinstance(got, ModelDeployment)
    assert (got.name, got.model_name, got.connection_name) == ("chat", "gpt-4o", "chat")
    assert client.deployments.get("gpt-4o-mini").connection_name == "local"


def test_deployment_filters(client: AIProjectClient) -> None:
    assert [d.name for d in client.deployments.list(model_publisher="Meta")] == ["llama"]
    assert [d.name for d in client.deployments.list(model_name="gpt-4o")] == ["chat", "gpt-4o"]
    assert len(list(client.deployments.list(deployment_type="ModelDeployment"))) == 4
    assert list(client.deployments.list(model_publisher="nobody")) == []


def test_an_unknown_deployment_is_404_listing_the_ones_there_are(client: AIProjectClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        client.deployments.get("gpt-5")
    assert caught.value.error is not None and caught.value.error.code == "DeploymentNotFound"
    assert "chat, gpt-4o, gpt-4o-mini, llama" in caught.value.message
    assert "dockyard model add gpt-5" in caught.value.message


def test_a_deployment_added_while_dockyard_runs_shows_at_once(dockyard: DockyardProcess,
                                                              client: AIProjectClient) -> None:
    cli(dockyard.home, "model", "add", "late", "--connection", "openai")
    try:
        assert client.deployments.get("late").connection_name == "openai"
    finally:
        cli(dockyard.home, "model", "remove", "late")
    with pytest.raises(ResourceNotFoundError):
        client.deployments.get("late")


def test_connections_list_and_get_carry_no_secret(client: AIProjectClient) -> None:
    connections = {c.name: c for c in client.connections.list()}
    assert sorted(connections) == ["acr", "chat", "llama", "local", "openai"]
    openai = connections["openai"]
    assert (openai.type, openai.target, openai.credentials.type) == ("ApiKey", "https://api.openai.com/v1", "ApiKey")
    assert openai.id.endswith("/connections/openai")
    assert connections["chat"].type == ConnectionType.AZURE_OPEN_AI
    assert connections["chat"].target == "https://example.openai.azure.com"
    assert (connections["acr"].type, connections["acr"].target) == ("ContainerRegistry", "myacr.azurecr.io")
    got = client.connections.get("openai")
    assert isinstance(got.credentials, ApiKeyCredentials) and got.credentials.api_key is None
    assert got.metadata["ApiType"] == "OpenAI"
    for connection in [*connections.values(), got, client.connections.get("acr")]:
        assert not any(secret in str(connection.as_dict()) for secret in SECRETS)


def test_connection_filters(client: AIProjectClient) -> None:
    assert [c.name for c in client.connections.list(connection_type=ConnectionType.AZURE_OPEN_AI)] == ["chat"]
    defaults = {c.name for c in client.connections.list(default_connection=True)}
    assert "chat" in defaults and "acr" in defaults
    assert client.connections.get_default(ConnectionType.AZURE_OPEN_AI, include_credentials=True).credentials.api_key \
        == AZURE_KEY


def test_credentials_come_only_when_asked_for(client: AIProjectClient) -> None:
    with_key = client.connections.get("openai", include_credentials=True)
    assert isinstance(with_key.credentials, ApiKeyCredentials) and with_key.credentials.api_key == KEY
    registry = client.connections.get("acr", include_credentials=True)
    assert registry.credentials.type == "CustomKeys"
    assert registry.credentials["keys"] == {"username": "puller", "password": REGISTRY_PASSWORD}
    local = client.connections.get("local", include_credentials=True)
    assert local.credentials.type == "None"


def test_an_unknown_connection_is_404(client: AIProjectClient) -> None:
    for include_credentials in (False, True):
        with pytest.raises(ResourceNotFoundError) as caught:
            client.connections.get("nope", include_credentials=include_credentials)
        assert caught.value.error is not None and caught.value.error.code == "ConnectionNotFound"


def test_an_agents_identity_reads_deployments_and_connections_but_not_credentials(dockyard: DockyardProcess) -> None:
    agent = AIProjectClient(endpoint=dockyard.endpoint, credential=AgentIdentity(dockyard),  # type: ignore[arg-type]
                            connection_verify=str(dockyard.home / "tls" / "ca.pem"))
    assert "gpt-4o" in {d.name for d in agent.deployments.list()}
    assert agent.connections.get("openai").credentials.type == "ApiKey"
    assert "openai" in {c.name for c in agent.connections.list()}
    with pytest.raises(HttpResponseError) as caught:
        agent.connections.get("openai", include_credentials=True)
    assert caught.value.status_code == 403
    assert caught.value.error is not None and caught.value.error.code == "AgentIdentityNotAllowed"
    with pytest.raises(HttpResponseError) as refused:
        agent.agents.list().next()
    assert refused.value.status_code == 403


def test_no_token_no_answer(dockyard: DockyardProcess) -> None:
    ca = tls(dockyard)
    for method, path in (("GET", "deployments"), ("GET", "connections"), ("GET", "connections/openai"),
                         ("POST", "connections/openai/getConnectionWithCredentials")):
        answer = httpx.request(method, f"{dockyard.endpoint}/{path}?api-version=v1", verify=ca)
        assert answer.status_code == 401, path
        assert KEY not in answer.text


def test_lists_are_value_and_next_link(dockyard: DockyardProcess, sdk_env: dict[str, str]) -> None:
    token = DefaultAzureCredential().get_token("https://ai.azure.com/.default").token
    answer = httpx.get(f"{dockyard.endpoint}/deployments?api-version=v1", headers={"Authorization": f"Bearer {token}"},
                       verify=tls(dockyard))
    body = answer.json()
    assert set(body) == {"value", "nextLink"} and body["nextLink"] is None
    missing = httpx.get(f"{dockyard.endpoint}/deployments", headers={"Authorization": f"Bearer {token}"},
                        verify=tls(dockyard))
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "MissingApiVersionParameter"


def test_the_log_never_holds_a_key(dockyard: DockyardProcess, client: AIProjectClient) -> None:
    # Every route once more, then read what dockyard printed.
    client.connections.get("openai", include_credentials=True)
    client.connections.get("chat", include_credentials=True)
    list(client.connections.list())
    time.sleep(0.2)
    logs = dockyard.logs()
    assert "getConnectionWithCredentials" in logs  # the access log is there...
    assert not any(secret in logs for secret in SECRETS)  # ...and no key in it
