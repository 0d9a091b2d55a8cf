"""Where a deployment's requests go: one resolved upstream per call.

The catalog turns a deployment name into an `Upstream`; the inference routes use nothing else about
deployments or connections. Keeping this small and frozen means the warm path can cache it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ProviderKind(str, Enum):
    # Any server speaking OpenAI's REST API under a base URL that ends in /v1 (llama.cpp, vLLM, Ollama,
    # LM Studio, OpenAI itself).
    OPENAI = "openai"
    # Azure OpenAI: an endpoint root; calls go to {endpoint}/openai/v1/... (or /openai/deployments/...).
    AZURE_OPENAI = "azure_openai"
    # The llama.cpp server dockyard runs itself; its base URL is known only once it has started.
    LOCAL = "local"


class ModelKind(str, Enum):
    """Which operations a deployment's model answers, when dockyard knows it."""

    # Not known (a remote deployment): every call is relayed, and the upstream answers what it cannot do.
    ANY = "any"
    # A chat model: chat/completions, completions, responses; no embeddings (the local chat server).
    CHAT = "chat"
    # An embedding model: embeddings only (the local embedding server, or a deployment whose
    # capabilities say embeddings and not chat).
    EMBEDDINGS = "embeddings"


class AuthKind(str, Enum):
    NONE = "none"
    API_KEY = "api_key"
    # Entra ID: a token for https://cognitiveservices.azure.com from dockyard's own credential.
    ENTRA = "entra"


@dataclass(frozen=True)
class Upstream:
    """One deployment, resolved: everything needed to send it a request."""

    # The deployment name the caller used (also what answers say in `model`, as Foundry does).
    deployment: str
    # The connection's name, for messages ("connection 'openai' refused the key").
    connection: str
    kind: ProviderKind
    # OpenAI-compatible base URL including /v1 (OPENAI, LOCAL), or the Azure endpoint root (AZURE_OPENAI).
    base_url: str
    # The model name the upstream expects in the body.
    model: str
    auth: AuthKind = AuthKind.NONE
    api_key: str | None = field(default=None, repr=False)
    # False when the upstream only speaks Chat Completions: Responses calls are translated.
    speaks_responses: bool = True
    # What it answers: calls it cannot answer are refused with a 400 before they leave (providers.check_operation).
    model_kind: ModelKind = ModelKind.ANY
