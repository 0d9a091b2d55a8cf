"""`dockyard traces [NAME]`: recent traces of a local dockyard, and one of them as a tree with durations.

It reads dockyard's own routes (`GET …/api/projects/{project}/traces` and `…/traces/{id}`, see
api/telemetry.py) with the operator's identity from the home, as `dockyard env` gives it: traces are a
dockyard feature, Foundry keeps its traces in Application Insights.

Without --trace or --response it lists the most recent traces; with either (a response id names one
request) it draws that trace: dockyard's gateway span, its route / cold start / upstream children, and
under the upstream span the agent's own spans, each with its duration and status.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import typer

from dockyard.cli.connect import HomeOption
from dockyard.cli.output import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_UNREACHABLE, fail, print_json, stdout
from dockyard.settings import DEFAULT_PROJECT


def traces_command(
    name: str = typer.Argument(None, help="Only traces that touched this agent."),
    session: str = typer.Option(None, "--session", "-s", help="Only traces of this session."),
    response: str = typer.Option(None, "--response", "-r", help="The trace of this response id (shown as a tree)."),
    trace: str = typer.Option(None, "--trace", help="Show this trace id as a tree."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000, help="How many traces to list."),
    json_output: bool = typer.Option(False, "--json", help="Print the list, or the trace's spans, as JSON."),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", help="The project whose traces to read."),
    home: Path = HomeOption,
) -> None:
    """List recent traces of the local dockyard, or show one as a tree.

    Exit codes: 0 shown; 1 the service failed; 3 dockyard not running or credential refused; 4 no such trace.
    """
    import httpx

    from dockyard.cli.connect import local_exports

    exports = local_exports(home)
    base = exports["AZURE_AI_PROJECT_ENDPOINT"].rsplit("/api/projects/", 1)[0] + f"/api/projects/{project}"
    with httpx.Client(verify=exports["REQUESTS_CA_BUNDLE"], timeout=30) as client:
        token = _token(client, exports)
        headers = {"authorization": f"Bearer {token}"}
        if trace is None:
            params = {k: v for k, v in (("agent", name), ("session_id", session), ("response_id", response),
                                        ("limit", str(1 if response else limit))) if v}
            listed = _get(client, f"{base}/traces", headers, params)["data"]
            if response is None:
                _show_list(listed, json_output)
                return
            if not listed:
                fail(f"no trace has response {response} (yet: an agent's spans arrive a few seconds after its answer).",
                     EXIT_NOT_FOUND)
            trace = listed[0]["trace_id"]
        spans = _get(client, f"{base}/traces/{trace}", headers, {})["spans"]
    if json_output:
        print_json({"trace_id": trace, "spans": spans})
        return
    stdout().print(tree(trace, spans))


def _token(client: Any, exports: dict[str, str]) -> str:
    import httpx

    try:
        answer = client.get(exports["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01",
                                                                    "resource": "https://ai.azure.com"},
                            headers={"X-IDENTITY-HEADER": exports["IDENTITY_HEADER"]})
    except httpx.HTTPError as exc:
        fail(f"could not reach dockyard: {exc}", EXIT_UNREACHABLE)
    if answer.status_code != 200:
        fail(f"dockyard refused this home's identity ({answer.status_code}).", EXIT_UNREACHABLE)
    return str(answer.json()["access_token"])


def _get(client: Any, url: str, headers: dict[str, str], params: dict[str, str]) -> dict[str, Any]:
    import httpx

    try:
        answer = client.get(url, headers=headers, params=params)
    except httpx.HTTPError as exc:
        fail(f"could not reach dockyard: {exc}", EXIT_UNREACHABLE)
    if answer.status_code != 200:
        try:
            error = answer.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = answer.text[:200]
        code = {404: EXIT_NOT_FOUND, 401: EXIT_UNREACHABLE, 403: EXIT_UNREACHABLE}.get(answer.status_code, EXIT_FAILED)
        fail(f"reading traces: {message}", code)
    body: dict[str, Any] = answer.json()
    return body


def _show_list(traces: list[dict[str, Any]], json_output: bool) -> None:
    if json_output:
        print_json({"traces": traces})
        return
    if not traces:
        stdout().print("No traces yet: invoke an agent (`dockyard invoke NAME TEXT`), then look again.", markup=False)
        return
    from rich.table import Table

    table = Table()
    for column in ("trace", "started", "duration", "spans", "root", "agent", "version", "session", "response"):
        table.add_column(column, overflow="fold", no_wrap=column in ("trace", "duration"))
    for item in traces:
        errors = f" [red]({item['errors']} failed)[/red]" if item.get("errors") else ""
        table.add_row(item["trace_id"], _when(item["start_time_unix_nano"]), _ms(item["duration_ms"]),
                      f"{item['spans']}{errors}", item.get("root") or "", item.get("agent") or "",
                      item.get("version") or "", item.get("session_id") or "", item.get("response_id") or "")
    stdout().print(table)
    stdout().print("Show one: dockyard traces --trace TRACE_ID", markup=False, style="dim")


def tree(trace_id: str, spans: list[dict[str, Any]]) -> Any:
    """The spans as a Rich Tree: children under their parent, in start order; orphans under the root."""
    from rich.markup import escape
    from rich.tree import Tree

    ids = {span["span_id"] for span in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span.get("parent_span_id")
        children.setdefault(parent if parent in ids else None, []).append(span)
    start = min((span["start_time_unix_nano"] for span in spans), default=0)
    root = Tree(f"trace [bold]{trace_id}[/bold]")

    def label(span: dict[str, Any]) -> str:
        offset = (span["start_time_unix_nano"] - start) / 1e6
        failed = span.get("status", {}).get("code") == 2
        who = span.get("service") or span.get("source") or ""
        name = f"[red]{escape(span['name'])}[/red]" if failed else escape(span["name"])
        return f"{name} [cyan]{_ms(span['duration_ms'])}[/cyan] [dim]+{_ms(offset)} {escape(who)}[/dim]"

    def add(node: Any, parent: str | None) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start_time_unix_nano"]):
            add(node.add(label(span)), span["span_id"])

    add(root, None)
    return root


def _ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"


def _when(unix_nano: int) -> str:
    return datetime.datetime.fromtimestamp(unix_nano / 1e9, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
