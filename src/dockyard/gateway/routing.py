"""Which version serves a request: a pinned one, a traffic split, or the latest active one.

The split is the agent endpoint's `version_selector`: `FixedRatio` rules, each a version and a
percentage, summing to 100. Each new session draws once; the session then keeps its version, so a
conversation never hops between versions mid-way.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from dockyard.domain.agents import AgentVersion, VersionStatus
from dockyard.domain.errors import BadRequest, Conflict


def selection_rules(endpoint: dict[str, Any] | None) -> list[tuple[str, float]]:
    selector = (endpoint or {}).get("version_selector") or {}
    rules = selector.get("version_selection_rules") or []
    return [(str(rule["agent_version"]), float(rule["traffic_percentage"])) for rule in rules]


def validate_endpoint(endpoint: object, versions: Sequence[AgentVersion]) -> dict[str, Any]:
    """An agent_endpoint update, checked: every rule names an existing active version, and they sum to 100."""
    if not isinstance(endpoint, dict):
        raise BadRequest("'agent_endpoint' must be an object.", code="InvalidAgentEndpoint", param="agent_endpoint")
    selector = endpoint.get("version_selector")
    if selector is None:
        return endpoint
    rules = selector.get("version_selection_rules") if isinstance(selector, dict) else None
    if not isinstance(rules, list) or not rules:
        raise BadRequest("version_selector.version_selection_rules must be a non-empty list.",
                         code="InvalidVersionSelector", param="agent_endpoint.version_selector")
    by_version = {v.version: v for v in versions}
    total = 0.0
    for rule in rules:
        if not isinstance(rule, dict) or rule.get("type") != "FixedRatio":
            raise BadRequest("Each rule must be {\"type\": \"FixedRatio\", \"agent_version\", "
                             f"\"traffic_percentage\"}}; got {rule!r}.",
                             code="InvalidVersionSelector", param="agent_endpoint.version_selector")
        version = str(rule.get("agent_version"))
        percentage = rule.get("traffic_percentage")
        if not isinstance(percentage, (int, float)) or not 0 <= percentage <= 100:
            raise BadRequest(f"traffic_percentage of version {version} must be between 0 and 100.",
                             code="InvalidVersionSelector", param="agent_endpoint.version_selector")
        target = by_version.get(version)
        if target is None or target.status is not VersionStatus.ACTIVE:
            state = "does not exist" if target is None else f"is {target.status.value}"
            raise BadRequest(f"Version {version} {state}; traffic can only go to active versions.",
                             code="InvalidVersionSelector", param="agent_endpoint.version_selector")
        total += percentage
    if abs(total - 100) > 1e-9:
        raise BadRequest(f"traffic_percentage values sum to {total:g}; they must sum to 100.",
                         code="InvalidVersionSelector", param="agent_endpoint.version_selector")
    return endpoint


def pick_version(
    versions: Sequence[AgentVersion], endpoint: dict[str, Any] | None, pinned: str | None,
    draw: float | None = None,
) -> AgentVersion:
    """The version a request goes to. `draw` (uniform in [0, 1)) decides a split: a request that asks
    twice (from a cache, then from the store) passes the same draw, so it is counted once."""
    by_version = {v.version: v for v in versions}
    if pinned is not None:
        chosen = by_version.get(str(pinned))
        if chosen is None:
            raise BadRequest(f"Version {pinned!r} of this agent does not exist.", code="AgentVersionNotFound")
        return _active(chosen)
    rules = [(v, w) for v, w in selection_rules(endpoint) if w > 0 and v in by_version]
    if rules:
        point = (random.random() if draw is None else draw) * sum(weight for _, weight in rules)
        for name, weight in rules:
            point -= weight
            if point < 0:
                return _active(by_version[name])
        return _active(by_version[rules[-1][0]])
    active = [v for v in versions if v.status is VersionStatus.ACTIVE]
    if not active:
        latest = max(versions, key=lambda v: v.number)
        why = f" ({latest.error.code}: {latest.error.message})" if latest.error else ""
        raise Conflict(f"The agent has no active version to serve this request; its latest, {latest.version}, is "
                       f"{latest.status.value}{why}.", code="NoActiveVersion")
    return max(active, key=lambda v: v.number)


def _active(version: AgentVersion) -> AgentVersion:
    if version.status is not VersionStatus.ACTIVE:
        raise Conflict(f"Version {version.version} is {version.status.value}, not active; it cannot serve requests.",
                       code="AgentVersionNotActive")
    return version
