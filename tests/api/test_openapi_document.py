"""The OpenAPI document of a real dockyard application: what it holds, and who may read it."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.home import Home
from dockyard.server import build_services
from dockyard.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    home = tmp_path_factory.mktemp("openapi-home")
    services = build_services(Settings(home=home, local_model=False, containers=False), Home(home).ensure())
    token = services.authority.issue("local-user", "https://ai.azure.com").access_token
    return TestClient(create_app(services), base_url="https://testserver", headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return document["paths"][f"/api/projects/{{project}}{path}"][method]  # type: ignore[no-any-return]


def test_only_a_token_holder_gets_the_document(client: TestClient, document: dict[str, Any]) -> None:
    for path in ("/openapi.json", "/api/projects/default/openapi.json"):
        answer = client.get(path, headers={"Authorization": ""})
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "MissingToken"
    assert client.get("/api/projects/default/openapi.json").json() == document
    assert client.get("/api/projects/elsewhere/openapi.json").status_code == 404
    for path in ("/docs", "/redoc"):
        assert client.get(path).status_code == 404


def test_request_bodies_are_the_handlers_models(document: dict[str, Any]) -> None:
    create = operation(document, "post", "/agents/{agent_name}/versions")["requestBody"]["content"]
    assert create["application/json"]["schema"] == {"$ref": "#/components/schemas/CreateVersionRequest"}
    assert "multipart/form-data" in create
    schemas = document["components"]["schemas"]
    definition = schemas["HostedDefinition"]["properties"]
    # Both SDK generations' shapes, and Foundry's extra fields allowed.
    assert {"image", "container_protocol_versions", "container_configuration", "protocol_versions",
            "code_configuration"} <= set(definition)
    assert schemas["HostedDefinition"]["additionalProperties"] is True
    assert definition["tools"]["anyOf"][0]["maxItems"] == 128
    assert schemas["SessionConfiguration"]["properties"]["idle_timeout_seconds"]["anyOf"][0]["maximum"] == 14400
    for path, model in [("/agents/{agent_name}/endpoint/sessions", "CreateSessionRequest"),
                        ("/openai/v1/responses", "CreateResponseRequest")]:
        body = operation(document, "post", path)["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{model}"}


def test_parameters_carry_their_bounds_and_patterns(document: dict[str, Any]) -> None:
    listing = {p["name"]: p for p in operation(document, "get", "/agents")["parameters"]}
    assert listing["api-version"]["required"] is True
    assert listing["api-version"]["schema"]["enum"] == ["2025-11-15-preview", "v1"]
    assert (listing["limit"]["schema"]["minimum"], listing["limit"]["schema"]["maximum"]) == (1, 100)
    assert listing["order"]["schema"]["enum"] == ["asc", "desc"]
    assert listing["project"]["schema"]["enum"] == ["default"]
    get_version = operation(document, "get", "/agents/{agent_name}/versions/{agent_version}")
    version = {p["name"]: p for p in get_version["parameters"]}
    assert version["agent_name"]["schema"]["pattern"].startswith("^[A-Za-z]")
    assert version["agent_version"]["schema"]["pattern"] == "^[1-9][0-9]{0,18}$"


def test_answers_are_documented_with_the_error_envelope(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert "422" not in op["responses"], (method, path)
            assert op["responses"]["400"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"}, (method, path)
            assert any(status.startswith("2") for status in op["responses"]), (method, path)
    get_version = operation(document, "get", "/agents/{agent_name}/versions/{agent_version}")
    assert get_version["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AgentVersionObject"}
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/msi/token"]["get"]["security"] == [{"identityHeader": []}]
