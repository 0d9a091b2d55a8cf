"""`dockyard status [NAME]`: agents, their versions, each version's status and live sessions, at a glance.

Read through the same calls a Foundry user would make (`agents.list`, `list_versions`, `list_sessions`), so it
shows Foundry projects too: with the SDK for `--target azure`, and for the local dockyard with the standard
library over the same REST API (`rest.LocalProject`), because importing the SDK alone takes longer than the
whole answer should (`dockyard status` answers in about 0.2 s that way).
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import typer

from dockyard.cli.connect import HomeOption, Target, TargetOption, api_errors, local_exports, project_client
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
    reader: _Reader = _LocalReader(home) if target is Target.local else _SdkReader(target, home)
    with reader.errors():
        names = [name] if name else [str(agent["name"]) for agent in reader.agents()]
        report = [_agent(reader, agent_name) for agent_name in names]
    if json_output:
        print_json({"agents": report})
        return
    if not report:
        stdout().print("No agents yet: `dockyard init NAME`, then build and deploy it.", markup=False)
        return
    from rich.table import Table

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


class _Reader(Protocol):
    def errors(self) -> AbstractContextManager[None]: ...
    def agents(self) -> Iterable[Any]: ...
    def versions(self, name: str) -> Iterable[Any]: ...
    def sessions(self, name: str) -> Iterable[Any]: ...


class _LocalReader:
    """The local dockyard, without the SDK (see the module's docstring); errors exit inside `rest`."""

    def __init__(self, home: Path | None) -> None:
        from dockyard.cli.rest import LocalProject

        self.project = LocalProject(local_exports(home))

    def errors(self) -> AbstractContextManager[None]:
        return nullcontext()

    def agents(self) -> Iterator[dict[str, Any]]:
        return self.project.pages("/agents")

    def versions(self, name: str) -> Iterator[dict[str, Any]]:
        return self.project.pages(f"/agents/{urllib.parse.quote(name, safe='')}/versions")

    def sessions(self, name: str) -> Iterator[dict[str, Any]]:
        return self.project.pages(f"/agents/{urllib.parse.quote(name, safe='')}/endpoint/sessions")


class _SdkReader:
    """Any project, through azure-ai-projects (its models read like the JSON they hold)."""

    def __init__(self, target: Target, home: Path | None) -> None:
        self.client = project_client(target, home)

    def errors(self) -> AbstractContextManager[None]:
        return api_errors("reading status")

    def agents(self) -> Iterable[Any]:
        return self.client.agents.list()

    def versions(self, name: str) -> Iterable[Any]:
        return self.client.agents.list_versions(agent_name=name)

    def sessions(self, name: str) -> Iterable[Any]:
        return self.client.agents.list_sessions(agent_name=name)


def _agent(reader: _Reader, name: str) -> dict[str, Any]:
    versions = list(reader.versions(name))
    sessions = list(reader.sessions(name))
    live = Counter(str(s["version_indicator"].get("agent_version")) for s in sessions
                   if str(s.get("status")) in _LIVE_SESSIONS and s.get("version_indicator"))
    return {
        "name": name,
        "versions": [_version(v, live) for v in sorted(versions, key=lambda v: _number(str(v["version"])))],
        "sessions": [{"id": s["agent_session_id"], "status": s.get("status"),
                      "version": (s.get("version_indicator") or {}).get("agent_version")} for s in sessions],
    }


def _version(version: Any, live: Counter[str]) -> dict[str, Any]:
    definition = version.get("definition") or {}
    container = definition.get("container_configuration") or {}
    code = definition.get("code_configuration") or {}
    return {
        "version": str(version["version"]),
        "status": str(version.get("status")),
        "image": container.get("image") or definition.get("image")
        or (f"code {str(code.get('content_hash') or '')[:12]}".strip() if code else None),
        "created_at": version.get("created_at"),
        "sessions": live.get(str(version["version"]), 0),
        "error": version.get("error"),
    }


def _number(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


def _when(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return "-"
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
