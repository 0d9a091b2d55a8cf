"""Sessions: one sandbox per conversation with an agent version, released when idle, resumed on demand.

A session is `active` while its sandbox runs, `idle` once released after `idle_timeout_seconds`
without a request (its state volume is kept and the next request resumes it), and gone when deleted.
Ids are 32 lowercase hex characters, the form Microsoft's hosting adapter insists on when hosted.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass

from dockyard.domain.errors import BadRequest

DEFAULT_IDLE_TIMEOUT_SECONDS = 15 * 60
# The service's range for session_configuration.idle_timeout_seconds (azure-ai-projects 2.x SessionConfiguration).
IDLE_TIMEOUT_MIN = 120
IDLE_TIMEOUT_MAX = 14400
# dockyard itself takes shorter timeouts, down to a second, so a test can watch a release happen; `dockyard
# validate` still flags anything under Foundry's minimum, which Foundry would refuse.
LOCAL_IDLE_TIMEOUT_MIN = 1
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class SessionStatus(str, enum.Enum):
    CREATING = "creating"
    ACTIVE = "active"
    IDLE = "idle"
    UPDATING = "updating"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Session:
    id: str
    project: str
    agent_name: str
    version_uid: str
    version: str
    status: SessionStatus
    idle_timeout_seconds: int
    created_at: int
    last_accessed_at: float
    stopped_at: int | None = None
    # Who made it (see dockyard.identity.ownership); None for sessions made before owners were recorded.
    owner_subject: str | None = None
    owner_user: str | None = None

    @property
    def expires_at(self) -> int:
        return int(self.last_accessed_at + self.idle_timeout_seconds)


def new_session_id() -> str:
    return uuid.uuid4().hex


def validate_session_id(session_id: object) -> str:
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        raise BadRequest(
            f"Session id {session_id!r} is not valid: use up to 64 letters, digits, '-' or '_' "
            "(dockyard makes 32 hex characters when it creates one).",
            code="InvalidSessionId",
            param="agent_session_id",
        )
    return session_id


def validate_session_configuration(configuration: object) -> None:
    """A definition's `session_configuration`, refused at the edge rather than ignored when wrong."""
    if configuration is None:
        return
    if not isinstance(configuration, dict):
        raise BadRequest("definition.session_configuration must be an object, for example "
                         '{"idle_timeout_seconds": 900}.', code="InvalidSessionConfiguration",
                         param="definition.session_configuration")
    value = configuration.get("idle_timeout_seconds")
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not LOCAL_IDLE_TIMEOUT_MIN <= value <= IDLE_TIMEOUT_MAX:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "…"
        raise BadRequest(
            f"definition.session_configuration.idle_timeout_seconds is {shown}; use a whole number of seconds "
            f"from {IDLE_TIMEOUT_MIN} to {IDLE_TIMEOUT_MAX} (Foundry's range; default {DEFAULT_IDLE_TIMEOUT_SECONDS}).",
            code="InvalidSessionConfiguration", param="definition.session_configuration.idle_timeout_seconds",
        )


def idle_timeout_from(options: dict[str, object]) -> int:
    """`session_configuration.idle_timeout_seconds` of a definition, else Foundry's 15 minutes."""
    configuration = options.get("session_configuration")
    if isinstance(configuration, dict):
        value = configuration.get("idle_timeout_seconds")
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_IDLE_TIMEOUT_SECONDS
