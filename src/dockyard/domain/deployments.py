"""Deployments and connections as values, and the rules a name, a URL or a key must follow.

Pure: no store, no HTTP. A *connection* says where a model provider is and how to authenticate to it; a
*deployment* is the name callers put in `model`, pointing at one connection and one upstream model.
They are domain values because the store keeps them and the model endpoint (dockyard.models) resolves
and shows them: both read them from here. Validation runs before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dockyard.domain.errors import BadRequest

CONNECTION_NOT_FOUND = "ConnectionNotFound"
DEPLOYMENT_NOT_FOUND = "DeploymentNotFound"


class ProviderKind(str, Enum):
    """What kind of server a connection reaches, which decides how each call is addressed and authenticated."""

    # Any server speaking OpenAI's REST API under a base URL that ends in /v1 (llama.cpp, vLLM, Ollama,
    # LM Studio, OpenAI itself).
    OPENAI = "openai"
    # Azure OpenAI: an endpoint root; calls go to {endpoint}/openai/v1/... (or /openai/deployments/...).
    AZURE_OPENAI = "azure_openai"
    # The llama.cpp server dockyard runs itself; its base URL is known only once it has started.
    LOCAL = "local"


class AuthKind(str, Enum):
    """How dockyard authenticates to a connection's server."""

    NONE = "none"
    API_KEY = "api_key"
    # Entra ID: a token for https://cognitiveservices.azure.com from dockyard's own credential.
    ENTRA = "entra"


# Azure OpenAI deployment names: letters, digits, '.', '_', '-', at most 64 characters. Connection
# names have no '.', so `${{connections.NAME.target}}` parses one way only.
_DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CONNECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


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
