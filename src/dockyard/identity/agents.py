"""Managed identities for agent containers, each scoped to one agent version.

A container gets its own IDENTITY_HEADER: the version's uid and an HMAC of it under dockyard's
identity secret. The identity endpoint can therefore tell, without any stored state, which version
is asking, and the token it issues says so (`dockyard_role: agent`). The API accepts such tokens only
where an agent may act, never for managing agents: a compromised agent cannot redeploy itself.
"""

from __future__ import annotations

import hashlib
import hmac

AGENT_ROLE = "agent"
_PREFIX = "agent."


def agent_identity_header(identity_secret: str, version_uid: str) -> str:
    return f"{_PREFIX}{version_uid}.{_mac(identity_secret, version_uid)}"


def agent_from_identity_header(identity_secret: str, header: str) -> str | None:
    """The version uid an agent identity header speaks for, or None if it is not a valid one."""
    if not header.startswith(_PREFIX):
        return None
    uid, _, mac = header[len(_PREFIX):].partition(".")
    if not uid or not hmac.compare_digest(mac.encode(), _mac(identity_secret, uid).encode()):
        return None
    return uid


def _mac(identity_secret: str, version_uid: str) -> str:
    return hmac.new(identity_secret.encode(), f"dockyard-agent:{version_uid}".encode(), hashlib.sha256).hexdigest()
