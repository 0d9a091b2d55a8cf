"""pytest helpers for tests that need a real container engine.

Tests that use these carry `@pytest.mark.engine`: without an engine they skip and say why, and with
DOCKYARD_REQUIRE_ENGINE=1 (CI) tests/conftest.py turns that skip into a failure.
"""

from __future__ import annotations

import os

import pytest

from support.images import engine_candidates, engine_url, podman_available

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
