"""`dockyard --help` and `dockyard status` answer at once: what they import, not how long they take (timings are
bench territory and this machine is shared), read from `python -X importtime`.

The heavy imports are the 2.x SDK (azure-ai-projects pulls in openai's types: 1.3-2 s), azure-identity, the
server's stack (fastapi, uvicorn, sqlalchemy), jsonschema (agent.yaml's schema) and typer's Rich help renderer.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support.process import DockyardProcess, dockyard_command

SERVER_AND_SDK = ("azure.ai.projects", "azure.identity", "azure.core", "openai", "fastapi", "uvicorn", "sqlalchemy",
                  "starlette")
HELP_ALSO_SKIPS = ("jsonschema", "yaml", "typer.rich_utils", "rich", "httpx")


def imported(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `python -X importtime -m dockyard ARGS`; the modules it imported, from importtime's report on stderr."""
    python, *rest = dockyard_command(*args)
    result = subprocess.run([python, "-X", "importtime", *rest], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})})
    modules = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "dockyard.cli.main" in modules, result.stderr[-2000:]
    return result, modules


def loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def test_help_imports_neither_the_sdk_nor_the_server_nor_rich() -> None:
    result, modules = imported("--help")
    assert result.returncode == 0 and "deploy" in result.stdout
    for package in SERVER_AND_SDK + HELP_ALSO_SKIPS:
        assert not loaded(modules, package), f"dockyard --help imported {loaded(modules, package)[:5]}"


@pytest.mark.parametrize("command", ["init", "deploy", "status", "validate", "up"])
def test_a_commands_help_is_as_light(command: str) -> None:
    result, modules = imported(command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout
    for package in SERVER_AND_SDK + ("jsonschema", "typer.rich_utils"):
        assert not loaded(modules, package), f"dockyard {command} --help imported {loaded(modules, package)[:5]}"


def test_status_reads_a_running_dockyard_without_the_sdk(dockyard: DockyardProcess, tmp_path: Path) -> None:
    """The local target reads the REST API with the standard library; the answer is the same JSON."""
    result, modules = imported("status", "--json", env={"DOCKYARD_HOME": str(dockyard.home)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {"agents": []}
    for package in SERVER_AND_SDK:
        assert not loaded(modules, package), f"dockyard status imported {loaded(modules, package)[:5]}"


def test_status_of_a_missing_agent_is_exit_4_without_the_sdk(dockyard: DockyardProcess) -> None:
    result, modules = imported("status", "nobody-here", env={"DOCKYARD_HOME": str(dockyard.home)})
    assert result.returncode == 4 and "AgentNotFound" in result.stderr
    assert not loaded(modules, "azure.ai.projects")


def test_invoke_on_the_local_dockyard_goes_without_the_sdk(dockyard: DockyardProcess) -> None:
    """Without --stream, invoke makes the openai client's request itself (its answers: tests/e2e)."""
    result, modules = imported("invoke", "nobody-here", "hello", env={"DOCKYARD_HOME": str(dockyard.home)})
    assert result.returncode == 4 and "invoking nobody-here: AgentNotFound" in result.stderr
    for package in SERVER_AND_SDK:
        assert not loaded(modules, package), f"dockyard invoke imported {loaded(modules, package)[:5]}"
