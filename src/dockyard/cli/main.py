"""The `dockyard` command."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from dockyard.home import Home, HomeError, default_home
from dockyard.settings import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_PROJECT, Settings

app = typer.Typer(
    name="dockyard",
    help="A self-hostable runtime for Azure AI Foundry hosted agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

HomeOption = typer.Option(None, "--home", help="dockyard's home folder [default: $DOCKYARD_HOME or ~/.dockyard]")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"dockyard: error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def up(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="HTTPS port to listen on."),
    home: Path = HomeOption,
    capability_host: bool = typer.Option(
        True, "--capability-host/--no-capability-host",
        help="Without a capability host, create_version answers CapabilityHostNotFound, as Foundry does.",
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Start dockyard in the foreground and serve until Ctrl-C (or SIGTERM)."""
    from dockyard.server import StartupError, serve

    settings = Settings(
        home=home or default_home(), host=host, port=port, capability_host=capability_host, log_level=log_level
    )
    try:
        serve(settings)
    except (HomeError, StartupError) as exc:
        raise _fail(str(exc)) from None


@app.command()
def env(
    home: Path = HomeOption,
    port: int = typer.Option(None, "--port", help="Port of the dockyard to use [default: the running one, else 8443]."),
) -> None:
    """Print the shell exports that point Azure SDKs at this dockyard: eval "$(dockyard env)"."""
    from dockyard.api.identity import IDENTITY_PATH
    from dockyard.identity.tls import ensure_tls
    from dockyard.server import base_url

    try:
        store = Home(home or default_home()).ensure()
    except HomeError as exc:
        raise _fail(str(exc)) from None
    ensure_tls(store)
    record = store.read_server_record() or {}
    url = base_url(record.get("host", DEFAULT_HOST), port or record.get("port") or DEFAULT_PORT)
    exports = {
        "AZURE_AI_PROJECT_ENDPOINT": f"{url}/api/projects/{DEFAULT_PROJECT}",
        "IDENTITY_ENDPOINT": f"{url}{IDENTITY_PATH}",
        "IDENTITY_HEADER": store.identity_secret(),
        "REQUESTS_CA_BUNDLE": str(store.ca_bundle),
        "SSL_CERT_FILE": str(store.ca_bundle),
    }
    for name, value in exports.items():
        sys.stdout.write(f"export {name}={shlex.quote(value)}\n")


def main() -> None:
    app()
