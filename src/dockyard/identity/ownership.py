"""Who a request acts for, and which sessions, responses and invocations it may reach (issue 13).

Foundry's model ("Isolate hosted agent sessions per user", "Multiplex multiple users in one hosted
agent session", and azure-ai-projects' `sample_agent_user_identity_isolation.py`), which dockyard follows:

- A session belongs to the **caller** whose token made it (the token's subject: the operator, a named
  user, or an agent's own identity). When the caller delegates, naming its end user in
  `x-ms-user-identity`, the session is the delegated side's: any end user the same caller delegates for may
  enter it (that is how a middle tier pools users on a few sessions), the caller itself without the
  header may not, nor may any other caller. Foundry draws the same line: a hard boundary between callers
  and between delegated and undelegated use, none between one caller's delegated users.
- A response or invocation belongs to the caller **and** the delegated end user exactly: another end
  user of the same caller cannot read, cancel, delete or continue (`previous_response_id`) it.
- The operator (the identity `dockyard env` hands out) may list, get, stop and delete any session, as
  Foundry's project-level role may; it does not read another caller's response content, invocations or
  session files, and it cannot enter another caller's session. Sessions and routes made before owners
  were recorded belong to the operator.

Whatever is not the caller's answers exactly as what does not exist (404, the same body), so ids
cannot be probed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.domain.errors import BadRequest

# The subject of tokens issued for the home's identity secret with no client_id: `dockyard env`'s identity.
OPERATOR_SUBJECT = "local-developer"
# Named users (`client_id` at the identity endpoint, AZURE_CLIENT_ID for DefaultAzureCredential).
USER_SUBJECT_PREFIX = "user:"
USER_ROLE = "user"
USER_IDENTITY_HEADER = "x-ms-user-identity"
# Foundry's rule for x-ms-user-identity: 1-256 letters, digits and . _ : - @.
_DELEGATED_USER = re.compile(r"[A-Za-z0-9._:@-]{1,256}")
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@dataclass(frozen=True)
class Owner:
    """Whose a session, response or invocation is: the caller's subject and, if delegated, its end user."""

    subject: str
    user: str | None = None


@dataclass(frozen=True)
class Caller:
    """The request's principal as ownership sees it."""

    subject: str
    # The end user named in x-ms-user-identity; None when the caller acts for itself.
    user: str | None
    operator: bool
    # The token's object id: what the sandbox sees as the user when nobody is delegated.
    oid: str

    @property
    def owner(self) -> Owner:
        return Owner(self.subject, self.user)

    @property
    def end_user(self) -> str:
        """What the sandbox sees as `x-agent-user-id`: the delegated user, else the caller's object id."""
        return self.user if self.user is not None else self.oid


def delegated_user(value: str | None) -> str | None:
    """An `x-ms-user-identity` value, checked as Foundry checks it; None when absent."""
    if value is None:
        return None
    if not _DELEGATED_USER.fullmatch(value):
        raise BadRequest(
            f"The {USER_IDENTITY_HEADER} header must be 1 to 256 letters, digits or the characters . _ : - @ "
            "(a stable id your service gives its signed-in end user).",
            code="InvalidUserIdentity", param=USER_IDENTITY_HEADER,
        )
    return value


def user_subject(name: str) -> str:
    """The token subject of a named user; the name as `client_id` asks for it, checked."""
    if not _USER_NAME.fullmatch(name):
        raise BadRequest(
            "client_id names a user: 1 to 64 letters, digits or . _ @ - (starting with a letter or digit).",
            code="InvalidClientId", param="client_id",
        )
    return f"{USER_SUBJECT_PREFIX}{name}"


def may_enter(caller: Caller, owner: Owner | None) -> bool:
    """Whether the caller may use a session: invoke in it, reach its files, name it in a request."""
    if owner is None:
        return caller.operator
    return owner.subject == caller.subject and (owner.user is None) == (caller.user is None)


def may_manage(caller: Caller, owner: Owner | None) -> bool:
    """Whether the caller may see a session in a list, get, stop or delete it: its own, or the operator."""
    return caller.operator or may_enter(caller, owner)


def may_follow(caller: Caller, owner: Owner | None) -> bool:
    """Whether the caller may read, cancel, delete or continue a response (or get or cancel an invocation)."""
    if owner is None:
        return caller.operator
    return owner == caller.owner


def owner_of(subject: str | None, user: str | None) -> Owner | None:
    """An owner as the store keeps it (two columns; no subject means made before owners were recorded)."""
    return Owner(subject, user) if subject is not None else None
