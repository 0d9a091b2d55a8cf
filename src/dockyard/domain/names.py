"""Agent names, with Foundry's rule.

Foundry's SDK documents the rule as: starts and ends with a letter or digit, hyphens only in the
middle, at most 63 characters; the service further wants a letter first. The name becomes part of
URLs, container labels and DNS-like identifiers, so the rule is strict on purpose.
"""

from __future__ import annotations

import re

from dockyard.domain.errors import BadRequest

MAX_AGENT_NAME = 63
_AGENT_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?")

AGENT_NAME_RULE = (
    "An agent name uses letters, digits and hyphens, starts with a letter, ends with a letter or digit, "
    f"and has at most {MAX_AGENT_NAME} characters (for example \"my-hosted-agent\")."
)


def validate_agent_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > MAX_AGENT_NAME or not _AGENT_NAME.fullmatch(name):
        raise BadRequest(f"Invalid agent name {name!r}. {AGENT_NAME_RULE}", code="InvalidAgentName", param="agent_name")
    return name
