"""What a stop leaves behind, and the commands that clean up after one (issue 13).

A graceful stop finishes the removals already decided; `dockyard down` removes one home's sandboxes;
`dockyard prune` removes those of homes that are gone.

Before, an agent deleted with force=True answered at once and its containers went a moment later; a
dockyard stopped in between left them running, and if that home never started again, for ever.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from azure.ai.projects.models import VersionRefIndicator
from support.engine import DOCKYARD_LABEL, engine_dockyard
from support.hosted import deploy, project_client
from support.process import DockyardProcess

from dockyard.runtime.leftovers import BUILD_LABEL, HOME_LABEL

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


@pytest.fixture
def server(tmp_path: Path, engine_url: str, image: str) -> Iterator[DockyardProcess]:
    with engine_dockyard(tmp_path / "home", engine_url) as running:
        yield running


def containers_of(agent_name: str) -> list[object]:
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    return client.containers.list(all=True, filters={"label": f"{DOCKYARD_LABEL}.agent={agent_name}"})


@pytest.mark.docker_too
def test_a_stop_right_after_a_forced_delete_leaves_no_container(server: DockyardProcess, image: str) -> None:
    name = running_agent_with_a_session(server, image)
    assert len(containers_of(name)) == 2  # the version's own and the session's
    with project_client(server) as project:
        project.agents.delete(agent_name=name, force=True)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)  # at once: the removals are still under way, or not begun
    assert server.process.wait(timeout=60) == 0
    assert containers_of(name) == []


def dockyard_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dockyard", *args], capture_output=True, text=True, timeout=120)


def volumes_of(instance: str) -> list[object]:
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    return client.volumes.list(filters={"label": f"{DOCKYARD_LABEL}.instance={instance}"})


def running_agent_with_a_session(server: DockyardProcess, image: str) -> str:
    with project_client(server) as project:
        name = deploy(project, image)
        session = project.agents.create_session(agent_name=name,
                                                version_indicator=VersionRefIndicator(agent_version="1"))
        project.get_openai_client(agent_name=name).responses.create(
            input="wake", extra_body={"agent_session_id": session.agent_session_id})
    return name


@pytest.mark.docker_too
def test_down_removes_this_homes_sandboxes_and_purge_their_volumes(server: DockyardProcess, image: str) -> None:
    name = running_agent_with_a_session(server, image)
    instance = (server.home / "instance-id").read_text().strip()
    refused = dockyard_cli("down", "--home", str(server.home))
    assert refused.returncode == 2 and "Stop it first" in refused.stderr  # its reconciler would restart them
    assert server.stop() == 0
    assert len(containers_of(name)) == 2  # a stop keeps running agents, for the next start to adopt

    done = dockyard_cli("down", "--home", str(server.home))
    assert done.returncode == 0, done.stderr
    assert containers_of(name) == [] and len(volumes_of(instance)) == 1  # the session's state is kept
    purged = dockyard_cli("down", "--home", str(server.home), "--purge", "--json")
    assert purged.returncode == 0, purged.stderr
    assert [item["kind"] for item in json.loads(purged.stdout)] == ["volume"]
    assert volumes_of(instance) == []


@pytest.mark.docker_too
def test_prune_removes_what_a_removed_home_left_and_nothing_else(tmp_path: Path, server: DockyardProcess,
                                                                 image: str) -> None:
    # Not engine_dockyard: its clean-up would remove exactly what this test needs left behind.
    doomed = DockyardProcess(home=tmp_path / "doomed-home").start()
    try:
        orphan = running_agent_with_a_session(doomed, image)
    finally:
        doomed.stop()
    kept = running_agent_with_a_session(server, image)  # a live home's sandboxes must survive a prune
    shutil.rmtree(tmp_path / "doomed-home")

    listed = dockyard_cli("prune", "--dry-run", "--json")
    assert listed.returncode == 0, listed.stderr
    doomed_items = [i for i in json.loads(listed.stdout) if i["home"] == str((tmp_path / "doomed-home").resolve())]
    assert sorted(i["kind"] for i in doomed_items) == ["container", "container", "volume"]
    assert all("no longer exists" in i["reason"] for i in doomed_items)
    assert len(containers_of(orphan)) == 2  # a dry run removes nothing

    pruned = dockyard_cli("prune")
    assert pruned.returncode == 0, pruned.stderr
    assert containers_of(orphan) == []
    assert len(containers_of(kept)) == 2


def test_prune_removes_a_dependency_build_a_removed_home_left(tmp_path: Path, image: str) -> None:
    """A code version's dependency build (a one-off container) of a dockyard killed mid-build, home gone since."""
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    gone = tmp_path / "gone-home"
    build = client.containers.create(image, command=["true"], labels={
        BUILD_LABEL: "f" * 32, HOME_LABEL: str(gone), f"{DOCKYARD_LABEL}.build-key": "k"})
    try:
        listed = dockyard_cli("prune", "--dry-run", "--json")
        assert listed.returncode == 0, listed.stderr
        found = [i for i in json.loads(listed.stdout) if i["name"] == build.name]
        assert found and found[0]["kind"] == "container" and "no longer exists" in found[0]["reason"]
        assert dockyard_cli("prune").returncode == 0
        assert client.containers.list(all=True, filters={"id": build.id}) == []
    finally:
        for left in client.containers.list(all=True, filters={"id": build.id}):
            left.remove(force=True)
