"""The `dockyard` command."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from dockyard.cli.cleanup import register as register_cleanup
from dockyard.cli.console import console_command
from dockyard.cli.models import register as register_models
from dockyard.cli.toolboxes import register as register_toolboxes
from dockyard.cli.traces import traces_command
from dockyard.cli.validate import validate_command
from dockyard.cli.workflow import register as register_workflow
from dockyard.home import Home, HomeError, default_home
from dockyard.settings import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_PROJECT, Settings

app = typer.Typer(
    name="dockyard",
    help="A self-hostable runtime for Azure AI Foundry hosted agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help, as click writes it: typer's Rich help imports Rich's markdown renderer and more (0.7 s of a
    # 1.3 s `dockyard --help` on a busy two-core machine). Lists in docstrings keep their lines with \b.
    rich_markup_mode=None,
)

app.command("validate")(validate_command)
register_workflow(app)
register_models(app)
register_toolboxes(app)
register_cleanup(app)
app.command("traces")(traces_command)
app.command("console")(console_command)

HomeOption = typer.Option(None, "--home", help="dockyard's home folder (default: $DOCKYARD_HOME or ~/.dockyard)")


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
    engine: str = typer.Option(
        None, "--engine", help="Container engine URL, e.g. unix:///run/podman/podman.sock (default: DOCKER_HOST, "
        "the usual docker/podman sockets, or podman's API service started on demand)",
    ),
    no_engine: bool = typer.Option(
        False, "--no-engine", help="Run without a container engine: the API only; image-based versions fail with "
        "ContainerRuntimeUnavailable.",
    ),
    local_model: bool = typer.Option(
        True, "--local-model/--no-local-model",
        help="Start the local model (llama.cpp's server with Gemma 3 270M, from the local-model extra) beside "
        "dockyard.",
    ),
    runtime: str = typer.Option(
        "auto", "--runtime", help="What runs agents: containers (needs podman or docker), process (code-based "
        "versions as supervised processes, no engine), or auto (containers when an engine answers, else process).",
    ),
    code_image: str = typer.Option(
        None, "--code-image", help="Image that containers run code-based versions on (default: "
        "docker.io/library/python:3.X-slim for the version's runtime).",
    ),
    max_memory: str = typer.Option(
        "80%", "--max-memory", help="What live sandboxes' memory limits may add up to: a share of the machine's "
        "memory (or of dockyard's cgroup limit) such as 80%, an amount such as 6Gi, or none.",
    ),
    max_cpu: str = typer.Option(
        "none", "--max-cpu", help="What live sandboxes' CPU limits may add up to: a share of the machine's cores "
        "such as 100%, a number of cores such as 2, or none (the default: CPU is shared, never exhausted).",
    ),
    max_sessions_per_agent: int = typer.Option(
        16, "--max-sessions-per-agent", help="Live session sandboxes one agent may have at once.",
    ),
    on_full: str = typer.Option(
        "reject", "--on-full", help="A new session that does not fit: reject (429 TooManySandboxes with "
        "Retry-After) or evict (release the longest-idle session of any agent, its state kept, to make room).",
    ),
    max_file_bytes: int = typer.Option(
        512 * 1024 * 1024, "--max-file-bytes", help="Largest upload to the Files API (/openai/v1/files).",
    ),
    embedding_deployment: str = typer.Option(
        "local-embeddings", "--embedding-deployment", help="The deployment vector stores embed with "
        "(default: local-embeddings, dockyard's own embedding server on the local model).",
    ),
) -> None:
    """Start dockyard in the foreground and serve until Ctrl-C (or SIGTERM)."""
    from dockyard.server import StartupError, serve

    settings = Settings(
        home=home or default_home(), host=host, port=port, capability_host=capability_host, log_level=log_level,
        engine=engine, containers=not no_engine, local_model=local_model, runtime=runtime, code_image=code_image,
        max_memory=max_memory, max_cpu=max_cpu, max_sessions_per_agent=max_sessions_per_agent, on_full=on_full,
        max_file_bytes=max_file_bytes, embedding_deployment=embedding_deployment,
    )
    try:
        serve(settings)
    except (HomeError, StartupError) as exc:
        raise _fail(str(exc)) from None


@app.command()
def env(
    home: Path = HomeOption,
    port: int = typer.Option(None, "--port", help="Port of the dockyard to use (default: the running one, else 8443)."),
) -> None:
    """Print the shell exports that point Azure SDKs at this dockyard: eval "$(dockyard env)"."""
    from dockyard.cli.connect import sdk_exports
    from dockyard.identity.tls import ensure_tls
    from dockyard.settings import base_url

    try:
        store = Home(home or default_home()).ensure()
    except HomeError as exc:
        raise _fail(str(exc)) from None
    ensure_tls(store)
    record = store.read_server_record() or {}
    exports = sdk_exports(store, base_url(record.get("host", DEFAULT_HOST), port or record.get("port") or DEFAULT_PORT))
    for name, value in exports.items():
        sys.stdout.write(f"export {name}={shlex.quote(value)}\n")


registry_app = typer.Typer(help="Registry connections: credentials dockyard pulls images with.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")


def _registries(home: Path | None):  # type: ignore[no-untyped-def]
    from dockyard.store.database import migrate, open_engine, sqlite_url
    from dockyard.store.registries import RegistryStore
    from dockyard.store.secrets import SecretBox

    try:
        store = Home(home or default_home()).ensure()
    except HomeError as exc:
        raise _fail(str(exc)) from None
    engine = open_engine(sqlite_url(store.database))
    migrate(engine)
    return RegistryStore(engine, SecretBox.from_home(store))


@registry_app.command("add")
def registry_add(
    name: str = typer.Argument(..., help="Connection name; 2.x definitions name it in registry_connection_id."),
    server: str = typer.Option(..., "--server", help="Registry host[:port], as in image references."),
    username: str = typer.Option(..., "--username"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    home: Path = HomeOption,
) -> None:
    """Add a registry connection. Versions whose image is on SERVER use it even without naming it."""
    from dockyard.domain.errors import DockyardError

    if not password_stdin:
        raise _fail("pass the password on standard input with --password-stdin "
                    "(it must not appear in your shell history)", 2)
    password = sys.stdin.read().rstrip("\n")
    if not password:
        raise _fail("no password on standard input", 2)
    try:
        _registries(home).add(DEFAULT_PROJECT, name, server, username, password)
    except DockyardError as exc:
        raise _fail(exc.message) from None
    typer.echo(f"registry connection {name!r} added for {server}")


@registry_app.command("list")
def registry_list(home: Path = HomeOption, json_output: bool = typer.Option(False, "--json")) -> None:
    """List registry connections (passwords are never shown)."""
    import json

    connections = _registries(home).list(DEFAULT_PROJECT)
    if json_output:
        typer.echo(json.dumps([{"name": c.name, "server": c.server, "username": c.username} for c in connections]))
        return
    for c in connections:
        typer.echo(f"{c.name}\t{c.server}\t{c.username}")


@registry_app.command("remove")
def registry_remove(name: str, home: Path = HomeOption) -> None:
    """Remove a registry connection."""
    from dockyard.domain.errors import DockyardError

    try:
        _registries(home).remove(DEFAULT_PROJECT, name)
    except DockyardError as exc:
        raise _fail(exc.message) from None
    typer.echo(f"registry connection {name!r} removed")


def main() -> None:
    app()
