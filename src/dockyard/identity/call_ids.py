"""`x-agent-foundry-call-id`: the per-request handle a sandbox forwards so the platform knows whose call it is.

Foundry mints a fresh call id for each request it sends a sandbox and records it against the end user;
Microsoft's adapter forwards it, unparsed, on every call back to the project (response storage,
toolboxes), and the platform resolves it to "this agent, this caller" ("an identity handle, not a
per-response binding": azure-ai-agentserver-responses, `_foundry_provider.py`). dockyard records nothing:
the id carries its own record, signed with an HMAC under the identity secret, as agent identity headers
do (dockyard.identity.agents). Any replica resolves it without the store, and the request path pays a
hash, not a write.

What it says: the version whose sandbox got the request (so a call id works only with that sandbox's own
token), the project, the agent, and the owner of the call (dockyard.identity.ownership). A random part
keeps each request's id distinct, as Foundry's are. It does not expire: the adapter replays the id of the
call that started a response when it recovers that response after a crash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import random
from dataclasses import dataclass

from dockyard.identity.ownership import Owner

_PREFIX = "dyc1."
# Correlation, not secrecy (the MAC is the secret part): the same seeded generator as request ids.
_nonces = random.Random(os.urandom(32))


@dataclass(frozen=True)
class CallScope:
    """Whose a call is: the version that received it, its project and agent, and the caller it acted for."""

    version_uid: str
    project: str
    agent_name: str
    owner: Owner


def mint_call_id(identity_secret: str, scope: CallScope) -> str:
    fields = [scope.version_uid, scope.project, scope.agent_name, scope.owner.subject, scope.owner.user,
              f"{_nonces.getrandbits(64):016x}"]
    payload = base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{_PREFIX}{payload}.{_mac(identity_secret, payload)}"


def resolve_call_id(identity_secret: str, call_id: str) -> CallScope | None:
    """The scope a call id was minted for, or None if this dockyard did not mint it (or it was altered)."""
    if not call_id.startswith(_PREFIX):
        return None
    payload, _, mac = call_id[len(_PREFIX):].partition(".")
    if not payload or not hmac.compare_digest(mac.encode(), _mac(identity_secret, payload).encode()):
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        uid, project, agent_name, subject, user, _nonce = fields
    except (ValueError, TypeError, binascii.Error):
        return None  # signed by us, so this means a format this version does not read
    return CallScope(uid, project, agent_name, Owner(subject, user))


def _mac(identity_secret: str, payload: str) -> str:
    return hmac.new(identity_secret.encode(), f"dockyard-call:{payload}".encode(), hashlib.sha256).hexdigest()[:40]
