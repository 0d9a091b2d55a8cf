"""Which platform tools this dockyard runs, built once at start-up from what they need
(`dockyard.tools.dependencies`). A new tool kind adds itself in `build_tool_kinds`.
"""

from __future__ import annotations

from dockyard.tools.base import ToolKind
from dockyard.tools.code_interpreter import CodeInterpreterKind
from dockyard.tools.dependencies import ToolDependencies
from dockyard.tools.file_search import FileSearchKind
from dockyard.tools.mcp import McpKind


def build_tool_kinds(deps: ToolDependencies) -> dict[str, ToolKind]:
    kinds: dict[str, ToolKind] = {}
    kinds[McpKind.type] = McpKind(deps)
    kinds[CodeInterpreterKind.type] = CodeInterpreterKind(deps)
    kinds[FileSearchKind.type] = FileSearchKind(deps)
    return kinds
