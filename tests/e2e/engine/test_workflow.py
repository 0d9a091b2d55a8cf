"""The developer workflow end to end, with the real `dockyard` CLI as a user types it, on podman.

init → build (pushed to a real registry, on the CI base image) → deploy → invoke (plain and streamed) → logs →
status → deploy --target azure (dockyard posing as the Foundry endpoint) → delete. Each step's effect is
checked where it lands: the image in the registry under its digest tag (the registry's own HTTP API), the
version `active` (read back with the SDK), the answer, the container's log lines, the version gone.

The tests run in file order and share one project, as the walkthrough does.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects._utils.model_base import SdkJSONEncoder
from azure.ai.projects.models import HostedAgentDefinition
from azure.core.exceptions import ResourceNotFoundError
from support.engine import engine_dockyard, require_podman
from support.hosted import project_client
from support.images import BASE_IMAGE, ensure_base_image, host_ca_bundle
from support.process import DockyardProcess, dockyard_command
from support.registry import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.engine]

NAME = "walkthrough-agent"
NAMESPACE = "walk"
MANIFEST_MEDIA_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
])


@dataclass
class Walk:
    """What one step leaves for the next."""

    root: Path
    env: dict[str, str]
    project: Path = field(init=False)
    image: str = ""
    manifest_digest: str = ""
    session: str = ""
    local_definition: dict | None = None
    local_images: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.project = self.root / NAME

    def cli(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(dockyard_command(*args), cwd=cwd or self.project, env=env or self.env, text=True,
                              capture_output=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def registry(engine_url: str) -> Iterator[Registry]:
    require_podman()
    ensure_base_image()
    with Registry() as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine_url: str) -> Iterator[DockyardProcess]:
    with engine_dockyard(tmp_path_factory.mktemp("workflow-home"), engine_url) as running:
        yield running


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory, server: DockyardProcess, registry: Registry) -> Iterator[Walk]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AZURE_", "IDENTITY_", "DOCKYARD_"))}
    env.update({"DOCKYARD_HOME": str(server.home), "DOCKYARD_BUILD_NETWORK": "host", "NO_COLOR": "1",
                "COLUMNS": "200"})
    ca = host_ca_bundle()
    if ca:
        env["DOCKYARD_BUILD_CA_BUNDLE"] = ca
    state = Walk(root=tmp_path_factory.mktemp("workflow-projects"), env=env)
    yield state
    # The tags these tests made (their layers are shared with other images and stay); untagging leaves any
    # container still using them alone.
    for tag in (state.image, *state.local_images):
        if tag:
            subprocess.run(["podman", "untag", tag, tag], capture_output=True)


@pytest.fixture(scope="module")
def project(server: DockyardProcess) -> Iterator[AIProjectClient]:
    with project_client(server) as client:
        yield client


def test_init_scaffolds_a_project_that_validates(walk: Walk, registry: Registry) -> None:
    ok(walk.cli("init", NAME, "--base-image", BASE_IMAGE, "--registry", f"{registry.host}/{NAMESPACE}",
                cwd=walk.root))
    for name in ("agent.yaml", "dockyard.yaml", "Containerfile", "main.py", "agent.py", "requirements.txt",
                 "tests/test_agent.py", "README.md", ".dockerignore"):
        assert (walk.project / name).is_file(), name
    result = ok(walk.cli("validate", "--json"))
    assert json.loads(result.stdout)["errors"] == 0


def test_build_pushes_the_image_under_its_digest_tag(walk: Walk, registry: Registry) -> None:
    result = ok(walk.cli("build", "--json"))
    built = json.loads(result.stdout)
    repository, tag = built["image"].rsplit(":", 1)
    assert repository == f"{registry.host}/{NAMESPACE}/{NAME}"
    assert tag.startswith("ctx-") and tag != "latest" and tag == built["tag"]
    assert built["pushed"] is True and built["manifest_digest"].startswith("sha256:")
    assert "Pushed" in result.stderr

    # The registry's own API: the tag is there and names the manifest the push reported.
    path = f"{NAMESPACE}/{NAME}"
    assert tag in httpx.get(f"{registry.url}/v2/{path}/tags/list").json()["tags"]
    manifest = httpx.get(f"{registry.url}/v2/{path}/manifests/{tag}", headers={"Accept": MANIFEST_MEDIA_TYPES})
    assert manifest.status_code == 200
    assert manifest.headers["Docker-Content-Digest"] == built["manifest_digest"]

    # Same folder, same tag, nothing rebuilt; a changed file, a new tag.
    again = json.loads(ok(walk.cli("build", "--json")).stdout)
    assert again["image"] == built["image"] and again["built"] is False
    walk.image, walk.manifest_digest = built["image"], built["manifest_digest"]


def test_deploy_makes_the_version_active(walk: Walk, project: AIProjectClient) -> None:
    result = ok(walk.cli("deploy", "--json"))
    deployed = json.loads(result.stdout)
    assert deployed["status"] == "active" and deployed["version"] == "1" and deployed["image"] == walk.image
    version = project.agents.get_version(agent_name=NAME, agent_version="1")
    assert version.status == "active"
    assert version.definition["container_configuration"]["image"] == walk.image
    assert version.definition["environment_variables"] == {"AGENT_GREETING": "echo"}
    walk.local_definition = version.definition.as_dict()


def test_invoke_answers(walk: Walk) -> None:
    result = ok(walk.cli("invoke", NAME, "hello"))
    assert result.stdout == "echo: hello\n"
    sessions = [line.split("session: ", 1)[1] for line in result.stderr.splitlines() if line.startswith("session: ")]
    assert len(sessions) == 1
    walk.session = sessions[0]


def test_invoke_streams(walk: Walk) -> None:
    events = [json.loads(line) for line in ok(walk.cli("invoke", NAME, "hello stream", "--stream", "--json"))
              .stdout.splitlines()]
    deltas = [event["delta"] for event in events if event["type"] == "response.output_text.delta"]
    assert len(deltas) == 3 and "".join(deltas) == "echo: hello stream"  # word by word, as the agent yields them
    assert events[-1]["type"] == "response.completed"
    assert ok(walk.cli("invoke", NAME, "hello stream", "--stream")).stdout == "echo: hello stream\n"


def test_logs_show_the_request_where_it_ran(walk: Walk) -> None:
    # Without --session, logs follows the sandbox that served the last request: where invoke went.
    result = ok(walk.cli("logs", NAME, "--idle", "3"))
    assert f"{NAME}: request" in result.stdout and "'hello'" in result.stdout
    lines = [json.loads(line) for line in ok(walk.cli("logs", NAME, "--json", "--idle", "3")).stdout.splitlines()]
    assert {"timestamp", "stream", "message"} <= set(lines[0])
    named = ok(walk.cli("logs", NAME, "--session", walk.session, "--idle", "3"))
    assert f"{NAME}: request" in named.stdout


def test_logs_of_the_version_container(walk: Walk) -> None:
    result = ok(walk.cli("logs", NAME, "--session", "default", "--idle", "3"))
    assert f"{NAME}: starting on port 8088" in result.stdout  # this agent's container, its own first line
    assert "GET /readiness" in result.stdout  # dockyard's readiness probe, as the agent saw it


def test_status_lists_the_version(walk: Walk) -> None:
    report = json.loads(ok(walk.cli("status", NAME, "--json")).stdout)
    (agent,) = report["agents"]
    (version,) = agent["versions"]
    assert agent["name"] == NAME
    assert version["version"] == "1" and version["status"] == "active" and version["image"] == walk.image
    assert version["sessions"] >= 1 and walk.session in [s["id"] for s in agent["sessions"]]
    table = ok(walk.cli("status")).stdout
    assert NAME in table and "active" in table and walk.image in table
    assert "\x1b[" not in table  # no colour off a terminal


def test_azure_target_sends_what_the_sdk_sends(walk: Walk, server: DockyardProcess, project: AIProjectClient,
                                               tmp_path: Path) -> None:
    """`deploy --target azure` with AZURE_AI_PROJECT_ENDPOINT at dockyard: no dockyard home to read (an empty one),
    only the endpoint and what DefaultAzureCredential finds, as against Foundry."""
    env = {**walk.env, **server.env(), "DOCKYARD_HOME": str(tmp_path / "no-dockyard-here"), "AGENT_GREETING": "hi"}
    result = ok(walk.cli("deploy", "--target", "azure", "--show-request", "--json", env=env))
    deployed = json.loads(result.stdout)
    assert deployed["status"] == "active" and deployed["version"] == "2"
    assert deployed["endpoint"] == server.endpoint
    assert not (tmp_path / "no-dockyard-here" / "server.json").exists()

    marker = "--- create_version request ---"
    sent = result.stderr.split(marker)[1].strip().split("\n", 1)
    method_and_url, body = sent[0], json.loads(sent[1])
    assert method_and_url.startswith(f"POST {server.endpoint}/agents/{NAME}/versions?api-version=")

    # What azure-ai-projects sends for this agent.yaml's definition, serialised by the SDK itself.
    expected_definition = HostedAgentDefinition(
        cpu="0.5", memory="1Gi", container_configuration={"image": walk.image},
        protocol_versions=[{"protocol": "responses", "version": "2.0.0"}],
        environment_variables={"AGENT_GREETING": "hi"},  # ${AGENT_GREETING:-echo}, resolved from the environment
    )
    expected = json.loads(json.dumps({"definition": expected_definition,
                                      "description": f"{NAME}: a hosted agent that echoes what it is sent."},
                                     cls=SdkJSONEncoder, exclude_readonly=True))
    assert body == expected

    # dockyard kept exactly that definition, and it is the local deploy's, but for the resolved variable.
    stored = project.agents.get_version(agent_name=NAME, agent_version="2").definition.as_dict()
    assert stored == expected["definition"]
    assert walk.local_definition is not None
    assert {**walk.local_definition, "environment_variables": {"AGENT_GREETING": "hi"}} == stored


def test_a_failing_version_shows_its_code_and_last_lines(walk: Walk, tmp_path: Path) -> None:
    broken = tmp_path / "broken-agent"
    ok(walk.cli("init", "broken-agent", "--base-image", BASE_IMAGE, "--dir", str(broken), cwd=tmp_path))
    with open(broken / "agent.py", "a") as source:
        source.write('\nraise SystemExit("broken-agent: boom, no model configured")\n')
    image = ok(walk.cli("build", cwd=broken)).stdout.strip()  # no registry: stays in the local engine
    assert image.startswith("localhost/broken-agent:ctx-")
    walk.local_images.append(image)
    result = walk.cli("deploy", "--timeout", "180", cwd=broken)
    assert result.returncode == 1, result.stderr
    assert "broken-agent version 1 failed: CrashLoopBackOff" in result.stderr
    assert "boom, no model configured" in result.stderr
    ok(walk.cli("delete", "broken-agent", "--force", cwd=broken))


def test_delete_removes_the_version_then_the_agent(walk: Walk, project: AIProjectClient) -> None:
    assert ok(walk.cli("delete", NAME, "--version", "2")).stdout == f"Deleted {NAME} version 2.\n"
    with pytest.raises(ResourceNotFoundError):
        project.agents.get_version(agent_name=NAME, agent_version="2")
    assert [v["version"] for v in json.loads(ok(walk.cli("status", NAME, "--json")).stdout)["agents"][0]["versions"]] \
        == ["1"]

    refused = walk.cli("delete", NAME)  # version 1 has a live session: Foundry and dockyard refuse without force
    assert refused.returncode == 1 and "ActiveSessionsExist" in refused.stderr
    ok(walk.cli("delete", NAME, "--force"))
    gone = walk.cli("status", NAME)
    assert gone.returncode == 4 and "AgentNotFound" in gone.stderr
