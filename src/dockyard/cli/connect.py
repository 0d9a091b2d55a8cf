"""Which project the workflow commands talk to, and with what credential: the one place targets differ.

Both targets get the same `AIProjectClient` and `DefaultAzureCredential`; only the environment differs,
exactly as for any Foundry code run against dockyard:

- `local`: the dockyard recorded in the home (`dockyard up` writes `server.json`), with the exports
  `dockyard env` prints (endpoint, managed-identity endpoint and secret, CA bundle) put into this
  process's environment, so `DefaultAzureCredential` finds dockyard's identity endpoint on its own;
- `azure`: `AZURE_AI_PROJECT_ENDPOINT` and whatever `DefaultAzureCredential` finds (az login, a managed
  identity, a service principal). Nothing dockyard-specific is set.

So everything after `project_client()` is the same code for both targets.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dockyard.cli.output import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE, fail
from dockyard.home import Home, HomeError, default_home
from dockyard.settings import DEFAULT_HOST, DEFAULT_PROJECT, IDENTITY_PATH, base_url

if TYPE_CHECKING:
    from azure.ai.projects import AIProjectClient


class Target(str, enum.Enum):
    local = "local"
    azure = "azure"


TargetOption = typer.Option(
    Target.local, "--target", "-t",
    help="local: the dockyard started with `dockyard up` (its home: --home or DOCKYARD_HOME). "
    "azure: AZURE_AI_PROJECT_ENDPOINT with DefaultAzureCredential.",
)
HomeOption = typer.Option(None, "--home",
                          help="dockyard's home folder, for --target local (default: $DOCKYARD_HOME or ~/.dockyard)")

# Credentials that DefaultAzureCredential tries before a managed identity; with --target local they
# would send an Entra token to dockyard (or fail), so they are left out of this process's environment.
_AHEAD_OF_MANAGED_IDENTITY = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE",
                              "AZURE_USERNAME")


def sdk_exports(store: Home, url: str) -> dict[str, str]:
    """The environment that points Azure SDKs (and DefaultAzureCredential) at the dockyard serving `url`."""
    return {
        "AZURE_AI_PROJECT_ENDPOINT": f"{url}/api/projects/{DEFAULT_PROJECT}",
        "IDENTITY_ENDPOINT": f"{url}{IDENTITY_PATH}",
        "IDENTITY_HEADER": store.identity_secret(),
        "REQUESTS_CA_BUNDLE": str(store.ca_bundle),
        "SSL_CERT_FILE": str(store.ca_bundle),
    }


def local_exports(home: Path | None) -> dict[str, str]:
    """What `dockyard env` would print for the dockyard running from `home`; exits 3 when none is running."""
    try:
        store = Home(home or default_home()).ensure()
    except HomeError as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    record = store.read_server_record()
    if not record or not store.ca_bundle.exists():
        fail(f"no dockyard is running from {store.root}.",
             EXIT_UNREACHABLE, details="Start one with `dockyard up` (or pass --home / DOCKYARD_HOME of the one "
             "you started), or deploy to Azure with --target azure.")
    return sdk_exports(store, base_url(record.get("host", DEFAULT_HOST), int(record["port"])))


def endpoint_for(target: Target, home: Path | None, environ: Mapping[str, str] | None = None) -> str:
    """Prepare this process's environment for `target` and return the project endpoint."""
    environ = os.environ if environ is None else environ
    if target is Target.local:
        exports = local_exports(home)
        for name in _AHEAD_OF_MANAGED_IDENTITY:
            os.environ.pop(name, None)
        os.environ.update(exports)
        return exports["AZURE_AI_PROJECT_ENDPOINT"]
    endpoint = environ.get("AZURE_AI_PROJECT_ENDPOINT")
    if not endpoint:
        fail("AZURE_AI_PROJECT_ENDPOINT is not set.", EXIT_USAGE,
             details="Set it to your Foundry project's endpoint (https://<account>.services.ai.azure.com/api/projects/"
             "<project>), and sign in so DefaultAzureCredential finds a credential (az login).")
    return endpoint


def project_client(target: Target, home: Path | None) -> AIProjectClient:
    """The 2.x SDK's project client for `target` (preview features on: agent endpoints and sessions)."""
    from azure.ai.projects import AIProjectClient
    from azure.identity import DefaultAzureCredential

    endpoint = endpoint_for(target, home)
    return AIProjectClient(endpoint=endpoint, credential=DefaultAzureCredential(), allow_preview=True)


@contextmanager
def api_errors(what: str) -> Iterator[None]:
    """Turn what the SDK raises into `dockyard: error: …` and the documented exit code.

    The Azure envelope's code and message are shown as the service sent them: they say what to do."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except ClientAuthenticationError as exc:
        fail(f"{what}: the target refused the credential: {_message(exc)}", EXIT_UNREACHABLE,
             details="For --target local: is dockyard running from this home? For --target azure: az login, or "
             "check the identity DefaultAzureCredential picks up.")
    except ResourceNotFoundError as exc:
        fail(f"{what}: {_message(exc)}", EXIT_NOT_FOUND)
    except HttpResponseError as exc:
        code = EXIT_UNREACHABLE if exc.status_code in (401, 403) else EXIT_FAILED
        fail(f"{what}: {_message(exc)}", code)
    except (ServiceRequestError, ServiceResponseError) as exc:
        fail(f"{what}: could not reach {os.environ.get('AZURE_AI_PROJECT_ENDPOINT', 'the project')}: {exc}",
             EXIT_UNREACHABLE)


def _message(exc: Exception) -> str:
    """`Code: message` from an Azure error envelope, else the exception's own text."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code or message:
        return f"{code or 'Error'}: {message or ''}".strip()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
