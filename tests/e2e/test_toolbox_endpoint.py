"""Toolboxes end to end: made and managed with the real 2.x SDK (`client.toolboxes`), served over MCP to the
official SDK's client, and reached from an agent container (issue 11 §3).

One dockyard for the module (on the container engine when there is one). The toolbox holds an `mcp` entry
pointing at an MCP server written in the tests with the official SDK (tests/support/mcp_server.py), so every
result is exact: `add` returns the sum, `headers` what the server was sent.

The container test deploys `toolbox-agent` (tests/fixtures/images/toolbox-agent): Microsoft's Responses
adapter whose handler opens an MCP session on `{FOUNDRY_PROJECT_ENDPOINT}/toolboxes/kit/mcp?api-version=v1`
with its own managed identity's token (DefaultAzureCredential inside the sandbox) and the request's
`x-agent-foundry-call-id`, lists the toolbox, calls a tool, and answers with what it got; it is invoked
through the openai client `get_openai_client(agent_name=…)` hands out, as Foundry users invoke agents.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from azure.ai.projects import AIProjectClient
from azure.ai.projects.models import ContainerConfiguration, HostedAgentDefinition, ProtocolVersionRecord
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support.engine import FIXTURE_IMAGES, engine_dockyard, require_engine
from support.hosted import bearer_token, project_client, tls_context
from support.images import build_image, engine_url, ensure_base_image, push_image
from support.mcp_server import McpTestServer, serve_mcp
from support.process import DockyardProcess
from support.registry import Registry

pytestmark = pytest.mark.e2e

SECRET = "Bearer kit-secret"


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[McpTestServer]:
    with serve_mcp() as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockyardProcess]:
    home = tmp_path_factory.mktemp("toolboxes") / "home"
    url = engine_url()
    if url is not None:
        with engine_dockyard(home, url) as running:
            yield running
        return
    running = DockyardProcess(home=home, runtime="process").start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def project(server: DockyardProcess) -> Iterator[AIProjectClient]:
    with project_client(server) as client:
        yield client


def calc_entry(mcp_server: McpTestServer) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "calc", "server_url": mcp_server.url, "require_approval": "always",
            "allowed_tools": ["add", "headers"], "headers": {"Authorization": SECRET}}


@pytest.fixture(scope="module")
def kit(project: AIProjectClient, mcp_server: McpTestServer) -> str:
    project.toolboxes.create_version("kit", tools=[calc_entry(mcp_server)], description="the calculator")
    return "kit"


def mcp_url(server: DockyardProcess, name: str, version: str | None = None) -> str:
    path = f"toolboxes/{name}/versions/{version}/mcp" if version else f"toolboxes/{name}/mcp"
    return f"{server.endpoint}/{path}?api-version=v1"


async def _session(server: DockyardProcess, url: str, steps: Any, headers: dict[str, str] | None = None) -> Any:
    sent = {"Authorization": f"Bearer {bearer_token(server)}", **(headers or {})}
    async with httpx2.AsyncClient(headers=sent, verify=tls_context(server), timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            return await steps(client)


def test_the_sdk_manages_toolboxes_and_their_versions(project: AIProjectClient, mcp_server: McpTestServer) -> None:
    tools = project.toolboxes
    first = tools.create_version("managed", tools=[calc_entry(mcp_server)], description="one",
                                 metadata={"team": "t4"})
    assert (first.name, first.version, first.description, first.metadata) == ("managed", "1", "one", {"team": "t4"})
    assert first.tools[0]["headers"] == {"Authorization": "<redacted>"}  # stored, never shown
    second = tools.create_version("managed", tools=[{**calc_entry(mcp_server), "server_label": "calc2"}])
    assert second.version == "2"
    toolbox = tools.get("managed")
    assert (toolbox.name, toolbox.default_version, toolbox.versions.latest.version) == ("managed", "2", "2")
    assert "managed" in [t.name for t in tools.list()]
    assert [v.version for v in tools.list_versions("managed")] == ["2", "1"]
    assert tools.update("managed", default_version="1").default_version == "1"
    assert tools.get_version("managed", "2").tools[0]["server_label"] == "calc2"
    tools.delete_version("managed", "2")
    with pytest.raises(ResourceNotFoundError):
        tools.get_version("managed", "2")
    with pytest.raises(HttpResponseError) as refused:
        tools.create_version("managed", tools=[{"type": "mcp", "server_label": "no spaces please",
                                                "server_url": mcp_server.url}])
    assert refused.value.status_code == 400 and refused.value.error.code == "InvalidTool"
    with pytest.raises(HttpResponseError) as unknown:
        tools.create_version("managed", tools=[{"type": "browser_automation"}])
    assert unknown.value.status_code == 400 and unknown.value.error.code == "UnsupportedToolType"
    tools.delete("managed")
    with pytest.raises(ResourceNotFoundError):
        tools.get("managed")


def test_an_mcp_client_lists_and_calls_the_toolbox(server: DockyardProcess, kit: str,
                                                    mcp_server: McpTestServer) -> None:
    async def steps(client: Client) -> Any:
        listed = await client.list_tools()
        return listed, await client.call_tool("mcp__calc__add", {"a": 2, "b": 40}), \
            await client.call_tool("mcp__calc__headers", {})

    listed, added, headers = anyio.run(_session, server, mcp_url(server, kit), steps,
                                       {"x-agent-foundry-call-id": "call-from-a-test"})
    assert [t.name for t in listed.tools] == ["mcp__calc__add", "mcp__calc__headers"]
    assert listed.tools[0].meta == {"tool_configuration": {"require_approval": "always"}}
    assert (added.content[0].text, added.is_error) == ("42", False)
    sent = json.loads(headers.content[0].text)
    assert sent["authorization"] == SECRET and sent["x-agent-foundry-call-id"] == "call-from-a-test"
    assert "kit-secret" not in server.logs()


def test_the_sdks_invoke_mcp_and_a_pinned_version(project: AIProjectClient, server: DockyardProcess, kit: str,
                                                  mcp_server: McpTestServer) -> None:
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "mcp__calc__add", "arguments": {"a": 1, "b": 2}}}
    # azure-ai-projects 2.10 hands a dict to azure-core as `content`, which form-encodes it (`jsonrpc=2.0&id=7…`)
    # under `application/json`: a parse error, here as in Foundry. The JSON text goes through as it is.
    with pytest.raises(HttpResponseError) as garbled:
        project.toolboxes.invoke_latest_toolbox_mcp(kit, message, content_type="application/json")
    assert garbled.value.status_code == 400
    answer = project.toolboxes.invoke_latest_toolbox_mcp(kit, json.dumps(message),  # type: ignore[arg-type]
                                                         content_type="application/json")
    reply = json.loads(answer) if isinstance(answer, str) else answer
    assert reply["id"] == 7 and reply["result"]["content"][0]["text"] == "3"

    async def names(client: Client) -> list[str]:
        return [t.name for t in (await client.list_tools()).tools]

    assert anyio.run(_session, server, mcp_url(server, kit, "1"), names) == ["mcp__calc__add", "mcp__calc__headers"]


def test_the_endpoint_refuses_what_it_must(server: DockyardProcess, kit: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(verify=tls_context(server), timeout=30) as http:
        anonymous = http.post(mcp_url(server, kit), json=body, headers=headers)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "MissingToken"
        authorized = {**headers, "Authorization": f"Bearer {bearer_token(server)}"}
        missing = http.post(mcp_url(server, "nope"), json=body, headers=authorized)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "ToolboxNotFound"
        unversioned = http.post(mcp_url(server, kit).split("?")[0], json=body, headers=authorized)
        assert unversioned.status_code == 400 and unversioned.json()["error"]["code"] == "MissingApiVersionParameter"
        # Stateless: a lone tools/list (no initialize first) is answered, as Microsoft's adapter samples post.
        lone = http.post(mcp_url(server, kit), json=body, headers=authorized)
        assert lone.status_code == 200, lone.text
        assert [t["name"] for t in lone.json()["result"]["tools"]] == ["mcp__calc__add", "mcp__calc__headers"]


@pytest.fixture(scope="module")
def agent_image(server: DockyardProcess) -> Iterator[str]:
    require_engine()
    ensure_base_image()
    local = build_image("toolbox-agent", "v1", FIXTURE_IMAGES / "toolbox-agent", timeout=1800)
    with Registry() as registry:
        pushed = f"{registry.host}/toolbox-agent:e2e"
        push_image(local, pushed)
        yield pushed


@pytest.mark.engine
def test_an_agent_container_uses_the_toolbox_with_its_own_identity(
        project: AIProjectClient, server: DockyardProcess, kit: str, mcp_server: McpTestServer,
        agent_image: str) -> None:
    name = f"toolbox-{uuid.uuid4().hex[:6]}"
    version = project.agents.create_version(agent_name=name, definition=HostedAgentDefinition(
        cpu="1", memory="1Gi", container_configuration=ContainerConfiguration(image=agent_image),
        protocol_versions=[ProtocolVersionRecord(protocol="responses", version="2.0.0")],
        environment_variables={"TOOLBOX_NAME": kit}))
    deadline = time.monotonic() + 120
    while project.agents.get_version(agent_name=name, agent_version=version.version).status != "active":
        assert time.monotonic() < deadline, "version did not become active"
        time.sleep(0.2)
    openai = project.get_openai_client(agent_name=name, timeout=120, max_retries=0)
    calls = [{"tool": "mcp__calc__add", "arguments": {"a": 20, "b": 22}}, {"tool": "mcp__calc__headers"}]
    logged_before = len(server.logs())
    answer = json.loads(openai.responses.create(input=json.dumps({"calls": calls})).output_text)
    assert "error" not in answer, answer
    assert answer["tools"] == [{"name": "mcp__calc__add", "require_approval": "always"},
                               {"name": "mcp__calc__headers", "require_approval": "always"}]
    added, headers = answer["results"]
    assert (added["tool"], added["result"], added["is_error"]) == ("mcp__calc__add", "42", False)
    assert {"name": "add", "arguments": {"a": 20, "b": 22}} in mcp_server.calls
    # The sandbox forwarded the call id dockyard gave it; the toolbox passed it on to the MCP server.
    seen = json.loads(headers["result"])
    assert answer["sent_call_id"] and seen["x-agent-foundry-call-id"].startswith("dyc1.")
    # It came from the container, with the agent's own token (not this test's, on 127.0.0.1) ...
    during = server.logs()[logged_before:]
    assert any(f"/api/projects/default/toolboxes/{kit}/mcp" in line and "127.0.0.1:" not in line.split(" - ")[0]
               for line in during.splitlines())
    # ... and the tools acted for the caller the agent was serving (this test's operator identity), which the
    # call id names, not for the agent's own identity.
    acting = [line for line in during.splitlines() if f"toolbox {kit}: default version for " in line]
    assert acting and all("for local-developer" in line for line in acting), acting


def test_nothing_secret_reached_the_log(server: DockyardProcess) -> None:
    assert "kit-secret" not in server.logs()
    assert Path(server.home / "dockyard.db").exists()
