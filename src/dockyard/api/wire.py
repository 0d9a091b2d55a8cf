"""Domain objects as the SDKs deserialize them, per api-version."""

from __future__ import annotations

from typing import Any

from dockyard.domain.agents import Agent, AgentVersion
from dockyard.domain.definitions import WireShape
from dockyard.domain.paging import Page


def version_to_wire(version: AgentVersion, shape: WireShape) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "object": "agent.version",
        "id": version.id,
        "name": version.agent_name,
        "version": version.version,
        "description": version.description,
        "created_at": version.created_at,
        "metadata": version.metadata,
        "definition": version.definition.to_wire(shape),
        "status": version.status.value,
    }
    if version.error is not None:
        wire["error"] = {"code": version.error.code, "message": version.error.message}
    return wire


def agent_to_wire(agent: Agent, shape: WireShape) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "object": "agent",
        "id": agent.id,
        "name": agent.name,
        "versions": {"latest": version_to_wire(agent.latest, shape)},
    }
    if shape is WireShape.V1:
        wire["state"] = "enabled" if agent.enabled else "disabled"
        if agent.endpoint is not None:
            wire["agent_endpoint"] = agent.endpoint
    return wire


def page_to_wire(page: Page[Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    # An empty page must say `last_id: null`: the SDKs stop paging only when last_id is empty.
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": page.has_more,
    }


def agent_deleted(name: str) -> dict[str, Any]:
    return {"object": "agent.deleted", "name": name, "deleted": True}


def version_deleted(name: str, version: str) -> dict[str, Any]:
    return {"object": "agent.version.deleted", "name": name, "version": version, "deleted": True}
