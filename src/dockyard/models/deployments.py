"""Deployments and connections as the 2.x SDK reads them, and `${{connections.…}}` references.

Pure: no store, no HTTP. The values themselves and their validation are `dockyard.domain.deployments`;
this is how they are shown. The wire shapes are those of `azure.ai.projects.models.ModelDeployment`
and `Connection` (`GET {project}/deployments`, `GET {project}/connections`, api-version v1).

The connections API lists more than model connections (registry connections too), so what it shows
is a `ProjectConnection`: a name, a Foundry connection type, a target, credentials and metadata.
`${{connections.NAME.credentials.FIELD}}`, `.target` and `.metadata.KEY` in a version's environment
variables resolve against the same view (`resolve_references`), the three paths Foundry resolves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dockyard.domain.deployments import CONNECTION_NOT_FOUND, AuthKind, Connection, Deployment, ProviderKind
from dockyard.domain.errors import BadRequest, NotFound

INVALID_CONNECTION_REFERENCE = "InvalidConnectionReference"

# The one deployment type Foundry has (azure.ai.projects.models.DeploymentType).
MODEL_DEPLOYMENT = "ModelDeployment"

# ARM-shaped ids, as Foundry's have; only the last segment means anything (see store.registries).
_ID_PREFIX = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/dockyard/providers/"
              "Microsoft.CognitiveServices/accounts/dockyard/projects")

# Foundry connection types (azure.ai.projects.models.ConnectionType) for each provider kind. An
# OpenAI-compatible server is a generic "ApiKey" connection there; "ContainerRegistry" is ARM's
# category for registry connections, which the SDK's enum (case-insensitive, open) lets through.
_CONNECTION_TYPES = {
    ProviderKind.AZURE_OPENAI: "AzureOpenAI",
    ProviderKind.OPENAI: "ApiKey",
    ProviderKind.LOCAL: "ApiKey",
}
CONTAINER_REGISTRY = "ContainerRegistry"
_API_TYPES = {ProviderKind.AZURE_OPENAI: "Azure", ProviderKind.OPENAI: "OpenAI", ProviderKind.LOCAL: "Local"}


def deployment_to_wire(deployment: Deployment) -> dict[str, Any]:
    """`azure.ai.projects.models.ModelDeployment` as JSON."""
    return {
        "type": MODEL_DEPLOYMENT,
        "name": deployment.name,
        "modelName": deployment.model_name,
        "modelVersion": deployment.model_version,
        "modelPublisher": deployment.model_publisher,
        "capabilities": dict(deployment.capabilities),
        "sku": deployment.sku.to_wire(),
        "connectionName": deployment.connection,
    }


@dataclass(frozen=True)
class Credentials:
    """A connection's credentials: the SDK's credential type and the secret fields it carries.

    `fields` is what `${{connections.NAME.credentials.FIELD}}` reads: `key` for an API key, each key's
    name for custom keys. It never appears in a repr; `to_wire` shows it only when asked to.
    """

    type: str  # azure.ai.projects.models.CredentialType: ApiKey, AAD, CustomKeys, None
    fields: dict[str, str] = field(default_factory=dict, repr=False)

    def to_wire(self, include_secrets: bool) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type}
        if include_secrets:
            if self.type == "ApiKey":
                wire["key"] = self.fields.get("key")
            elif self.type == "CustomKeys":
                wire["keys"] = dict(self.fields)
        return wire


@dataclass(frozen=True)
class ProjectConnection:
    """A connection as the connections API shows it, whatever kind of connection it is."""

    name: str
    type: str
    target: str
    credentials: Credentials
    metadata: dict[str, str] = field(default_factory=dict)
    is_default: bool = False


def connection_id(project: str, name: str) -> str:
    return f"{_ID_PREFIX}/{project}/connections/{name}"


def model_connection_view(connection: Connection, *, target: str | None = None) -> ProjectConnection:
    """A model connection as the connections API shows it (`target` overrides, for the local model)."""
    if connection.auth is AuthKind.API_KEY:
        credentials = Credentials("ApiKey", {"key": connection.api_key or ""})
    elif connection.auth is AuthKind.ENTRA:
        credentials = Credentials("AAD")
    else:
        credentials = Credentials("None")
    metadata = {**connection.metadata, "ApiType": _API_TYPES[connection.kind],
                "SupportsResponses": "true" if connection.speaks_responses else "false"}
    return ProjectConnection(name=connection.name, type=_CONNECTION_TYPES[connection.kind],
                             target=connection.target if target is None else target,
                             credentials=credentials, metadata=metadata)


def registry_connection_view(name: str, server: str, username: str, password: str) -> ProjectConnection:
    """A registry connection (`dockyard registry add`) as the connections API shows it."""
    return ProjectConnection(name=name, type=CONTAINER_REGISTRY, target=server,
                             credentials=Credentials("CustomKeys", {"username": username, "password": password}),
                             metadata={"username": username})


def connection_to_wire(connection: ProjectConnection, project: str, *, include_credentials: bool) -> dict[str, Any]:
    """`azure.ai.projects.models.Connection` as JSON; secrets only with `include_credentials`."""
    return {
        "name": connection.name,
        "id": connection_id(project, connection.name),
        "type": connection.type,
        "target": connection.target,
        "isDefault": connection.is_default,
        "credentials": connection.credentials.to_wire(include_credentials),
        "metadata": dict(connection.metadata),
    }


# ${{connections.NAME.target}}, ${{connections.NAME.credentials.FIELD}}, ${{connections.NAME.metadata.KEY}}
_REFERENCE_START = "${{connections."
_REFERENCE = re.compile(
    r"\$\{\{\s*connections\.(?P<name>[A-Za-z0-9_-]+)\.(?P<path>target|credentials\.[^{}\s]+|metadata\.[^{}\s]+)"
    r"\s*\}\}")
_ANY_REFERENCE = re.compile(r"\$\{\{\s*connections\.[^}]*\}\}|\$\{\{\s*connections\.")


def has_references(value: str) -> bool:
    return "${{" in value and _ANY_REFERENCE.search(value) is not None


def resolve_references(environment: Mapping[str, str],
                       lookup: Callable[[str], ProjectConnection]) -> dict[str, str]:
    """`environment` with every `${{connections.…}}` replaced by the connection's value.

    `lookup(name)` returns the connection or raises NotFound (code ConnectionNotFound). A reference
    that does not parse, or names a field the connection lacks, is a BadRequest naming the variable.
    Each connection is looked up once however often it is named.
    """
    resolved: dict[str, str] = {}
    seen: dict[str, ProjectConnection] = {}

    def connection(name: str) -> ProjectConnection:
        if name not in seen:
            seen[name] = lookup(name)
        return seen[name]

    for variable, value in environment.items():
        if not has_references(value):
            resolved[variable] = value
            continue

        def substitute(match: re.Match[str], variable: str = variable) -> str:
            return _field(connection(match["name"]), match["path"], variable)

        try:
            replaced = _REFERENCE.sub(substitute, value)
        except NotFound as missing:
            raise NotFound(f"Environment variable {variable} refers to a connection that does not exist: "
                           f"{missing.message} Then create a new version.", code=CONNECTION_NOT_FOUND) from None
        leftover = _ANY_REFERENCE.search(_REFERENCE.sub("", value))
        if leftover is not None:
            raise BadRequest(
                f"Environment variable {variable} has a connection reference dockyard cannot read: "
                f"{leftover.group(0)!r}. Write ${{{{connections.NAME.target}}}}, "
                "${{connections.NAME.credentials.FIELD}} or ${{connections.NAME.metadata.KEY}}.",
                code=INVALID_CONNECTION_REFERENCE)
        resolved[variable] = replaced
    return resolved


def _field(connection: ProjectConnection, path: str, variable: str) -> str:
    if path == "target":
        return connection.target
    section, _, key = path.partition(".")
    values = connection.credentials.fields if section == "credentials" else connection.metadata
    if key not in values:
        known = ", ".join(sorted(values)) or "none"
        raise BadRequest(
            f"Environment variable {variable} refers to {section}.{key} of connection {connection.name!r}, which "
            f"has no such field (its {section} fields: {known}).", code=INVALID_CONNECTION_REFERENCE)
    return values[key]
