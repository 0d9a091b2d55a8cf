"""`dockyard status [NAME]`: agents, their versions, each version's status and live sessions, at a glance.

Read through the same SDK calls a Foundry user would make (`agents.list`, `list_versions`, `list_sessions`),
so it shows Foundry projects too.
"""

from __future__ import annotations

import datetime
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from dockyard.cli.connect import HomeOption, Target, TargetOption, api_errors, project_client
from dockyard.cli.output import print_json, stdout

_STATUS_STYLE = {"active": "green", "failed": "red", "creating": "yellow", "deleting": "yellow"}
_LIVE_SESSIONS = ("active", "creating", "running", "idle")


def status_command(
    name: str = typer.Argument(None, help="One agent (default: every agent in the project)."),
    json_output: bool = typer.Option(False, "--json", help="Print agents, versions and sessions as JSON."),
    target: Target = TargetOption,
    home: Path = HomeOption,
) -> None:
    """Show agents, their versions, each version's status, image and sessions.

    Exit codes: 0 shown; 1 the service failed; 3 target unreachable or credential refused; 4 no such agent.
    """
    client = project_client(target, home)
    with api_errors("reading status"):
        names = [name] if name else [str(agent.name) for agent in client.agents.list()]
        report = [_agent(client, agent_name) for agent_name in names]
    if json_output:
        print_json({"agents": report})
        return
    if not report:
        stdout().print("No agents yet: `dockyard init NAME`, then build and deploy it.", markup=False)
        return
    table = Table(show_lines=False)
    for column in ("agent", "version", "status", "image", "created", "sessions", "error"):
        table.add_column(column, overflow="fold", no_wrap=column in ("agent", "version", "status"))
    for agent in report:
        for version in agent["versions"]:
            status = version["status"]
            style = _STATUS_STYLE.get(status, "")
            error = version.get("error") or {}
            table.add_row(agent["name"], version["version"], f"[{style}]{status}[/{style}]" if style else status,
                          version.get("image") or "-", _when(version.get("created_at")),
                          str(version["sessions"]), error.get("code", "") if error else "")
    stdout().print(table)


def _agent(client, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    versions = list(client.agents.list_versions(agent_name=name))
    sessions = list(client.agents.list_sessions(agent_name=name))
    live = Counter(str(s["version_indicator"].get("agent_version")) for s in sessions
                   if str(s.get("status")) in _LIVE_SESSIONS and s.get("version_indicator"))
    return {
        "name": name,
        "versions": [_version(v, live) for v in sorted(versions, key=lambda v: _number(str(v.version)))],
        "sessions": [{"id": s["agent_session_id"], "status": s.get("status"),
                      "version": (s.get("version_indicator") or {}).get("agent_version")} for s in sessions],
    }


def _version(version: Any, live: Counter[str]) -> dict[str, Any]:
    definition = version.get("definition") or {}
    container = definition.get("container_configuration") or {}
    return {
        "version": str(version.version),
        "status": str(version.get("status")),
        "image": container.get("image") or definition.get("image"),
        "created_at": version.get("created_at"),
        "sessions": live.get(str(version.version), 0),
        "error": version.get("error"),
    }


def _number(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


def _when(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return "-"
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
