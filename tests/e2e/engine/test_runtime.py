"""Hosted versions really running: a real engine, a real registry, real images, real SDKs.

Each test creates versions through azure-ai-projects against a `dockyard up` that drives the engine,
then checks what the engine itself reports (inspect), not what dockyard says about it.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import ContainerConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.identity import DefaultAzureCredential
from support.engine import DOCKYARD_LABEL, FIXTURE_IMAGES, engine_dockyard
from support.images import build_image, ensure_base_image, push_image
from support.process import DockyardProcess, dockyard_command
from support.registry import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


@pytest.fixture(scope="module")
def engine(engine_url: str) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=engine_url, timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with Registry() as running:
        yield running


@pytest.fixture(scope="module")
def auth_registry() -> Iterator[Registry]:
    with Registry(username="puller", password="s3cret-pull") as running:
        yield running


@pytest.fixture(scope="module")
def images(engine_url: str, registry: Registry, auth_registry: Registry) -> dict[str, str]:
    ensure_base_image()
    built = {name: build_image(name, "v1", FIXTURE_IMAGES / name)
             for name in ("echo-agent", "crasher", "memory-hog")}
    refs = {name: f"{registry.host}/{name}:v1" for name in built}
    for name, local in built.items():
        push_image(local, refs[name])
    refs["echo-agent-private"] = f"{auth_registry.host}/echo-agent:v1"
    push_image(built["echo-agent"], refs["echo-agent-private"],
               creds=f"{auth_registry.username}:{auth_registry.password}")
    return refs


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine_url: str,
           images: dict[str, str]) -> Iterator[DockyardProcess]:
    with engine_dockyard(tmp_path_factory.mktemp("runtime-home"), engine_url) as running:
        yield running


@pytest.fixture
def client(server: DockyardProcess, monkeypatch: pytest.MonkeyPatch) -> AIProjectClient:
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    return AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential())


def definition(image: str, cpu: str = "1", memory: str = "2Gi", env: dict[str, str] | None = None,
               **extra: Any) -> HostedAgentDefinition:
    return HostedAgentDefinition(
        cpu=cpu, memory=memory,
        container_configuration=ContainerConfiguration(image=image, **extra),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="2.0.0")],
        environment_variables={"GREETING": "hello", **(env or {})},
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for_status(client: AIProjectClient, name: str, version: str, wanted: set[str], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        current = client.agents.get_version(agent_name=name, agent_version=version)
        if current.status in wanted or time.monotonic() > deadline:
            return current
        time.sleep(0.5)


def containers_of(engine: docker.DockerClient, name: str, version: str | None = None) -> list[Any]:
    filters = [f"{DOCKYARD_LABEL}.agent={name}"] + ([f"{DOCKYARD_LABEL}.version={version}"] if version else [])
    return engine.containers.list(all=True, filters={"label": filters})


def test_create_runs_the_image_with_its_limits_and_delete_removes_it(
    client: AIProjectClient, engine: docker.DockerClient, images: dict[str, str]
) -> None:
    name = unique("echo")
    created = client.agents.create_version(agent_name=name,
                                           definition=definition(images["echo-agent"], "0.5", "1536Mi"))
    assert created.status == "creating"
    active = wait_for_status(client, name, created.version, {"active", "failed"})
    assert active.status == "active", active.get("error")

    [container] = containers_of(engine, name)
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 1536 * 1024 * 1024
    assert host["MemorySwap"] == host["Memory"]  # no swap beyond the limit
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    # Capabilities: none effective for the agent's process, whatever way the engine spells the drop.
    status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
    assert "CapEff:\t0000000000000000" in status
    assert any("no-new-privileges" in opt for opt in host["SecurityOpt"] or [])
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert env["FOUNDRY_AGENT_NAME"] == name and env["FOUNDRY_AGENT_VERSION"] == "1"
    assert env["FOUNDRY_AGENT_ID"] == f"{name}:1" and env["PORT"] == "8088" and env["GREETING"] == "hello"
    assert env["FOUNDRY_PROJECT_ENDPOINT"].endswith("/api/projects/default")

    client.agents.delete_version(agent_name=name, agent_version="1")
    deadline = time.monotonic() + 60
    while containers_of(engine, name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert containers_of(engine, name) == []


def test_missing_image_fails_with_invalid_container_image(client: AIProjectClient, registry: Registry,
                                                          server: DockyardProcess) -> None:
    name = unique("missing")
    failed_pulls = _pulls(server, "failed")
    created = client.agents.create_version(agent_name=name, definition=definition(f"{registry.host}/no-such-image:v1"))
    failed = wait_for_status(client, name, created.version, {"failed", "active"})
    assert failed.status == "failed"
    assert failed["error"]["code"] == "InvalidContainerImage"
    assert "no-such-image" in failed["error"]["message"]
    assert _pulls(server, "failed") > failed_pulls  # /metrics counts each pull attempt


def _pulls(server: DockyardProcess, outcome: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    env = server.env()
    verify = ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])
    token = httpx.get(env["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"},
                      headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]}, verify=verify).json()["access_token"]
    scraped = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {token}"}, verify=verify)
    assert scraped.status_code == 200, scraped.text
    return sum(sample.value for family in text_string_to_metric_families(scraped.text) for sample in family.samples
               if sample.name == "dockyard_image_pulls_total" and sample.labels.get("outcome") == outcome)


def test_registry_credentials(client: AIProjectClient, server: DockyardProcess, images: dict[str, str],
                              auth_registry: Registry) -> None:
    name = unique("private")
    refused = client.agents.create_version(agent_name=name, definition=definition(images["echo-agent-private"]))
    refused = wait_for_status(client, name, refused.version, {"failed", "active"})
    assert refused.status == "failed" and refused["error"]["code"] == "ImagePullBackOff"
    assert "dockyard registry add" in refused["error"]["message"]

    added = subprocess.run(
        dockyard_command("registry", "add", "private-registry", "--server", auth_registry.host,
                         "--username", auth_registry.username, "--password-stdin", "--home", str(server.home)),
        input=auth_registry.password, capture_output=True, text=True, timeout=60,
    )
    assert added.returncode == 0, added.stderr
    named = client.agents.create_version(
        agent_name=name, definition=definition(images["echo-agent-private"], registry_connection_id="private-registry"))
    assert wait_for_status(client, name, named.version, {"failed", "active"}).status == "active"


def test_crashing_image_ends_in_crash_loop_back_off(client: AIProjectClient, engine: docker.DockerClient,
                                                    images: dict[str, str]) -> None:
    name = unique("crash")
    created = client.agents.create_version(agent_name=name, definition=definition(images["crasher"]))
    failed = wait_for_status(client, name, created.version, {"failed", "active"}, timeout=240)
    assert failed.status == "failed" and failed["error"]["code"] == "CrashLoopBackOff"
    assert "crasher: fatal: boom" in failed["error"]["message"]  # its last log lines
    deadline = time.monotonic() + 30
    while containers_of(engine, name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert containers_of(engine, name) == []
    assert client.agents.list_versions(agent_name=name)  # dockyard itself is fine


def test_memory_past_the_limit_is_killed_and_reported(client: AIProjectClient, images: dict[str, str]) -> None:
    name = unique("hog")
    # The hog answers /readiness first (so the version goes active), then allocates until the engine kills it.
    hog = definition(images["memory-hog"], memory="1Gi", env={"HOG_START_AFTER_SECONDS": "3"})
    created = client.agents.create_version(agent_name=name, definition=hog)
    failed = wait_for_status(client, name, created.version, {"failed"}, timeout=240)
    assert failed.status == "failed", failed
    assert failed["error"]["code"] == "OOMKilled"
    assert "memory limit (1Gi" in failed["error"]["message"] and "137" in failed["error"]["message"]


@pytest.mark.docker_too
def test_log_stream_relays_the_container_output(client: AIProjectClient, server: DockyardProcess,
                                                images: dict[str, str]) -> None:
    name = unique("logs")
    created = client.agents.create_version(agent_name=name, definition=definition(images["echo-agent"]))
    assert wait_for_status(client, name, created.version, {"active", "failed"}).status == "active"
    env = server.env()
    token = httpx.get(env["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"},
                      headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
                      verify=ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])).json()
    url = f"{server.endpoint}/agents/{name}/versions/1/sessions/default:logstream"
    frames: list[dict[str, str]] = []
    with httpx.stream("GET", url, params={"api-version": "v1"},
                      verify=ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"]), timeout=30,
                      headers={"Authorization": f"Bearer {token['access_token']}"}) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith("data: "):
                frames.append(json.loads(line.removeprefix("data: ")))
            if len(frames) >= 2:
                break
    assert frames[0]["stream"] == "status"
    assert all({"timestamp", "stream", "message"} <= set(frame) for frame in frames)


def test_agent_identity_is_scoped_to_its_version(client: AIProjectClient, server: DockyardProcess,
                                                 engine: docker.DockerClient, images: dict[str, str]) -> None:
    name = unique("identity")
    created = client.agents.create_version(agent_name=name, definition=definition(images["echo-agent"]))
    assert wait_for_status(client, name, created.version, {"active", "failed"}).status == "active"
    [container] = containers_of(engine, name)
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    bundle = server.env()["REQUESTS_CA_BUNDLE"]
    # Inside a sandbox, DefaultAzureCredential reaches dockyard over the bridge, trusts its CA, gets a token. (Asked
    # through the gateway, as Foundry's platform would: the adapter, hosted, wants the call id the gateway sends.)
    inside = client.get_openai_client(agent_name=name).responses.create(input="/token")
    assert inside.output_text.startswith("token: ok"), inside.output_text
    # What DefaultAzureCredential inside the container does, done from the host against the same endpoint.
    answer = httpx.get(f"{server.url}/msi/token", params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"},
                       headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
                       verify=ssl.create_default_context(cafile=bundle))
    assert answer.status_code == 200
    token = answer.json()["access_token"]
    manage = httpx.get(f"{server.endpoint}/agents", params={"api-version": "v1"},
                       headers={"Authorization": f"Bearer {token}"}, verify=ssl.create_default_context(cafile=bundle))
    assert manage.status_code == 403 and manage.json()["error"]["code"] == "AgentIdentityNotAllowed"
    forged = env["IDENTITY_HEADER"][:-4] + "0000"
    assert httpx.get(f"{server.url}/msi/token", params={"api-version": "2019-08-01", "resource": "https://ai.azure.com"},
                     headers={"X-IDENTITY-HEADER": forged},
                     verify=ssl.create_default_context(cafile=bundle)).status_code == 401


def test_kill_nine_then_restart_adopts_running_containers(
    client: AIProjectClient, server: DockyardProcess, engine: docker.DockerClient, images: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = unique("adopt")
    for _ in range(2):
        created = client.agents.create_version(agent_name=name, definition=definition(images["echo-agent"]))
        assert wait_for_status(client, name, created.version, {"active", "failed"}).status == "active"
    before = sorted(c.id for c in containers_of(engine, name))
    assert len(before) == 2

    server.kill()
    server.start()
    for variable, value in server.env().items():
        monkeypatch.setenv(variable, value)
    restarted = AIProjectClient(endpoint=server.endpoint, credential=DefaultAzureCredential())
    time.sleep(5)  # a couple of reconcile passes
    after = sorted(c.id for c in containers_of(engine, name))
    assert after == before  # adopted: none duplicated, none orphaned
    assert all(c.status == "running" for c in containers_of(engine, name))
    assert [v.status for v in restarted.agents.list_versions(agent_name=name)] == ["active", "active"]


@pytest.mark.docker_too
def test_legacy_sdk_version_runs(server: DockyardProcess, images: dict[str, str]) -> None:
    from support.legacy_venv import legacy_python

    script = f"""
import json, os, time
from azure.identity import DefaultAzureCredential
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import ImageBasedHostedAgentDefinition, ProtocolVersionRecord, AgentProtocol
client = AIProjectClient(endpoint=os.environ["AZURE_AI_PROJECT_ENDPOINT"], credential=DefaultAzureCredential())
agent = client.agents.create_version(agent_name="legacy-runs", definition=ImageBasedHostedAgentDefinition(
    container_protocol_versions=[ProtocolVersionRecord(protocol=AgentProtocol.RESPONSES, version="v1")],
    cpu="1", memory="2Gi", image={images["echo-agent"]!r}))
deadline = time.time() + 180
while time.time() < deadline:
    current = client.agents.get_version(agent_name="legacy-runs", agent_version=agent.version)
    if current["status"] in ("active", "failed"):
        break
    time.sleep(0.5)
print(json.dumps({{"status": current["status"], "image": current["definition"]["image"]}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")} | server.env()
    result = subprocess.run([str(legacy_python()), "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"status": "active", "image": images["echo-agent"]}



def test_latest_is_pulled_again_on_each_activation(
    client: AIProjectClient, engine: docker.DockerClient, registry: Registry, images: dict[str, str]
) -> None:
    name = unique("latest")
    floating = f"{registry.host}/floating:latest"
    # Two different images pushed in turn under the same `latest` tag: each activation must see the newest.
    first_local = build_image("echo-agent", "v1", FIXTURE_IMAGES / "echo-agent")
    second_local = build_image("memory-hog", "v1", FIXTURE_IMAGES / "memory-hog")
    image_ids = []
    for local in (first_local, second_local):
        push_image(local, floating)
        created = client.agents.create_version(agent_name=name, definition=definition(floating))
        assert wait_for_status(client, name, created.version, {"active", "failed"}).status == "active"
        [container] = containers_of(engine, name, created.version)
        image_ids.append(container.attrs["Image"])
    assert image_ids[0] != image_ids[1]
    assert image_ids[1] == engine.images.get(second_local).id
