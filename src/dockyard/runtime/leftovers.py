"""Sandboxes that no dockyard looks after any more, found on the engine by their labels.

Containers outlive a stop on purpose (the next start adopts them), so two commands take them away:
`dockyard down` removes one home's sandboxes (and with `purge` its session volumes), and `dockyard
prune` removes those whose home is gone, or holds another instance now (a home removed and made anew).
Every container and volume dockyard makes carries `io.dockyard.instance` and `io.dockyard.home`;
ones made before the home label existed cannot be placed and are only counted.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.errors import APIError, NotFound

LABEL = "io.dockyard"
INSTANCE_LABEL = f"{LABEL}.instance"
HOME_LABEL = f"{LABEL}.home"
FILES_HELPER_LABEL = f"{LABEL}.files-helper-of"
BUILD_LABEL = f"{LABEL}.build-of"
# Short-lived helpers (session files, dependency builds) name their instance under a label of their own.
_HELPER_LABELS = (FILES_HELPER_LABEL, BUILD_LABEL)


@dataclass(frozen=True)
class Leftover:
    kind: str  # "container" or "volume"
    name: str
    instance: str
    home: str | None
    reason: str


def of_instance(client: Any, instance_id: str, *, volumes: bool) -> builtins.list[Leftover]:
    """Everything one dockyard instance made: its sandboxes, file helpers, and (if asked) session volumes."""
    found = [_container(c, "belongs to this home") for c in _containers(client) if _instance_of(c) == instance_id]
    if volumes:
        found += [_volume(v, "belongs to this home") for v in _volumes(client)
                  if (v.attrs.get("Labels") or {}).get(INSTANCE_LABEL) == instance_id]
    return found


def orphaned(client: Any) -> tuple[builtins.list[Leftover], int]:
    """Sandboxes and volumes whose home is gone or belongs to another instance; and how many cannot be
    placed (made before the home label)."""
    found: builtins.list[Leftover] = []
    unplaced = 0
    for container in _containers(client):
        labels = container.labels
        instance = _instance_of(container)
        reason = _why_orphaned(instance, labels.get(HOME_LABEL))
        if instance and labels.get(HOME_LABEL) is None:
            unplaced += 1
        elif reason:
            found.append(_container(container, reason))
    for volume in _volumes(client):
        labels = volume.attrs.get("Labels") or {}
        reason = _why_orphaned(labels.get(INSTANCE_LABEL), labels.get(HOME_LABEL))
        if labels.get(INSTANCE_LABEL) and labels.get(HOME_LABEL) is None:
            unplaced += 1
        elif reason:
            found.append(_volume(volume, reason))
    return found, unplaced


def remove(client: Any, leftovers: builtins.list[Leftover]) -> None:
    """Containers first (a volume in use cannot go), each removal on its own: one failure stops none."""
    for leftover in sorted(leftovers, key=lambda item: item.kind != "container"):
        try:
            if leftover.kind == "container":
                client.containers.get(leftover.name).remove(force=True, v=True)
            else:
                client.volumes.get(leftover.name).remove(force=True)
        except NotFound:
            pass  # gone meanwhile: that was the point


def _why_orphaned(instance: str | None, home: str | None) -> str | None:
    if not instance or home is None:
        return None
    instance_file = Path(home) / "instance-id"
    try:
        current = instance_file.read_text().strip()
    except FileNotFoundError:
        return f"its home {home} no longer exists" if not Path(home).exists() else f"{home} is no dockyard home now"
    except OSError:
        return None  # unreadable (another user's home): not ours to judge
    return None if current == instance else f"{home} now belongs to another dockyard instance"


def _containers(client: Any) -> builtins.list[Any]:
    try:
        return [container for label in (INSTANCE_LABEL, *_HELPER_LABELS)
                for container in client.containers.list(all=True, filters={"label": label})]
    except APIError as exc:
        raise RuntimeError(f"the container engine refused to list containers: {exc}") from None


def _volumes(client: Any) -> builtins.list[Any]:
    try:
        return list(client.volumes.list(filters={"label": INSTANCE_LABEL}))
    except APIError as exc:
        raise RuntimeError(f"the container engine refused to list volumes: {exc}") from None


def _instance_of(container: Any) -> str:
    labels = container.labels
    return str(labels.get(INSTANCE_LABEL) or next((labels[k] for k in _HELPER_LABELS if labels.get(k)), ""))


def _container(container: Any, reason: str) -> Leftover:
    return Leftover("container", container.name, _instance_of(container), container.labels.get(HOME_LABEL), reason)


def _volume(volume: Any, reason: str) -> Leftover:
    labels = volume.attrs.get("Labels") or {}
    return Leftover("volume", volume.name, labels.get(INSTANCE_LABEL, ""), labels.get(HOME_LABEL), reason)
