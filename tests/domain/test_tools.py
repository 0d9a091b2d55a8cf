from __future__ import annotations

import copy
from typing import Any

import pytest

from dockyard.domain.errors import BadRequest
from dockyard.domain.tools import validate_tools

MCP = {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com/sse", "require_approval": "never"}


def test_no_tools() -> None:
    assert validate_tools(None) is None


@pytest.mark.parametrize(
    "tools",
    [
        [],
        [{"type": "code_interpreter"}],
        [{"type": "code_interpreter", "container": {"type": "auto"}}, {"type": "web_search_preview"}],
        [MCP],
        [{"type": "mcp", "server_label": "local", "server_url": "http://127.0.0.1:8000/mcp"}],
        [{"type": "function", "name": "f", "parameters": {"type": "object"}, "x-vendor": [1, 2]}],
    ],
)
def test_tools_are_returned_unchanged(tools: list[dict[str, Any]]) -> None:
    before = copy.deepcopy(tools)
    assert validate_tools(tools) is tools
    assert tools == before


@pytest.mark.parametrize(
    ("tool", "mentions"),
    [
        ({"type": "mcp", "server_url": "https://mcp.example.com"}, "server_label"),
        ({"type": "mcp", "server_label": "", "server_url": "https://mcp.example.com"}, "server_label"),
        ({"type": "mcp", "server_label": "  ", "server_url": "https://mcp.example.com"}, "server_label"),
        ({"type": "mcp", "server_label": 3, "server_url": "https://mcp.example.com"}, "server_label"),
        ({"type": "mcp", "server_label": "docs"}, "server_url"),
        ({"type": "mcp", "server_label": "docs", "server_url": None}, "server_url"),
        ({"type": "mcp", "server_label": "docs", "server_url": "ftp://x"}, "server_url"),
        ({"type": "mcp", "server_label": "docs", "server_url": "not a url"}, "server_url"),
        ({"type": "mcp", "server_label": "docs", "server_url": "https://"}, "server_url"),
        ({"type": "mcp", "server_label": "docs", "server_url": "mcp.example.com"}, "server_url"),
        ({"type": "mcp", "server_label": "docs", "server_url": ["https://mcp.example.com"]}, "server_url"),
    ],
)
def test_invalid_mcp_tool(tool: dict[str, Any], mentions: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_tools([{"type": "code_interpreter"}, tool])
    error = info.value
    assert error.code == "InvalidTool"
    assert error.status_code == 400
    assert error.param == "definition.tools"
    assert "definition.tools[1]" in error.message
    assert mentions in error.message


@pytest.mark.parametrize(
    "tools",
    [
        {"type": "code_interpreter"},
        "code_interpreter",
        7,
        [None],
        ["code_interpreter"],
        [{}],
        [{"type": ""}],
        [{"type": 1}],
        [{"name": "f"}],
    ],
)
def test_malformed_tools(tools: object) -> None:
    with pytest.raises(BadRequest) as info:
        validate_tools(tools)
    assert info.value.code == "InvalidTool"
    assert info.value.status_code == 400
    assert info.value.param == "definition.tools"
