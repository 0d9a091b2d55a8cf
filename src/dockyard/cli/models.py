"""`dockyard model` and `dockyard connection`: the deployments agents call models by, and where they go.

    dockyard model add gpt-4o-mini --local                                  # the local model, under that name
    dockyard model add gpt-4o --base-url https://api.openai.com/v1 --api-key-stdin < key.txt
    dockyard model add chat --azure-endpoint https://NAME.openai.azure.com --model my-deployment --entra
    dockyard connection add openai --base-url https://api.openai.com/v1 --api-key-stdin
    dockyard model add gpt-4.1 --connection openai                          # a second model, same key

`model add` with a URL makes a connection of the deployment's name for it, and `model remove` removes
that connection again once no deployment uses it. Keys are read from standard input only, never from
arguments (which shell history and `ps` show), and never printed. Commands write dockyard's store
directly, running or not; a running dockyard sees the change within a second.

Imports beyond Typer happen inside the commands: `dockyard --help` must stay fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dockyard.cli.output import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_USAGE, fail, note, print_json, stdout

if TYPE_CHECKING:
    from dockyard.domain.deployments import Connection
    from dockyard.models.catalog import Catalog

DEFAULT_PROJECT = "default"

model_app = typer.Typer(help="Model deployments: the names agents call models by (`model` in their requests).",
                        no_args_is_help=True)
connection_app = typer.Typer(help="Connections to model providers: where deployments send requests, with which key.",
                             no_args_is_help=True)

HomeOption = typer.Option(None, "--home", help="dockyard's home folder (default: $DOCKYARD_HOME or ~/.dockyard)")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")
MetadataOption = typer.Option([], "--metadata", help="KEY=VALUE on the connection (repeatable); agents read it as "
                              "${{connections.NAME.metadata.KEY}}. Not for secrets: metadata is listed.")


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
    app.add_typer(connection_app, name="connection")


# -- model ----------------------------------------------------------------------------------------------


@model_app.command("add")
def model_add(
    name: str = typer.Argument(..., help="The deployment name agents send as `model`, e.g. gpt-4o-mini."),
    base_url: str = typer.Option(None, "--base-url", help="An OpenAI-compatible server, with /v1 "
                                 "(llama.cpp, vLLM, Ollama, LM Studio, https://api.openai.com/v1)."),
    azure_endpoint: str = typer.Option(None, "--azure-endpoint", help="An Azure OpenAI endpoint, "
                                       "e.g. https://NAME.openai.azure.com."),
    connection: str = typer.Option(None, "--connection", help="An existing connection (`dockyard connection add`)."),
    local: bool = typer.Option(False, "--local", help="Serve this name with the local model dockyard runs."),
    model: str = typer.Option(None, "--model", help="The model (or Azure deployment) name the upstream expects "
                              "(default: NAME)."),
    api_key_stdin: bool = typer.Option(False, "--api-key-stdin", help="Read the API key from standard input."),
    entra: bool = typer.Option(False, "--entra", help="Azure OpenAI with Entra ID (dockyard's own Azure credential) "
                               "instead of a key."),
    chat_only: bool = typer.Option(False, "--chat-only", help="The upstream speaks Chat Completions only: Responses "
                                   "calls are translated."),
    model_name: str = typer.Option(None, "--model-name", help="The model name deployments report, e.g. gpt-4o for "
                                   "an Azure deployment named otherwise (default: the upstream model)."),
    model_version: str = typer.Option("", "--model-version", help="The model version deployments report."),
    publisher: str = typer.Option(None, "--publisher", help="The publisher deployments report (default: OpenAI for "
                                  "OpenAI and Azure OpenAI, dockyard for the local model)."),
    home: Path = HomeOption,
) -> None:
    """Add a deployment: NAME, served by a provider (--base-url, --azure-endpoint), a connection, or --local."""
    from dockyard.domain.deployments import Deployment, default_capabilities, default_publisher
    from dockyard.domain.errors import DockyardError
    from dockyard.models.catalog import LOCAL, local_connection

    sources = [s for s, given in (("--base-url", base_url), ("--azure-endpoint", azure_endpoint),
                                  ("--connection", connection), ("--local", local)) if given]
    if len(sources) != 1:
        fail("say where the model is with exactly one of --base-url URL, --azure-endpoint URL, --connection NAME "
             f"or --local{' (got ' + ', '.join(sources) + ')' if sources else ''}", EXIT_USAGE)
    if (connection or local) and (api_key_stdin or entra or chat_only):
        fail("--api-key-stdin, --entra and --chat-only describe a new connection; with --connection or --local "
             "they do not apply (change the connection with `dockyard connection`)", EXIT_USAGE)
    if local and model:
        fail("--model does not apply to --local: the local model serves whatever it runs", EXIT_USAGE)
    catalog = _catalog(home)
    store = catalog.models
    created: str | None = None
    try:
        if local:
            store.ensure_connection(DEFAULT_PROJECT, local_connection())
            target = store.get_connection(DEFAULT_PROJECT, LOCAL)
        elif connection:
            target = store.get_connection(DEFAULT_PROJECT, connection)
        else:
            target = _new_connection(_implicit_connection_name(name), base_url, azure_endpoint, api_key_stdin, entra,
                                     chat_only)
            store.add_connection(DEFAULT_PROJECT, target)
            created = target.name
        upstream_model = "" if local else (model or name)
        deployment = Deployment(
            name=name, connection=target.name, model=upstream_model, model_name=model_name or upstream_model,
            model_version=model_version, model_publisher=publisher or default_publisher(target.kind),
            capabilities=default_capabilities(target.speaks_responses))
        store.add_deployment(DEFAULT_PROJECT, deployment)
    except DockyardError as error:
        if created is not None:
            store.remove_connection(DEFAULT_PROJECT, created)
        if error.code == "ConnectionExists" and created is None and not local and not connection:
            fail(f"{error.message} To use it, run `dockyard model add {name} --connection "
                 f"{_implicit_connection_name(name)}`.", _exit_code(error))
        fail(error.message, _exit_code(error))
    where = "the local model" if local else f"{target.kind.value} at {target.target} (connection {target.name!r})"
    typer.echo(f"deployment {name!r} added: {where}")


@model_app.command("list")
def model_list(home: Path = HomeOption, json_output: bool = JsonOption) -> None:
    """List deployments, with the connection each goes through (keys are never shown)."""
    catalog = _catalog(home)
    connections = {c.name: c for c in catalog.models.list_connections(DEFAULT_PROJECT)}
    rows: list[dict[str, Any]] = []
    for deployment in catalog.deployments(DEFAULT_PROJECT):
        found = connections.get(deployment.connection)
        rows.append({
            "name": deployment.name,
            "connection": deployment.connection,
            "kind": found.kind.value if found else None,
            "target": (found.target or None) if found else None,
            "model": deployment.model or None,
            "modelName": deployment.model_name,
            "modelPublisher": deployment.model_publisher,
            "auth": found.auth.value if found else None,
            "speaksResponses": found.speaks_responses if found else None,
        })
    if json_output:
        print_json(rows)
        return
    if not rows:
        note("no deployments; add one with `dockyard model add NAME --local` (or --base-url URL, --azure-endpoint URL)")
        return
    _table(["NAME", "CONNECTION", "KIND", "TARGET", "UPSTREAM MODEL", "AUTH", "RESPONSES"],
           [[r["name"], r["connection"], r["kind"] or "missing", r["target"] or "-",
             r["model"] or "(the local model)", r["auth"] or "-",
             "-" if r["speaksResponses"] is None else ("yes" if r["speaksResponses"] else "translated")]
            for r in rows])


@model_app.command("remove")
def model_remove(name: str = typer.Argument(..., help="The deployment to remove."), home: Path = HomeOption) -> None:
    """Remove a deployment (and the connection `model add` made for it, once nothing else uses it)."""
    from dockyard.domain.errors import DockyardError
    from dockyard.models.catalog import LOCAL

    store = _catalog(home).models
    try:
        removed = store.remove_deployment(DEFAULT_PROJECT, name)
    except DockyardError as error:
        fail(error.message, _exit_code(error))
    also = ""
    if removed.connection == _implicit_connection_name(name) and removed.connection != LOCAL:
        try:
            store.remove_connection(DEFAULT_PROJECT, removed.connection)
            also = f" and its connection {removed.connection!r}"
        except DockyardError:
            pass  # other deployments use it, or it is gone already: keep it as it is
    typer.echo(f"deployment {name!r} removed{also}")


# -- connection -----------------------------------------------------------------------------------------


@connection_app.command("add")
def connection_add(
    name: str = typer.Argument(..., help="Connection name (letters, digits, '-', '_')."),
    base_url: str = typer.Option(None, "--base-url", help="An OpenAI-compatible server, with /v1."),
    azure_endpoint: str = typer.Option(None, "--azure-endpoint", help="An Azure OpenAI endpoint."),
    api_key_stdin: bool = typer.Option(False, "--api-key-stdin", help="Read the API key from standard input."),
    entra: bool = typer.Option(False, "--entra", help="Azure OpenAI with Entra ID instead of a key."),
    chat_only: bool = typer.Option(False, "--chat-only", help="The upstream speaks Chat Completions only."),
    metadata: list[str] = MetadataOption,
    home: Path = HomeOption,
) -> None:
    """Add a connection to a model provider; then `dockyard model add NAME --connection CONNECTION`."""
    from dockyard.domain.errors import DockyardError

    if bool(base_url) == bool(azure_endpoint):
        fail("say where the provider is with exactly one of --base-url URL or --azure-endpoint URL", EXIT_USAGE)
    store = _catalog(home).models
    try:
        connection = store.add_connection(DEFAULT_PROJECT, _new_connection(name, base_url, azure_endpoint,
                                                                           api_key_stdin, entra, chat_only, metadata))
    except DockyardError as error:
        fail(error.message, _exit_code(error))
    typer.echo(f"connection {name!r} added: {connection.kind.value} at {connection.target}")


@connection_app.command("list")
def connection_list(home: Path = HomeOption, json_output: bool = JsonOption) -> None:
    """List the project's connections (model and registry ones), as the connections API does; no secrets."""
    catalog = _catalog(home)
    rows: list[dict[str, Any]] = [
        {"name": c.name, "type": c.type, "target": c.target or None, "credentials": c.credentials.type,
         "isDefault": c.is_default, "metadata": c.metadata} for c in catalog.connections(DEFAULT_PROJECT)]
    if json_output:
        print_json(rows)
        return
    if not rows:
        note("no connections; add one with `dockyard connection add NAME --base-url URL --api-key-stdin`")
        return
    _table(["NAME", "TYPE", "TARGET", "CREDENTIALS", "DEFAULT"],
           [[r["name"], r["type"], r["target"] or "-", r["credentials"], "yes" if r["isDefault"] else ""]
            for r in rows])


@connection_app.command("remove")
def connection_remove(name: str = typer.Argument(..., help="The connection to remove."),
                      home: Path = HomeOption) -> None:
    """Remove a model connection (refused while deployments use it; registry ones: `dockyard registry remove`)."""
    from dockyard.domain.errors import DockyardError

    try:
        _catalog(home).models.remove_connection(DEFAULT_PROJECT, name)
    except DockyardError as error:
        fail(error.message, _exit_code(error))
    typer.echo(f"connection {name!r} removed")


# -- helpers --------------------------------------------------------------------------------------------


def _catalog(home: Path | None) -> Catalog:
    from dockyard.home import Home, HomeError, default_home
    from dockyard.models.catalog import Catalog
    from dockyard.store.database import migrate, open_engine, sqlite_url
    from dockyard.store.models import ModelStore
    from dockyard.store.registries import RegistryStore
    from dockyard.store.secrets import SecretBox

    try:
        root = Home(home or default_home()).ensure()
    except HomeError as exc:
        fail(str(exc), EXIT_USAGE)
    engine = open_engine(sqlite_url(root.database))
    migrate(engine)
    secrets = SecretBox.from_home(root)
    return Catalog(ModelStore(engine, secrets), RegistryStore(engine, secrets))


def _implicit_connection_name(deployment: str) -> str:
    """The connection `model add NAME --base-url` makes: the deployment's name ('.' is not allowed in one)."""
    return deployment.replace(".", "-")


def _new_connection(name: str, base_url: str | None, azure_endpoint: str | None, api_key_stdin: bool, entra: bool,
                    chat_only: bool, metadata: list[str] | None = None) -> Connection:
    from dockyard.domain.deployments import AuthKind, Connection, ProviderKind, validate_base_url
    from dockyard.domain.errors import DockyardError

    azure = azure_endpoint is not None
    if api_key_stdin and entra:
        fail("choose one of --api-key-stdin and --entra", EXIT_USAGE)
    if entra and not azure:
        fail("--entra is for Azure OpenAI (--azure-endpoint); an OpenAI-compatible server takes --api-key-stdin",
             EXIT_USAGE)
    if azure and not (api_key_stdin or entra):
        fail("Azure OpenAI needs credentials: --api-key-stdin (the key on standard input) or --entra", EXIT_USAGE)
    try:
        target = validate_base_url(azure_endpoint if azure else base_url or "", azure=azure)  # type: ignore[arg-type]
    except DockyardError as error:
        fail(error.message, EXIT_USAGE)
    if not azure and not target.rstrip("/").endswith("/v1"):
        note(f"note: {target} does not end in /v1; OpenAI-compatible servers usually serve under /v1 "
             "(e.g. http://127.0.0.1:8080/v1). Requests go to {base URL}/chat/completions and /responses.")
    pairs = [item.partition("=") for item in metadata or []]
    bad = [key + sep + value for key, sep, value in pairs if not sep or not key]
    if bad:
        fail(f"--metadata takes KEY=VALUE (got {', '.join(map(repr, bad))})", EXIT_USAGE)
    api_key = _read_key() if api_key_stdin else None
    auth = AuthKind.API_KEY if api_key else AuthKind.ENTRA if entra else AuthKind.NONE
    return Connection(name=name, kind=ProviderKind.AZURE_OPENAI if azure else ProviderKind.OPENAI, target=target,
                      auth=auth, api_key=api_key, metadata={key: value for key, _, value in pairs},
                      speaks_responses=not chat_only)


def _read_key() -> str:
    if sys.stdin.isatty():
        import getpass

        key = getpass.getpass("API key: ")
    else:
        key = sys.stdin.read()
    key = key.strip()
    if not key:
        fail("no API key on standard input (pipe it in: `dockyard model add ... --api-key-stdin < key.txt`)",
             EXIT_USAGE)
    return key


def _exit_code(error: Any) -> int:
    status = getattr(error, "status_code", 500)
    return EXIT_NOT_FOUND if status == 404 else EXIT_USAGE if status in (400, 409) else EXIT_FAILED


def _table(columns: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # values are data, never Rich markup
    stdout().print(table)
