"""The README's walkthrough on a machine with no container engine, with the real `dockyard` CLI:
`dockyard init --code`, `deploy`, `invoke`, `logs`, `status`, against `dockyard up --runtime process` with every
engine hidden (tests/support/process.py points DOCKER_HOST at a socket nobody serves).

The project is the one `init --code` writes, unchanged: Microsoft's hosting adapter with its pinned
requirements, installed by dockyard with pip (remote_build) from the package index. That install is most of
this test's time on a cold pip cache (minutes); dockyard caches the environment by what it installs, so a
second deploy of the same requirements builds nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.process import DockyardProcess, dockyard_command

NAME = "walk-agent"
BUILD_TIMEOUT = 900.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DockyardProcess]:
    dockyard = DockyardProcess(home=tmp_path / "home", runtime="process").start()
    yield dockyard
    if dockyard.process and dockyard.process.poll() is None:
        dockyard.stop()
    subprocess.run(dockyard_command("down", "--home", str(dockyard.home)), capture_output=True, timeout=60)


def cli(server: DockyardProcess, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real `dockyard` command, with DOCKYARD_HOME as the README's reader has it after `make run`."""
    env = {**os.environ, "DOCKYARD_HOME": str(server.home), "NO_COLOR": "1"}
    return subprocess.run(dockyard_command(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_init_code_deploy_invoke_logs_without_an_engine(server: DockyardProcess, tmp_path: Path) -> None:
    created = cli(server, "init", NAME, "--code", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    project = tmp_path / NAME
    assert not (project / "Containerfile").exists()

    started = time.monotonic()
    deployed = cli(server, "deploy", "--json", "--timeout", str(BUILD_TIMEOUT), cwd=project,
                   timeout=BUILD_TIMEOUT + 60)
    deploy_seconds = time.monotonic() - started
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    report = json.loads(deployed.stdout)
    assert report["status"] == "active" and report["image"] is None, report
    assert report["code"]["files"] == 4  # agent.py, agent.yaml, main.py, requirements.txt (.agentignore's rules)
    assert "Zipped 4 files" in deployed.stderr and "Uploading" in deployed.stderr
    print(f"deploy with remote_build: {deploy_seconds:.1f}s")  # shown with -s; the figure is in the report

    answered = cli(server, "invoke", NAME, "hello", cwd=project)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == "echo: hello"

    logs = cli(server, "logs", NAME, cwd=project)
    assert logs.returncode == 0, logs.stderr
    assert f"{NAME}: starting on port" in logs.stdout
    assert f"{NAME}: request" in logs.stdout and "'hello'" in logs.stdout

    status = cli(server, "status", NAME, "--json", cwd=project)
    assert status.returncode == 0, status.stderr
    [agent] = json.loads(status.stdout)["agents"]
    [version] = agent["versions"]
    assert version["status"] == "active"
    assert version["image"] == f"code {report['code']['sha256'][:12]}"

    # The same folder zips to the same bytes: the service hands back the version it has, no second build.
    again = cli(server, "deploy", "--json", cwd=project, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["version"] == report["version"]


def test_a_broken_entry_point_fails_the_deploy_with_its_last_lines(server: DockyardProcess, tmp_path: Path) -> None:
    """A code agent that crashes at start: deploy exits 1 with the failure's code and the agent's own output."""
    project = tmp_path / "crasher"
    project.mkdir()
    (project / "main.py").write_text("import sys\nprint('crasher: giving up', flush=True)\nsys.exit(3)\n")
    (project / "agent.yaml").write_text(
        "kind: hosted\nname: crasher\nprotocols:\n  - protocol: responses\n    version: \"2.0.0\"\n"
        "codeConfiguration:\n  runtime: python_3_11\n  entryPoint: main.py\n  dependencyResolution: bundled\n"
        "resources:\n  cpu: \"0.5\"\n  memory: 1Gi\n"
    )
    deployed = cli(server, "deploy", "--timeout", "180", cwd=project, timeout=240)
    assert deployed.returncode == 1, deployed.stdout + deployed.stderr
    assert "crasher version 1 failed" in deployed.stderr
    assert "crasher: giving up" in deployed.stderr


STDLIB_AGENT = Path(__file__).parents[1] / "fixtures" / "code" / "stdlib-agent" / "main.py"


def test_target_azure_sends_the_same_upload_and_bundled_packages_travel(server: DockyardProcess,
                                                                         tmp_path: Path) -> None:
    """`--target azure` is the same create_version_from_code against AZURE_AI_PROJECT_ENDPOINT (dockyard here,
    standing in for Foundry); a bundled project's packages/ is uploaded and importable, its tests are not."""
    project = tmp_path / "bundled"
    (project / "packages" / "greeting").mkdir(parents=True)
    (project / "packages" / "greeting" / "__init__.py").write_text("VALUE = 'from packages'\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_it.py").write_text("def test(): pass\n")
    (project / ".agentignore").write_text("tests\n")
    (project / "main.py").write_bytes(STDLIB_AGENT.read_bytes())
    (project / "agent.yaml").write_text(
        "kind: hosted\nname: bundled\nprotocols:\n  - protocol: responses\n    version: \"2.0.0\"\n"
        "codeConfiguration:\n  runtime: python_3_11\n  entryPoint: main.py\n  dependencyResolution: bundled\n"
        "resources:\n  cpu: \"0.5\"\n  memory: 1Gi\n"
    )
    env = {**os.environ, **server.env(), "NO_COLOR": "1"}
    env.pop("DOCKYARD_HOME", None)
    deployed = subprocess.run(dockyard_command("deploy", "--target", "azure", "--json", "--show-request"),
                              cwd=project, env=env, capture_output=True, text=True, timeout=240)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    report = json.loads(deployed.stdout)
    assert report["status"] == "active" and report["target"] == "azure"
    assert report["code"]["files"] == 4  # .agentignore, agent.yaml, main.py, packages/greeting/__init__.py
    assert f"POST {server.endpoint}/agents/bundled/versions?api-version=v1" in deployed.stderr
    answered = subprocess.run(dockyard_command("invoke", "bundled", "/import greeting", "--target", "azure"),
                              cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == "import from packages"


def test_an_invocations_code_agent_answers_through_the_cli(server: DockyardProcess, tmp_path: Path) -> None:
    """`init --code --protocol invocations`: the same requirements (so the same cached environment), invoked on
    its Invocations endpoint; the CLI prints the agent's `reply`, and the whole body with --json."""
    assert cli(server, "init", "inv-agent", "--code", "--protocol", "invocations", cwd=tmp_path).returncode == 0
    project = tmp_path / "inv-agent"
    deployed = cli(server, "deploy", "--timeout", str(BUILD_TIMEOUT), cwd=project, timeout=BUILD_TIMEOUT + 60)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    answered = cli(server, "invoke", "inv-agent", "hello", cwd=project)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == "echo: hello"
    assert "session: " in answered.stderr
    whole = cli(server, "invoke", "inv-agent", "hello", "--json", cwd=project)
    assert json.loads(whole.stdout) == {"reply": "echo: hello"}
