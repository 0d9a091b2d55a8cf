"""Tools attached to a hosted agent.

dockyard stores tools exactly as given and hands them back unchanged; it only refuses what could
never work: a tool without a type, or an MCP tool without a label or a reachable-looking URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from dockyard.domain.errors import BadRequest

MAX_TOOLS = 128


def validate_tools(tools: object) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise _invalid("definition.tools must be a list of tool objects, "
                       "for example [{\"type\": \"code_interpreter\"}].")
    if len(tools) > MAX_TOOLS:
        raise _invalid(f"definition.tools has {len(tools)} tools; at most {MAX_TOOLS} are allowed (OpenAI's limit "
                       "for the tools of one request).")
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str) or not tool["type"]:
            raise _invalid(f"definition.tools[{index}] must be an object with a string 'type'; got {tool!r}.")
        if tool["type"] == "mcp":
            _validate_mcp(tool, index)
    return tools


def _validate_mcp(tool: dict[str, Any], index: int) -> None:
    label = tool.get("server_label")
    if not isinstance(label, str) or not label.strip():
        raise _invalid(
            f"definition.tools[{index}] is an MCP tool without 'server_label'. Give it a label, "
            'for example {"type": "mcp", "server_label": "my-mcp-server", "server_url": "https://…"}.'
        )
    url = tool.get("server_url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid(
            f"definition.tools[{index}] (MCP server {label!r}) needs 'server_url' to be an http(s) URL with a host, "
            f"for example \"https://my-mcp-server.example.com\"; got {url!r}."
        )


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code="InvalidTool", param="definition.tools")
