"""Toolboxes: named, versioned groups of platform tools that agents reach as one MCP server.

Foundry's model, as azure-ai-projects 2.10 speaks it (`client.toolboxes`): a toolbox is a name in a project
with immutable versions; `create_version` makes the toolbox on its first version; the toolbox's
`default_version` is the latest unless `update(default_version=…)` pinned another; deleting a toolbox deletes
its versions. Each version holds `tools`, entries in the shapes of a Responses call's `tools`
(`{"type": "mcp", "server_label", "server_url", …}`, `{"type": "code_interpreter"}`, `{"type": "file_search",
"vector_store_ids": […]}`), plus `description` and `metadata`.

MCP entries may carry secrets (`headers`, `authorization`): they are sealed with the home's key before they
reach the database (store/secrets.py), opened only to bind the tool, and shown redacted in every answer.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError

from dockyard.domain.errors import BadRequest, Conflict, NotFound
from dockyard.identity.ownership import Owner, owner_of
from dockyard.store.database import Repository
from dockyard.store.secrets import SecretBox
from dockyard.store.tables import ToolboxRow, ToolboxVersionRow

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# What an answer shows in place of a secret the caller stored (header values, an MCP authorization token).
REDACTED = "<redacted>"
MAX_TOOLS = 128
MAX_METADATA = 16


@dataclass(frozen=True)
class ToolboxVersion:
    name: str
    version: str
    created_at: int
    # The entries as stored, secrets open: for binding only, never for an answer (see `to_wire`).
    tools: list[dict[str, Any]] = field(repr=False)
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    policies: dict[str, Any] | None = None
    # Who made this version (None: unknown); see dockyard.tools.toolboxes on what acts as them.
    author: Owner | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "object": "toolbox.version", "id": f"{self.name}:{self.version}", "name": self.name,
            "version": self.version, "description": self.description, "created_at": self.created_at,
            "metadata": dict(self.metadata), "tools": [redacted(entry) for entry in self.tools],
        }
        if self.policies is not None:
            wire["policies"] = self.policies
        return wire


@dataclass(frozen=True)
class Toolbox:
    name: str
    created_at: int
    updated_at: int
    default_version: str
    latest: ToolboxVersion

    def to_wire(self) -> dict[str, Any]:
        return {"object": "toolbox", "id": self.name, "name": self.name, "updated_at": self.updated_at,
                "default_version": self.default_version, "versions": {"latest": self.latest.to_wire()}}


def validate_toolbox_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise BadRequest(f"Toolbox name {name[:80]!r} is not valid: use 1 to 64 letters, digits, '_' or '-'.",
                         code="InvalidToolboxName", param="name")
    return name


def validate_version_body(body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None, dict[str, str],
                                                             dict[str, Any] | None]:
    """`tools`, `description`, `metadata`, `policies` of a create_version body, checked for shape only.

    Whether each entry is a tool this dockyard runs, configured right, is the tool kinds' call
    (dockyard.tools.toolboxes.check_entries), made by the route before anything is stored."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        raise BadRequest("'tools' must be a non-empty list of tool entries, each an object with a 'type' "
                         "(mcp, code_interpreter, file_search), as in a Responses call's tools.",
                         code="InvalidToolboxTools", param="tools")
    if len(tools) > MAX_TOOLS:
        raise BadRequest(f"A toolbox holds at most {MAX_TOOLS} tools; this one has {len(tools)}.",
                         code="InvalidToolboxTools", param="tools")
    for index, entry in enumerate(tools):
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) or not entry["type"]:
            raise BadRequest(f"tools[{index}] must be an object with a 'type' (mcp, code_interpreter, file_search).",
                             code="InvalidToolboxTools", param=f"tools[{index}]")
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 512):
        raise BadRequest("'description' must be a string of at most 512 characters.", code="InvalidRequestBody",
                         param="description")
    metadata = body.get("metadata") or {}
    if (not isinstance(metadata, dict) or len(metadata) > MAX_METADATA
            or any(not isinstance(k, str) or not isinstance(v, str) or len(k) > 64 or len(v) > 512
                   for k, v in metadata.items())):
        raise BadRequest(f"'metadata' must map at most {MAX_METADATA} keys (≤64 characters) to strings "
                         "(≤512 characters).", code="InvalidRequestBody", param="metadata")
    policies = body.get("policies")
    if policies is not None and not isinstance(policies, dict):
        raise BadRequest("'policies' must be an object.", code="InvalidRequestBody", param="policies")
    return [copy.deepcopy(entry) for entry in tools], description, dict(metadata), policies


def redacted(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry as answers show it: header values and an MCP authorization token replaced by `REDACTED`."""
    shown = copy.deepcopy(dict(entry))
    if isinstance(shown.get("headers"), dict):
        shown["headers"] = {name: REDACTED for name in shown["headers"]}
    if shown.get("authorization"):
        shown["authorization"] = REDACTED
    return shown


class ToolboxStore(Repository):
    def __init__(self, engine: Engine, secrets: SecretBox) -> None:
        super().__init__(engine)
        self._secrets = secrets

    def create_version(self, project: str, name: str, tools: list[dict[str, Any]], *, description: str | None = None,
                       metadata: Mapping[str, str] | None = None, policies: Mapping[str, Any] | None = None,
                       author: Owner | None = None) -> ToolboxVersion:
        """A new version (the next number), making the toolbox on its first one."""
        validate_toolbox_name(name)
        now = int(time.time())
        for _attempt in range(3):
            try:
                with self._write() as session:
                    toolbox = session.scalar(select(ToolboxRow).where(ToolboxRow.project == project,
                                                                      ToolboxRow.name == name))
                    if toolbox is None:
                        toolbox = ToolboxRow(project=project, name=name, created_at=now, updated_at=now,
                                             last_version=0)
                        session.add(toolbox)
                        session.flush()
                    toolbox.last_version += 1
                    toolbox.updated_at = now
                    row = ToolboxVersionRow(toolbox_id=toolbox.id, number=toolbox.last_version, created_at=now,
                                            description=description, metadata_=dict(metadata or {}),
                                            tools=[self._sealed(entry) for entry in tools],
                                            policies=dict(policies) if policies is not None else None,
                                            author_subject=author.subject if author else None,
                                            author_user=author.user if author else None)
                    session.add(row)
                    session.flush()
                    return self._version(name, row)
            except IntegrityError:
                continue  # another writer made the toolbox (or took the number) first: read it again
        raise Conflict(f"Toolbox {name!r} was changed by another request at the same time; try again.",
                       code="ToolboxConflict")

    def get(self, project: str, name: str) -> Toolbox:
        with self._read() as session:
            return self._toolbox(session, self._row(session, project, name))

    def toolboxes(self, project: str) -> list[Toolbox]:
        """Every toolbox of the project, oldest first (a project has few; callers page in memory)."""
        with self._read() as session:
            rows = session.scalars(select(ToolboxRow).where(ToolboxRow.project == project)
                                   .order_by(ToolboxRow.id)).all()
            return [self._toolbox(session, row) for row in rows]

    def versions(self, project: str, name: str) -> list[ToolboxVersion]:
        """Every version of a toolbox, oldest first."""
        with self._read() as session:
            toolbox = self._row(session, project, name)
            rows = session.scalars(select(ToolboxVersionRow).where(ToolboxVersionRow.toolbox_id == toolbox.id)
                                   .order_by(ToolboxVersionRow.number)).all()
            return [self._version(name, row) for row in rows]

    def get_version(self, project: str, name: str, version: str | None = None) -> ToolboxVersion:
        """One version; with none named, the toolbox's default version (what its MCP endpoint serves)."""
        with self._read() as session:
            toolbox = self._row(session, project, name)
            if version is None:
                return self._version(name, self._default_row(session, toolbox))
            return self._version(name, self._version_row(session, toolbox, _number(version), version))

    def set_default_version(self, project: str, name: str, version: str) -> Toolbox:
        with self._write() as session:
            toolbox = self._row(session, project, name)
            row = self._version_row(session, toolbox, _number(version), version)
            toolbox.default_version = row.number
            toolbox.updated_at = int(time.time())
            session.flush()
            return self._toolbox(session, toolbox)

    def delete(self, project: str, name: str) -> None:
        with self._write() as session:
            toolbox = self._row(session, project, name)
            session.execute(delete(ToolboxVersionRow).where(ToolboxVersionRow.toolbox_id == toolbox.id))
            session.execute(delete(ToolboxRow).where(ToolboxRow.id == toolbox.id))

    def delete_version(self, project: str, name: str, version: str) -> None:
        """Removes one version; the toolbox goes with its last one. The default version cannot go while
        others remain (point the default elsewhere first), as an endpoint must always serve something."""
        with self._write() as session:
            toolbox = self._row(session, project, name)
            row = self._version_row(session, toolbox, _number(version), version)
            remaining = session.scalar(select(func.count()).select_from(ToolboxVersionRow)
                                       .where(ToolboxVersionRow.toolbox_id == toolbox.id)) or 0
            if remaining > 1 and toolbox.default_version == row.number:
                raise Conflict(f"Version {version} is toolbox {name!r}'s default version. Make another version the "
                               "default first (update with default_version), or delete the whole toolbox.",
                               code="ToolboxDefaultVersion")
            session.execute(delete(ToolboxVersionRow).where(ToolboxVersionRow.id == row.id))
            if remaining <= 1:
                session.execute(delete(ToolboxRow).where(ToolboxRow.id == toolbox.id))

    # -- rows ----------------------------------------------------------------------------------------------

    def _row(self, session: Any, project: str, name: str) -> ToolboxRow:
        row = session.scalar(select(ToolboxRow).where(ToolboxRow.project == project, ToolboxRow.name == name))
        if row is None:
            raise toolbox_not_found(name)
        return row

    def _version_row(self, session: Any, toolbox: ToolboxRow, number: int | None,
                     shown: str | None) -> ToolboxVersionRow:
        row = None if number is None else session.scalar(select(ToolboxVersionRow).where(
            ToolboxVersionRow.toolbox_id == toolbox.id, ToolboxVersionRow.number == number))
        if row is None:
            raise NotFound(f"Toolbox {toolbox.name!r} has no version {shown!r}; list them with "
                           f"GET …/toolboxes/{toolbox.name}/versions (or `dockyard toolbox show {toolbox.name}`).",
                           code="ToolboxVersionNotFound")
        return row

    def _latest_row(self, session: Any, toolbox: ToolboxRow) -> ToolboxVersionRow:
        return session.scalar(select(ToolboxVersionRow).where(
            ToolboxVersionRow.toolbox_id == toolbox.id).order_by(ToolboxVersionRow.number.desc()).limit(1))

    def _default_row(self, session: Any, toolbox: ToolboxRow) -> ToolboxVersionRow:
        if toolbox.default_version is None:
            return self._latest_row(session, toolbox)
        return self._version_row(session, toolbox, toolbox.default_version, str(toolbox.default_version))

    def _toolbox(self, session: Any, row: ToolboxRow) -> Toolbox:
        latest = self._latest_row(session, row)
        return Toolbox(name=row.name, created_at=row.created_at, updated_at=row.updated_at,
                       default_version=str(row.default_version or latest.number),
                       latest=self._version(row.name, latest))

    def _version(self, name: str, row: ToolboxVersionRow) -> ToolboxVersion:
        return ToolboxVersion(name=name, version=str(row.number), created_at=row.created_at,
                              tools=[self._opened(entry) for entry in row.tools], description=row.description,
                              metadata=dict(row.metadata_ or {}), policies=row.policies,
                              author=owner_of(row.author_subject, row.author_user))

    def _sealed(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(dict(entry))
        if isinstance(stored.get("headers"), dict):
            stored["headers"] = {k: self._secrets.seal(str(v)) for k, v in stored["headers"].items()}
        if isinstance(stored.get("authorization"), str):
            stored["authorization"] = self._secrets.seal(stored["authorization"])
        return stored

    def _opened(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        opened = copy.deepcopy(dict(entry))
        if isinstance(opened.get("headers"), dict):
            opened["headers"] = {k: self._secrets.open(v) for k, v in opened["headers"].items()}
        if isinstance(opened.get("authorization"), str):
            opened["authorization"] = self._secrets.open(opened["authorization"])
        return opened


def _number(version: str) -> int | None:
    return int(version) if version.isdigit() and len(version) < 10 else None


def toolbox_not_found(name: str) -> NotFound:
    return NotFound(f"Toolbox {name!r} does not exist in this project. Create it with `dockyard toolbox add {name} "
                    "…` or client.toolboxes.create_version(name, tools=[…]).", code="ToolboxNotFound")
