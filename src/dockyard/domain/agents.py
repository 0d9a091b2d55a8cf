"""Agents and their versions, as the control plane sees them.

A version is immutable once created: any change is a new version. Its number is a per-agent counter
that never goes back, so `"3"` always means the same definition even after `"2"` is deleted. Its
status follows Foundry's lifecycle, and only the runtime's observations may move it forward: the
control plane alone never claims a version is `active`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from dockyard.domain.definitions import HostedDefinition
from dockyard.domain.errors import BadRequest

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_DESCRIPTION = 512


class VersionStatus(str, enum.Enum):
    CREATING = "creating"
    ACTIVE = "active"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"


_TRANSITIONS: dict[VersionStatus, frozenset[VersionStatus]] = {
    VersionStatus.CREATING: frozenset({VersionStatus.ACTIVE, VersionStatus.FAILED, VersionStatus.DELETING}),
    VersionStatus.ACTIVE: frozenset({VersionStatus.FAILED, VersionStatus.CREATING, VersionStatus.DELETING}),
    VersionStatus.FAILED: frozenset({VersionStatus.CREATING, VersionStatus.ACTIVE, VersionStatus.DELETING}),
    VersionStatus.DELETING: frozenset({VersionStatus.DELETED}),
    VersionStatus.DELETED: frozenset(),
}


def can_transition(current: VersionStatus, target: VersionStatus) -> bool:
    return current == target or target in _TRANSITIONS[current]


@dataclass(frozen=True)
class VersionError:
    code: str
    message: str


@dataclass(frozen=True)
class AgentVersion:
    agent_name: str
    number: int
    created_at: int
    definition: HostedDefinition
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    status: VersionStatus = VersionStatus.CREATING
    error: VersionError | None = None

    @property
    def id(self) -> str:
        return version_id(self.agent_name, self.number)

    @property
    def version(self) -> str:
        return str(self.number)


@dataclass(frozen=True)
class Agent:
    name: str
    created_at: int
    latest: AgentVersion
    enabled: bool = True
    endpoint: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.name


_MAX_VERSION_NUMBER = 2**63 - 1
_MAX_VERSION_DIGITS = len(str(_MAX_VERSION_NUMBER))


def version_id(agent_name: str, number: int) -> str:
    return f"{agent_name}:{number}"


def parse_version_number(text: str, agent_name: str | None = None) -> int | None:
    """The number in a version string ("7") or version id ("agent:7"), or None if it has none.

    A version id names its agent; given `agent_name`, an id of another agent's version is None.
    """
    name, _, tail = text.rpartition(":")
    if name and agent_name is not None and name != agent_name:
        return None
    # Longer than the store's 64-bit integers can be: no such version can exist (and SQLite would overflow).
    if not (tail.isascii() and tail.isdigit()) or tail.startswith("0") or len(tail) > _MAX_VERSION_DIGITS:
        return None
    number = int(tail)
    return number if number <= _MAX_VERSION_NUMBER else None


def validate_metadata(metadata: Any) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise BadRequest("'metadata' must be an object of string keys and values.", code="InvalidMetadata",
                         param="metadata")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise BadRequest(
            f"'metadata' has {len(metadata)} pairs; at most {MAX_METADATA_PAIRS} are allowed.",
            code="InvalidMetadata",
            param="metadata",
        )
    for key, value in metadata.items():
        if (not isinstance(key, str) or not isinstance(value, str)
                or len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE):
            raise BadRequest(
                f"metadata[{key!r}] is invalid: keys are strings of at most {MAX_METADATA_KEY} characters and values "
                f"strings of at most {MAX_METADATA_VALUE}.",
                code="InvalidMetadata",
                param="metadata",
            )
    return dict(metadata)


def validate_description(description: Any) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise BadRequest(
            f"'description' must be a string of at most {MAX_DESCRIPTION} characters.",
            code="InvalidDescription",
            param="description",
        )
    return description
