"""Deployments and connections as values: names, URLs, wire shapes, `${{connections.…}}` references."""

from __future__ import annotations

import pytest
from azure.ai.projects.models import ApiKeyCredentials, Connection as SdkConnection, ModelDeployment

from dockyard.domain.errors import BadRequest, NotFound
from dockyard.models.deployments import (
    Connection,
    Deployment,
    ProjectConnection,
    Sku,
    connection_to_wire,
    deployment_to_wire,
    model_connection_view,
    registry_connection_view,
    resolve_references,
    validate_base_url,
    validate_connection_name,
    validate_deployment_name,
)
from dockyard.models.upstreams import AuthKind, ProviderKind


@pytest.mark.parametrize("name", ["gpt-4o-mini", "gpt-4.1", "local", "Llama-3.3-70B-Instruct", "a", "x_y"])
def test_deployment_names_azure_allows(name: str) -> None:
    assert validate_deployment_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "x" * 65, ".hidden", "ü"])
def test_deployment_names_refused(name: str) -> None:
    with pytest.raises(BadRequest) as caught:
        validate_deployment_name(name)
    assert caught.value.code == "InvalidDeploymentName"


def test_connection_names_have_no_dots_so_references_parse_one_way() -> None:
    assert validate_connection_name("my-openai_1") == "my-openai_1"
    with pytest.raises(BadRequest):
        validate_connection_name("gpt-4.1")


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080/v1"),
    ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ("  http://localhost:11434/v1  ", "http://localhost:11434/v1"),
])
def test_base_urls(url: str, expected: str) -> None:
    assert validate_base_url(url) == expected


@pytest.mark.parametrize(("url", "expected"), [
    ("https://x.openai.azure.com/", "https://x.openai.azure.com"),
    ("https://x.openai.azure.com/openai", "https://x.openai.azure.com"),
    ("https://x.openai.azure.com/openai/v1/", "https://x.openai.azure.com"),
])
def test_azure_endpoints_are_cut_back_to_their_root(url: str, expected: str) -> None:
    assert validate_base_url(url, azure=True) == expected


@pytest.mark.parametrize("url", ["ftp://x/v1", "127.0.0.1:8080", "http://", "https://user:pw@x/v1", "http://x/v1?a=1",
                                 "http://x:99999/v1"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(BadRequest) as caught:
        validate_base_url(url)
    assert caught.value.code == "InvalidTargetUrl"


def test_a_connection_hides_its_key_from_repr() -> None:
    connection = Connection("openai", ProviderKind.OPENAI, "https://api.openai.com/v1", AuthKind.API_KEY,
                            api_key="sk-secret-123")
    assert "sk-secret-123" not in repr(connection)
    assert "sk-secret-123" not in repr(model_connection_view(connection))


def test_connection_validation() -> None:
    with pytest.raises(BadRequest, match="has none"):
        Connection("c", ProviderKind.OPENAI, "http://x/v1", AuthKind.API_KEY).validated()
    with pytest.raises(BadRequest, match="Azure OpenAI"):
        Connection("c", ProviderKind.OPENAI, "http://x/v1", AuthKind.ENTRA).validated()
    with pytest.raises(BadRequest):
        Connection("c", ProviderKind.OPENAI, "not a url").validated()
    # The local model's address is known only while it runs.
    assert Connection("local", ProviderKind.LOCAL, "").validated().target == ""


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
