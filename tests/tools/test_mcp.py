"""The `mcp` tool driven directly against real MCP servers: the SDK's own, one that hangs, one that answers garbage."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.mcp_server import GarbageServer, HangingServer, McpTestServer, serve_mcp

from dockyard.domain.errors import BadRequest
from dockyard.identity.ownership import Caller
from dockyard.tools.base import ToolContext
from dockyard.tools.mcp import FailedDependency, McpKind, McpTimeouts, McpTool, function_name

CALLER = Caller(subject="local-developer", user=None, operator=True, oid="oid")
SECRET = "Bearer secret-key-never-logged"


@pytest.fixture(scope="module")
def server() -> Iterator[McpTestServer]:
    with serve_mcp() as running:
        yield running


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def context(log: Log, call_id: str | None = None) -> ToolContext:
    return ToolContext(project="default", caller=CALLER, request_id="req", log=log, foundry_call_id=call_id)


def bind(config: dict[str, Any], timeouts: McpTimeouts | None = None) -> McpTool:
    return McpKind(timeouts=timeouts).bind({"type": "mcp", **config}, "default", CALLER)


def test_lists_offers_and_calls_tools(server: McpTestServer) -> None:
    log = Log()
    tool = bind({"server_label": "tests", "server_url": server.url, "require_approval": "never",
                 "allowed_tools": ["add", "headers", "fail"], "headers": {"Authorization": SECRET}})
    [listed] = asyncio.run(tool.prepare(context(log)))
    assert listed["type"] == "mcp_list_tools" and listed["server_label"] == "tests"
    assert [t["name"] for t in listed["tools"]] == ["add", "headers", "fail"]
    assert listed["tools"][0]["input_schema"]["required"] == ["a", "b"]
    names = [f.name for f in tool.functions()]
    assert names == ["mcp__tests__add", "mcp__tests__headers", "mcp__tests__fail"]

    added = asyncio.run(tool.run(context(log), "mcp__tests__add", {"a": 2, "b": 40}, "call_1"))
    assert added.item["type"] == "mcp_call" and added.item["name"] == "add"
    assert added.item["output"] == "42" and added.item["error"] is None and added.model_output == "42"
    assert json.loads(added.item["arguments"]) == {"a": 2, "b": 40}

    # Headers go to the server as configured, with the agent's call id; never into the log.
    seen = asyncio.run(tool.run(context(log, "call-xyz"), "mcp__tests__headers", {}, "call_2"))
    headers = json.loads(seen.item["output"])
    assert headers["authorization"] == SECRET and headers["x-agent-foundry-call-id"] == "call-xyz"
    assert not any("secret-key" in line for line in log) and any("add" in line for line in log)

    failed = asyncio.run(tool.run(context(log), "mcp__tests__fail", {}, "call_3"))
    assert failed.item["status"] == "failed" and failed.item["error"]["type"] == "mcp_tool_execution_error"
    assert "always fails" in (failed.model_output or "")


def test_approval_request_then_resume(server: McpTestServer) -> None:
    log = Log()
    tool = bind({"server_label": "gated", "server_url": server.url, "allowed_tools": {"tool_names": ["echo"]},
                 "require_approval": {"always": {"tool_names": ["echo"]}}})
    asyncio.run(tool.prepare(context(log)))
    before = len(server.calls)
    asked = asyncio.run(tool.run(context(log), "mcp__gated__echo", {"text": "hi"}, "call_1"))
    assert asked.model_output is None and asked.item["type"] == "mcp_approval_request"
    assert asked.item["name"] == "echo" and json.loads(asked.item["arguments"]) == {"text": "hi"}
    assert len(server.calls) == before  # not called before the approval

    refused = asyncio.run(tool.resume(context(log), asked.item, False, "no thanks"))
    assert refused.item["type"] == "mcp_call" and refused.item["output"] is None
    assert refused.item["approval_request_id"] == asked.item["id"] and "did not approve" in (refused.model_output or "")
    assert len(server.calls) == before

    approved = asyncio.run(tool.resume(context(log), asked.item, True, None))
    assert approved.item["output"] == "hi" and approved.item["approval_request_id"] == asked.item["id"]
    assert server.calls[-1] == {"name": "echo", "arguments": {"text": "hi"}}


def test_output_is_bounded(server: McpTestServer) -> None:
    tool = bind({"server_label": "big", "server_url": server.url, "require_approval": "never"})
    asyncio.run(tool.prepare(context(Log())))
    outcome = asyncio.run(tool.run(context(Log()), "mcp__big__big", {"size": 300_000}, "c"))
    assert len(outcome.item["output"]) < 101_000 and "more characters cut" in outcome.item["output"]
    assert len(outcome.model_output or "") < 17_000


def test_a_hanging_tool_call_is_an_error_item(server: McpTestServer) -> None:
    tool = bind({"server_label": "slow", "server_url": server.url, "require_approval": "never"},
                McpTimeouts(connect=2, list=5, call=1))
    asyncio.run(tool.prepare(context(Log())))
    started = time.monotonic()
    outcome = asyncio.run(tool.run(context(Log()), "mcp__slow__slow", {"seconds": 30}, "c"))
    assert time.monotonic() - started < 8
    assert outcome.item["status"] == "failed" and outcome.item["error"]["code"] == 504
    assert "did not answer within 1 s" in (outcome.model_output or "")


def test_servers_that_hang_refuse_or_answer_garbage_fail_listing_with_424() -> None:
    hanging, garbage = HangingServer().start(), GarbageServer().start()
    try:
        for url, words in ((hanging.url, "did not answer within 1 s"), (garbage.url, "MCP error"),
                           ("http://127.0.0.1:1/mcp", "refused the connection")):
            tool = bind({"server_label": "bad", "server_url": url}, McpTimeouts(connect=1, list=1, call=1))
            started = time.monotonic()
            with pytest.raises(FailedDependency) as raised:
                asyncio.run(tool.prepare(context(Log())))
            assert time.monotonic() - started < 6
            assert raised.value.status_code == 424 and "'bad'" in raised.value.message and words in raised.value.message
    finally:
        hanging.stop()
        garbage.stop()


@pytest.mark.parametrize(("config", "param"), [
    ({"server_url": "http://x/mcp"}, "tools.server_label"),
    ({"server_label": "a b", "server_url": "http://x/mcp"}, "tools.server_label"),
    ({"server_label": "a"}, "tools.server_url"),
    ({"server_label": "a", "server_url": "ftp://x/mcp"}, "tools.server_url"),
    ({"server_label": "a", "server_url": "http://u:p@x/mcp"}, "tools.server_url"),
    ({"server_label": "a", "server_url": "http://x/mcp", "headers": {"Host": "y"}}, "tools.headers"),
    ({"server_label": "a", "server_url": "http://x/mcp", "headers": {"X": "a\r\nB: c"}}, "tools.headers"),
    ({"server_label": "a", "server_url": "http://x/mcp", "require_approval": "sometimes"}, "tools.require_approval"),
    ({"server_label": "a", "server_url": "http://x/mcp", "allowed_tools": "add"}, "tools.allowed_tools"),
])
def test_bad_entries_are_refused_naming_the_field(config: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as raised:
        bind(config)
    assert raised.value.param == param and "a\r\nB" not in raised.value.message


def test_function_names_stay_within_64_characters_and_unique() -> None:
    taken: set[str] = set()
    long = function_name("label", "t" * 80, taken)
    other = function_name("label", "t" * 80 + "x", taken)
    assert len(long) <= 64 and len(other) <= 64 and long != other
    assert function_name("lbl", "add", taken) == "mcp__lbl__add"
