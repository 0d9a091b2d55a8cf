"""Tokens per deployment on `/metrics`: counted from the usage each answer of a real llama.cpp server ends with,
plain and streamed, straight and translated (a chat-only connection), and read back with prometheus-client's
parser. The counts must equal what the openai client was told."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.hosted import bearer_token, tls_context
from support.llama import LlamaServer
from support.process import DockyardProcess, dockyard_command

pytestmark = [pytest.mark.e2e, pytest.mark.local_model]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, llama: LlamaServer) -> Iterator[DockyardProcess]:
    dockyard = DockyardProcess(home=tmp_path_factory.mktemp("tokens") / "home", extra_args=("--no-engine",)).start()
    for name, *more in (("direct",), ("chat-only", "--chat-only")):
        result = subprocess.run(dockyard_command("model", "add", name, "--base-url", llama.base_url, "--model",
                                                 llama.model, *more, "--home", str(dockyard.home)),
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    yield dockyard
    dockyard.stop()


@pytest.fixture(scope="module")
def http(server: DockyardProcess) -> Iterator[httpx.Client]:
    with httpx.Client(verify=tls_context(server), timeout=120) as session:
        session.headers["authorization"] = f"Bearer {bearer_token(server)}"
        yield session


@pytest.fixture(scope="module")
def client(server: DockyardProcess, http: httpx.Client) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.endpoint}/openai/v1", max_retries=0, http_client=http,
                         api_key=http.headers["authorization"].removeprefix("Bearer "))


def tokens(server: DockyardProcess, http: httpx.Client, deployment: str) -> dict[str, float]:
    answer = http.get(f"{server.url}/metrics")
    assert answer.status_code == 200, answer.text
    counts = {"input": 0.0, "output": 0.0, "total": 0.0}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "dockyard_model_tokens_total" and sample.labels["deployment"] == deployment:
                counts[sample.labels["kind"]] += sample.value
    return counts


def grew(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {kind: after[kind] - before[kind] for kind in before}


@pytest.mark.parametrize("deployment", ["direct", "chat-only"])
def test_responses_tokens_are_counted_plain_and_streamed(server: DockyardProcess, http: httpx.Client,
                                                         client: openai.OpenAI, deployment: str) -> None:
    before = tokens(server, http, deployment)
    answer = client.responses.create(model=deployment, input="The sky is", max_output_tokens=8)
    assert answer.usage is not None and answer.usage.output_tokens > 0
    after = tokens(server, http, deployment)
    assert grew(before, after) == {"input": answer.usage.input_tokens, "output": answer.usage.output_tokens,
                                   "total": answer.usage.total_tokens}

    events = list(client.responses.create(model=deployment, input="Grass is", max_output_tokens=8, stream=True))
    final = events[-1]
    assert final.type in ("response.completed", "response.incomplete")
    usage = final.response.usage
    assert usage is not None and usage.output_tokens > 0
    assert grew(after, tokens(server, http, deployment)) == {"input": usage.input_tokens, "output": usage.output_tokens,
                                                             "total": usage.total_tokens}


def test_chat_tokens_are_counted_plain_and_streamed_with_usage(server: DockyardProcess, http: httpx.Client,
                                                                client: openai.OpenAI) -> None:
    before = tokens(server, http, "direct")
    chat = client.chat.completions.create(model="direct", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    assert chat.usage is not None
    after = tokens(server, http, "direct")
    assert grew(before, after) == {"input": chat.usage.prompt_tokens, "output": chat.usage.completion_tokens,
                                   "total": chat.usage.total_tokens}

    chunks = list(client.chat.completions.create(model="direct", messages=[{"role": "user", "content": "Hello"}],
                                                 max_tokens=8, stream=True, stream_options={"include_usage": True}))
    usage = next(chunk.usage for chunk in reversed(chunks) if chunk.usage is not None)
    assert grew(after, tokens(server, http, "direct")) == {"input": usage.prompt_tokens,
                                                           "output": usage.completion_tokens,
                                                           "total": usage.total_tokens}

    # Streamed without include_usage, the answer carries no usage: nothing is counted, nothing breaks.
    still = tokens(server, http, "direct")
    assert list(client.chat.completions.create(model="direct", messages=[{"role": "user", "content": "Yo"}],
                                               max_tokens=4, stream=True))
    assert tokens(server, http, "direct") == still
