"""The tool loop's logic, with a scripted model (the loop's own `call_model` input) and a real MCP server.

The model here is a list of answers in the Responses shape, one per model call, so each test states
exactly what the model said and checks what the loop did with it; the real model drives the loop in
tests/e2e/test_tool_loop.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from support.mcp_server import McpTestServer, serve_mcp

from dockyard.domain.errors import BadRequest, NotFound
from dockyard.identity.ownership import Caller
from dockyard.store.tool_responses import ToolResponseStore
from dockyard.tools.base import ToolContext
from dockyard.tools.loop import INCOMPLETE_REASON, ModelCallFailed, Turn, run_to_end, stream_turn, uses_loop
from dockyard.tools.mcp import McpKind

ME = Caller(subject="user:me", user=None, operator=False, oid="me")
SOMEONE_ELSE = Caller(subject="user:other", user=None, operator=False, oid="other")
KINDS = {"mcp": McpKind()}
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture(scope="module")
def server() -> Iterator[McpTestServer]:
    with serve_mcp() as running:
        yield running


def mcp_tool(server: McpTestServer, approval: Any = "never", label: str = "calc") -> dict[str, Any]:
    return {"type": "mcp", "server_label": label, "server_url": server.url, "require_approval": approval,
            "allowed_tools": ["add", "echo"], "headers": {"authorization": "Bearer hidden"}}


def usage(tokens: int) -> dict[str, Any]:
    return {"input_tokens": tokens, "output_tokens": 1, "total_tokens": tokens + 1,
            "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}


def call(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    return {"output": [{"type": "function_call", "id": "fc_1", "call_id": call_id, "name": name,
                        "arguments": json.dumps(arguments), "status": "completed"}],
            "usage": usage(10), "status": "completed", "model": "upstream-model"}


def says(text: str) -> dict[str, Any]:
    return {"output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": usage(20), "status": "completed", "model": "upstream-model"}


class Script:
    """The model: answers in order; every request it was sent is kept."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(json.loads(json.dumps(body)))
        if not self.answers:
            raise AssertionError("the loop called the model more often than scripted")
        return self.answers.pop(0)


def turn(body: dict[str, Any], script: Script, caller: Caller = ME, max_rounds: int = 8) -> Turn:
    ctx = ToolContext(project="default", caller=caller, request_id="req", log=lambda line: None)
    return Turn(body={"model": "local", **body}, ctx=ctx, call_model=script, max_rounds=max_rounds)


def run(body: dict[str, Any], script: Script, store: ToolResponseStore | None = None,
        caller: Caller = ME, max_rounds: int = 8) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        t = turn(body, script, caller, max_rounds)
        await t.start(KINDS, store)
        return await run_to_end(t, store)

    return asyncio.run(go())


def test_the_model_calls_an_mcp_tool_then_answers(server: McpTestServer) -> None:
    script = Script(call("mcp__calc__add", {"a": 2, "b": 3}), says("2 + 3 = 5"))
    response = run({"input": "What is 2 + 3?", "tools": [mcp_tool(server)],
                    "tool_choice": {"type": "mcp", "server_label": "calc", "name": "add"}}, script)
    assert [i["type"] for i in response["output"]] == ["mcp_list_tools", "mcp_call", "message"]
    listed, called, message = response["output"]
    assert [t["name"] for t in listed["tools"]] == ["add", "echo"]
    assert called["name"] == "add" and called["output"] == "5" and called["server_label"] == "calc"
    assert message["content"][0]["text"] == "2 + 3 = 5" and response["status"] == "completed"
    assert response["usage"]["input_tokens"] == 30 and response["usage"]["total_tokens"] == 32
    assert response["id"].startswith("resp_") and response["model"] == "upstream-model"
    # Credentials are never echoed.
    assert "headers" not in response["tools"][0] and "hidden" not in json.dumps(response)

    first, second = script.requests
    assert first["tool_choice"] == {"type": "function", "name": "mcp__calc__add"}
    assert [t["name"] for t in first["tools"]] == ["mcp__calc__add"]
    assert first["input"] == [{"type": "message", "role": "user", "content": "What is 2 + 3?"}]
    assert second["tool_choice"] == "auto" and len(second["tools"]) == 2
    assert second["input"][1:] == [
        {"type": "function_call", "call_id": "call_1", "name": "mcp__calc__add", "arguments": '{"a": 2, "b": 3}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "5"}]
    assert "stream" not in first and "max_tool_calls" not in first


def test_an_approval_round_trip_through_previous_response_id(server: McpTestServer, engine: Engine) -> None:
    store = ToolResponseStore(engine)
    tools = [mcp_tool(server, approval={"always": {"tool_names": ["echo"]}}, label="gated")]
    before = len(server.calls)
    asked = run({"input": "Echo 'approved!'", "tools": tools},
                Script(call("mcp__gated__echo", {"text": "approved!"})), store)
    request = asked["output"][-1]
    assert request["type"] == "mcp_approval_request" and request["name"] == "echo" and asked["status"] == "completed"
    assert len(server.calls) == before

    approval = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
    # Another caller cannot continue it: the 404 of a response that does not exist.
    with pytest.raises(NotFound):
        run({"input": [approval], "tools": tools, "previous_response_id": asked["id"]}, Script(), store,
            caller=SOMEONE_ELSE)

    script = Script(says("It said approved!"))
    answered = run({"input": [approval], "tools": tools, "previous_response_id": asked["id"]}, script, store)
    assert [i["type"] for i in answered["output"]] == ["mcp_call", "message"]
    assert answered["output"][0]["output"] == "approved!"
    assert answered["output"][0]["approval_request_id"] == request["id"]
    assert server.calls[-1] == {"name": "echo", "arguments": {"text": "approved!"}}
    transcript = script.requests[0]["input"]
    assert transcript[0] == {"type": "message", "role": "user", "content": "Echo 'approved!'"}
    assert [i["type"] for i in transcript[1:]] == ["function_call", "function_call_output"]
    assert transcript[2]["output"] == "approved!"

    # An approval answered once is not waiting any more.
    with pytest.raises(BadRequest) as twice:
        run({"input": [approval], "tools": tools, "previous_response_id": answered["id"]}, Script(), store)
    assert twice.value.code == "ApprovalRequestNotFound"


def test_a_refused_approval_does_not_call_the_tool(server: McpTestServer, engine: Engine) -> None:
    store = ToolResponseStore(engine)
    tools = [mcp_tool(server, approval="always", label="gated")]
    asked = run({"input": "Echo it", "tools": tools}, Script(call("mcp__gated__echo", {"text": "no"})), store)
    before = len(server.calls)
    refusal = {"type": "mcp_approval_response", "approval_request_id": asked["output"][-1]["id"], "approve": False}
    script = Script(says("Fine, I will not."))
    answered = run({"input": [refusal], "tools": tools, "previous_response_id": asked["id"]}, script, store)
    assert len(server.calls) == before and answered["output"][0]["error"] is not None
    assert "did not approve" in script.requests[0]["input"][-1]["output"]


def test_the_callers_function_calls_come_back_unrun(server: McpTestServer, engine: Engine) -> None:
    store = ToolResponseStore(engine)
    script = Script(call("get_weather", {"city": "Paris"}))
    response = run({"input": "Weather?", "tools": [mcp_tool(server), WEATHER]}, script, store)
    assert [i["type"] for i in response["output"]] == ["mcp_list_tools", "function_call"]
    assert response["output"][-1]["name"] == "get_weather"
    # The caller answers it as usual, continuing the response.
    script = Script(says("Sunny."))
    answered = run({"input": [{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
                    "tools": [mcp_tool(server), WEATHER], "previous_response_id": response["id"]}, script, store)
    assert answered["output"][-1]["content"][0]["text"] == "Sunny."
    assert [i["type"] for i in script.requests[0]["input"]] == ["message", "function_call", "function_call_output"]
    # input_items: the previous Response's input and output, then this one's input, each with an id.
    kept = store.find("default", ME, answered["id"])
    assert kept is not None
    assert [i["type"] for i in kept.input_items] == ["message", "mcp_list_tools", "function_call",
                                                     "function_call_output"]
    assert kept.input_items[0]["content"] == [{"type": "input_text", "text": "Weather?"}]
    assert kept.input_items[0]["id"].startswith("msg_") and kept.input_items[3]["id"].startswith("fco_")
    assert [i["id"] for i in kept.input_items[1:3]] == [i["id"] for i in response["output"]]


def test_rounds_are_bounded(server: McpTestServer) -> None:
    script = Script(*[call("mcp__calc__add", {"a": 1, "b": n}, f"call_{n}") for n in range(3)])
    response = run({"input": "Add forever", "tools": [mcp_tool(server)]}, script, max_rounds=3)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": INCOMPLETE_REASON}
    assert [i["output"] for i in response["output"] if i["type"] == "mcp_call"] == ["1", "2", "3"]


def test_max_tool_calls_leaves_the_model_only_its_answer(server: McpTestServer) -> None:
    script = Script(call("mcp__calc__add", {"a": 1, "b": 1}), says("2"))
    run({"input": "1+1", "tools": [mcp_tool(server)], "max_tool_calls": 1, "tool_choice": "required"}, script)
    assert script.requests[0]["tool_choice"] == "required"
    assert "tools" not in script.requests[1]


def test_streamed_events_are_in_order_with_sequence_numbers(server: McpTestServer) -> None:
    script = Script(call("mcp__calc__add", {"a": 20, "b": 22}), says("The answer is 42, computed by the tool."))

    async def go() -> list[dict[str, Any]]:
        t = turn({"input": "20+22", "tools": [mcp_tool(server)], "stream": True}, script)
        await t.start(KINDS, None)
        raw = b"".join([chunk async for chunk in stream_turn(t, None)])
        return [json.loads(block.split(b"data: ", 1)[1]) for block in raw.split(b"\n\n") if block]

    events = asyncio.run(go())
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.mcp_list_tools.completed" in kinds and "response.mcp_call.completed" in kinds
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "The answer is 42, computed by the tool."
    assert kinds.index("response.mcp_call.completed") < kinds.index("response.output_text.delta")
    assert events[-1]["response"]["output"][1]["output"] == "42"


def test_a_tool_call_is_streamed_in_progress_before_it_runs(server: McpTestServer, engine: Engine) -> None:
    """`added` and `mcp_call.in_progress` reach the caller before the server is called; `completed` after,
    under the same item id and output index (an approved call's too)."""
    store = ToolResponseStore(engine)

    async def go(body: dict[str, Any], script: Script) -> list[tuple[dict[str, Any], int]]:
        t = turn({"stream": True, **body}, script)
        await t.start(KINDS, store)
        seen = []
        async for chunk in stream_turn(t, store):
            for block in chunk.split(b"\n\n"):
                if block:  # each event with the MCP server's call count when it was sent
                    seen.append((json.loads(block.split(b"data: ", 1)[1]), len(server.calls)))
        return seen

    for body, script in (
            ({"input": "20+22", "tools": [mcp_tool(server)]}, Script(call("mcp__calc__add", {"a": 20, "b": 22}),
                                                                     says("42"))),
            ({"input": "Echo", "tools": [mcp_tool(server, approval="always", label="gated")]},
             Script(call("mcp__gated__echo", {"text": "hi"})))):
        events = asyncio.run(go(body, script))
        if events[-1][0]["response"]["output"][-1]["type"] == "mcp_approval_request":  # answer it, streamed
            request = events[-1][0]["response"]["output"][-1]
            events = asyncio.run(go({"input": [{"type": "mcp_approval_response", "approve": True,
                                                "approval_request_id": request["id"]}], "tools": body["tools"],
                                     "previous_response_id": events[-1][0]["response"]["id"]}, Script(says("hi"))))
        by_type = {event["type"]: (event, calls) for event, calls in events}
        before = len(server.calls) - 1
        added = next(e for e, _ in events if e["type"] == "response.output_item.added"
                     and e["item"]["type"] == "mcp_call")
        assert added["item"]["status"] == "in_progress"
        for kind in ("response.mcp_call.in_progress", "response.mcp_call_arguments.done"):
            assert by_type[kind][1] == before, f"{kind} was sent after the tool ran"
        completed, calls = by_type["response.mcp_call.completed"]
        done = next(e for e, _ in events
                    if e["type"] == "response.output_item.done" and e["item"]["type"] == "mcp_call")
        assert calls == before + 1 and done["item"]["output"] is not None
        assert added["item"]["id"] == completed["item_id"] == done["item"]["id"]
        assert added["output_index"] == done["output_index"]
        final = events[-1][0]["response"]
        assert [i["id"] for i in final["output"]].index(done["item"]["id"]) == done["output_index"]
        assert [e["sequence_number"] for e, _ in events] == list(range(len(events)))


def test_a_model_failure_mid_stream_ends_with_an_error_event(server: McpTestServer) -> None:
    class Failing(Script):
        async def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
            raise ModelCallFailed(502, "the model went away", code="ModelUnavailable")

    async def go() -> list[dict[str, Any]]:
        t = turn({"input": "x", "tools": [mcp_tool(server)], "stream": True}, Failing())
        await t.start(KINDS, None)
        raw = b"".join([chunk async for chunk in stream_turn(t, None)])
        return [json.loads(block.split(b"data: ", 1)[1]) for block in raw.split(b"\n\n") if block]

    events = asyncio.run(go())
    assert events[-1]["type"] == "error" and events[-1]["code"] == "ModelUnavailable"


def test_which_calls_use_the_loop() -> None:
    assert uses_loop({"tools": [{"type": "mcp"}]}, KINDS)
    assert not uses_loop({"tools": [WEATHER]}, KINDS)
    assert uses_loop({"input": [{"type": "mcp_approval_response"}]}, KINDS)
    assert not uses_loop({"input": "hi"}, KINDS)


def test_a_tool_choice_naming_no_tool_is_refused(server: McpTestServer) -> None:
    with pytest.raises(BadRequest) as refused:
        run({"input": "x", "tools": [mcp_tool(server)], "tool_choice": {"type": "mcp", "server_label": "nope"}},
            Script())
    assert refused.value.param == "tool_choice"
