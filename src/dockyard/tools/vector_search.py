"""Vector stores at work: taking files in (extract, chunk, embed, index) and searching them.

Taking a file in runs in the background, as OpenAI's does: the file is `in_progress` at once and
becomes `completed` or `failed` with a `last_error` (`unsupported_file` for a file with no text to
take, `server_error` when the embedding deployment fails). Text is read in a child process
(`tools/extraction.py`), a few files at a time. Files left in progress by a stop are taken in again
when dockyard starts (`resume`).

Search is hybrid, as OpenAI's file_search is (semantic and keyword): the query's nearest chunks in
each store's HNSW index (cosine similarity) and a keyword score over the stores' chunks (the share
of the query's IDF-weighted terms a chunk holds) are averaged into one score from 0 to 1. Keywords
keep exact names and numbers findable whatever the embedding model; small local models embed
meaning only roughly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockyard.domain.chunking import ChunkingStrategy, UnsupportedFile, chunk_text
from dockyard.domain.errors import BadRequest, DockyardError
from dockyard.identity.ownership import Owner
from dockyard.models.embeddings import Embedder
from dockyard.store.files import FileStore
from dockyard.store.vector_index import DimensionMismatch
from dockyard.store.vector_stores import VectorStoreRepository
from dockyard.tools.extraction import extract

log = logging.getLogger("dockyard.tools.vector_search")

# Files taken in at once: each runs a child process and embedding requests.
CONCURRENT_INGESTIONS = 2
MAX_RESULTS = 50
# Nearest chunks asked of each index, before scores are combined.
_CANDIDATES = 64
_TERM = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class SearchResult:
    file_id: str
    filename: str
    score: float
    text: str
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """One entry of `vector_stores.search`'s page."""
        return {"file_id": self.file_id, "filename": self.filename, "score": self.score,
                "attributes": self.attributes, "content": [{"type": "text", "text": self.text}]}


class VectorSearch:
    def __init__(self, repository: VectorStoreRepository, files: FileStore, embedders: Mapping[str, Embedder],
                 default_deployment: str) -> None:
        self.repository = repository
        self.files = files
        self.embedders = dict(embedders)
        self.default_deployment = default_deployment
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None

    def embedder(self, deployment: str) -> Embedder:
        found = self.embedders.get(deployment)
        if found is None:
            base = self.embedders[self.default_deployment]
            found = self.embedders.setdefault(deployment, Embedder(deployment, base.catalog, None))
        return found

    # -- taking files in ----------------------------------------------------------------------------

    def take_in(self, project: str, owner: Owner, vector_store_id: str, file_id: str,
                strategy: ChunkingStrategy) -> None:
        """Start taking a file in, in the background (it is `in_progress` already)."""
        task = asyncio.get_running_loop().create_task(
            self._take_in(project, owner, vector_store_id, file_id, strategy))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def resume(self) -> int:
        """Take in again what a stop left in progress; how many files. Call on the serving loop."""
        pending = self.repository.in_progress()
        for project, vector_store_id, file_id, owner, chunking in pending:
            static = (chunking or {}).get("static") or {}
            strategy = ChunkingStrategy(static.get("max_chunk_size_tokens", 800),
                                        static.get("chunk_overlap_tokens", 400))
            self.take_in(project, owner, vector_store_id, file_id, strategy)
        return len(pending)

    async def wait_idle(self) -> None:
        """Until every file started so far is taken in (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for embedder in self.embedders.values():
            await embedder.aclose()

    async def _take_in(self, project: str, owner: Owner, vector_store_id: str, file_id: str,
                       strategy: ChunkingStrategy) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(CONCURRENT_INGESTIONS)
        async with self._slots:
            try:
                await self._ingest(project, owner, vector_store_id, file_id, strategy)
            except UnsupportedFile as exc:
                self.repository.fail_file(vector_store_id, file_id, "unsupported_file", str(exc))
            except DockyardError as exc:
                self.repository.fail_file(vector_store_id, file_id, "server_error", exc.message)
            except DimensionMismatch as exc:
                self.repository.fail_file(vector_store_id, file_id, "server_error",
                                          f"The embedding deployment's vectors do not fit this store ({exc}).")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the file fails with the reason; dockyard goes on
                log.exception("taking file %s into vector store %s failed", file_id, vector_store_id)
                self.repository.fail_file(vector_store_id, file_id, "server_error",
                                          f"Taking the file in failed ({type(exc).__name__}).")

    async def _ingest(self, project: str, owner: Owner, vector_store_id: str, file_id: str,
                      strategy: ChunkingStrategy) -> None:
        if self.repository.status_of(vector_store_id, file_id) != "in_progress":
            return
        stored = self.files.get(project, owner, file_id)
        store = self.repository.get(project, owner, vector_store_id)
        text = await extract(self.files.path(stored), stored.filename)
        chunks = await asyncio.to_thread(chunk_text, text, strategy)
        if not chunks:
            raise UnsupportedFile(f"{stored.filename!r} has no text to search.")
        vectors = await self.embedder(store.embedding_deployment).embed(project, chunks)
        if self.repository.status_of(vector_store_id, file_id) != "in_progress":
            return  # removed or cancelled meanwhile
        keys = self.repository.add_chunks(vector_store_id, file_id, chunks)
        await asyncio.to_thread(self.repository.index(vector_store_id).add, keys, vectors)
        usage = sum(len(chunk.encode()) for chunk in chunks)
        if not self.repository.finish_file(vector_store_id, file_id, usage):
            self.repository.drop_file(vector_store_id, file_id)
        log.info("vector store %s took in %s: %d chunks", vector_store_id, file_id, len(chunks))

    # -- searching ----------------------------------------------------------------------------------

    async def search(self, project: str, owner: Owner, vector_store_ids: Sequence[str], queries: Sequence[str],
                     max_num_results: int = 10, score_threshold: float = 0.0,
                     filters: Mapping[str, Any] | None = None) -> list[SearchResult]:
        """The best chunks for the queries across the stores, best first (each store must be the caller's)."""
        stores = [self.repository.get(project, owner, vs) for vs in vector_store_ids]
        for store in stores:
            if store.expired:  # as OpenAI: an expired store is no longer available for use
                raise BadRequest(f"Vector store {store.id!r} has expired (expires_after); make a new one, or set a "
                                 "longer expires_after on the next.", code="VectorStoreExpired",
                                 param="vector_store_ids")
        queries = [q for q in queries if q.strip()]
        if not queries or not stores:
            return []
        attributes = self.repository.file_attributes([s.id for s in stores])
        chunks = {c.id: c for c in await asyncio.to_thread(self.repository.chunks, [s.id for s in stores])}
        if not chunks:
            return []
        scores: dict[int, float] = {}
        for query in queries:
            semantic: dict[int, float] = {}
            for store in stores:
                [vector] = await self.embedder(store.embedding_deployment).embed(project, [query])
                try:
                    found = await asyncio.to_thread(self.repository.index(store.id).search, vector, _CANDIDATES)
                except DimensionMismatch:
                    found = []
                semantic.update({key: max(similarity, 0.0) for key, similarity in found})
            keyword = _keyword_scores(query, chunks)
            for key in chunks:
                score = 0.5 * semantic.get(key, 0.0) + 0.5 * keyword.get(key, 0.0)
                scores[key] = max(scores.get(key, 0.0), score)
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        names = self.files.names([chunks[key].file_id for key, _ in ranked[:max_num_results * 4]])
        results: list[SearchResult] = []
        for key, score in ranked:
            chunk = chunks[key]
            file_attributes = attributes.get(chunk.file_id, {})
            if score < score_threshold or score <= 0 or (filters and not matches(filters, file_attributes)):
                continue
            results.append(SearchResult(chunk.file_id, names.get(chunk.file_id, chunk.file_id), round(score, 6),
                                        chunk.text, file_attributes))
            if len(results) >= max_num_results:
                break
        for store in stores:
            self.repository.touch(store.id)
        return results


def _terms(text: str) -> list[str]:
    return [t.lower() for t in _TERM.findall(text)]


def _keyword_scores(query: str, chunks: Mapping[int, Any]) -> dict[int, float]:
    wanted = set(_terms(query))
    if not wanted:
        return {}
    present = {key: set(_terms(chunk.text)) & wanted for key, chunk in chunks.items()}
    frequency = Counter(term for terms in present.values() for term in terms)
    total = len(chunks)
    weight = {term: math.log(1 + total / (1 + frequency[term])) for term in wanted}
    whole = sum(weight.values()) or 1.0
    return {key: sum(weight[t] for t in terms) / whole for key, terms in present.items() if terms}


_COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte")


def check_filters(value: Any, param: str = "filters") -> dict[str, Any] | None:
    """OpenAI's attribute filters: `{type: eq|ne|gt|gte|lt|lte, key, value}` or `{type: and|or, filters}`."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        kind = value.get("type")
        if kind in _COMPARISONS and isinstance(value.get("key"), str) and "value" in value:
            return dict(value)
        if kind in ("and", "or") and isinstance(value.get("filters"), list):
            for i, inner in enumerate(value["filters"]):
                check_filters(inner, f"{param}.filters[{i}]")
            return dict(value)
    raise BadRequest(f"{param} must be a comparison {{'type': 'eq'|'ne'|'gt'|'gte'|'lt'|'lte', 'key', 'value'}} "
                     "or a compound {'type': 'and'|'or', 'filters': [...]}.", code="InvalidFilters", param=param)


def matches(filters: Mapping[str, Any], attributes: Mapping[str, Any]) -> bool:
    kind = filters.get("type")
    if kind == "and":
        return all(matches(f, attributes) for f in filters["filters"])
    if kind == "or":
        return any(matches(f, attributes) for f in filters["filters"])
    if filters["key"] not in attributes:
        return kind == "ne"
    compare = getattr(operator, "ge" if kind == "gte" else "le" if kind == "lte" else str(kind))
    try:
        return bool(compare(attributes[filters["key"]], filters["value"]))
    except TypeError:
        return False
