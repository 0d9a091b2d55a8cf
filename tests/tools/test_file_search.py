"""file_search's executor, driven directly: real files, a real usearch index, real embeddings from
dockyard's own llama.cpp embedding server (the local-model extra), exact results."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.llama import gguf_path, require_llama

from dockyard.domain.chunking import ChunkingStrategy
from dockyard.domain.errors import BadRequest, NotFound
from dockyard.home import Home
from dockyard.identity.ownership import Caller, Owner
from dockyard.models.embeddings import LOCAL_EMBEDDINGS, Embedder
from dockyard.store.database import migrate, open_engine, sqlite_url
from dockyard.store.files import FileStore
from dockyard.store.vector_stores import VectorStoreRepository
from dockyard.tools.base import ToolContext
from dockyard.tools.file_search import FileSearchKind
from dockyard.tools.loop import Turn, run_to_end
from dockyard.tools.vector_search import VectorSearch

pytestmark = pytest.mark.local_model

ALICE = Caller(subject="user:alice", user=None, operator=False, oid="alice")
BOB = Caller(subject="user:bob", user=None, operator=False, oid="bob")
LIGHTHOUSE = ("# Skerry Point\n\nThe lighthouse keeper of Skerry Point is named Albertine Vossberg. She lights the "
              "lamp at dusk and logs every ship that passes.\n")
BREAD = "Bread needs flour, water, salt and yeast. Knead for ten minutes and let it rise twice.\n"


@dataclass
class World:
    runner: asyncio.Runner
    files: FileStore
    search: VectorSearch

    def run(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)

    def upload(self, name: str, data: bytes, owner: Owner = ALICE.owner) -> str:
        async def chunks() -> Any:
            yield data
        return self.run(self.files.save("default", owner, name, "assistants", chunks(), 1 << 20)).id  # type: ignore[no-any-return]

    def store_with(self, *file_ids: str, attributes: dict[str, Any] | None = None, caller: Caller = ALICE) -> str:
        repository = self.search.repository
        store = repository.create("default", caller.owner, name="docs", expires_after=None, metadata={},
                                  embedding_deployment=LOCAL_EMBEDDINGS)

        async def attach() -> None:
            for file_id in file_ids:
                repository.add_file("default", caller.owner, store.id, file_id,
                                    chunking_strategy=ChunkingStrategy().to_wire(), attributes=attributes or {})
                self.search.take_in("default", caller.owner, store.id, file_id, ChunkingStrategy())
            await self.search.wait_idle()

        self.run(attach())
        return store.id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_llama()
    root = tmp_path_factory.mktemp("home")
    (root / "models").mkdir()
    model = gguf_path()
    os.link(model, root / "models" / model.name)  # the embedding server finds its GGUF in the home
    engine = open_engine(sqlite_url(root / "dockyard.db"))
    migrate(engine)
    files = FileStore(engine, root / "files")
    embedder = Embedder(LOCAL_EMBEDDINGS, None, Home(root))
    search = VectorSearch(VectorStoreRepository(engine, root / "vector_stores"), files, {LOCAL_EMBEDDINGS: embedder},
                          LOCAL_EMBEDDINGS)
    with asyncio.Runner() as runner:
        yield World(runner, files, search)
        runner.run(search.close())


def test_search_finds_the_passage_in_its_file(world: World) -> None:
    lighthouse = world.upload("lighthouse.md", LIGHTHOUSE.encode())
    bread = world.upload("bread.txt", BREAD.encode())
    store = world.store_with(lighthouse, bread)
    listed = world.search.repository.get("default", ALICE.owner, store)
    assert listed.file_counts.completed == 2 and listed.usage_bytes == len(LIGHTHOUSE.strip()) + len(BREAD.strip())
    assert len(world.search.repository.index(store)) == 2
    results = world.run(world.search.search("default", ALICE.owner, [store], ["Who keeps the lighthouse?"]))
    assert results[0].file_id == lighthouse and results[0].filename == "lighthouse.md"
    assert "Albertine Vossberg" in results[0].text
    assert results[0].score > results[-1].score and 0 < results[0].score <= 1
    # Removing the file removes its vectors and its text from what a search can find.
    world.search.repository.remove_file("default", ALICE.owner, store, lighthouse)
    assert len(world.search.repository.index(store)) == 1
    again = world.run(world.search.search("default", ALICE.owner, [store], ["Who keeps the lighthouse?"]))
    assert [r.file_id for r in again] in ([bread], [])


def test_a_file_with_no_text_fails_with_the_reason(world: World) -> None:
    image = world.upload("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    binary = world.upload("notes.txt", b"\xff\xfe\x00\x00\xff" * 10 + b"\x00binary")
    store = world.store_with(image, binary)
    failed = {f.id: f for f in world.search.repository.list_files(
        "default", ALICE.owner, store, limit=10, order="asc", after=None, before=None).items}
    assert failed[image].status == "failed" and failed[image].last_error is not None
    assert failed[image].last_error["code"] == "unsupported_file"
    assert "not a supported file type" in failed[image].last_error["message"]
    assert failed[binary].status == "failed"
    assert world.search.repository.get("default", ALICE.owner, store).file_counts.failed == 2


def test_the_tool_cites_the_file_and_keeps_to_its_caller(world: World) -> None:
    lighthouse = world.upload("keeper.md", LIGHTHOUSE.encode())
    store = world.store_with(lighthouse, attributes={"topic": "sea"})
    kind = FileSearchKind(SimpleNamespace(vector_search=world.search))  # type: ignore[arg-type]
    lines: list[str] = []
    ctx = ToolContext(project="default", caller=ALICE, request_id="req-1", log=lines.append)
    tool = kind.bind({"type": "file_search", "vector_store_ids": [store], "max_num_results": 3}, "default", ALICE)
    assert world.run(tool.prepare(ctx)) == []
    assert [f.name for f in tool.functions()] == ["file_search"]
    outcome = world.run(tool.run(ctx, "file_search", {"query": "name of the lighthouse keeper"}, "call_1"))
    item = outcome.item
    assert item["type"] == "file_search_call" and item["id"].startswith("fs_") and item["status"] == "completed"
    assert item["queries"] == ["name of the lighthouse keeper"]
    assert item["results"][0]["file_id"] == lighthouse and item["results"][0]["filename"] == "keeper.md"
    assert item["results"][0]["attributes"] == {"topic": "sea"}
    assert outcome.annotations == [{"type": "file_citation", "file_id": lighthouse, "filename": "keeper.md"}]
    assert outcome.model_output is not None and "keeper.md" in outcome.model_output
    assert "Albertine Vossberg" in outcome.model_output
    assert lines and "file_search" in lines[0] and "lighthouse" not in lines[0]  # the log names no content
    # Filters on attributes, and a threshold nothing reaches.
    filtered = kind.bind({"type": "file_search", "vector_store_ids": [store],
                          "filters": {"type": "eq", "key": "topic", "value": "bread"}}, "default", ALICE)
    assert world.run(filtered.run(ctx, "file_search", {"query": "lighthouse keeper"}, "c2")).item["results"] == []
    strict = kind.bind({"type": "file_search", "vector_store_ids": [store],
                        "ranking_options": {"score_threshold": 1.0}}, "default", ALICE)
    assert world.run(strict.run(ctx, "file_search", {"query": "lighthouse"}, "c3")).item["results"] == []
    # Another caller: the store does not exist for it.
    other = kind.bind({"type": "file_search", "vector_store_ids": [store]}, "default", BOB)
    with pytest.raises(NotFound) as caught:
        world.run(other.prepare(ToolContext(project="default", caller=BOB, request_id="r", log=lines.append)))
    assert caught.value.code == "VectorStoreNotFound"
    failed = world.run(other.run(ctx, "file_search", {"query": "lighthouse"}, "c4"))
    assert failed.item["status"] == "failed" and failed.item["results"] is None


def test_through_the_loop_results_only_when_included_and_each_file_cited_once(world: World) -> None:
    lighthouse = world.upload("keeper-loop.md", LIGHTHOUSE.encode())
    bread = world.upload("bread-loop.md", BREAD.encode())
    store = world.store_with(lighthouse, bread)
    kinds = {"file_search": FileSearchKind(SimpleNamespace(vector_search=world.search))}  # type: ignore[arg-type]

    def answer(output: dict[str, Any]) -> dict[str, Any]:
        return {"output": [output], "status": "completed", "model": "scripted",
                "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}

    def search(query: str, call_id: str) -> dict[str, Any]:
        return answer({"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": "file_search",
                       "arguments": f'{{"query": "{query}"}}', "status": "completed"})

    def respond(include: list[str] | None) -> dict[str, Any]:
        # The model (the loop's own call_model input, scripted): two searches, then its answer.
        script = [search("lighthouse keeper", "c1"), search("the keeper who lights the lamp", "c2"),
                  answer({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                          "content": [{"type": "output_text", "text": "Albertine Vossberg.", "annotations": []}]})]

        async def call_model(body: dict[str, Any]) -> dict[str, Any]:
            return script.pop(0)

        body: dict[str, Any] = {"model": "scripted", "input": "who keeps the lighthouse?",
                                "tools": [{"type": "file_search", "vector_store_ids": [store]}]}
        if include is not None:
            body["include"] = include
        ctx = ToolContext(project="default", caller=ALICE, request_id="req-loop", log=lambda line: None)

        async def go() -> dict[str, Any]:
            turn = Turn(body=body, ctx=ctx, call_model=call_model, max_rounds=8)
            await turn.start(kinds, None)
            return await run_to_end(turn, None)

        return world.run(go())  # type: ignore[no-any-return]

    plain = respond(None)
    calls = [item for item in plain["output"] if item["type"] == "file_search_call"]
    assert len(calls) == 2 and all(call["results"] is None for call in calls)
    [message] = [item for item in plain["output"] if item["type"] == "message"]
    cited = [a["file_id"] for a in message["content"][0]["annotations"]]
    assert lighthouse in cited and len(cited) == len(set(cited))  # two searches found it: one citation
    included = respond(["file_search_call.results"])
    searched = [item for item in included["output"] if item["type"] == "file_search_call"]
    assert searched[0]["results"] and searched[0]["results"][0]["file_id"] == lighthouse


def test_bind_checks_the_entry(world: World) -> None:
    kind = FileSearchKind(SimpleNamespace(vector_search=world.search))  # type: ignore[arg-type]
    for bad, param in (({}, "tools.vector_store_ids"), ({"vector_store_ids": []}, "tools.vector_store_ids"),
                       ({"vector_store_ids": ["vs_1"], "max_num_results": 51}, "tools.max_num_results"),
                       ({"vector_store_ids": ["vs_1"], "ranking_options": {"score_threshold": 2}},
                        "tools.ranking_options.score_threshold"),
                       ({"vector_store_ids": ["vs_1"], "filters": {"type": "near"}}, "tools.filters")):
        with pytest.raises(BadRequest) as caught:
            kind.bind({"type": "file_search", **bad}, "default", ALICE)
        assert caught.value.param == param


def test_index_files_are_replaced_whole(world: World, tmp_path: Path) -> None:
    store = world.store_with(world.upload("a.md", b"alpha beta gamma"))
    folder = world.search.repository.index(store).folder
    assert [p.name for p in folder.iterdir()] == ["index.usearch"]  # no temporary files left behind


def test_files_a_stop_left_in_progress_are_taken_in_again(world: World) -> None:
    repository = world.search.repository
    file_id = world.upload("later.md", b"The ferry to Skerry Point leaves at nine.")
    store = repository.create("default", ALICE.owner, name="later", expires_after=None, metadata={},
                              embedding_deployment=LOCAL_EMBEDDINGS)
    # Recorded but never started, as when dockyard stops between the two.
    repository.add_file("default", ALICE.owner, store.id, file_id, chunking_strategy=ChunkingStrategy(200, 0).to_wire(),
                        attributes={})

    async def resume() -> int:
        count = world.search.resume()
        await world.search.wait_idle()
        return count

    assert world.run(resume()) == 1
    assert repository.get_file("default", ALICE.owner, store.id, file_id).status == "completed"
    [result] = world.run(world.search.search("default", ALICE.owner, [store.id], ["when does the ferry leave"]))
    assert result.file_id == file_id and result.text == "The ferry to Skerry Point leaves at nine."
