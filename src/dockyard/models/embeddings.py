"""Embeddings for vector stores: from a project deployment, or from dockyard's own embedding server.

A vector store embeds with the deployment `--embedding-deployment` names (`Settings.embedding_deployment`),
resolved through the catalog exactly as `/openai/v1/embeddings` resolves it, and called on its upstream's
`embeddings` operation with the same credentials. The default, `local-embeddings`, is a second llama.cpp
server on the local model's GGUF in embeddings mode (mean pooling): llama.cpp serves one kind of work
per server well, and the chat server's batch sizes stay as they are. It starts on the first call that
needs it, not with dockyard (most runs never embed), and is supervised like the chat server.

The Embedder built with dockyard's home owns that server (it stops it) and lends it to the catalog,
where it is the built-in `local-embeddings` deployment: listed with the project's deployments and
reachable on `/openai/v1/embeddings` like any other. Without a catalog (tests that drive vector
stores alone) the Embedder calls it directly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import aiohttp

from dockyard.domain.errors import DockyardError, ServiceUnavailable
from dockyard.home import Home
from dockyard.models.catalog import LOCAL_EMBEDDINGS, Catalog
from dockyard.models.local import LocalModel, ServerOptions
from dockyard.models.providers import EntraTokens, Operation, auth_headers, check_operation, operation_url
from dockyard.models.upstreams import Upstream

__all__ = ["BATCH", "LOCAL_EMBEDDINGS", "EmbeddingFailed", "Embedder", "embedding_server"]
# Inputs per request: llama.cpp embeds them one after another; remote providers take up to 2048.
BATCH = 16
# The embedding server's context: a chunk of 4096 "tokens" (16k characters) fits with room.
_EMBEDDING_CTX = 8192


class EmbeddingFailed(DockyardError):
    status_code = 502
    code = "EmbeddingFailed"


def embedding_server(home: Home) -> LocalModel:
    """dockyard's own embedding server (built, not started)."""
    return LocalModel(home, name=LOCAL_EMBEDDINGS,
                      options=ServerOptions(embeddings=True, ctx_size=_EMBEDDING_CTX, parallel=1))


class Embedder:
    def __init__(self, deployment: str, catalog: Catalog | None, home: Home | None,
                 timeout_seconds: float = 300.0) -> None:
        """`home`: where dockyard's own embedding server runs from (None: dockyard runs no local model)."""
        self.deployment = deployment
        self.catalog = catalog
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._entra = EntraTokens()
        self._local: LocalModel | None = embedding_server(home) if home is not None else None
        if self._local is not None and catalog is not None:
            catalog.attach_embedding_server(self._local)

    @property
    def server(self) -> LocalModel | None:
        """dockyard's own embedding server, when this Embedder runs it (the one built with the home)."""
        return self._local

    async def embed(self, project: str, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            vectors.extend(await self._embed_batch(project, list(texts[start:start + BATCH])))
        return vectors

    async def _embed_batch(self, project: str, texts: list[str]) -> list[list[float]]:
        url, headers, model = await self._target(project)
        body: dict[str, Any] = {"input": texts, "encoding_format": "float"}
        if model:
            body["model"] = model
        try:
            async with aiohttp.ClientSession(timeout=self.timeout, trust_env=False) as http, \
                    http.post(url, data=json.dumps(body), headers={"content-type": "application/json",
                                                                    **headers}) as answer:
                text = await answer.text()
                if answer.status != 200:
                    raise EmbeddingFailed(f"The embedding deployment {self.deployment!r} answered {answer.status}: "
                                          f"{text[:300]}")
                data = json.loads(text)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise EmbeddingFailed(f"The embedding deployment {self.deployment!r} did not answer "
                                  f"({type(exc).__name__}: {exc}).") from None
        items = sorted(data.get("data") or [], key=lambda item: item.get("index", 0))
        vectors = [item.get("embedding") for item in items]
        if len(vectors) != len(texts) or not all(isinstance(v, list) and v for v in vectors):
            raise EmbeddingFailed(f"The embedding deployment {self.deployment!r} answered {len(vectors)} embeddings "
                                  f"for {len(texts)} inputs.")
        return vectors

    async def _target(self, project: str) -> tuple[str, dict[str, str], str]:
        if self.catalog is not None and (self.deployment != LOCAL_EMBEDDINGS
                                         or self.catalog.embedding_server is not None):
            upstream: Upstream = await self.catalog.resolve_ready(project, self.deployment,
                                                                  self.timeout.total or 300.0)
            check_operation(upstream, Operation.EMBEDDINGS)  # a chat deployment named: a clear 400
            return (operation_url(upstream, Operation.EMBEDDINGS), await auth_headers(upstream, self._entra),
                    upstream.model)
        if self.deployment == LOCAL_EMBEDDINGS:
            if self._local is None:
                raise ServiceUnavailable(f"Vector stores embed with {LOCAL_EMBEDDINGS!r}, dockyard's own embedding "
                                         "server, which a dockyard started with --no-local-model does not run. Start "
                                         "it without that flag, or name another deployment with "
                                         "`dockyard up --embedding-deployment NAME`.", code="EmbeddingUnavailable")
            if not self._local.available:
                raise ServiceUnavailable(f"Vector stores embed with {LOCAL_EMBEDDINGS!r}, dockyard's own embedding "
                                         f"server. {self._local.install_hint} Or name another deployment with "
                                         "`dockyard up --embedding-deployment NAME`.", code="EmbeddingUnavailable")
            self._local.start()  # at once when it already runs
            base = await self._local.wait_ready(self.timeout.total or 300.0)
            return f"{base}/embeddings", {"authorization": f"Bearer {self._local.api_key}"}, ""
        raise ServiceUnavailable("This dockyard has no model deployments to embed with.",
                                 code="EmbeddingUnavailable")

    def stop(self) -> None:
        if self._local is not None:
            self._local.stop()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.stop)
