"""Deployments and connections as the SDK reads them, and `${{connections.…}}` references."""

from __future__ import annotations

import pytest
from azure.ai.projects.models import ApiKeyCredentials, Connection as SdkConnection, ModelDeployment

from dockyard.domain.deployments import AuthKind, Connection, Deployment, ProviderKind, Sku
from dockyard.domain.errors import BadRequest, NotFound
from dockyard.models.deployments import (
    ProjectConnection,
    connection_to_wire,
    deployment_to_wire,
    model_connection_view,
    registry_connection_view,
    resolve_references,
)


def test_a_connections_view_hides_its_key_from_repr() -> None:
    connection = Connection("openai", ProviderKind.OPENAI, "https://api.openai.com/v1", AuthKind.API_KEY,
                            api_key="sk-secret-123")
    assert "sk-secret-123" not in repr(model_connection_view(connection))


def test_a_deployment_reads_back_as_the_sdks_model_deployment() -> None:
    deployment = Deployment("gpt-4o-mini", "openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini", "2024-07-18", "OpenAI",
                            {"chat_completion": "true"}, Sku(capacity=10, name="GlobalStandard"))
    wire = deployment_to_wire(deployment)
    sdk = ModelDeployment(wire)
    assert (sdk.type, sdk.name, sdk.model_name, sdk.model_version, sdk.model_publisher, sdk.connection_name) == (
        "ModelDeployment", "gpt-4o-mini", "gpt-4o-mini", "2024-07-18", "OpenAI", "openai")
    assert sdk.capabilities == {"chat_completion": "true"}
    assert (sdk.sku.capacity, sdk.sku.name, sdk.sku.tier, sdk.sku.family, sdk.sku.size) == (
        10, "GlobalStandard", "Standard", "", "")
    assert Sku.from_wire(wire["sku"]) == deployment.sku


def test_a_connection_reads_back_as_the_sdks_connection_with_credentials_only_when_asked() -> None:
    view = model_connection_view(Connection("aoai", ProviderKind.AZURE_OPENAI, "https://x.openai.azure.com",
                                            AuthKind.API_KEY, api_key="k-123"))
    listed = connection_to_wire(view, "default", include_credentials=False)
    assert "k-123" not in str(listed)
    assert listed["credentials"] == {"type": "ApiKey"}
    assert listed["id"].endswith("/projects/default/connections/aoai")
    with_key = SdkConnection(connection_to_wire(view, "default", include_credentials=True))
    assert with_key.type == "AzureOpenAI" and with_key.target == "https://x.openai.azure.com"
    assert isinstance(with_key.credentials, ApiKeyCredentials) and with_key.credentials.api_key == "k-123"
    assert with_key.metadata["ApiType"] == "Azure"


def test_entra_and_keyless_connections_carry_no_secret() -> None:
    entra = model_connection_view(Connection("e", ProviderKind.AZURE_OPENAI, "https://x", AuthKind.ENTRA))
    assert connection_to_wire(entra, "p", include_credentials=True)["credentials"] == {"type": "AAD"}
    keyless = model_connection_view(Connection("l", ProviderKind.OPENAI, "http://x/v1"))
    assert connection_to_wire(keyless, "p", include_credentials=True)["credentials"] == {"type": "None"}
    assert keyless.metadata["SupportsResponses"] == "true"


def test_a_registry_connection_is_custom_keys() -> None:
    view = registry_connection_view("acr", "myacr.azurecr.io", "user", "pw-1")
    assert connection_to_wire(view, "p", include_credentials=False)["credentials"] == {"type": "CustomKeys"}
    assert connection_to_wire(view, "p", include_credentials=True)["credentials"] == {
        "type": "CustomKeys", "keys": {"username": "user", "password": "pw-1"}}
    assert "pw-1" not in repr(view)


# -- ${{connections.…}} ---------------------------------------------------------------------------------


def _lookup(name: str) -> ProjectConnection:
    connections = {
        "openai": model_connection_view(Connection("openai", ProviderKind.OPENAI, "https://api.openai.com/v1",
                                                   AuthKind.API_KEY, api_key="sk-1", metadata={"region": "eu"})),
        "acr": registry_connection_view("acr", "r.example", "u", "p"),
    }
    if name not in connections:
        raise NotFound(f"Connection {name!r} does not exist.", code="ConnectionNotFound")
    return connections[name]


def test_references_resolve_to_key_target_metadata_and_custom_keys() -> None:
    environment = {
        "PLAIN": "hello ${NOT_OURS}",
        "KEY": "${{connections.openai.credentials.key}}",
        "URL": "${{connections.openai.target}}",
        "REGION": "${{ connections.openai.metadata.region }}",
        "HEADER": "Bearer ${{connections.openai.credentials.key}}; user=${{connections.acr.credentials.username}}",
    }
    assert resolve_references(environment, _lookup) == {
        "PLAIN": "hello ${NOT_OURS}",
        "KEY": "sk-1",
        "URL": "https://api.openai.com/v1",
        "REGION": "eu",
        "HEADER": "Bearer sk-1; user=u",
    }


def test_each_connection_is_looked_up_once() -> None:
    calls: list[str] = []

    def counting(name: str) -> ProjectConnection:
        calls.append(name)
        return _lookup(name)

    resolve_references({"A": "${{connections.openai.credentials.key}}", "B": "${{connections.openai.target}}"},
                       counting)
    assert calls == ["openai"]


def test_a_missing_connection_names_the_variable() -> None:
    with pytest.raises(NotFound) as caught:
        resolve_references({"OPENAI_API_KEY": "${{connections.nope.credentials.key}}"}, _lookup)
    assert caught.value.code == "ConnectionNotFound"
    assert "OPENAI_API_KEY" in caught.value.message and "'nope'" in caught.value.message


@pytest.mark.parametrize("value", ["${{connections.openai}}", "${{connections.openai.credentials}}",
                                   "${{connections.openai.secret.key}}", "${{connections.openai.credentials.key"])
def test_unreadable_references_are_refused(value: str) -> None:
    with pytest.raises(BadRequest) as caught:
        resolve_references({"X": value}, _lookup)
    assert caught.value.code == "InvalidConnectionReference" and "X" in caught.value.message


def test_a_missing_field_lists_the_fields_there_are() -> None:
    with pytest.raises(BadRequest) as caught:
        resolve_references({"X": "${{connections.acr.credentials.key}}"}, _lookup)
    assert "password, username" in caught.value.message
    # ...without showing their values.
    assert "'p'" not in caught.value.message
