"""Finding a container engine that speaks the Docker Engine API: dockerd, or podman's API service.

Order: `--engine URL`, `DOCKER_HOST`, then the usual sockets. If none answers and podman is installed,
dockyard starts `podman system service` itself (detached, so it outlives a crashed dockyard and the
next start finds it answering). With no engine at all dockyard still runs; image-based versions then
fail with `ContainerRuntimeUnavailable` and a message that says how to get one.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException

log = logging.getLogger("dockyard.runtime")

INSTALL_HINT = (
    "Install podman (Debian/Ubuntu: `sudo apt-get install podman`; Fedora: `sudo dnf install podman`) or Docker, "
    "or point dockyard at an engine with `dockyard up --engine unix:///path/to/engine.sock` or DOCKER_HOST."
)


@dataclass(frozen=True)
class Engine:
    url: str
    client: docker.DockerClient
    is_podman: bool


def candidate_urls(explicit: str | None = None) -> list[str]:
    urls = [explicit, os.environ.get("DOCKER_HOST")]
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    urls += ["unix:///run/podman/podman.sock", "unix:///var/run/docker.sock"]
    if runtime_dir:
        urls += [f"unix://{runtime_dir}/podman/podman.sock", f"unix://{runtime_dir}/docker.sock"]
    return list(dict.fromkeys(u for u in urls if u))


def connect(url: str, timeout: float = 60) -> Engine | None:
    if url.startswith("unix://") and not Path(url.removeprefix("unix://")).exists():
        return None
    try:
        # docker-py hands the timeout to requests, which takes a float; its stubs say int.
        client = docker.DockerClient(base_url=url, timeout=timeout)  # type: ignore[arg-type]
        client.ping()
        components = client.version().get("Components") or []
    except (DockerException, OSError) as exc:
        log.debug("engine at %s does not answer: %s", url, exc)
        return None
    is_podman = any("podman" in str(c.get("Name", "")).lower() for c in components)
    return Engine(url=url, client=client, is_podman=is_podman)


def podman_socket_url() -> str:
    if os.geteuid() == 0:
        return "unix:///run/podman/podman.sock"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return f"unix://{runtime_dir}/podman/podman.sock"


def start_podman_service(wait_seconds: float = 15.0) -> Engine | None:
    podman = shutil.which("podman")
    if podman is None:
        return None
    url = podman_socket_url()
    Path(url.removeprefix("unix://")).parent.mkdir(parents=True, exist_ok=True)
    log.info("no container engine answers; starting podman's API service on %s", url)
    subprocess.Popen(
        [podman, "system", "service", "--time=0", url],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        cwd="/",  # conmon leaves files (such as "oom") in its working directory
    )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        engine = connect(url)
        if engine is not None:
            return engine
        time.sleep(0.2)
    log.warning("podman's API service did not answer on %s within %ss", url, wait_seconds)
    return None


def find_engine(explicit: str | None = None, *, start_podman: bool = True) -> Engine | None:
    for url in candidate_urls(explicit):
        engine = connect(url)
        if engine is not None:
            log.info("container engine: %s (%s)", url, "podman" if engine.is_podman else "docker")
            return engine
    if explicit:
        log.warning("the engine given with --engine (%s) does not answer", explicit)
        return None
    return start_podman_service() if start_podman else None


def host_address(engine: Engine) -> str | None:
    """The host's address on the engine's default bridge network: where containers can reach dockyard."""
    name = "podman" if engine.is_podman else "bridge"
    try:
        attrs = engine.client.networks.get(name).attrs
    except (DockerException, OSError) as exc:
        log.warning("cannot inspect the %s network: %s", name, exc)
        return None
    for config in (attrs.get("IPAM") or {}).get("Config") or []:
        gateway = config.get("Gateway")
        if gateway and ":" not in gateway:
            return gateway
    for subnet in attrs.get("subnets") or []:  # podman's own format
        if subnet.get("gateway"):
            return subnet["gateway"]
    return None
