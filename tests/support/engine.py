"""pytest helpers for tests that need a real container engine.

Tests that use these carry `@pytest.mark.engine`: without an engine they skip and say why, and with
DOCKYARD_REQUIRE_ENGINE=1 (CI) tests/conftest.py turns that skip into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest

from support.images import engine_candidates, engine_url, podman_available
from support.process import DockyardProcess

INSTALL_HINT = ("install podman (apt-get install podman runc, then run ci/setup-podman.sh as root to start its "
                "API service) or docker, or set DOCKER_HOST")


def require_engine() -> str:
    """The URL of a container engine that answers /_ping, or skip the test saying how to get one."""
    url = engine_url()
    if url is not None:
        return url
    tried = ", ".join(engine_candidates())
    if os.environ.get("DOCKER_HOST"):
        why = "DOCKER_HOST is set, so nothing else was tried"
    elif podman_available():
        why = "podman is installed but its API service is not running"
    else:
        why = "podman is not installed"
    pytest.skip(f"no container engine: nothing answered /_ping at {tried} ({why}); {INSTALL_HINT}")


def require_podman() -> None:
    """Skip unless the podman CLI is there (building and pushing test images uses it)."""
    if not podman_available():
        pytest.skip(f"no container engine: the podman CLI is needed to build test images; {INSTALL_HINT}")


def docker_client(url: str | None = None):  # type: ignore[no-untyped-def]
    """A `docker.DockerClient` for the engine (skips when there is none)."""
    docker = pytest.importorskip("docker", reason="the docker SDK is a dev dependency: pip install -e '.[dev]'")
    return docker.DockerClient(base_url=url or require_engine(), timeout=120)


def remove_dockyard_leftovers(home: Path) -> None:
    """Remove what a test dockyard left on the engine: its containers outlive it (that is the point of
    adoption) and so do its sessions' volumes. Matched by the instance id kept in its home."""
    instance_file = Path(home) / "instance-id"
    url = engine_url()
    if url is None or not instance_file.exists():
        return
    instance = instance_file.read_text().strip()
    client = docker.DockerClient(base_url=url)
    try:
        for container in client.containers.list(all=True, filters={"label": f"io.dockyard.instance={instance}"}):
            container.remove(force=True, v=True)
        for volume in client.volumes.list(filters={"label": f"io.dockyard.instance={instance}"}):
            volume.remove(force=True)
    finally:
        client.close()


FIXTURE_IMAGES = Path(__file__).parents[1] / "fixtures" / "images"
DOCKYARD_LABEL = "io.dockyard"


@contextmanager
def engine_dockyard(home: Path, engine_url: str, *, local_model: bool = False) -> Iterator[DockyardProcess]:
    """A `dockyard up` driving the engine; its containers and session volumes are removed when it ends.

    `local_model=True` lets it start and supervise the local llama.cpp model (off otherwise)."""
    os.environ["DOCKER_HOST"] = engine_url
    running = DockyardProcess(home=home, local_model=local_model).start()
    try:
        yield running
    finally:
        if running.process and running.process.poll() is None:
            running.stop()
        remove_dockyard_leftovers(running.home)
