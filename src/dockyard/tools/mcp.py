"""The `mcp` tool: a remote MCP server named in the request, listed and called with the official SDK.

A `tools` entry `{"type": "mcp", "server_label", "server_url" | "project_connection_id", "headers",
"allowed_tools", "require_approval", "server_description"}` (OpenAI's and Foundry's shape) is bound to
one server. `prepare` lists its tools (an `mcp_list_tools` item, shown first); the model is offered each
as a function named `mcp__<server_label>__<tool>`; a call becomes an `mcp_call` item, or first an
`mcp_approval_request` when `require_approval` says so (OpenAI's default is "always", and so is this).

Where calls go: only to the URL the tool names (or its connection's target). The SDK's streamable HTTP
client follows a redirect only within the same origin and refuses any other, so a server cannot send
dockyard elsewhere. Each operation opens its own session with bounded time (connect, list, call), and
what a server answers is bounded in size; a server that hangs, refuses or answers garbage makes an
`mcp_call` with an `error` the model and the caller read, never a failure of dockyard. Only listing at
`prepare` fails the request: 424, as OpenAI answers ("Error retrieving tool list from MCP server").
Headers (which usually carry a key) are sent, never logged, never echoed.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, Tool

from dockyard.domain.errors import BadRequest, DockyardError
from dockyard.identity.ownership import Caller
from dockyard.tools.base import FUNCTION_NAME_LIMIT, FunctionSpec, ToolContext, ToolOutcome

if TYPE_CHECKING:
    from dockyard.models.catalog import Catalog
    from dockyard.tools.dependencies import ToolDependencies

FUNCTION_PREFIX = "mcp__"
MCP_SERVER_UNAVAILABLE = "McpServerUnavailable"

_LABEL = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
# Headers dockyard sets itself on the way to the server (the transport's) and must not be overridden.
_RESERVED_HEADERS = {"host", "content-length", "content-type", "accept", "mcp-session-id", "mcp-protocol-version",
                     "connection", "transfer-encoding"}
# What one server may make dockyard hold: the listing and each answer.
MAX_TOOLS = 128
MAX_LIST_PAGES = 8
MAX_ANSWER_BYTES = 4 * 1024 * 1024
# What an `mcp_call` shows of the answer, and what the model reads of it.
MAX_OUTPUT_CHARS = 100_000
MAX_MODEL_OUTPUT_CHARS = 16_000


class FailedDependency(DockyardError):
    """A server the request depends on could not be used (OpenAI answers 424 for an MCP server it cannot list)."""

    status_code = 424
    code = MCP_SERVER_UNAVAILABLE


@dataclass(frozen=True)
class McpTimeouts:
    """Seconds each step may take; the whole of one operation (connect, handshake, list or call) is bounded."""

    connect: float = 5.0
    list: float = 20.0
    call: float = 60.0


class McpKind:
    """`type: "mcp"`: checks an entry and binds it to its server."""

    type = "mcp"

    def __init__(self, deps: ToolDependencies | None = None, *, catalog: Catalog | None = None,
                 timeouts: McpTimeouts | None = None) -> None:
        self.catalog = catalog if catalog is not None else (deps.catalog if deps is not None else None)
        self.timeouts = timeouts or McpTimeouts()

    def bind(self, config: Mapping[str, Any], project: str, caller: Caller) -> McpTool:
        label = config.get("server_label")
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
            raise BadRequest("An mcp tool needs 'server_label': 1 to 64 letters, digits, '_' or '-' (it names the "
                             "server in the items and in the functions the model sees).",
                             code="InvalidTool", param="tools.server_label")
        for unsupported in ("connector_id", "authorization"):
            if config.get(unsupported) is not None:
                raise BadRequest(f"mcp tool {label!r}: '{unsupported}' is not supported by dockyard; give the server's "
                                 "URL in 'server_url' and its credentials in 'headers', or use "
                                 "'project_connection_id'.", code="InvalidTool", param=f"tools.{unsupported}")
        headers = _headers(label, config.get("headers"))
        url = config.get("server_url")
        connection = config.get("project_connection_id")
        if (url is None) == (connection is None):
            raise BadRequest(f"mcp tool {label!r} needs exactly one of 'server_url' (the server's http(s) URL) and "
                             "'project_connection_id' (a connection whose target is that URL).",
                             code="InvalidTool", param="tools.server_url")
        if connection is not None:
            url, key = self._connection(label, connection, project)
            if key and "authorization" not in {name.lower() for name in headers}:
                headers["authorization"] = f"Bearer {key}"
        assert isinstance(url, str) or url is None
        description = config.get("server_description")
        if description is not None and not isinstance(description, str):
            raise BadRequest(f"mcp tool {label!r}: 'server_description' must be a string.", code="InvalidTool",
                             param="tools.server_description")
        return McpTool(label=label, url=_server_url(label, url), headers=headers,
                       allowed=_allowed_tools(label, config.get("allowed_tools")),
                       approval=_approval(label, config.get("require_approval", "always")),
                       description=description or "", timeouts=self.timeouts)

    def _connection(self, label: str, reference: Any, project: str) -> tuple[str, str | None]:
        if not isinstance(reference, str) or not reference:
            raise BadRequest(f"mcp tool {label!r}: 'project_connection_id' must be a connection's name or id.",
                             code="InvalidTool", param="tools.project_connection_id")
        if self.catalog is None:
            raise BadRequest("This dockyard has no connections to read 'project_connection_id' from.",
                             code="InvalidTool", param="tools.project_connection_id")
        name = reference.rstrip("/").rsplit("/connections/", 1)[-1]
        connection = self.catalog.connection(project, name)  # NotFound ConnectionNotFound, naming it
        return connection.target, connection.credentials.fields.get("key") or None


def _server_url(label: str, url: Any) -> str:
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is not None:
            parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"mcp tool {label!r}: 'server_url' must be an http:// or https:// URL with a host.",
                         code="InvalidTool", param="tools.server_url")
    if parts.username or parts.password or parts.fragment:
        raise BadRequest(f"mcp tool {label!r}: 'server_url' must not carry credentials or a fragment; send "
                         "credentials in 'headers'.", code="InvalidTool", param="tools.server_url")
    return str(url)


def _headers(label: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest(f"mcp tool {label!r}: 'headers' must be an object of header names and string values.",
                         code="InvalidTool", param="tools.headers")
    headers: dict[str, str] = {}
    for name, header in value.items():
        if (not isinstance(name, str) or not _HEADER_NAME.fullmatch(name) or name.lower() in _RESERVED_HEADERS
                or not isinstance(header, str) or any(c in header for c in "\r\n\0") or len(header) > 8192):
            # The value is never quoted: it is usually a key.
            raise BadRequest(f"mcp tool {label!r}: header {str(name)[:64]!r} is not valid (a header name other "
                             f"than {', '.join(sorted(_RESERVED_HEADERS))}, with a string value of one line).",
                             code="InvalidTool", param="tools.headers")
        headers[name] = header
    return headers


@dataclass(frozen=True)
class _Allowed:
    names: frozenset[str] | None = None
    read_only: bool = False

    def allows(self, tool: Tool) -> bool:
        if self.names is not None and tool.name not in self.names:
            return False
        return not self.read_only or bool(tool.annotations and tool.annotations.read_only_hint)


def _names(label: str, value: Any, param: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise BadRequest(f"mcp tool {label!r}: '{param}' must be a list of tool names.", code="InvalidTool",
                         param=f"tools.{param}")
    return frozenset(value)


def _allowed_tools(label: str, value: Any) -> _Allowed:
    if value is None:
        return _Allowed()
    if isinstance(value, list):
        return _Allowed(_names(label, value, "allowed_tools"))
    if isinstance(value, Mapping):
        names = value.get("tool_names")
        return _Allowed(_names(label, names, "allowed_tools.tool_names") if names is not None else None,
                        bool(value.get("read_only", False)))
    raise BadRequest(f"mcp tool {label!r}: 'allowed_tools' must be a list of tool names or "
                     "{\"tool_names\": [...], \"read_only\": bool}.", code="InvalidTool", param="tools.allowed_tools")


@dataclass(frozen=True)
class _Approval:
    """Which tools need the caller's approval: `always` ones do, `never` ones do not, others `default`."""

    default: bool = True
    always: frozenset[str] = frozenset()
    never: frozenset[str] = frozenset()

    def required(self, name: str) -> bool:
        if name in self.always:
            return True
        if name in self.never:
            return False
        return self.default


def _approval(label: str, value: Any) -> _Approval:
    if value in ("always", None):
        return _Approval(default=True)
    if value == "never":
        return _Approval(default=False)
    if isinstance(value, Mapping) and set(value) <= {"always", "never"}:
        lists: dict[str, frozenset[str]] = {}
        for which in ("always", "never"):
            part = value.get(which)
            if part is None:
                lists[which] = frozenset()
            elif isinstance(part, Mapping):
                lists[which] = _names(label, part.get("tool_names", []), f"require_approval.{which}.tool_names")
            else:
                lists[which] = _names(label, part, f"require_approval.{which}")
        # Tools neither list names need approval, as with "always": the safe side.
        return _Approval(default=True, always=lists["always"], never=lists["never"])
    raise BadRequest(f"mcp tool {label!r}: 'require_approval' must be \"always\", \"never\", or "
                     "{\"always\": {\"tool_names\": [...]}, \"never\": {\"tool_names\": [...]}}.",
                     code="InvalidTool", param="tools.require_approval")


def function_name(label: str, tool: str, taken: set[str]) -> str:
    """`mcp__<label>__<tool>`, cut to 64 characters and made unique with a short hash when it had to be cut."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", f"{FUNCTION_PREFIX}{label}__{tool}")
    if len(name) > FUNCTION_NAME_LIMIT or name in taken:
        digest = hashlib.sha256(f"{label}\0{tool}".encode()).hexdigest()[:8]
        name = f"{name[:FUNCTION_NAME_LIMIT - 9]}_{digest}"
    taken.add(name)
    return name


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [{len(text) - limit} more characters cut]"


class _AnswerTooLarge(Exception):
    pass


async def _refuse_large(response: httpx2.Response) -> None:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise _AnswerTooLarge(f"the server's answer is {declared} bytes, more than {MAX_ANSWER_BYTES}")


def _first_cause(error: BaseException) -> BaseException:
    """The error that matters inside the SDK's nested task-group exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


@dataclass
class McpTool:
    """One `mcp` entry bound to its server."""

    label: str
    url: str
    headers: dict[str, str] = field(repr=False)
    allowed: _Allowed
    approval: _Approval
    description: str
    timeouts: McpTimeouts
    # After `prepare`: the server's tools the model may call, by function name.
    tools: dict[str, Tool] = field(default_factory=dict)

    # -- talking to the server ----------------------------------------------------------------------

    def _client(self, ctx: ToolContext, seconds: float) -> tuple[httpx2.AsyncClient, Client]:
        headers = dict(self.headers)
        if ctx.foundry_call_id:
            headers["x-agent-foundry-call-id"] = ctx.foundry_call_id
        http = httpx2.AsyncClient(headers=headers, follow_redirects=False,
                                  timeout=httpx2.Timeout(seconds, connect=self.timeouts.connect),
                                  event_hooks={"response": [_refuse_large]})
        client = Client(streamable_http_client(self.url, http_client=http), read_timeout_seconds=seconds)
        return http, client

    def _failure(self, error: BaseException, seconds: float) -> tuple[dict[str, Any], str]:
        """The `mcp_call` error (OpenAI's shapes) and a one-line reason, for an operation that failed."""
        cause = _first_cause(error)
        if isinstance(cause, TimeoutError) or (isinstance(cause, MCPError) and cause.code == -32001):
            reason = f"the server did not answer within {seconds:g} s"
            return {"type": "http_error", "code": 504, "message": reason}, reason
        if isinstance(cause, MCPError):
            reason = f"the server answered with an MCP error {cause.code}: {cause.error.message[:300]}"
            return {"type": "mcp_protocol_error", "code": cause.code, "message": reason}, reason
        if isinstance(cause, httpx2.HTTPStatusError):
            reason = f"the server answered HTTP {cause.response.status_code}"
            return {"type": "http_error", "code": cause.response.status_code, "message": reason}, reason
        if isinstance(cause, _AnswerTooLarge):
            reason = str(cause)
            return {"type": "http_error", "code": 502, "message": reason}, reason
        if isinstance(cause, httpx2.ConnectError):
            reason = "the server refused the connection or could not be reached"
        elif isinstance(cause, httpx2.TimeoutException):
            reason = f"the server did not answer within {seconds:g} s"
            return {"type": "http_error", "code": 504, "message": reason}, reason
        elif isinstance(cause, httpx2.HTTPError):
            reason = f"the connection failed ({type(cause).__name__})"
        else:
            reason = f"the server's answer could not be used ({type(cause).__name__})"
        return {"type": "http_error", "code": 502, "message": reason}, reason

    async def _list(self, ctx: ToolContext) -> list[Tool]:
        seconds = self.timeouts.list
        http, client = self._client(ctx, seconds)
        listed: list[Tool] = []
        async with http:
            with anyio.fail_after(seconds):
                async with client:
                    cursor: str | None = None
                    for _ in range(MAX_LIST_PAGES):
                        page = await client.list_tools(cursor=cursor)
                        listed.extend(page.tools)
                        cursor = page.next_cursor
                        if not cursor or len(listed) >= MAX_TOOLS:
                            break
        return listed[:MAX_TOOLS]

    async def _call(self, ctx: ToolContext, name: str, arguments: Mapping[str, Any]) -> CallToolResult:
        seconds = self.timeouts.call
        http, client = self._client(ctx, seconds)
        async with http:
            with anyio.fail_after(seconds + self.timeouts.connect):
                async with client:
                    return await client.call_tool(name, dict(arguments))

    # -- PlatformTool -------------------------------------------------------------------------------

    async def prepare(self, ctx: ToolContext) -> list[dict[str, Any]]:
        started = time.monotonic()
        try:
            listed = await self._list(ctx)
        except Exception as error:  # noqa: BLE001 - whatever the server did, the caller gets one clear 424
            _, reason = self._failure(error, self.timeouts.list)
            ctx.log(f"mcp {self.label}: listing tools failed: {reason}")
            raise FailedDependency(f"Error retrieving tool list from MCP server {self.label!r}: {reason}. Check "
                                   "'server_url' and 'headers' of that tool, and that the server is running.") from None
        taken: set[str] = set()
        self.tools = {}
        shown = []
        for tool in listed:
            if not self.allowed.allows(tool):
                continue
            self.tools[function_name(self.label, tool.name, taken)] = tool
            shown.append({"name": tool.name, "description": tool.description, "input_schema": tool.input_schema,
                          "annotations": tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
                          if tool.annotations else None})
        ctx.log(f"mcp {self.label}: listed {len(shown)} tool(s) in {time.monotonic() - started:.2f} s")
        return [{"id": _new_id("mcpl"), "type": "mcp_list_tools", "server_label": self.label, "tools": shown}]

    def functions(self) -> list[FunctionSpec]:
        specs = []
        for name, tool in self.tools.items():
            about = tool.description or tool.title or tool.name
            if self.description:
                about = f"{about} (MCP server {self.label}: {self.description})"
            schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
            specs.append(FunctionSpec(name=name, description=about[:1024],
                                      parameters=schema if schema.get("type") == "object"
                                      else {"type": "object", "properties": {}}))
        return specs

    def tool_name(self, function: str) -> str | None:
        tool = self.tools.get(function)
        return tool.name if tool is not None else None

    async def run(self, ctx: ToolContext, name: str, arguments: Mapping[str, Any], call_id: str) -> ToolOutcome:
        tool = self.tools.get(name)
        tool_name = tool.name if tool is not None else name
        encoded = json.dumps(dict(arguments), separators=(",", ":"))
        if tool is not None and self.approval.required(tool_name):
            request = {"id": _new_id("mcpr"), "type": "mcp_approval_request", "server_label": self.label,
                       "name": tool_name, "arguments": encoded}
            ctx.log(f"mcp {self.label}: {tool_name} waits for the caller's approval ({request['id']})")
            return ToolOutcome(item=request, model_output=None)
        return await self._execute(ctx, tool_name, arguments, encoded, None, known=tool is not None)

    async def resume(self, ctx: ToolContext, request_item: Mapping[str, Any], approve: bool,
                     reason: str | None) -> ToolOutcome:
        tool_name = str(request_item.get("name", ""))
        encoded = str(request_item.get("arguments") or "{}")
        request_id = str(request_item.get("id", ""))
        if not approve:
            ctx.log(f"mcp {self.label}: {tool_name} was not approved ({request_id}); not called")
            why = f" ({reason})" if reason else ""
            item = {"id": _new_id("mcp"), "type": "mcp_call", "server_label": self.label, "name": tool_name,
                    "arguments": encoded, "approval_request_id": request_id, "output": None, "status": "failed",
                    "error": {"type": "mcp_tool_execution_error",
                              "content": [{"type": "text", "text": f"The caller did not approve this call{why}."}]}}
            return ToolOutcome(item=item, model_output=f"The user did not approve calling {tool_name}{why}; "
                                                       "it was not called.")
        try:
            arguments = json.loads(encoded)
        except ValueError:
            arguments = {}
        return await self._execute(ctx, tool_name, arguments if isinstance(arguments, dict) else {}, encoded,
                                   request_id, known=tool_name in {t.name for t in self.tools.values()})

    async def _execute(self, ctx: ToolContext, tool_name: str, arguments: Mapping[str, Any], encoded: str,
                       approval_request_id: str | None, *, known: bool) -> ToolOutcome:
        item: dict[str, Any] = {"id": _new_id("mcp"), "type": "mcp_call", "server_label": self.label,
                                "name": tool_name, "arguments": encoded, "approval_request_id": approval_request_id,
                                "output": None, "error": None, "status": "completed"}
        if not known:
            message = f"{tool_name!r} is not a tool of MCP server {self.label!r} that this request may call."
            item.update(status="failed", error={"type": "mcp_protocol_error", "code": -32602, "message": message})
            return ToolOutcome(item=item, model_output=message)
        started = time.monotonic()
        try:
            result = await self._call(ctx, tool_name, arguments)
        except Exception as error:  # noqa: BLE001 - a server's failure is the call's, never dockyard's
            failure, reason = self._failure(error, self.timeouts.call)
            ctx.log(f"mcp {self.label}: {tool_name} failed after {time.monotonic() - started:.2f} s: {reason}")
            item.update(status="failed", error=failure)
            return ToolOutcome(item=item, model_output=f"Calling {tool_name} failed: {reason}.")
        text = _text_of(result)
        if result.is_error:
            ctx.log(f"mcp {self.label}: {tool_name} answered with an error in {time.monotonic() - started:.2f} s")
            content = [block.model_dump(mode="json", exclude_none=True) for block in result.content][:16]
            item.update(status="failed", error={"type": "mcp_tool_execution_error", "content": content})
            return ToolOutcome(item=item, model_output=_bounded(f"The tool failed: {text}", MAX_MODEL_OUTPUT_CHARS))
        ctx.log(f"mcp {self.label}: {tool_name} answered {len(text)} characters in {time.monotonic() - started:.2f} s")
        item["output"] = _bounded(text, MAX_OUTPUT_CHARS)
        return ToolOutcome(item=item, model_output=_bounded(text, MAX_MODEL_OUTPUT_CHARS))


def _text_of(result: CallToolResult) -> str:
    """A tool's answer as text: its text blocks joined; other blocks (images, resources) as JSON."""
    parts = []
    for block in result.content:
        text = getattr(block, "text", None)
        if isinstance(text, str):
            parts.append(text)
        else:
            dumped = block.model_dump(mode="json", exclude_none=True)
            if isinstance(dumped.get("data"), str) and len(dumped["data"]) > 256:
                dumped["data"] = f"<{len(dumped['data'])} characters of base64>"
            parts.append(json.dumps(dumped))
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)
