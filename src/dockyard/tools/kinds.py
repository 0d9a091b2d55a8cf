"""Which platform tools this dockyard runs, built once at start-up from what they need.

Each tool module adds itself in `build_tool_kinds`; `ToolDependencies` carries what any of them needs
(add a field when a tool needs more), so tools never reach up into the HTTP layer for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine as Database

from dockyard.home import Home
from dockyard.models.catalog import Catalog
from dockyard.runtime.engine import Engine
from dockyard.settings import Settings
from dockyard.store.files import FileStore
from dockyard.tools.base import ToolKind
from dockyard.tools.code_interpreter import CodeInterpreterKind
from dockyard.tools.file_search import FileSearchKind
from dockyard.tools.mcp import McpKind
from dockyard.tools.vector_search import VectorSearch


@dataclass
class ToolDependencies:
    settings: Settings
    home: Home
    database: Database
    # The container engine, when there is one: code interpreter sandboxes are containers then.
    engine: Engine | None
    catalog: Catalog | None
    # Uploaded files (code_interpreter's container.file_ids) and vector stores (file_search).
    files: FileStore | None = None
    vector_search: VectorSearch | None = None


def build_tool_kinds(deps: ToolDependencies) -> dict[str, ToolKind]:
    kinds: dict[str, ToolKind] = {}
    kinds[McpKind.type] = McpKind(deps)
    kinds[CodeInterpreterKind.type] = CodeInterpreterKind(deps)
    kinds[FileSearchKind.type] = FileSearchKind(deps)
    return kinds
