"""Where a deployment's requests go: one resolved upstream per call.

The catalog turns a deployment name into an `Upstream`; the inference routes use nothing else about
deployments or connections. Keeping this small and frozen means the warm path can cache it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from dockyard.domain.deployments import AuthKind, ProviderKind


class ModelKind(str, Enum):
    """Which operations a deployment's model answers, when dockyard knows it."""

    # Not known (a remote deployment): every call is relayed, and the upstream answers what it cannot do.
    ANY = "any"
    # A chat model: chat/completions, completions, responses; no embeddings (the local chat server).
    CHAT = "chat"
    # An embedding model: embeddings only (the local embedding server, or a deployment whose
    # capabilities say embeddings and not chat).
    EMBEDDINGS = "embeddings"


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
