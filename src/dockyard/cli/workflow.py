"""The developer workflow's commands, registered on the `dockyard` app in one call (see `main`).

init → build → deploy → invoke → logs → status → delete; `validate` is registered by main itself.
Each command lives in a module of its own; Azure SDK imports happen inside them, when a command runs,
so `dockyard --help` and `dockyard up` do not pay for them.
"""

from __future__ import annotations

import typer

from dockyard.cli.build import build_command
from dockyard.cli.delete import delete_command
from dockyard.cli.deploy import deploy_command
from dockyard.cli.invoke import invoke_command
from dockyard.cli.logs import logs_command
from dockyard.cli.scaffold import init_command
from dockyard.cli.status import status_command


def register(app: typer.Typer) -> None:
    app.command("init")(init_command)
    app.command("build")(build_command)
    app.command("deploy")(deploy_command)
    app.command("invoke")(invoke_command)
    app.command("logs")(logs_command)
    app.command("status")(status_command)
    app.command("delete")(delete_command)
