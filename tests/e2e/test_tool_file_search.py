"""Files, vector stores and file_search in a live dockyard, through the real openai client.

Files round trip (`client.files.*`), a vector store made from an uploaded document finds the passage
(`vector_stores.search`, exact file and text), a file batch, a file with no text fails with its reason,
a file past `--max-file-bytes` is refused as it streams in (413, dockyard's memory unmoved), another
caller meets 404 for all of it, and the local model, made to call the tool (`tool_choice`), searches
through the Responses loop and its answer cites the file. The embedding server the stores use is the
`local-embeddings` deployment: listed by azure-ai-projects, called with `client.embeddings.create`
(floats and the client's default base64), and refused with a 400 for chat (as the chat deployment is
for embeddings). A file's parsed text comes back through `vector_stores.files.content`.
"""

from __future__ import annotations

import importlib.util
import math
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from support.hosted import bearer_token, project_client, tls_context
from support.llama import gguf_path, require_llama
from support.process import DockyardProcess

pytestmark = [pytest.mark.e2e, pytest.mark.local_model]

LIMIT = 1024 * 1024
LIGHTHOUSE = ("# Skerry Point\n\nThe lighthouse keeper of Skerry Point is named Albertine Vossberg. She lights the "
              "lamp at dusk and logs every ship that passes.\n")
BREAD = "Bread needs flour, water, salt and yeast. Knead for ten minutes and let it rise twice.\n"


@pytest.fixture(scope="module")
def dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    require_llama()
    home = tmp_path_factory.mktemp("home")
    (home / "models").mkdir()
    model = gguf_path()
    os.link(model, home / "models" / model.name)  # both llama.cpp servers find the GGUF in place
    server = DockyardProcess(home=home, runtime="process", local_model=True,
                             extra_args=("--max-file-bytes", str(LIMIT))).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def tls(dockyard: DockyardProcess) -> ssl.SSLContext:
    return tls_context(dockyard)


@pytest.fixture(scope="module")
def clients(dockyard: DockyardProcess, tls: ssl.SSLContext) -> dict[str, openai.OpenAI]:
    return {name: openai.OpenAI(base_url=f"{dockyard.endpoint}/openai/v1", api_key=bearer_token(dockyard, **params),
                                http_client=httpx.Client(verify=tls, timeout=120), max_retries=0)
            for name, params in (("alice", {"client_id": "alice"}), ("bob", {"client_id": "bob"}))}


@pytest.fixture(scope="module")
def store(clients: dict[str, openai.OpenAI]) -> tuple[str, str, str]:
    """Alice's vector store with the lighthouse notes and the bread recipe, taken in: (store, lighthouse, bread)."""
    alice = clients["alice"]
    lighthouse = alice.files.create(file=("lighthouse.md", LIGHTHOUSE.encode()), purpose="assistants").id
    bread = alice.files.create(file=("bread.txt", BREAD.encode()), purpose="assistants").id
    vector_store = alice.vector_stores.create(name="notes", file_ids=[lighthouse])
    batch = alice.vector_stores.file_batches.create_and_poll(vector_store_id=vector_store.id, file_ids=[bread],
                                                             poll_interval_ms=200)
    assert batch.status == "completed" and batch.file_counts.completed == 1, batch
    deadline = time.monotonic() + 120
    while alice.vector_stores.retrieve(vector_store.id).file_counts.in_progress and time.monotonic() < deadline:
        time.sleep(0.2)
    return vector_store.id, lighthouse, bread


def test_files_round_trip_through_the_openai_client(dockyard: DockyardProcess, tls: ssl.SSLContext,
                                                    clients: dict[str, openai.OpenAI]) -> None:
    alice = clients["alice"]
    data = b"col,value\nanswer,42\n"
    created = alice.files.create(file=("table.csv", data), purpose="user_data")
    assert created.filename == "table.csv" and created.bytes == len(data) and created.purpose == "user_data"
    assert created.id in [f.id for f in alice.files.list(purpose="user_data")]
    assert alice.files.retrieve(created.id).filename == "table.csv"
    assert alice.files.content(created.id).read() == data
    # 2.0.0b3's client reaches the same files at {project}/openai with its api-version.
    older = httpx.get(f"{dockyard.endpoint}/openai/files", params={"api-version": "2025-11-15-preview"}, verify=tls,
                      headers={"Authorization": f"Bearer {alice.api_key}"})
    assert created.id in [f["id"] for f in older.json()["data"]], older.text
    assert alice.files.delete(created.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        alice.files.retrieve(created.id)


def test_a_vector_store_finds_the_passage_in_its_file(clients: dict[str, openai.OpenAI],
                                                      store: tuple[str, str, str]) -> None:
    vector_store, lighthouse, bread = store
    alice = clients["alice"]
    shown = alice.vector_stores.retrieve(vector_store)
    assert shown.status == "completed" and shown.file_counts.completed == 2 and shown.name == "notes"
    files = {f.id: f.status for f in alice.vector_stores.files.list(vector_store_id=vector_store)}
    assert files == {lighthouse: "completed", bread: "completed"}
    page = alice.vector_stores.search(vector_store_id=vector_store, query="Who keeps the lighthouse?")
    top = page.data[0]
    assert top.file_id == lighthouse and top.filename == "lighthouse.md"
    assert "Albertine Vossberg" in top.content[0].text
    bread_page = alice.vector_stores.search(vector_store_id=vector_store, query="how long to knead the dough",
                                            max_num_results=1)
    assert [r.file_id for r in bread_page.data] == [bread]


def test_a_file_with_no_text_fails_with_its_reason(clients: dict[str, openai.OpenAI],
                                                   store: tuple[str, str, str]) -> None:
    alice = clients["alice"]
    image = alice.files.create(file=("diagram.png", b"\x89PNG\r\n\x1a\n" + bytes(200)), purpose="assistants")
    attached = alice.vector_stores.files.create_and_poll(vector_store_id=store[0], file_id=image.id,
                                                         poll_interval_ms=200)
    assert attached.status == "failed" and attached.last_error is not None
    assert attached.last_error.code == "unsupported_file" and "png" in attached.last_error.message
    # Nothing was parsed, so there is no parsed text to show.
    assert alice.vector_stores.files.content(file_id=image.id, vector_store_id=store[0]).data == []
    alice.vector_stores.files.delete(vector_store_id=store[0], file_id=image.id)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_file_past_the_limit_is_refused_as_it_streams(dockyard: DockyardProcess, tls: ssl.SSLContext,
                                                        clients: dict[str, openai.OpenAI]) -> None:
    assert dockyard.process is not None
    before = _rss_kib(dockyard.process.pid)
    boundary = "dockyard-test-boundary"
    sent = 0

    def body() -> Iterator[bytes]:  # chunked, no Content-Length: the server must count as it reads
        nonlocal sent
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n"
               "Content-Type: text/plain\r\n\r\n").encode()
        block = b"x" * (1 << 20)
        for _ in range(64):
            sent += len(block)
            yield block
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = httpx.post(f"{dockyard.endpoint}/openai/v1/files", verify=tls, content=body(), timeout=120,
                        headers={"Authorization": f"Bearer {clients['alice'].api_key}",
                                 "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "FileTooLarge"
    assert _rss_kib(dockyard.process.pid) - before < 32 * 1024  # far less than the 64 MiB sent at it
    assert list((dockyard.home / "files" / "incoming").iterdir()) == []
    assert all(f.filename != "big.txt" for f in clients["alice"].files.list())


def test_another_caller_meets_404(clients: dict[str, openai.OpenAI], store: tuple[str, str, str]) -> None:
    vector_store, lighthouse, _ = store
    bob = clients["bob"]
    for call in (lambda: bob.files.retrieve(lighthouse), lambda: bob.files.content(lighthouse),
                 lambda: bob.files.delete(lighthouse), lambda: bob.vector_stores.retrieve(vector_store),
                 lambda: bob.vector_stores.search(vector_store_id=vector_store, query="lighthouse"),
                 lambda: bob.vector_stores.files.list(vector_store_id=vector_store),
                 lambda: bob.vector_stores.delete(vector_store)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert lighthouse not in [f.id for f in bob.files.list()]
    assert vector_store not in [v.id for v in bob.vector_stores.list()]
    # Nor can Bob take Alice's file into a store of his own.
    own = bob.vector_stores.create(name="bobs")
    with pytest.raises(openai.NotFoundError):
        bob.vector_stores.files.create(vector_store_id=own.id, file_id=lighthouse)


def test_a_files_parsed_text_comes_back_through_the_openai_client(dockyard: DockyardProcess,
                                                                  tls: ssl.SSLContext,
                                                                  clients: dict[str, openai.OpenAI],
                                                                  store: tuple[str, str, str]) -> None:
    vector_store, lighthouse, _ = store
    alice = clients["alice"]
    page = alice.vector_stores.files.content(file_id=lighthouse, vector_store_id=vector_store)
    assert [item.type for item in page] == ["text"]
    assert page.data[0].text is not None and page.data[0].text.strip() == LIGHTHOUSE.strip()
    raw = httpx.get(f"{dockyard.endpoint}/openai/v1/vector_stores/{vector_store}/files/{lighthouse}/content",
                    headers={"Authorization": f"Bearer {alice.api_key}"}, verify=tls).json()
    assert (raw["object"], raw["has_more"], raw["next_page"], raw["file_id"], raw["filename"]) == (
        "vector_store.file_content.page", False, None, lighthouse, "lighthouse.md")
    for call in (lambda: clients["bob"].vector_stores.files.content(file_id=lighthouse, vector_store_id=vector_store),
                 lambda: alice.vector_stores.files.content(file_id="file-nothere", vector_store_id=vector_store)):
        with pytest.raises(openai.NotFoundError):
            call()


def test_the_embedding_server_is_a_deployment_called_through_the_openai_client(
        dockyard: DockyardProcess, clients: dict[str, openai.OpenAI], store: tuple[str, str, str]) -> None:
    alice = clients["alice"]
    with project_client(dockyard) as project:
        listed = {d.name: d for d in project.deployments.list()}
        assert listed["local-embeddings"].capabilities == {"embeddings": "true"}
        assert listed["local-embeddings"].connection_name == "local" and listed["local-embeddings"].model_name
        assert "embeddings" not in listed["local"].capabilities
        # The SDK's own OpenAI client reaches it too.
        assert len(project.get_openai_client().embeddings.create(model="local-embeddings", input="tide").data) == 1
    floats = alice.embeddings.create(model="local-embeddings", input=["lighthouse keeper", "bread dough"],
                                     encoding_format="float")
    assert floats.object == "list" and [e.index for e in floats.data] == [0, 1]
    assert all(e.object == "embedding" for e in floats.data) and floats.model
    assert floats.usage.prompt_tokens > 0 and floats.usage.total_tokens == floats.usage.prompt_tokens
    width = len(floats.data[0].embedding)
    assert width == len(floats.data[1].embedding) > 100
    # The client asks for base64 when not told (and decodes it): the same vector, to float32's precision.
    packed = alice.embeddings.create(model="local-embeddings", input="lighthouse keeper")
    assert len(packed.data[0].embedding) == width
    assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
               for a, b in zip(packed.data[0].embedding, floats.data[0].embedding, strict=True))
    # Azure OpenAI's path names the deployment (/openai/deployments/local-embeddings/embeddings?api-version=…).
    azure = openai.AzureOpenAI(azure_endpoint=dockyard.endpoint, api_version="2024-10-21", api_key=alice.api_key,
                               http_client=httpx.Client(verify=tls_context(dockyard), timeout=120), max_retries=0)
    assert len(azure.embeddings.create(model="local-embeddings", input="lighthouse keeper").data[0].embedding) == width
    with pytest.raises(openai.BadRequestError) as shortened:
        alice.embeddings.create(model="local-embeddings", input="x", dimensions=64)
    assert shortened.value.code == "DimensionsNotSupported"
    # Chat on the embedding deployment, embeddings on the chat one: a 400 that says which to use.
    refusals = (lambda: alice.chat.completions.create(model="local-embeddings", max_tokens=4,
                                                      messages=[{"role": "user", "content": "hi"}]),
                lambda: alice.responses.create(model="local-embeddings", input="hi", max_output_tokens=16),
                lambda: alice.embeddings.create(model="local", input="hi"))
    for call in refusals:
        with pytest.raises(openai.BadRequestError) as refused:
            call()
        assert refused.value.code == "OperationNotSupported", refused.value


def require_loop() -> None:
    if importlib.util.find_spec("dockyard.tools.loop") is None:
        pytest.skip("the Responses tool loop (dockyard.tools.loop) is not in this tree yet")


def test_the_model_searches_through_the_loop_and_cites_the_file(clients: dict[str, openai.OpenAI],
                                                                 store: tuple[str, str, str]) -> None:
    require_loop()
    vector_store, lighthouse, _ = store
    # A file_search tool naming Alice's store fails for Bob as if it did not exist.
    with pytest.raises(openai.NotFoundError):
        clients["bob"].responses.create(model="local", input="lighthouse keeper?", max_output_tokens=16,
                                        tools=[{"type": "file_search", "vector_store_ids": [vector_store]}])
    response = clients["alice"].responses.create(
        model="local", input="Who is the lighthouse keeper of Skerry Point?", max_output_tokens=96, temperature=0,
        tools=[{"type": "file_search", "vector_store_ids": [vector_store], "max_num_results": 2}],
        # One search, then the model must answer with no tools offered (the 270M model's free-form second
        # turn otherwise sometimes half-writes a call llama.cpp cannot parse).
        tool_choice={"type": "file_search"}, max_tool_calls=1, include=["file_search_call.results"])
    calls = [item for item in response.output if item.type == "file_search_call"]
    assert calls, response.output
    call = calls[0]
    assert call.id.startswith("fs_") and call.status == "completed" and call.queries
    assert call.results and call.results[0].file_id == lighthouse
    assert "Albertine Vossberg" in (call.results[0].text or "")
    cited = [a for item in response.output if item.type == "message" for part in item.content
             if part.type == "output_text" for a in part.annotations if a.type == "file_citation"]
    assert cited[0].file_id == lighthouse and cited[0].filename == "lighthouse.md"
    assert {a.file_id for a in cited} <= {r.file_id for r in call.results}
