"""The catalog as dockyard builds it at start-up: the built-in `local` connection and deployment."""

from __future__ import annotations

from pathlib import Path

from dockyard.home import Home
from dockyard.models.catalog import LOCAL
from dockyard.models.deployments import Deployment
from dockyard.server import build_services
from dockyard.settings import Settings


def test_start_up_makes_the_local_deployment_once_and_keeps_what_the_user_changed(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, local_model=True, containers=False)
    services = build_services(settings, Home(tmp_path).ensure())
    assert services.catalog is not None and services.catalog.names("default") == [LOCAL]
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
