"""Toolboxes served over MCP: a toolbox's tools listed and called through the same bound platform tools.

`{project}/toolboxes/{name}/mcp` (and `…/versions/{version}/mcp`) is one MCP server per toolbox, spoken
over streamable HTTP with the official SDK's low-level `Server` and `StreamableHTTPSessionManager`. One
server object serves every toolbox: the HTTP layer authenticates each request and hands it over with a
`ToolboxCall` (which toolbox, who calls, the call id) in its ASGI scope, where the handlers read it.

The manager runs stateless: every POST stands alone (no `initialize` needed first, as Microsoft's adapter
samples post `tools/call` directly), every POST carries its own token and `x-agent-foundry-call-id`, and
nothing is kept between requests, so a toolbox changed between two calls serves its new version at once.

- `tools/list`: the entries of the toolbox's version are bound with their kinds (`ToolKinds`) for the
  caller, prepared, and their functions listed under the names the Responses loop uses (`mcp__<label>__<tool>`,
  `code_interpreter`, `file_search`). An `mcp` entry's `require_approval` travels as
  `_meta.tool_configuration.require_approval` ("always" / "never") on each of its tools: in a toolbox the
  approval is the agent's to ask (its user, its policy), so the toolbox itself runs what it is asked to.
- `tools/call`: the function's tool is bound and prepared, `run` executes it, and the outcome's
  `model_output` is the text content (`isError` when the tool failed).

Who a tool acts for: the caller (its token, and the end user it delegates for), with one exception: entries
that name resources of their own (`file_search`'s vector stores) reach them as the version's author, who was
checked to reach them when the version was made; a toolbox is how its author shares them with agents.

An entry whose kind this dockyard does not run (or no longer accepts) is listed nowhere and logged; an
entry whose preparation fails (an MCP server that is down) is left out of the list, logged, and a call to
one of its functions answers `isError` with the reason.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from dockyard.domain.errors import BadRequest, DockyardError
from dockyard.identity.ownership import Caller, Owner
from dockyard.store.toolboxes import ToolboxStore, ToolboxVersion
from dockyard.tools.base import PlatformTool, ToolContext, ToolKind

# Where the HTTP layer leaves the `ToolboxCall` in the request's ASGI scope.
SCOPE_KEY = "dockyard.toolbox_call"
# Fields a toolbox entry may carry that belong to the toolbox (Foundry's ToolboxTool), not to the tool.
TOOLBOX_FIELDS = ("name", "description", "tool_configs")
MAX_MCP_BODY_BYTES = 4 * 1024 * 1024
# Kinds whose entries name resources (vector stores) that they reach as the toolbox version's author.
AUTHOR_KINDS = frozenset({"file_search"})


@dataclass(frozen=True)
class ToolboxCall:
    """Who asks which toolbox, for one MCP request."""

    project: str
    name: str
    # None: the toolbox's default version.
    version: str | None
    caller: Caller
    request_id: str
    foundry_call_id: str | None
    log: Callable[[str], None]

    def context(self) -> ToolContext:
        return ToolContext(project=self.project, caller=self.caller, request_id=self.request_id, log=self.log,
                           foundry_call_id=self.foundry_call_id)


def approval_of(entry: Mapping[str, Any], tool_name: str) -> str | None:
    """What an `mcp` entry's `require_approval` says of one of its server's tools: "always", "never", or
    None when the entry says nothing of it (a toolbox shows only what was configured)."""
    value = entry.get("require_approval")
    if value in ("always", "never"):
        return str(value)
    if isinstance(value, Mapping):
        for which in ("always", "never"):
            part = value.get(which)
            names = part.get("tool_names") if isinstance(part, Mapping) else part
            if isinstance(names, list) and tool_name in names:
                return which
    return None


def tool_config(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry as its kind binds it in a toolbox: no toolbox-only fields, and no approval gate (the agent
    asks for approval; `_meta` tells it where)."""
    config = {k: copy.deepcopy(v) for k, v in entry.items() if k not in TOOLBOX_FIELDS}
    if config.get("type") == "mcp":
        config["require_approval"] = "never"
    return config


def as_caller(owner: Owner) -> Caller:
    """A toolbox version's author as the caller its resource-naming entries act for."""
    return Caller(subject=owner.subject, user=owner.user, operator=False, oid=owner.subject)


async def check_entries(kinds: Mapping[str, ToolKind], project: str, caller: Caller,
                        tools: list[dict[str, Any]], log: Callable[[str], None]) -> None:
    """Refuse, before anything is stored, an entry no kind here runs or its kind refuses (BadRequest), and an
    entry naming resources its author cannot reach (the kind's prepare: VectorStoreNotFound, say)."""
    for index, entry in enumerate(tools):
        kind = kinds.get(entry["type"])
        if kind is None:
            known = ", ".join(sorted(kinds)) or "none yet"
            raise BadRequest(f"tools[{index}]: tool type {entry['type']!r} is not one this dockyard runs "
                             f"(it runs: {known}).", code="UnsupportedToolType", param=f"tools[{index}].type")
        try:
            tool = kind.bind(tool_config(entry), project, caller)
        except BadRequest as exc:
            raise BadRequest(f"tools[{index}]: {exc.message}", code=exc.code,
                             param=f"tools[{index}]" if not exc.param else exc.param) from None
        if entry["type"] in AUTHOR_KINDS:
            await tool.prepare(ToolContext(project=project, caller=caller, request_id="", log=log))


@dataclass
class _Bound:
    entry: dict[str, Any]
    tool: PlatformTool | None
    # Why the entry offers nothing (unknown kind, refused configuration, preparation failed).
    problem: str | None = None


class ToolboxServer:
    """The MCP server behind every toolbox endpoint; `run()` must be entered in the app's lifespan."""

    def __init__(self, store: ToolboxStore, kinds: Mapping[str, ToolKind]) -> None:
        self.store = store
        self.kinds = kinds
        self.server: Server[Any] = Server("dockyard-toolbox", on_list_tools=self._list_tools,
                                          on_call_tool=self._call_tool)
        self.manager = StreamableHTTPSessionManager(
            self.server, stateless=True, json_response=True, max_request_body_size=MAX_MCP_BODY_BYTES,
            # The bearer token guards these routes; containers reach dockyard by the engine's host address.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def handle(self, call: ToolboxCall, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request({**scope, SCOPE_KEY: call}, receive, send)

    # -- binding ---------------------------------------------------------------------------------------

    async def _version(self, call: ToolboxCall) -> ToolboxVersion:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.store.get_version, call.project, call.name, call.version)

    def bind_entry(self, call: ToolboxCall, version: ToolboxVersion, index: int, entry: dict[str, Any]) -> _Bound:
        kind = self.kinds.get(str(entry.get("type")))
        where = f"toolbox {call.name} tools[{index}] ({entry.get('type')})"
        if kind is None:
            call.log(f"{where}: no such tool kind on this dockyard; not listed")
            return _Bound(entry, None, f"tool type {entry.get('type')!r} is not one this dockyard runs")
        acting = call.caller
        if entry.get("type") in AUTHOR_KINDS and version.author is not None:
            acting = as_caller(version.author)
        try:
            return _Bound(entry, kind.bind(tool_config(entry), call.project, acting))
        except DockyardError as exc:
            call.log(f"{where}: refused ({exc.code}); not listed")
            return _Bound(entry, None, exc.message)

    async def _prepare(self, call: ToolboxCall, index: int, bound: _Bound) -> None:
        if bound.tool is None:
            return
        try:
            await bound.tool.prepare(call.context())
        except DockyardError as exc:
            call.log(f"toolbox {call.name} tools[{index}] ({bound.entry.get('type')}): could not be prepared "
                     f"({exc.code}); its tools are not listed")
            bound.tool, bound.problem = None, exc.message

    # -- MCP handlers ----------------------------------------------------------------------------------

    async def _list_tools(self, ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None,
                          ) -> types.ListToolsResult:
        call = _call_of(ctx)
        version = await self._version(call)
        listed: list[types.Tool] = []
        for index, entry in enumerate(version.tools):
            bound = self.bind_entry(call, version, index, entry)
            await self._prepare(call, index, bound)
            if bound.tool is None:
                continue
            for spec in bound.tool.functions():
                meta = None
                if entry.get("type") == "mcp":
                    original = getattr(bound.tool, "tool_name", lambda _n: None)(spec.name) or spec.name
                    approval = approval_of(entry, original)
                    if approval is not None:
                        meta = {"tool_configuration": {"require_approval": approval}}
                listed.append(types.Tool.model_validate({"name": spec.name, "description": spec.description,
                                                         "inputSchema": dict(spec.parameters), "_meta": meta}))
        call.log(f"toolbox {call.name} v{version.version}: listed {len(listed)} tool(s)")
        return types.ListToolsResult(tools=listed)

    async def _call_tool(self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams,
                         ) -> types.CallToolResult:
        call = _call_of(ctx)
        version = await self._version(call)
        name = params.name
        problems: list[str] = []
        for index, entry in enumerate(version.tools):
            kind_type = str(entry.get("type"))
            # Functions carry their kind's name first (`code_interpreter`, `mcp__label__tool`): only those
            # entries are bound and prepared (preparing an mcp entry lists its server).
            if name != kind_type and not name.startswith(f"{kind_type}__"):
                continue
            bound = self.bind_entry(call, version, index, entry)
            await self._prepare(call, index, bound)
            if bound.tool is None:
                problems.append(f"tools[{index}]: {bound.problem}")
                continue
            if name not in {spec.name for spec in bound.tool.functions()}:
                continue
            outcome = await bound.tool.run(call.context(), name, params.arguments or {}, f"call_{call.request_id}")
            failed = _failed(outcome.item) or outcome.model_output is None
            text = outcome.model_output if outcome.model_output is not None else (
                f"{name} needs an approval this toolbox cannot ask for.")
            call.log(f"toolbox {call.name} v{version.version}: {name} {'failed' if failed else 'answered'}")
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=failed)
        call.log(f"toolbox {call.name} v{version.version}: {name!r} is not one of its tools")
        why = f" ({'; '.join(problems)})" if problems else ""
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"{name!r} is not a tool of toolbox {call.name!r}{why}. "
                                                         "List its tools with tools/list.")], is_error=True)


def _call_of(ctx: ServerRequestContext[Any]) -> ToolboxCall:
    request = ctx.request
    call = request.scope.get(SCOPE_KEY) if request is not None else None
    if not isinstance(call, ToolboxCall):
        raise RuntimeError("a toolbox MCP request reached the server without its ToolboxCall")
    return call


def _failed(item: Mapping[str, Any]) -> bool:
    return bool(item.get("error")) or item.get("status") in ("failed", "incomplete")
