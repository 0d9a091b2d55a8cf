"""`dockyard delete NAME [--version V]`: remove a version, or the whole agent."""

from __future__ import annotations

from pathlib import Path

import typer

from dockyard.cli.connect import HomeOption, Target, TargetOption, api_errors, project_client
from dockyard.cli.output import stdout


def delete_command(
    name: str = typer.Argument(..., help="The agent's name."),
    version: str = typer.Option(None, "--version", "-V", help="Delete only this version (default: the whole agent)."),
    force: bool = typer.Option(False, "--force", help="Also end its live sessions (otherwise they block the delete)."),
    target: Target = TargetOption,
    home: Path = HomeOption,
) -> None:
    """Delete an agent version, or the agent with every version. Its containers go too.

    Exit codes: 0 deleted; 1 refused (for example live sessions: use --force); 3 target unreachable or
    credential refused; 4 no such agent or version.
    """
    client = project_client(target, home)
    with api_errors(f"deleting {name}" + (f" version {version}" if version else "")):
        if version:
            client.agents.delete_version(agent_name=name, agent_version=version, force=force or None)
            stdout().print(f"Deleted {name} version {version}.", markup=False)
        else:
            client.agents.delete(agent_name=name, force=force or None)
            stdout().print(f"Deleted {name}.", markup=False)
