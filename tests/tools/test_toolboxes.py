"""The toolbox MCP server driven directly with the official SDK's client: a toolbox of real `mcp` entries
(the SDK's own test server, and one that answers garbage) listed and called, exact results.

The server is dockyard's `ToolboxServer` as the app mounts it, reached in-process (the SDK client over
httpx2's ASGI transport); tests/e2e/test_toolbox_endpoint.py reaches it over HTTPS from an agent's container.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support.mcp_server import GarbageServer, McpTestServer, serve_mcp

from dockyard.domain.errors import BadRequest
from dockyard.identity.ownership import Caller
from dockyard.store.database import migrate, open_engine, sqlite_url
from dockyard.store.secrets import SecretBox
from dockyard.store.toolboxes import ToolboxStore
from dockyard.tools.base import ToolKind
from dockyard.tools.mcp import McpKind, McpTimeouts
from dockyard.tools.toolboxes import ToolboxCall, ToolboxServer, approval_of, check_entries

CALLER = Caller(subject="agent:abc", user=None, operator=False, oid="oid")
SECRET = "Bearer toolbox-secret"


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[McpTestServer]:
    with serve_mcp() as running:
        yield running


@pytest.fixture(scope="module")
def garbage() -> Iterator[GarbageServer]:
    server = GarbageServer().start()
    yield server
    server.stop()


@pytest.fixture
def kinds() -> dict[str, ToolKind]:
    return {"mcp": McpKind(timeouts=McpTimeouts(connect=2, list=3, call=10))}


@pytest.fixture
def store(tmp_path: Path) -> ToolboxStore:
    engine = open_engine(sqlite_url(tmp_path / "dockyard.db"))
    migrate(engine)
    return ToolboxStore(engine, SecretBox.generate())


def entries(mcp_url: str, garbage_url: str) -> list[dict[str, Any]]:
    return [
        {"type": "mcp", "server_label": "calc", "server_url": mcp_url, "require_approval": "always",
         "allowed_tools": ["add", "headers", "fail"], "headers": {"Authorization": SECRET},
         "name": "calculator", "description": "toolbox-only fields are not the tool's"},
        {"type": "mcp", "server_label": "text", "server_url": mcp_url, "allowed_tools": ["echo", "big"],
         "require_approval": {"never": {"tool_names": ["echo"]}}},
        {"type": "mcp", "server_label": "broken", "server_url": garbage_url, "require_approval": "never"},
        {"type": "web_search"},  # a kind this dockyard does not run: stored by an older one, say
    ]


class Session:
    """One MCP client session on the toolbox, as an agent holds one, through the app's ASGI entry point."""

    def __init__(self, server: ToolboxServer, name: str, version: str | None = None,
                 call_id: str | None = "call-123") -> None:
        self.log: list[str] = []
        self.call = ToolboxCall(project="default", name=name, version=version, caller=CALLER, request_id="req-1",
                                foundry_call_id=call_id, log=self.log.append)
        self.server = server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.server.handle(self.call, scope, receive, send)

    def client(self) -> Client:
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self), base_url="http://dockyard")
        return Client(streamable_http_client("http://dockyard/api/projects/default/toolboxes/kit/mcp",
                                             http_client=http), read_timeout_seconds=20)


async def run_session(server: ToolboxServer, session: Session, steps: Any) -> Any:
    async with server.run():
        async with session.client() as client:
            return await steps(client)


def test_lists_every_entrys_functions_with_approval_meta(store: ToolboxStore, kinds: dict[str, ToolKind],
                                                         mcp_server: McpTestServer, garbage: GarbageServer) -> None:
    store.create_version("default", "kit", entries(mcp_server.url, garbage.url))
    server = ToolboxServer(store, kinds)
    session = Session(server, "kit")

    async def steps(client: Client) -> Any:
        return await client.list_tools()

    listed = anyio.run(run_session, server, session, steps)
    by_name = {tool.name: tool for tool in listed.tools}
    assert list(by_name) == ["mcp__calc__add", "mcp__calc__headers", "mcp__calc__fail", "mcp__text__echo",
                             "mcp__text__big"]
    assert by_name["mcp__calc__add"].meta == {"tool_configuration": {"require_approval": "always"}}
    assert by_name["mcp__text__echo"].meta == {"tool_configuration": {"require_approval": "never"}}
    assert by_name["mcp__text__big"].meta is None  # the entry says nothing of it
    assert by_name["mcp__calc__add"].input_schema["required"] == ["a", "b"]
    assert "Add two integers" in (by_name["mcp__calc__add"].description or "")
    # The garbage server and the unknown kind are listed nowhere, and the log says why (no secrets in it).
    assert any("tools[2] (mcp): could not be prepared (McpServerUnavailable)" in line for line in session.log)
    assert any("tools[3] (web_search): no such tool kind" in line for line in session.log)
    assert not any(SECRET in line for line in session.log)


def test_calls_run_the_bound_tool_without_gating(store: ToolboxStore, kinds: dict[str, ToolKind],
                                                 mcp_server: McpTestServer, garbage: GarbageServer) -> None:
    store.create_version("default", "kit", entries(mcp_server.url, garbage.url))
    server = ToolboxServer(store, kinds)
    session = Session(server, "kit", call_id="call-from-the-agent")

    async def steps(client: Client) -> Any:
        return [await client.call_tool("mcp__calc__add", {"a": 20, "b": 22}),
                await client.call_tool("mcp__calc__headers", {}),
                await client.call_tool("mcp__calc__fail", {}),
                await client.call_tool("mcp__calc__nope", {}),
                await client.call_tool("mcp__broken__anything", {})]

    added, headers, failed, unknown, broken = anyio.run(run_session, server, session, steps)
    # require_approval "always" on the entry: the toolbox still runs it (the agent asks; _meta tells it to).
    assert (added.content[0].text, added.is_error) == ("42", False)
    sent = json.loads(headers.content[0].text)
    assert sent["authorization"] == SECRET  # the entry's header reached the server
    assert sent["x-agent-foundry-call-id"] == "call-from-the-agent"  # and the agent's call id with it
    assert failed.is_error and "this tool always fails" in failed.content[0].text
    assert unknown.is_error and "'mcp__calc__nope' is not a tool of toolbox 'kit'" in unknown.content[0].text
    assert broken.is_error and "tools[2]: Error retrieving tool list from MCP server 'broken'" in broken.content[0].text
    assert any("mcp__calc__add answered" in line for line in session.log)


def test_a_pinned_version_serves_its_own_tools(store: ToolboxStore, kinds: dict[str, ToolKind],
                                               mcp_server: McpTestServer) -> None:
    store.create_version("default", "kit", [{"type": "mcp", "server_label": "one", "server_url": mcp_server.url,
                                             "allowed_tools": ["add"]}])
    store.create_version("default", "kit", [{"type": "mcp", "server_label": "two", "server_url": mcp_server.url,
                                             "allowed_tools": ["echo"]}])
    server = ToolboxServer(store, kinds)

    async def steps(client: Client) -> Any:
        return [tool.name for tool in (await client.list_tools()).tools]

    assert anyio.run(run_session, server, Session(server, "kit"), steps) == ["mcp__two__echo"]
    pinned = ToolboxServer(store, kinds)  # a session manager runs once: a new server for the second run
    assert anyio.run(run_session, pinned, Session(pinned, "kit", "1"), steps) == ["mcp__one__add"]


def check(kinds: dict[str, ToolKind], tools: list[dict[str, Any]]) -> None:
    anyio.run(check_entries, kinds, "default", CALLER, tools, print)


def test_entries_are_checked_by_their_kind(kinds: dict[str, ToolKind]) -> None:
    check(kinds, [{"type": "mcp", "server_label": "ok", "server_url": "http://x/mcp", "name": "n",
                   "tool_configs": {"*": {"pin": True}}}])
    with pytest.raises(BadRequest) as unknown:
        check(kinds, [{"type": "web_search"}])
    assert unknown.value.code == "UnsupportedToolType" and unknown.value.param == "tools[0].type"
    with pytest.raises(BadRequest) as refused:
        check(kinds, [{"type": "mcp", "server_label": "bad label", "server_url": "x"}])
    assert refused.value.message.startswith("tools[0]: An mcp tool needs 'server_label'")


def test_approval_of_reads_every_shape() -> None:
    assert approval_of({"require_approval": "always"}, "x") == "always"
    assert approval_of({"require_approval": {"always": {"tool_names": ["a"]}, "never": ["b"]}}, "a") == "always"
    assert approval_of({"require_approval": {"always": {"tool_names": ["a"]}, "never": ["b"]}}, "b") == "never"
    assert approval_of({"require_approval": {"always": {"tool_names": ["a"]}}}, "c") is None
    assert approval_of({}, "a") is None


def test_resource_entries_act_as_the_versions_author(store: ToolboxStore, kinds: dict[str, ToolKind],
                                                     mcp_server: McpTestServer) -> None:
    """file_search reaches the vector stores its author named (a toolbox shares them); the rest act as the caller."""
    from types import SimpleNamespace

    from dockyard.identity.ownership import Owner
    from dockyard.tools.file_search import FileSearchKind

    kinds = {**kinds, "file_search": FileSearchKind(SimpleNamespace(vector_search=None))}  # type: ignore[arg-type]
    author = Owner("user:alice")
    version = store.create_version("default", "kit", [
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "mcp", "server_label": "calc", "server_url": mcp_server.url}], author=author)
    assert store.get_version("default", "kit").author == author
    server = ToolboxServer(store, kinds)
    call = Session(server, "kit").call
    searching, calling = (server.bind_entry(call, version, i, entry) for i, entry in enumerate(version.tools))
    assert searching.tool.caller == Caller(subject="user:alice", user=None, operator=False, oid="user:alice")
    assert calling.tool is not None and calling.tool.approval.required("add") is False  # never gated in a toolbox
