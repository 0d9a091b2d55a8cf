"""`dockyard down` and `dockyard prune`: take away sandboxes that outlive a stop.

A stop leaves a home's containers running on purpose, so the next start adopts them without a cold
start; these two commands are for when there will be no next start (or not soon).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dockyard.cli.output import EXIT_UNREACHABLE, EXIT_USAGE, fail, note, print_json, stdout

if TYPE_CHECKING:
    from dockyard.runtime.leftovers import Leftover

HomeOption = typer.Option(None, "--home", help="dockyard's home folder (default: $DOCKYARD_HOME or ~/.dockyard)")
EngineOption = typer.Option(None, "--engine", help="Container engine URL (default: DOCKER_HOST or the usual "
                            "docker/podman sockets)")


def register(app: typer.Typer) -> None:
    app.command("down")(down)
    app.command("prune")(prune)


def down(
    home: Path = HomeOption,
    purge: bool = typer.Option(False, "--purge", help="Remove the sessions' volumes too (their files and state)."),
    engine: str = EngineOption,
    json_output: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
) -> None:
    """Stop and remove every sandbox of this home (dockyard itself must be stopped first)."""
    from dockyard.home import Home, HomeError, default_home
    from dockyard.runtime import leftovers

    try:
        root = Home(home or default_home()).ensure()
    except HomeError as exc:
        fail(str(exc), EXIT_USAGE)
    record = root.read_server_record() or {}
    if _alive(record.get("pid")):
        fail(f"dockyard is running for {root.root} (pid {record['pid']}); its reconciler would start the sandboxes "
             "again. Stop it first (Ctrl-C, or kill -TERM PID), then run `dockyard down` again.", EXIT_USAGE)
    from dockyard.runtime.processes import stop_home

    stopped = stop_home(root, purge=purge)  # the process runtime's agents and (with purge) session homes
    client = _engine_client(engine, required=not stopped)
    found = leftovers.of_instance(client, root.instance_id(), volumes=purge) if client is not None else []
    if client is not None:
        leftovers.remove(client, found)
    found += [_process_leftover(line, str(root.root), "belongs to this home") for line in stopped]
    _report(found, json_output, "removed", nothing=f"nothing of {root.root} runs or is on the engine")
    if not purge and not json_output:
        note("Session volumes are kept (a later `dockyard up` resumes those sessions); --purge removes them.")


def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
    engine: str = EngineOption,
    json_output: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """Remove sandboxes and volumes whose dockyard home no longer exists (or is another instance's now)."""
    from dockyard.runtime import leftovers
    from dockyard.runtime.processes import orphaned_supervisors, stop_supervisor

    processes = orphaned_supervisors()
    client = _engine_client(engine, required=not processes)
    found, unplaced = leftovers.orphaned(client) if client is not None else ([], 0)
    if not dry_run:
        if client is not None:
            leftovers.remove(client, found)
        for pid, _folder, _reason in processes:
            stop_supervisor(pid)
    found += [_process_leftover(f"process {folder} (pid {pid})", None, reason) for pid, folder, reason in processes]
    _report(found, json_output, "would remove" if dry_run else "removed", nothing="no orphaned sandboxes")
    if unplaced and not json_output:
        note(f"{unplaced} container(s) or volume(s) come from a dockyard too old to label its home; remove them "
             "with `dockyard down --purge --home HOME` from their home, or by the label io.dockyard.instance.")


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _engine_client(url: str | None, *, required: bool = True) -> Any:
    """The engine's client; with no engine, None when the process runtime had something to do, else a failure."""
    from dockyard.runtime.engine import INSTALL_HINT, find_engine

    found = find_engine(url, start_podman=False)
    if found is None:
        if not required:
            return None
        fail(f"no container engine answers and no agent process was left, so there is nothing to remove. "
             f"{INSTALL_HINT}", EXIT_UNREACHABLE)
    return found.client


def _process_leftover(line: str, home: str | None, reason: str) -> Leftover:
    from dockyard.runtime.leftovers import Leftover

    kind, _, name = line.partition(" ")
    return Leftover(kind, name, "", home, reason)


def _report(found: list[Leftover], json_output: bool, verb: str, *, nothing: str) -> None:
    if json_output:
        print_json([{"kind": f.kind, "name": f.name, "home": f.home, "reason": f.reason} for f in found])
        return
    if not found:
        stdout().print(nothing, markup=False)
        return
    for leftover in found:
        stdout().print(f"{verb} {leftover.kind} {leftover.name} ({leftover.reason})", markup=False, soft_wrap=True)
