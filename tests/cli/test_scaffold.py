"""`dockyard init`: the project it writes validates, loads as the protocol asked, and its own tests pass.

Runs the real `dockyard` process; no engine needed (building and running the project is
tests/e2e/engine/test_workflow.py's job).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.process import dockyard_command

from dockyard.project.manifest import load_manifest

EXPECTED_FILES = {"agent.yaml", "Containerfile", "main.py", "agent.py", "requirements.txt", "requirements-dev.txt",
                  "README.md", ".dockerignore", "conftest.py", "tests/test_agent.py"}


def dockyard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(dockyard_command(*args), cwd=cwd, capture_output=True, text=True, timeout=120)


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("protocol", "adapter"), [
    ("responses", "azure.ai.agentserver.responses"),
    ("invocations", "azure.ai.agentserver.invocations"),
])
def test_init_writes_a_project_that_validates(tmp_path: Path, protocol: str, adapter: str) -> None:
    result = dockyard("init", "my-agent", "--protocol", protocol, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    project = tmp_path / "my-agent"
    assert files_in(project) == EXPECTED_FILES
    for path in project.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), f"unfilled placeholder in {path.name}"

    validated = dockyard("validate", "--json", cwd=project)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert json.loads(validated.stdout)["findings"] == []  # not even a warning

    manifest = load_manifest(project / "agent.yaml")
    assert manifest.name == "my-agent"
    assert manifest.protocols == [(protocol, "2.0.0")]
    assert manifest.dockerfile_path == (project / "Containerfile").absolute()
    assert manifest.resolved_environment({}) == {"AGENT_GREETING": "echo"}

    main = (project / "main.py").read_text()
    ast.parse(main)
    assert f"from {adapter} import" in main
    containerfile = (project / "Containerfile").read_text()
    assert "ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm\nFROM ${BASE_IMAGE}" in containerfile
    pins = [line for line in (project / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    assert pins and all("==" in line for line in pins)
    assert "azure-ai-agentserver-responses==2.3.0" in pins and "azure-ai-agentserver-invocations==1.2.0" in pins


@pytest.mark.parametrize("protocol", ["responses", "invocations"])
def test_the_projects_own_tests_pass(tmp_path: Path, protocol: str) -> None:
    """Without the adapter installed here the round-trip test skips; the answer's tests run for real."""
    assert dockyard("init", "my-agent", "--protocol", protocol, cwd=tmp_path).returncode == 0
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path / "my-agent",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_init_records_base_image_and_registry_in_dockyard_yaml(tmp_path: Path) -> None:
    result = dockyard("init", "my-agent", "--base-image", "localhost/base:1", "--registry", "127.0.0.1:5000/team",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(tmp_path / "my-agent" / "agent.yaml")
    assert manifest.dockyard.base_image == "localhost/base:1"
    assert manifest.dockyard.registry == "127.0.0.1:5000/team"
    assert "ARG BASE_IMAGE=localhost/base:1\n" in (tmp_path / "my-agent" / "Containerfile").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["1-bad"], "Invalid agent name"),
    (["my-agent", "--protocol", "grpc"], "unknown protocol"),
])
def test_init_refuses_bad_input_with_exit_code_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = dockyard("init", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_init_never_overwrites_a_folder(tmp_path: Path) -> None:
    (tmp_path / "my-agent").mkdir()
    (tmp_path / "my-agent" / "notes.txt").write_text("mine")
    result = dockyard("init", "my-agent", cwd=tmp_path)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert files_in(tmp_path / "my-agent") == {"notes.txt"}


@pytest.mark.parametrize("command", ["init", "build", "deploy", "invoke", "logs", "status", "delete"])
def test_every_command_has_help_with_exit_codes(tmp_path: Path, command: str) -> None:
    result = dockyard(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Exit codes" in result.stdout


CODE_FILES = (EXPECTED_FILES - {"Containerfile", ".dockerignore"}) | {".agentignore"}


@pytest.mark.parametrize("protocol", ["responses", "invocations"])
def test_init_code_writes_a_code_based_project_with_nothing_to_build(tmp_path: Path, protocol: str) -> None:
    from dockyard.project.code_zip import project_files

    result = dockyard("init", "my-agent", "--code", "--protocol", protocol, "--runtime", "python_3_12", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'Next: cd my-agent && dockyard deploy && dockyard invoke my-agent "hello"' in result.stdout
    project = tmp_path / "my-agent"
    assert files_in(project) == CODE_FILES
    for path in project.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), f"unfilled placeholder in {path.name}"
    validated = dockyard("validate", "--json", cwd=project)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert json.loads(validated.stdout)["findings"] == []

    manifest = load_manifest(project / "agent.yaml")
    assert manifest.dockerfile_path is None and manifest.image is None
    assert manifest.code is not None
    assert manifest.code.wire() == {"runtime": "python_3_12", "entry_point": ["python", "main.py"],
                                    "dependency_resolution": "remote_build"}
    # What deploy uploads: the agent and what it needs to run, not its tests or notes.
    assert project_files(project)[0] == ["agent.py", "agent.yaml", "main.py", "requirements.txt"]


def test_init_code_defaults_to_this_machines_python_when_foundry_offers_it(tmp_path: Path) -> None:
    assert dockyard("init", "my-agent", "--code", cwd=tmp_path).returncode == 0
    manifest = load_manifest(tmp_path / "my-agent" / "agent.yaml")
    assert manifest.code is not None
    assert manifest.code.runtime == f"python_{sys.version_info.major}_{sys.version_info.minor}"


@pytest.mark.parametrize("args", [["--code", "--runtime", "python_2_7"], ["--runtime", "python_3_12"]])
def test_init_refuses_a_runtime_it_cannot_use(tmp_path: Path, args: list[str]) -> None:
    result = dockyard("init", "my-agent", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert "dockyard: error:" in result.stderr
    assert not (tmp_path / "my-agent").exists()
