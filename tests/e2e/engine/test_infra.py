"""The test infrastructure itself, for real: engine, base image, fixture images, registries, hardened run.

Proves what the runtime tests stand on: the debootstrap base image is there, the echo agent (Microsoft's
Responses hosting adapter) builds and is cached, it pushes to a plain registry and to one that requires
credentials, the engine's Docker-compatible API pulls it back from both, and a container started through
the docker SDK with dockyard's hardening (read-only root, /tmp tmpfs, no capabilities, no new privileges,
CPU and memory limits, explicit ulimits) answers the container contract.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.engine import docker_client, require_engine, require_podman
from support.images import (
    CONTEXT_HASH_LABEL,
    ImageError,
    build_image,
    ensure_base_image,
    image_id,
    image_labels,
    push_image,
)
from support.registry import Registry

pytestmark = pytest.mark.engine

FIXTURES = Path(__file__).parents[2] / "fixtures" / "images"
TEST_LABEL = "io.dockyard.test"


@pytest.fixture(scope="module")
def engine_url() -> str:
    url = require_engine()
    require_podman()
    return url


@pytest.fixture(scope="module")
def engine(engine_url: str) -> Iterator[Any]:
    client = docker_client(engine_url)
    yield client
    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}=infra"}):
        container.remove(force=True)
    client.close()


@pytest.fixture(scope="module")
def base_image(engine_url: str) -> str:
    return ensure_base_image()


@pytest.fixture(scope="module")
def echo_image(base_image: str) -> str:
    return build_image("dockyard-test/echo-agent", "infra", FIXTURES / "echo-agent")


@pytest.fixture(scope="module")
def registry(engine_url: str) -> Iterator[Registry]:
    with Registry() as running:
        yield running


@pytest.fixture(scope="module")
def auth_registry(engine_url: str) -> Iterator[Registry]:
    with Registry(username="pusher", password=f"pw-{uuid.uuid4().hex[:10]}") as running:
        yield running


@pytest.fixture
def pulled(engine: Any) -> Iterator[list[str]]:
    """References pulled through the engine during a test, removed afterwards."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        try:
            engine.images.remove(ref, force=True)
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass


def test_base_image_exists_and_runs_python(engine: Any, base_image: str) -> None:
    image = engine.images.get(base_image)
    assert image.attrs["Config"]["Cmd"] == ["python3"]
    output = engine.containers.run(
        base_image, ["python3", "-c", "import sys, ssl, venv; print(sys.version_info[:2])"],
        remove=True, labels={TEST_LABEL: "infra"},
    )
    assert output.decode().strip() == "(3, 11)"


def test_echo_image_builds_once_and_is_then_cached(echo_image: str) -> None:
    labels = image_labels(echo_image)
    assert labels.get(CONTEXT_HASH_LABEL)
    first_id = image_id(echo_image)
    started = time.monotonic()
    again = build_image("dockyard-test/echo-agent", "infra", FIXTURES / "echo-agent")
    assert again == echo_image
    assert image_id(again) == first_id
    assert time.monotonic() - started < 30, "a cached build must not rebuild"


def test_push_to_a_plain_registry_and_pull_back_through_the_engine(
    engine: Any, echo_image: str, registry: Registry, pulled: list[str]
) -> None:
    ref = f"{registry.host}/echo-agent:v1"
    digest = push_image(echo_image, ref)
    assert digest.startswith("sha256:")
    assert "echo-agent" in registry.catalog()

    pulled.append(ref)
    image = engine.images.pull(f"{registry.host}/echo-agent", tag="v1")
    assert image.id.removeprefix("sha256:") == image_id(echo_image).removeprefix("sha256:")


def test_a_registry_with_auth_refuses_anonymous_and_accepts_credentials(
    engine: Any, echo_image: str, auth_registry: Registry, pulled: list[str]
) -> None:
    import docker.errors

    ref = f"{auth_registry.host}/echo-agent:v1"
    with pytest.raises(ImageError) as refused:
        push_image(echo_image, ref)
    assert any(word in str(refused.value).lower() for word in ("unauthorized", "authentication required", "401"))

    with pytest.raises(ImageError):
        push_image(echo_image, ref, creds=(auth_registry.username or "", "not-the-password"))

    digest = push_image(echo_image, ref, creds=f"{auth_registry.username}:{auth_registry.password}")
    assert digest.startswith("sha256:")
    assert auth_registry.catalog() == ["echo-agent"]

    # Pulling through the engine's Docker-compatible API: refused without credentials, fine with them.
    pulled.append(ref)
    with pytest.raises(docker.errors.APIError):
        engine.images.pull(f"{auth_registry.host}/echo-agent", tag="v1")
    image = engine.images.pull(
        f"{auth_registry.host}/echo-agent", tag="v1",
        auth_config={"username": auth_registry.username, "password": auth_registry.password},
    )
    assert image.id.removeprefix("sha256:") == image_id(echo_image).removeprefix("sha256:")


def test_hardened_echo_container_answers_the_container_contract(engine: Any, echo_image: str) -> None:
    import docker.types

    started = time.monotonic()
    container = engine.containers.run(
        echo_image, detach=True,
        name=f"dockyard-infra-{uuid.uuid4().hex[:8]}",
        nano_cpus=500_000_000, mem_limit=1024 * 1024 * 1024, memswap_limit=1024 * 1024 * 1024,
        # Both nofile and nproc: naming any ulimit through the API drops podman's configured defaults,
        # and the one left out would then be asked for at 1048576, which these machines refuse.
        ulimits=[docker.types.Ulimit(name="nofile", soft=4096, hard=4096),
                 docker.types.Ulimit(name="nproc", soft=4096, hard=4096)],
        cap_drop=["ALL"], security_opt=["no-new-privileges"], read_only=True, tmpfs={"/tmp": ""},
        labels={TEST_LABEL: "infra", "io.dockyard.agent": "echo"},
        environment={"PORT": "8088", "FOUNDRY_AGENT_NAME": "echo", "FOUNDRY_AGENT_VERSION": "1"},
        ports={"8088/tcp": ("127.0.0.1", None)},
    )
    try:
        container.reload()
        port = int(container.ports["8088/tcp"][0]["HostPort"])
        base = f"http://127.0.0.1:{port}"
        readiness = wait_for_readiness(container, f"{base}/readiness", timeout=90)
        print(f"echo-agent: start -> /readiness 200 in {time.monotonic() - started:.2f}s")
        assert readiness.json() == {"status": "healthy"}

        answer = httpx.post(f"{base}/responses", json={"model": "echo", "input": "hello dockyard"}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "completed"
        assert output_text(body) == "echo: hello dockyard"

        deltas: list[str] = []
        events: list[str] = []
        with httpx.stream("POST", f"{base}/responses", timeout=30,
                          json={"model": "echo", "input": "stream me please", "stream": True}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    events.append(line.removeprefix("event: "))
                elif line.startswith("data: ") and events and events[-1] == "response.output_text.delta":
                    deltas.append(json.loads(line.removeprefix("data: "))["delta"])
        assert events[0] == "response.created" and events[-1] == "response.completed"
        assert len(deltas) > 1 and "".join(deltas) == "echo: stream me please"

        env_answer = httpx.post(f"{base}/responses", json={"model": "echo", "input": "/env FOUNDRY_AGENT_NAME"},
                                timeout=30)
        assert output_text(env_answer.json()) == "env FOUNDRY_AGENT_NAME=echo"

        # What the engine reports, and what the process inside really has.
        container.reload()
        host = container.attrs["HostConfig"]
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == 1024 * 1024 * 1024
        assert host["MemorySwap"] == host["Memory"]
        assert host["ReadonlyRootfs"] is True
        assert host["Privileged"] is False
        assert "no-new-privileges" in (host["SecurityOpt"] or [])
        assert {(u["Name"].removeprefix("RLIMIT_").lower(), u["Soft"], u["Hard"]) for u in host["Ulimits"]} >= {
            ("nofile", 4096, 4096), ("nproc", 4096, 4096)}
        assert "/tmp" in (host["Tmpfs"] or {})
        assert container.labels["io.dockyard.agent"] == "echo"
        assert container.attrs["Config"]["User"] in ("10001:10001", "10001")

        status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
        assert "CapEff:\t0000000000000000" in status
        assert "NoNewPrivs:\t1" in status
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1] == "10001"
        assert container.exec_run(["touch", "/probe"]).exit_code != 0  # read-only root
        assert container.exec_run(["touch", "/tmp/probe"]).exit_code == 0  # writable tmp
        limits = container.exec_run(["cat", "/proc/1/limits"]).output.decode()
        assert any(line.startswith("Max open files") and line.split()[3:5] == ["4096", "4096"]
                   for line in limits.splitlines())
        # The adapter's local response store lives under /tmp (AGENTSERVER_STATE_ROOT), nowhere else.
        stored = container.exec_run(["sh", "-c", "ls /tmp/agentserver/responses/responses | wc -l"]).output
        assert int(stored.decode().strip()) >= 1
    finally:
        logs = container.logs().decode(errors="replace")
        container.remove(force=True)
    assert "echo-agent: starting" in logs


HARDENED = {
    "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "read_only": True, "tmpfs": {"/tmp": ""},
    "labels": {TEST_LABEL: "infra"},
}


def test_crasher_exits_1_with_recognisable_stderr(engine: Any, base_image: str) -> None:
    import docker.types

    image = build_image("dockyard-test/crasher", "infra", FIXTURES / "crasher")
    container = engine.containers.run(image, detach=True, **HARDENED,
                                      ulimits=[docker.types.Ulimit(name="nofile", soft=1024, hard=1024),
                                               docker.types.Ulimit(name="nproc", soft=1024, hard=1024)])
    try:
        assert container.wait(timeout=60)["StatusCode"] == 1
        stderr = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    assert stderr.splitlines()[0] == "crasher: starting"
    assert "crasher: fatal: boom" in stderr.splitlines()


def test_memory_hog_is_killed_by_the_engine_past_its_limit(engine: Any, base_image: str) -> None:
    import docker.types

    image = build_image("dockyard-test/memory-hog", "infra", FIXTURES / "memory-hog")
    container = engine.containers.run(image, detach=True, **HARDENED, mem_limit=128 * 1024 * 1024,
                                      memswap_limit=128 * 1024 * 1024, ports={"8088/tcp": ("127.0.0.1", None)},
                                      ulimits=[docker.types.Ulimit(name="nofile", soft=1024, hard=1024),
                                               docker.types.Ulimit(name="nproc", soft=1024, hard=1024)])
    try:
        container.reload()
        base = f"http://127.0.0.1:{container.ports['8088/tcp'][0]['HostPort']}"
        wait_for_readiness(container, f"{base}/readiness", timeout=60)
        with pytest.raises(httpx.HTTPError):  # the container dies under the request
            httpx.post(f"{base}/responses", json={"model": "hog", "input": "eat"}, timeout=60)
        result = container.wait(timeout=60)
        container.reload()
        logs = container.logs().decode()
    finally:
        container.remove(force=True)
    # SIGKILLed by the kernel's OOM killer. podman 4.3 on cgroup v1 leaves State.OOMKilled false, so the
    # exit code is what a runtime can go by here.
    assert result["StatusCode"] == 137, logs
    assert "memory-hog: POST /responses: allocating until killed" in logs
    assert "not killed" not in logs


def wait_for_readiness(container: Any, url: str, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == 200:
                return answer
        except httpx.HTTPError:
            pass
        container.reload()
        if container.status not in ("created", "running"):
            pytest.fail(f"container {container.status}:\n"
                        f"{container.logs(tail=60).decode(errors='replace')}")
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer 200 within {timeout}s:\n"
                f"{container.logs(tail=60).decode(errors='replace')}")


def output_text(response: dict) -> str:
    return "".join(part["text"] for item in response["output"] if item["type"] == "message"
                   for part in item["content"] if part["type"] == "output_text")
