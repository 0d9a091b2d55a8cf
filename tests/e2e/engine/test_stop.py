"""What a stop leaves behind: a graceful stop finishes the removals already decided (issue 13).

Before, an agent deleted with force=True answered at once and its containers went a moment later; a
dockyard stopped in between left them running, and if that home never started again, for ever.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from azure.ai.projects.models import VersionRefIndicator
from support.engine import DOCKYARD_LABEL, engine_dockyard
from support.hosted import deploy, project_client
from support.process import DockyardProcess

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


@pytest.fixture
def server(tmp_path: Path, engine_url: str, image: str) -> Iterator[DockyardProcess]:
    with engine_dockyard(tmp_path / "home", engine_url) as running:
        yield running


def containers_of(agent_name: str) -> list[object]:
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    return client.containers.list(all=True, filters={"label": f"{DOCKYARD_LABEL}.agent={agent_name}"})


def test_a_stop_right_after_a_forced_delete_leaves_no_container(server: DockyardProcess, image: str) -> None:
    with project_client(server) as project:
        name = deploy(project, image)
        session = project.agents.create_session(agent_name=name,
                                                version_indicator=VersionRefIndicator(agent_version="1"))
        project.get_openai_client(agent_name=name).responses.create(
            input="wake", extra_body={"agent_session_id": session.agent_session_id})
        assert len(containers_of(name)) == 2  # the version's own and the session's
        project.agents.delete(agent_name=name, force=True)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)  # at once: the removals are still under way, or not begun
    assert server.process.wait(timeout=60) == 0
    assert containers_of(name) == []
