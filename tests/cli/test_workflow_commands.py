"""The workflow commands without an engine: the build's digest tag, deploy's refusals, and the targets' errors.

Real processes against a real `dockyard up --no-engine` where a server is needed; nothing is faked.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support.process import DockyardProcess, dockyard_command

from dockyard.cli.logs import parse_events
from dockyard.project import build as builds


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "DOCKYARD_"))}
    return subprocess.run(dockyard_command(*args), cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert run("init", "my-agent", cwd=tmp_path).returncode == 0
    return tmp_path / "my-agent"


# -- the content digest ---------------------------------------------------------------------------------


def digest(project: Path, args: dict[str, str] | None = None) -> str:
    return builds.context_digest(project, project / "Containerfile", args or {})


def test_the_tag_follows_the_image_inputs_and_nothing_else(project: Path) -> None:
    first = digest(project)
    assert digest(project) == first  # stable
    (project / "agent.yaml").write_text((project / "agent.yaml").read_text().replace('cpu: "0.5"', 'cpu: "1"'))
    (project / "tests" / "test_more.py").write_text("")
    (project / "README.md").write_text("changed")
    assert digest(project) == first  # .dockerignore'd: not in the image, not in the tag
    (project / "agent.py").write_text((project / "agent.py").read_text() + "\n# changed\n")
    second = digest(project)
    assert second != first
    assert digest(project, {"BASE_IMAGE": "localhost/other:1"}) not in (first, second)


def test_image_references_are_never_latest() -> None:
    assert builds.image_reference("127.0.0.1:5000/team/", "my-agent", "ab" * 32) == \
        "127.0.0.1:5000/team/my-agent:ctx-" + ("ab" * 10)
    assert builds.image_reference(None, "my-agent", "cd" * 32) == "localhost/my-agent:ctx-" + ("cd" * 10)


def test_push_speaks_plain_http_only_to_this_machine() -> None:
    assert builds.is_local_registry("127.0.0.1:5000") and builds.is_local_registry("localhost")
    assert not builds.is_local_registry("myacr.azurecr.io")


# -- refusals before anything is sent -------------------------------------------------------------------


def test_deploy_refuses_an_unbuilt_project(project: Path) -> None:
    result = run("deploy", cwd=project)
    assert result.returncode == 2 and "has not been built" in result.stderr


def test_deploy_refuses_a_changed_project(project: Path) -> None:
    plan = builds.BuildPlan(builder="podman", context=project, containerfile=project / "Containerfile",
                            image="localhost/my-agent:ctx-0", digest=digest(project), registry=None)
    builds.write_record(project, plan, pushed=False, digest=None)
    (project / "main.py").write_text((project / "main.py").read_text() + "\n# changed\n")
    result = run("deploy", cwd=project)
    assert result.returncode == 2 and "files changed since the last `dockyard build`" in result.stderr


def test_deploy_checks_every_validate_rule_first(project: Path) -> None:
    manifest = project / "agent.yaml"
    manifest.write_text(manifest.read_text().replace('cpu: "0.5"', 'cpu: "6"'))
    result = run("deploy", "--image", "localhost/my-agent:ctx-1", cwd=project)
    assert result.returncode == 2
    assert "cpu" in result.stderr and "agent.yaml:" in result.stderr


def test_deploy_names_an_unset_variable(project: Path) -> None:
    manifest = project / "agent.yaml"
    manifest.write_text(manifest.read_text().replace("${AGENT_GREETING:-echo}", "${GREETING_NOBODY_SET}"))
    result = run("deploy", "--image", "localhost/my-agent:ctx-1", "--target", "azure", cwd=project,
                      env={"AZURE_AI_PROJECT_ENDPOINT": "https://example.invalid/api/projects/p"})
    assert result.returncode == 2 and "GREETING_NOBODY_SET" in result.stderr


def test_azure_target_needs_an_endpoint(project: Path) -> None:
    result = run("status", "--target", "azure", cwd=project)
    assert result.returncode == 2 and "AZURE_AI_PROJECT_ENDPOINT is not set" in result.stderr


def test_local_target_needs_a_running_dockyard(tmp_path: Path) -> None:
    result = run("status", cwd=tmp_path, env={"DOCKYARD_HOME": str(tmp_path / "home")})
    assert result.returncode == 3 and "no dockyard is running" in result.stderr


# -- against a real dockyard (no engine) ----------------------------------------------------------------


def test_read_commands_on_a_running_dockyard(dockyard: DockyardProcess, tmp_path: Path) -> None:
    env = {"DOCKYARD_HOME": str(dockyard.home), "NO_COLOR": "1"}
    empty = subprocess.run(dockyard_command("status", "--json"), capture_output=True, text=True, timeout=60,
                           env={**os.environ, **env})
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout) == {"agents": []}
    missing = subprocess.run(dockyard_command("logs", "nobody-here"), capture_output=True, text=True, timeout=60,
                             env={**os.environ, **env})
    assert missing.returncode == 4 and "AgentNotFound" in missing.stderr
    gone = subprocess.run(dockyard_command("delete", "nobody-here"), capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    assert gone.returncode == 4


# -- the log stream's frames ----------------------------------------------------------------------------


def test_log_frames_split_anywhere_still_parse() -> None:
    stream = (b'event: log\ndata: {"timestamp": "t1", "stream": "status", "message": "connected"}\n\n'
              b'event: log\ndata: {"timestamp": "t2", "stream": "stdout", "message": "hello"}\n\n'
              b"event: log\ndata: plain text\n\n")
    chunks = [stream[i:i + 7] for i in range(0, len(stream), 7)]
    lines = list(parse_events(chunks))
    assert [(line.timestamp, line.stream, line.message) for line in lines] == [
        ("t1", "status", "connected"), ("t2", "stdout", "hello"), (None, "stdout", "plain text")]
