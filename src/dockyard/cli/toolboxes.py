"""`dockyard toolbox`: group platform tools into a toolbox agents reach as one MCP server.

    dockyard toolbox add kit --mcp http://127.0.0.1:9000/mcp --label calc --header "Authorization=Bearer …"
    dockyard toolbox add kit --code-interpreter --file-search vs_abc      # a new version of kit, two tools
    dockyard toolbox add kit --from tools.json                           # entries as a Responses call's tools
    dockyard toolbox list
    dockyard toolbox show kit                                            # its tools and its MCP endpoint
    dockyard toolbox remove kit

Each `add` makes a new version of the toolbox (the first makes the toolbox), which its endpoint then
serves, as `client.toolboxes.create_version` does in Foundry. The commands talk to the running dockyard over
its REST API (`rest.LocalProject`), so every entry is checked by the tool it names before it is kept.
Header values are sent once and never shown again (answers redact them).

Exit codes: 0 done; 1 refused or failed (the message says why); 2 bad arguments; 3 dockyard unreachable;
4 no such toolbox.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import typer

from dockyard.cli.connect import HomeOption, local_exports
from dockyard.cli.output import EXIT_USAGE, fail, print_json, stdout
from dockyard.cli.rest import LocalProject

toolbox_app = typer.Typer(help="Toolboxes: platform tools grouped behind one MCP endpoint for agents.",
                          no_args_is_help=True)
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def register(app: typer.Typer) -> None:
    app.add_typer(toolbox_app, name="toolbox")


class _Project(LocalProject):
    def delete(self, path: str, what: str) -> Any:
        return self._call("DELETE", path, None, {}, what)


def _project(home: Path | None) -> _Project:
    return _Project(local_exports(home))


def _path(name: str) -> str:
    return f"/toolboxes/{urllib.parse.quote(name, safe='')}"


@toolbox_app.command("add")
def add(
    name: str = typer.Argument(..., help="Toolbox name: 1 to 64 letters, digits, '_' or '-'."),
    mcp: list[str] = typer.Option([], "--mcp", help="An MCP server's URL (repeatable; pair each with --label)."),
    label: list[str] = typer.Option([], "--label", help="The server_label of the --mcp at the same position."),
    header: list[str] = typer.Option([], "--header", help="K=V sent to every --mcp server of this command "
                                     "(repeatable); for servers with different headers use --from."),
    require_approval: str = typer.Option(None, "--require-approval", help="always or never, for every --mcp "
                                         "server (shown to agents as _meta.tool_configuration.require_approval)."),
    code_interpreter: bool = typer.Option(False, "--code-interpreter", help="Add the code interpreter."),
    file_search: list[str] = typer.Option([], "--file-search", help="A vector store id file_search searches "
                                          "(repeatable: one file_search entry over all of them)."),
    from_file: Path = typer.Option(None, "--from", help="A JSON file: a list of tool entries, or {\"tools\": […], "
                                   "\"description\": …}.", exists=True, dir_okay=False),
    description: str = typer.Option(None, "--description", help="What the toolbox is for."),
    json_output: bool = JsonOption,
    home: Path = HomeOption,
) -> None:
    """Make a new version of a toolbox from the tools given (the first version makes the toolbox)."""
    body: dict[str, Any] = {"tools": _entries(mcp, label, header, require_approval, code_interpreter, file_search,
                                              from_file)}
    if from_file is not None:
        loaded = _load(from_file)
        if isinstance(loaded, dict):
            body.update({k: v for k, v in loaded.items() if k != "tools"})
    if description is not None:
        body["description"] = description
    if not body["tools"]:
        fail("give at least one tool: --mcp URL --label L, --code-interpreter, --file-search VS_ID or --from FILE.",
             EXIT_USAGE)
    version, _ = _project(home).post(f"{_path(name)}/versions", body, f"adding toolbox {name}")
    if json_output:
        print_json(version)
        return
    kinds = ", ".join(_describe(entry) for entry in version.get("tools") or [])
    stdout().print(f"toolbox {name} version {version.get('version')}: {kinds}", markup=False, soft_wrap=True)


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        fail(f"{path}: not a JSON file ({exc}).", EXIT_USAGE)


def _entries(mcp: list[str], labels: list[str], headers: list[str], approval: str | None, code_interpreter: bool,
             vector_stores: list[str], from_file: Path | None) -> list[dict[str, Any]]:
    if len(mcp) != len(labels):
        fail(f"give one --label for each --mcp ({len(mcp)} --mcp, {len(labels)} --label).", EXIT_USAGE)
    if approval not in (None, "always", "never"):
        fail("--require-approval is always or never.", EXIT_USAGE)
    sent: dict[str, str] = {}
    for item in headers:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--header takes KEY=VALUE; got {key!r} without '='.", EXIT_USAGE)
        sent[key.strip()] = value
    entries: list[dict[str, Any]] = []
    if from_file is not None:
        loaded = _load(from_file)
        tools = loaded.get("tools") if isinstance(loaded, dict) else loaded
        if not isinstance(tools, list):
            fail(f"{from_file}: expected a list of tool entries or an object with 'tools'.", EXIT_USAGE)
        entries.extend(tools)
    for url, label in zip(mcp, labels, strict=True):
        entry: dict[str, Any] = {"type": "mcp", "server_label": label, "server_url": url}
        if sent:
            entry["headers"] = dict(sent)
        if approval is not None:
            entry["require_approval"] = approval
        entries.append(entry)
    if code_interpreter:
        entries.append({"type": "code_interpreter", "container": {"type": "auto"}})
    if vector_stores:
        entries.append({"type": "file_search", "vector_store_ids": list(vector_stores)})
    return entries


def _describe(entry: dict[str, Any]) -> str:
    kind = str(entry.get("type"))
    if kind == "mcp":
        return f"mcp {entry.get('server_label')} ({entry.get('server_url') or entry.get('project_connection_id')})"
    if kind == "file_search":
        return f"file_search ({', '.join(entry.get('vector_store_ids') or [])})"
    return kind


@toolbox_app.command("list")
def list_command(json_output: bool = JsonOption, home: Path = HomeOption) -> None:
    """The project's toolboxes: default version, latest version, tools."""
    toolboxes = list(_project(home).pages("/toolboxes"))
    if json_output:
        print_json(toolboxes)
        return
    if not toolboxes:
        stdout().print("no toolboxes; make one with `dockyard toolbox add NAME --mcp URL --label L`", markup=False)
        return
    _table(["NAME", "DEFAULT", "LATEST", "TOOLS"],
           [[t["name"], str(t.get("default_version")), str(t["versions"]["latest"]["version"]),
             ", ".join(_describe(e) for e in t["versions"]["latest"].get("tools") or [])] for t in toolboxes])


@toolbox_app.command("show")
def show(name: str = typer.Argument(...), json_output: bool = JsonOption, home: Path = HomeOption) -> None:
    """A toolbox: its default version's tools and the MCP endpoint agents use."""
    project = _project(home)
    toolbox = project.get(_path(name), f"toolbox {name}")
    default = project.get(f"{_path(name)}/versions/{toolbox['default_version']}", f"toolbox {name}")
    endpoint = f"{project.endpoint}{_path(name)}/mcp?api-version=v1"
    if json_output:
        print_json({**toolbox, "default": default, "mcp_endpoint": endpoint})
        return
    console = stdout()
    console.print(f"toolbox {name}: default version {toolbox['default_version']} "
                  f"(latest {toolbox['versions']['latest']['version']})", markup=False)
    if default.get("description"):
        console.print(default["description"], markup=False)
    console.print(f"MCP endpoint: {endpoint}", markup=False, soft_wrap=True)
    _table(["TYPE", "TOOL", "DETAILS"], [[str(e.get("type")), _name(e), _details(e)] for e in default["tools"]])


def _name(entry: dict[str, Any]) -> str:
    return str(entry.get("server_label") or entry.get("name") or entry.get("type"))


def _details(entry: dict[str, Any]) -> str:
    shown = {k: v for k, v in entry.items() if k not in ("type", "server_label")}
    return json.dumps(shown, sort_keys=True) if shown else ""


@toolbox_app.command("remove")
def remove(name: str = typer.Argument(...), home: Path = HomeOption) -> None:
    """Delete a toolbox and all its versions."""
    _project(home).delete(_path(name), f"removing toolbox {name}")
    stdout().print(f"removed toolbox {name}", markup=False)


def _table(columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # values are data, never Rich markup
    stdout().print(table)
