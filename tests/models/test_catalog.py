"""The catalog as dockyard builds it at start-up: the built-in `local` connection, and the `local` and
`local-embeddings` deployments (the chat server and the embedding server, on the same GGUF)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.domain.deployments import Deployment
from dockyard.domain.errors import ServiceUnavailable
from dockyard.home import Home
from dockyard.models.catalog import LOCAL, LOCAL_EMBEDDINGS
from dockyard.server import build_services
from dockyard.settings import Settings


def test_start_up_makes_the_local_deployment_once_and_keeps_what_the_user_changed(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, local_model=True, containers=False)
    services = build_services(settings, Home(tmp_path).ensure())
    assert services.catalog is not None and services.catalog.names("default") == [LOCAL, LOCAL_EMBEDDINGS]
    deployment = services.catalog.deployment("default", LOCAL)
    assert deployment.connection == LOCAL and deployment.model_name  # the model the local server serves
    connection = services.catalog.connection("default", LOCAL)
    assert connection.credentials.type == "None" and connection.metadata["ApiType"] == "Local"
    # The user points `local` elsewhere: a restart keeps that.
    services.catalog.models.remove_deployment("default", LOCAL)
    services.catalog.models.add_deployment("default", Deployment(LOCAL, LOCAL, "", "mine"))
    again = build_services(settings, Home(tmp_path).ensure())
    assert again.catalog is not None and again.catalog.deployment("default", LOCAL).model_name == "mine"


def test_without_the_local_model_there_is_no_local_deployment(tmp_path: Path) -> None:
    services = build_services(Settings(home=tmp_path, local_model=False, containers=False), Home(tmp_path).ensure())
    assert services.catalog is not None and services.catalog.names("default") == []
    assert services.catalog.embedding_server is None


def test_the_embedding_server_is_a_deployment_of_its_own(tmp_path: Path) -> None:
    services = build_services(Settings(home=tmp_path, local_model=True, containers=False), Home(tmp_path).ensure())
    catalog = services.catalog
    assert catalog is not None and services.vector_search is not None
    listed = catalog.deployment("default", LOCAL_EMBEDDINGS)
    assert listed.capabilities == {"embeddings": "true"} and listed.connection == LOCAL and listed.model_name
    assert catalog.deployment("default", LOCAL).capabilities == {"chat_completion": "true"}
    # The server the vector stores' Embedder owns is the one the deployment reaches: one server, not two.
    server = catalog.embedding_server
    assert server is not None and server is services.vector_search.embedders[LOCAL_EMBEDDINGS].server
    assert server.base_url is None  # not started with dockyard: on the first call that needs it
    with pytest.raises(ServiceUnavailable) as caught:
        catalog.resolve("default", LOCAL_EMBEDDINGS)
    assert caught.value.code == "LocalModelUnavailable"
    assert ("starts on the first call" if server.available else "not installed") in caught.value.message

