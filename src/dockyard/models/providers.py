"""Where each call to a deployment goes upstream, and with which credentials.

One function per question, per provider kind:

- OPENAI and LOCAL: any OpenAI-compatible server. Its base URL already ends in `/v1`, so an operation
  is `{base_url}/chat/completions`, `/responses`, `/embeddings`, `/completions`, `/models`; an API
  key travels as `Authorization: Bearer <key>`.
- AZURE_OPENAI: Azure OpenAI's v1 surface, `{endpoint}/openai/v1/<operation>` with no api-version
  (GA since August 2025) and the deployment name as the body's `model`. An API key travels as the
  `api-key` header; Entra ID as a bearer token for `https://cognitiveservices.azure.com/.default`
  from the `DefaultAzureCredential` of dockyard's own process (`EntraTokens`). That path cannot be
  tested here (no Azure tenant reachable); it is the same `get_token` call Azure's SDKs make.

The body's `model` is rewritten to `Upstream.model` (`rewrite_model`); the answer's `model` is
relayed as the upstream wrote it. Azure OpenAI (and so Foundry) does the same: its answers name the
underlying model and version (`gpt-4o-mini-2024-07-18`), not the deployment the caller asked for.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from enum import Enum
from typing import Any

from starlette.concurrency import run_in_threadpool

from dockyard.domain.deployments import AuthKind, ProviderKind
from dockyard.domain.errors import BadRequest, DockyardError
from dockyard.models.upstreams import ModelKind, Upstream

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
# A token is renewed this long before it expires, so none expires between check and use.
_RENEW_BEFORE_SECONDS = 300


class Operation(str, Enum):
    """An OpenAI operation, valued as its path under an OpenAI base URL."""

    CHAT_COMPLETIONS = "chat/completions"
    COMPLETIONS = "completions"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    MODELS = "models"


def operation_url(upstream: Upstream, operation: Operation) -> str:
    """The upstream URL of `operation` for this deployment."""
    base = upstream.base_url.rstrip("/")
    if upstream.kind is ProviderKind.AZURE_OPENAI:
        return f"{base}/openai/v1/{operation.value}"
    return f"{base}/{operation.value}"


# Azure OpenAI's code for a call the deployment's model cannot answer (chat on an embedding model).
OPERATION_NOT_SUPPORTED = "OperationNotSupported"


def check_operation(upstream: Upstream, operation: Operation, body: Mapping[str, Any] | None = None) -> None:
    """Refuse, with a 400 that says what to call instead, a call the deployment's model cannot answer.

    Only where dockyard knows the model (`Upstream.model_kind`): llama.cpp's chat server answers
    embeddings with a 501, its embedding server hangs on chat, and neither knows `dimensions` (it
    would answer full-length vectors as if it did). A remote deployment's upstream answers for itself.
    """
    kind = upstream.model_kind
    if kind is ModelKind.EMBEDDINGS and operation is not Operation.EMBEDDINGS:
        raise BadRequest(
            f"Deployment {upstream.deployment!r} is an embedding model: it answers /embeddings, not "
            f"/{operation.value}. Name a chat deployment in 'model' (`GET …/openai/v1/models` lists the "
            "deployments; `local` is the local chat model).", code=OPERATION_NOT_SUPPORTED, param="model")
    if kind is ModelKind.CHAT and operation is Operation.EMBEDDINGS:
        raise BadRequest(
            f"Deployment {upstream.deployment!r} is a chat model and makes no embeddings. Name an embedding "
            "deployment in 'model' (`local-embeddings` is the local one).", code=OPERATION_NOT_SUPPORTED,
            param="model")
    if (operation is Operation.EMBEDDINGS and upstream.kind is ProviderKind.LOCAL and body is not None
            and body.get("dimensions") is not None):
        raise BadRequest(
            f"Deployment {upstream.deployment!r} makes vectors of its model's own length only and cannot shorten "
            "them: leave 'dimensions' out.", code="DimensionsNotSupported", param="dimensions")


def key_headers(upstream: Upstream) -> dict[str, str]:
    """The headers that carry a connection's API key (none for keyless or Entra connections)."""
    if upstream.auth is not AuthKind.API_KEY or not upstream.api_key:
        return {}
    if upstream.kind is ProviderKind.AZURE_OPENAI:
        return {"api-key": upstream.api_key}
    return {"authorization": f"Bearer {upstream.api_key}"}


def rewrite_model(body: dict[str, Any], upstream: Upstream) -> bytes:
    """The request body for the upstream: the caller's, with `model` the upstream's name for it."""
    if upstream.model:
        body = {**body, "model": upstream.model}
    return json.dumps(body, separators=(",", ":")).encode()


class EntraUnavailable(DockyardError):
    """dockyard's own Azure identity gave no token: the call never left."""

    status_code = 502
    code = "UpstreamCredentialUnavailable"


class EntraTokens:
    """Bearer tokens for Azure OpenAI from dockyard's own `DefaultAzureCredential`, cached.

    The credential is made on first use (importing azure.identity and probing its sources is slow,
    and most dockyards never need it). `get_token` blocks, so it runs in a worker thread, one at a
    time; every later call until shortly before expiry is a dictionary read on the event loop.
    """

    def __init__(self, scope: str = COGNITIVE_SERVICES_SCOPE) -> None:
        self.scope = scope
        self._credential: Any = None
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock: asyncio.Lock | None = None

    async def bearer(self) -> str:
        if self._token is not None and time.time() < self._expires_on - _RENEW_BEFORE_SECONDS:
            return self._token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token is None or time.time() >= self._expires_on - _RENEW_BEFORE_SECONDS:
                token = await run_in_threadpool(self._get_token)
                self._token, self._expires_on = token.token, float(token.expires_on)
            return self._token

    def _get_token(self) -> Any:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            return self._credential.get_token(self.scope)
        except ClientAuthenticationError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EntraUnavailable(
                f"dockyard could not get an Entra ID token for {self.scope} to call Azure OpenAI: {first_line}. "
                "Sign in where dockyard runs (`az login`, or the AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET "
                "variables) and give that identity the 'Cognitive Services OpenAI User' role on the resource, or "
                "use a key connection (--api-key-stdin).") from None


async def auth_headers(upstream: Upstream, tokens: EntraTokens) -> dict[str, str]:
    """The headers that authenticate dockyard to the upstream, whatever the connection's kind."""
    if upstream.auth is AuthKind.ENTRA:
        return {"authorization": f"Bearer {await tokens.bearer()}"}
    return key_headers(upstream)
