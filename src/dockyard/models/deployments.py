"""Deployments and connections as values: validation, and their wire shapes as the 2.x SDK reads them.

Pure: no store, no HTTP. A *connection* says where a provider is and how to authenticate to it; a
*deployment* is the name callers put in `model`, pointing at one connection and one upstream model.
The wire shapes are those of `azure.ai.projects.models.ModelDeployment` and `Connection`
(`GET {project}/deployments`, `GET {project}/connections`, api-version v1).

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
from urllib.parse import urlsplit, urlunsplit

from dockyard.domain.errors import BadRequest, NotFound
from dockyard.models.upstreams import AuthKind, ProviderKind

CONNECTION_NOT_FOUND = "ConnectionNotFound"
DEPLOYMENT_NOT_FOUND = "DeploymentNotFound"
INVALID_CONNECTION_REFERENCE = "InvalidConnectionReference"

# The one deployment type Foundry has (azure.ai.projects.models.DeploymentType).
MODEL_DEPLOYMENT = "ModelDeployment"

# Azure OpenAI deployment names: letters, digits, '.', '_', '-', at most 64 characters. Connection
# names have no '.', so `${{connections.NAME.target}}` parses one way only.
_DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CONNECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")

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


def validate_deployment_name(name: str) -> str:
    if not _DEPLOYMENT_NAME.fullmatch(name):
        raise BadRequest(
            f"Deployment name {name!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (e.g. gpt-4o-mini).", code="InvalidDeploymentName", param="name")
    return name


def validate_connection_name(name: str) -> str:
    if not _CONNECTION_NAME.fullmatch(name):
        raise BadRequest(
            f"Connection name {name!r} is not valid: use 1-128 letters, digits, '_' or '-', starting with a "
            "letter or digit.", code="InvalidConnectionName", param="name")
    return name


def validate_base_url(url: str, *, azure: bool = False) -> str:
    """An http(s) URL without credentials, query or fragment, without its trailing '/'.

    For Azure OpenAI the endpoint root is kept: a pasted `.../openai` or `.../openai/v1` is cut back to
    it, since the inference routes add the path of each call themselves.
    """
    what = "Azure OpenAI endpoint" if azure else "base URL"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise BadRequest(f"The {what} {url!r} is not a URL.", code="InvalidTargetUrl") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"The {what} {url!r} must be an http:// or https:// URL with a host, e.g. "
                         + ("https://NAME.openai.azure.com." if azure else "http://127.0.0.1:8080/v1."),
                         code="InvalidTargetUrl")
    if parts.username or parts.password:
        raise BadRequest(f"The {what} must not carry credentials; pass the key with --api-key-stdin.",
                         code="InvalidTargetUrl")
    if parts.query or parts.fragment:
        raise BadRequest(f"The {what} {url!r} must not have a query or fragment.", code="InvalidTargetUrl")
    path = parts.path.rstrip("/")
    if azure:
        for suffix in ("/openai/v1", "/openai"):
            if path.endswith(suffix):
                path = path[: -len(suffix)]
                break
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass(frozen=True)
class Connection:
    """A model provider: where it is, how to authenticate, and whether it speaks the Responses API."""

    name: str
    kind: ProviderKind
    # The base URL (OpenAI-compatible, with /v1) or the Azure endpoint root; "" for the local model,
    # whose address is known only while it runs.
    target: str
    auth: AuthKind = AuthKind.NONE
    api_key: str | None = field(default=None, repr=False)
    metadata: dict[str, str] = field(default_factory=dict)
    speaks_responses: bool = True

    def validated(self) -> Connection:
        validate_connection_name(self.name)
        if self.kind is not ProviderKind.LOCAL:
            validate_base_url(self.target, azure=self.kind is ProviderKind.AZURE_OPENAI)
        if self.auth is AuthKind.API_KEY and not self.api_key:
            raise BadRequest(f"Connection {self.name!r} authenticates with an API key but has none.",
                             code="MissingApiKey")
        if self.auth is not AuthKind.API_KEY and self.api_key:
            raise BadRequest(f"Connection {self.name!r} has an API key but authenticates with {self.auth.value}.",
                             code="InvalidConnection")
        if self.auth is AuthKind.ENTRA and self.kind is not ProviderKind.AZURE_OPENAI:
            raise BadRequest("Entra ID authentication is for Azure OpenAI connections (--azure-endpoint).",
                             code="InvalidConnection")
        return self


@dataclass(frozen=True)
class Sku:
    capacity: int = 1
    family: str = ""
    name: str = "Standard"
    size: str = ""
    tier: str = "Standard"

    def to_wire(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "family": self.family, "name": self.name, "size": self.size,
                "tier": self.tier}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any] | None) -> Sku:
        data = data or {}
        default = cls()
        return cls(capacity=int(data.get("capacity", default.capacity)), family=str(data.get("family", "")),
                   name=str(data.get("name", default.name)), size=str(data.get("size", "")),
                   tier=str(data.get("tier", default.tier)))


def default_capabilities(speaks_responses: bool = True) -> dict[str, str]:
    """What a chat model deployment can do, in Foundry's spelling (string values)."""
    capabilities = {"chat_completion": "true"}
    if speaks_responses:
        capabilities["responses"] = "true"
    return capabilities


def embedding_capabilities() -> dict[str, str]:
    """What an embedding model deployment can do, as Foundry lists one (`text-embedding-3-small`)."""
    return {"embeddings": "true"}


def is_embedding_model(capabilities: Mapping[str, str]) -> bool:
    """Capabilities that say embeddings and not chat: calls other than embeddings are refused."""
    return capabilities.get("embeddings") == "true" and capabilities.get("chat_completion") != "true"


def default_publisher(kind: ProviderKind) -> str:
    return "OpenAI" if kind in (ProviderKind.OPENAI, ProviderKind.AZURE_OPENAI) else "dockyard"


@dataclass(frozen=True)
class Deployment:
    """A named deployment: the name callers send as `model`, and what it stands for."""

    name: str
    connection: str
    # What the upstream expects in `model`; "" for the local model (whatever it serves).
    model: str
    model_name: str
    model_version: str = ""
    model_publisher: str = ""
    capabilities: dict[str, str] = field(default_factory=default_capabilities)
    sku: Sku = field(default_factory=Sku)

    def validated(self) -> Deployment:
        validate_deployment_name(self.name)
        validate_connection_name(self.connection)
        return self


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
