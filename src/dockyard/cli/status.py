"""`dockyard status [NAME]`: agents, their versions, each version's status and live sessions, at a glance.

Read through the same calls a Foundry user would make (`agents.list`, `list_versions`, `list_sessions`), so it
shows Foundry projects too: with the SDK for `--target azure`, and for the local dockyard with the standard
library over the same REST API (`rest.LocalProject`), because importing the SDK alone takes longer than the
whole answer should (`dockyard status` answers in about 0.2 s that way).
"""

from __future__ import annotations

import datetime
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import typer

from dockyard.cli.connect import HomeOption, Target, TargetOption, api_errors, local_exports, project_client
from dockyard.cli.output import EXIT_USAGE, fail, print_json, stdout

if TYPE_CHECKING:
    from rich.console import RenderableType

_STATUS_STYLE = {"active": "green", "failed": "red", "creating": "yellow", "deleting": "yellow"}
_LIVE_SESSIONS = ("active", "creating", "running", "idle")


def status_command(
    name: str = typer.Argument(None, help="One agent (default: every agent in the project)."),
    json_output: bool = typer.Option(False, "--json", help="Print agents, versions and sessions as JSON."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh the table in place until Ctrl-C."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between refreshes with --watch."),
    target: Target = TargetOption,
    home: Path = HomeOption,
) -> None:
    """Show agents, their versions, each version's status, image and sessions.

    Exit codes: 0 shown (and Ctrl-C with --watch); 1 the service failed; 2 --watch with --json; 3 target
    unreachable or credential refused (also when it goes away while watching); 4 no such agent.
    """
    reader: _Reader = _LocalReader(home) if target is Target.local else _SdkReader(target, home)
    if watch:
        if json_output:
            fail("--watch draws a table; for JSON, run `dockyard status --json` as often as you need.", EXIT_USAGE)
        _watch(reader, name, interval)
        return
    report = _report(reader, name)
    if json_output:
        print_json({"agents": report})
        return
    stdout().print(_view(report))
    budget = reader.budget()
    if budget is not None and budget.get("enabled"):
        stdout().print(_budget_line(budget), markup=False)


def _budget_line(budget: dict[str, Any]) -> str:
    """What live sandboxes' limits hold of the admission budget (GET …/admission), in one line."""
    memory, cpu = budget["memory"], budget["cpu"]

    def gi(value: Any) -> str:
        return "unlimited" if value is None else f"{value / 1024**3:.1f}Gi"

    def cores(value: Any) -> str:
        return "unlimited" if value is None else f"{value:g}"

    return (f"budget: {budget['sandboxes']} sandboxes; "
            f"memory {gi(memory['used_bytes'])} of {gi(memory['budget_bytes'])} "
            f"(machine {gi(memory['machine_bytes'])}); "
            f"cpu {cores(cpu['used'])} of {cores(cpu['budget'])} (machine {cores(cpu['machine'])}); "
            f"{budget['max_sessions_per_agent']} live sessions per agent; when full: {budget['on_full']}")


def _report(reader: _Reader, name: str | None) -> list[dict[str, Any]]:
    with reader.errors():
        names = [name] if name else [str(agent["name"]) for agent in reader.agents()]
        return [_agent(reader, agent_name) for agent_name in names]


def _watch(reader: _Reader, name: str | None, interval: float) -> None:
    """Read and draw every `interval` seconds. On a terminal Rich's Live redraws the table in place; in a pipe
    (or a CI log) each refresh is printed after the last, since cursor moves would only garble the file."""
    from rich.live import Live

    console = stdout()
    try:
        if not console.is_terminal:
            while True:
                console.print(_frame(reader, name, interval))
                time.sleep(interval)
        with Live(console=console, auto_refresh=False) as live:
            while True:
                live.update(_frame(reader, name, interval), refresh=True)
                time.sleep(interval)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends: exit 0, the last table left on the screen


def _frame(reader: _Reader, name: str | None, interval: float) -> RenderableType:
    """One refresh: the table, and the budget line under it as `dockyard status` prints it."""
    from rich.console import Group
    from rich.text import Text

    view = _view(_report(reader, name), _refreshed(interval))
    budget = reader.budget()
    return Group(view, Text(_budget_line(budget))) if budget is not None and budget.get("enabled") else view


def _refreshed(interval: float) -> str:
    return f"refreshed {time.strftime('%H:%M:%S')}, every {interval:g} s; Ctrl-C to stop"


def _view(report: list[dict[str, Any]], caption: str | None = None) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    if not report:
        message = "No agents yet: `dockyard init NAME`, then build and deploy it."
        return Text(f"{message}\n{caption}" if caption else message)
    table = Table(show_lines=False, caption=caption)
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
    return table


class _Reader(Protocol):
    def errors(self) -> AbstractContextManager[None]: ...
    def agents(self) -> Iterable[Any]: ...
    def versions(self, name: str) -> Iterable[Any]: ...
    def sessions(self, name: str) -> Iterable[Any]: ...
    def budget(self) -> dict[str, Any] | None: ...


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

    def budget(self) -> dict[str, Any] | None:
        return dict(self.project.get("/admission", "reading the admission budget"))


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

    def budget(self) -> dict[str, Any] | None:
        return None  # Foundry's capacity is Azure's business: it has no admission budget to show


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
