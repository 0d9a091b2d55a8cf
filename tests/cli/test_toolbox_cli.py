"""`dockyard toolbox add/list/show/remove` against a running dockyard (process runtime, no engine needed)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.mcp_server import McpTestServer, serve_mcp
from support.process import DockyardProcess, dockyard_command

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    running = DockyardProcess(home=tmp_path_factory.mktemp("toolbox-cli") / "home", runtime="process").start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[McpTestServer]:
    with serve_mcp() as running:
        yield running


def toolbox(server: DockyardProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(dockyard_command("toolbox", *args, "--home", str(server.home)), capture_output=True,
                          text=True, timeout=120)


def test_add_list_show_remove(server: DockyardProcess, mcp_server: McpTestServer, tmp_path: Path) -> None:
    added = toolbox(server, "add", "kit", "--mcp", mcp_server.url, "--label", "calc", "--header",
                    "Authorization=Bearer cli-secret", "--require-approval", "never", "--description", "calculator")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"toolbox kit version 1: mcp calc ({mcp_server.url})"

    entries = tmp_path / "tools.json"
    entries.write_text(json.dumps({"tools": [{"type": "mcp", "server_label": "text", "server_url": mcp_server.url,
                                              "allowed_tools": ["echo"]}], "description": "from a file"}))
    second = toolbox(server, "add", "kit", "--from", str(entries), "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["version"] == "2"
    assert json.loads(second.stdout)["description"] == "from a file"

    listed = toolbox(server, "list", "--json")
    [kit] = json.loads(listed.stdout)
    assert (kit["name"], kit["default_version"]) == ("kit", "2")
    table = toolbox(server, "list")
    assert "kit" in table.stdout and f"mcp text ({mcp_server.url})" in table.stdout

    shown = toolbox(server, "show", "kit")
    assert shown.returncode == 0, shown.stderr
    assert f"MCP endpoint: {server.endpoint}/toolboxes/kit/mcp?api-version=v1" in shown.stdout
    assert "allowed_tools" in shown.stdout and "from a file" in shown.stdout
    first = json.loads(toolbox(server, "show", "kit", "--json").stdout)
    assert first["versions"]["latest"]["version"] == "2"
    assert "cli-secret" not in shown.stdout + listed.stdout + added.stdout + server.logs()

    removed = toolbox(server, "remove", "kit")
    assert removed.returncode == 0 and removed.stdout.strip() == "removed toolbox kit"
    gone = toolbox(server, "show", "kit")
    assert gone.returncode == 4 and "ToolboxNotFound" in gone.stderr


def test_refusals_have_clear_messages_and_exit_codes(server: DockyardProcess, mcp_server: McpTestServer) -> None:
    nothing = toolbox(server, "add", "kit")
    assert nothing.returncode == 2 and "give at least one tool" in nothing.stderr
    unpaired = toolbox(server, "add", "kit", "--mcp", mcp_server.url)
    assert unpaired.returncode == 2 and "one --label for each --mcp" in unpaired.stderr
    bad_label = toolbox(server, "add", "kit", "--mcp", mcp_server.url, "--label", "has space")
    assert bad_label.returncode == 1 and "InvalidTool" in bad_label.stderr
    bad_name = toolbox(server, "add", "no/pe", "--mcp", mcp_server.url, "--label", "calc")
    assert bad_name.returncode != 0
    assert toolbox(server, "remove", "missing").returncode == 4
    assert json.loads(toolbox(server, "list", "--json").stdout) == []
