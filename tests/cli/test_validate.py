"""The real `dockyard validate` command, run as a process: exit codes, --json, where output goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLEAN = """\
kind: hosted
name: my-agent
protocols:
  - protocol: responses
    version: "2.0.0"
image: registry.example.com/my-agent:v1
resources:
  cpu: "1"
  memory: 2Gi
environment_variables:
  - name: OPENAI_API_KEY
    value: ${OPENAI_API_KEY}
"""


def dockyard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "COLUMNS")}
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "agent.yaml").write_text(CLEAN)
    return tmp_path


def test_clean_file_exits_0(project: Path) -> None:
    result = dockyard("validate", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "agent.yaml: 0 errors, 0 warnings: valid" in result.stdout
    assert result.stderr == ""


def test_warnings_alone_still_exit_0_and_are_shown(project: Path) -> None:
    (project / "agent.yaml").write_text(CLEAN.replace(":v1", ":latest"))
    result = dockyard("validate", "agent.yaml", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "image-tag-latest" in result.stdout
    assert "0 errors, 1 warning: valid" in result.stdout


def test_errors_exit_1_with_a_table_on_stdout_and_the_summary_on_stderr(project: Path) -> None:
    (project / "agent.yaml").write_text(CLEAN.replace('cpu: "1"', 'cpu: "6"').replace("${OPENAI_API_KEY}", "sk-live"))
    result = dockyard("validate", str(project), cwd=project.parent)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if "cpu-range" in line or "secret-name" in line]
    assert len(lines) == 2
    assert lines[0].split("│")[1].strip() == "8"  # the line column
    assert lines[1].split("│")[1].strip() == "11"
    assert "\x1b[" not in result.stdout  # no colour when not a terminal
    assert result.stderr.strip() == f"dockyard: error: {project / 'agent.yaml'}: 2 errors, 0 warnings"


def test_json(project: Path) -> None:
    (project / "agent.yaml").write_text(CLEAN.replace("my-agent\n", "my_agent\n", 1))
    result = dockyard("validate", "--json", cwd=project)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert (report["errors"], report["warnings"]) == (1, 0)
    assert report["findings"] == [{
        "rule": "agent-name",
        "severity": "error",
        "message": report["findings"][0]["message"],
        "fix": "Rename the agent, for example `name: my-hosted-agent`.",
        "line": 2,
        "file": None,
    }]
    assert "'my_agent'" in report["findings"][0]["message"]


def test_json_when_clean(project: Path) -> None:
    result = dockyard("validate", "--json", cwd=project)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "path": "agent.yaml", "valid": True, "errors": 0, "warnings": 0, "findings": [],
    }


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = dockyard("validate", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"dockyard: error: There is no agent.yaml in {tmp_path.resolve()}.")
    result = dockyard("validate", "--json", "nowhere/agent.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert json.loads(result.stdout)["findings"][0]["rule"] == "manifest-missing"


def test_broken_yaml_is_a_finding_not_a_crash(project: Path) -> None:
    (project / "agent.yaml").write_text("kind: hosted\nname: [oops\n")
    result = dockyard("validate", "--json", cwd=project)
    assert result.returncode == 1
    [finding] = json.loads(result.stdout)["findings"]
    assert (finding["rule"], finding["line"]) == ("yaml", 3)


def test_dockyard_yaml_findings_name_their_file(project: Path) -> None:
    (project / "dockyard.yaml").write_text("idle_timeout_seconds: 5\n")
    result = dockyard("validate", cwd=project)
    assert result.returncode == 1
    assert any("dockyard.yaml:1" in line and "idle-timeout-range" in line for line in result.stdout.splitlines())


def test_help_explains_the_rules(tmp_path: Path) -> None:
    result = dockyard("validate", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for words in ("secret-name", "cpu 0.5 to 4", "image-tag-latest", "Exit codes"):
        assert words in result.stdout
