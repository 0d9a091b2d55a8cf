"""What the engine test modules share: the engine (they skip without one, unless CI forbids it) and,
for those that call a hosted agent, the echo agent's image, a dockyard and the 2.x project client, one of
each per module. A module that needs something else defines its own fixture of the same name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.ai.projects import AIProjectClient
from support.engine import engine_dockyard, require_engine
from support.hosted import echo_image, project_client
from support.process import DockyardProcess


@pytest.fixture(scope="module")
def engine_url() -> str:
    return require_engine()


@pytest.fixture(scope="module")
def image(engine_url: str) -> Iterator[str]:
    with echo_image("echo") as reference:
        yield reference


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine_url: str, image: str) -> Iterator[DockyardProcess]:
    with engine_dockyard(tmp_path_factory.mktemp("home"), engine_url) as running:
        yield running


@pytest.fixture(scope="module")
def project(server: DockyardProcess) -> Iterator[AIProjectClient]:
    with project_client(server) as client:
        yield client
