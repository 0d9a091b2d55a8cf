"""What any platform tool may need, handed to each kind when dockyard starts.

A module of its own so tool modules depend on it and `tools/kinds.py` depends on them, never the other
way round. Add a field when a tool needs more; tools never reach up into the HTTP layer for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine as Database

from dockyard.home import Home
from dockyard.models.catalog import Catalog
from dockyard.runtime.engine import Engine
from dockyard.settings import Settings
from dockyard.store.files import FileStore
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
