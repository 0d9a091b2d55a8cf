"""Deployments and connections as values: names, URLs, keys."""

from __future__ import annotations

import pytest

from dockyard.domain.deployments import (
    AuthKind,
    Connection,
    ProviderKind,
    validate_base_url,
    validate_connection_name,
    validate_deployment_name,
)
from dockyard.domain.errors import BadRequest


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


def test_connection_validation() -> None:
    with pytest.raises(BadRequest, match="has none"):
        Connection("c", ProviderKind.OPENAI, "http://x/v1", AuthKind.API_KEY).validated()
    with pytest.raises(BadRequest, match="Azure OpenAI"):
        Connection("c", ProviderKind.OPENAI, "http://x/v1", AuthKind.ENTRA).validated()
    with pytest.raises(BadRequest):
        Connection("c", ProviderKind.OPENAI, "not a url").validated()
    # The local model's address is known only while it runs.
    assert Connection("local", ProviderKind.LOCAL, "").validated().target == ""
