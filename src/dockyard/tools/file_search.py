"""The `file_search` tool: the model searches the caller's vector stores; the answer cites the files.

A Responses call lists `{"type": "file_search", "vector_store_ids": [...], "max_num_results",
"ranking_options": {"score_threshold"}, "filters"}`; the model is offered one function, `file_search`
(parameter `query`, or `queries`), and each call becomes a `file_search_call` item `{id "fs_…",
status, queries, results: [{file_id, filename, score, text, attributes}]}` (OpenAI returns `results`
only when the request has `include: ["file_search_call.results"]`: the loop drops them otherwise), the
model reads the passages with their file names, and the final message carries one `file_citation`
per file found. The search itself is `dockyard.tools.vector_search`'s.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dockyard.domain.errors import BadRequest, DockyardError, ServiceUnavailable
from dockyard.identity.ownership import Caller
from dockyard.tools.base import FunctionSpec, ToolContext, ToolOutcome
from dockyard.tools.vector_search import MAX_RESULTS, SearchResult, VectorSearch, check_filters

if TYPE_CHECKING:
    from dockyard.tools.dependencies import ToolDependencies

FUNCTION = "file_search"
DEFAULT_MAX_RESULTS = 10
MAX_VECTOR_STORES = 10
# What the model reads of each passage: the local model's context is small, and the item keeps it all.
_PASSAGE_CHARS = 1500
_MAX_QUERIES = 5

_SPEC = FunctionSpec(
    name=FUNCTION,
    description="Search the user's uploaded files for passages relevant to a query. Returns the best passages "
                "with the name of the file each comes from; cite the file names in the answer.",
    parameters={"type": "object",
                "properties": {"query": {"type": "string", "description": "What to look for in the files."}},
                "required": ["query"]},
)


class FileSearchKind:
    type = "file_search"

    def __init__(self, deps: ToolDependencies) -> None:
        self.search = deps.vector_search

    def bind(self, config: Mapping[str, Any], project: str, caller: Caller) -> FileSearchTool:
        ids = config.get("vector_store_ids")
        if (not isinstance(ids, list) or not ids or len(ids) > MAX_VECTOR_STORES
                or not all(isinstance(i, str) and i for i in ids)):
            raise BadRequest(f"file_search needs 'vector_store_ids': a list of 1 to {MAX_VECTOR_STORES} vector store "
                             "ids (client.vector_stores.create makes one).", code="InvalidTool",
                             param="tools.vector_store_ids")
        limit = config.get("max_num_results", DEFAULT_MAX_RESULTS)
        if type(limit) is not int or not 1 <= limit <= MAX_RESULTS:
            raise BadRequest(f"file_search max_num_results must be an integer from 1 to {MAX_RESULTS}.",
                             code="InvalidTool", param="tools.max_num_results")
        ranking = config.get("ranking_options") or {}
        threshold = ranking.get("score_threshold", 0.0) if isinstance(ranking, Mapping) else None
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise BadRequest("file_search ranking_options.score_threshold must be a number from 0 to 1.",
                             code="InvalidTool", param="tools.ranking_options.score_threshold")
        filters = check_filters(config.get("filters"), "tools.filters")
        return FileSearchTool(self.search, project, caller, list(ids), limit, float(threshold), filters)


class FileSearchTool:
    def __init__(self, search: VectorSearch | None, project: str, caller: Caller, vector_store_ids: list[str],
                 max_num_results: int, score_threshold: float, filters: dict[str, Any] | None) -> None:
        self.search = search
        self.project = project
        self.caller = caller
        self.vector_store_ids = vector_store_ids
        self.max_num_results = max_num_results
        self.score_threshold = score_threshold
        self.filters = filters

    def _search(self) -> VectorSearch:
        if self.search is None:
            raise ServiceUnavailable("This dockyard keeps no vector stores.", code="FileSearchUnavailable")
        return self.search

    async def prepare(self, ctx: ToolContext) -> list[dict[str, Any]]:
        search = self._search()
        for vector_store_id in self.vector_store_ids:
            search.repository.get(self.project, self.caller.owner, vector_store_id)  # VectorStoreNotFound
        return []

    def functions(self) -> list[FunctionSpec]:
        return [_SPEC]

    async def run(self, ctx: ToolContext, name: str, arguments: Mapping[str, Any], call_id: str) -> ToolOutcome:
        queries = _queries(arguments)
        item: dict[str, Any] = {"id": f"fs_{secrets.token_hex(16)}", "type": "file_search_call",
                                "status": "completed", "queries": queries, "results": None}
        if not queries:
            item["status"] = "failed"
            ctx.log("file_search: the model gave no query")
            return ToolOutcome(item=item, model_output="file_search needs a 'query' string: what to look for.")
        try:
            results = await self._search().search(self.project, self.caller.owner, self.vector_store_ids, queries,
                                                  self.max_num_results, self.score_threshold, self.filters)
        except DockyardError as exc:
            item["status"] = "failed"
            ctx.log(f"file_search: failed ({exc.code})")
            return ToolOutcome(item=item, model_output=f"The file search failed: {exc.message}")
        item["results"] = [{"file_id": r.file_id, "filename": r.filename, "score": r.score, "text": r.text,
                            "attributes": r.attributes} for r in results]
        ctx.log(f"file_search: {len(queries)} quer{'y' if len(queries) == 1 else 'ies'} over "
                f"{len(self.vector_store_ids)} vector store(s), {len(results)} result(s)")
        return ToolOutcome(item=item, model_output=_model_output(queries, results),
                           annotations=_citations(results))

    async def resume(self, ctx: ToolContext, request_item: Mapping[str, Any], approve: bool,
                     reason: str | None) -> ToolOutcome:
        raise BadRequest("file_search makes no approval requests.", code="InvalidApprovalResponse")


def _queries(arguments: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    query = arguments.get("query")
    if isinstance(query, str) and query.strip():
        found.append(query.strip())
    more = arguments.get("queries")
    if isinstance(more, list):
        found.extend(q.strip() for q in more if isinstance(q, str) and q.strip() and q.strip() not in found)
    return found[:_MAX_QUERIES]


def _model_output(queries: list[str], results: list[SearchResult]) -> str:
    if not results:
        return f"No passages in the files match {', '.join(repr(q) for q in queries)}."
    lines = [f"Passages found for {', '.join(repr(q) for q in queries)}:"]
    for number, result in enumerate(results, 1):
        text = result.text if len(result.text) <= _PASSAGE_CHARS else result.text[:_PASSAGE_CHARS] + "…"
        lines.append(f"[{number}] From file {result.filename}:\n{text}")
    return "\n\n".join(lines)


def _citations(results: list[SearchResult]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for result in results:
        seen.setdefault(result.file_id, {"type": "file_citation", "file_id": result.file_id,
                                         "filename": result.filename})
    return list(seen.values())
