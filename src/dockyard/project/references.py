"""`${VAR}` references in agent.yaml values, resolved from the environment at deploy time as azd does.

`${NAME}`, `${NAME:-default}` (default when unset or empty) and `${NAME-default}` (when unset) are resolved;
`$${...}` is an escaped literal `${...}`; Foundry's own server-side `${{...}}` expressions pass through
untouched for Foundry to resolve. Only the braced form is a reference, so a `$` in a value stays as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# `$${...}` is an escaped literal, `${{...}}` a Foundry server-side expression, `${NAME}` / `${NAME:-default}`
# / `${NAME-default}` a reference resolved here.
_REFERENCE = re.compile(
    r"\$\$\{|\$\{\{.*?\}\}|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}", re.S
)


class Unset(Exception):
    """A referenced variable is not set and has no default."""

    def __init__(self, variable: str) -> None:
        self.variable = variable


def references(value: str) -> list[str]:
    """The variable names `value` refers to with `${NAME}`."""
    return [m["name"] for m in _REFERENCE.finditer(value) if m["name"]]


def is_reference(value: str) -> bool:
    """True where `value` takes its content from somewhere else: a `${VAR}` or a Foundry `${{...}}`."""
    return any(m[0] not in ("$${",) for m in _REFERENCE.finditer(value))


def literal_parts(value: str) -> str:
    """`value` without its `${...}` and `${{...}}` references: the part that is written in the file."""
    return _REFERENCE.sub(lambda m: "${" if m[0] == "$${" else " ", value)


def expand(value: str, environ: Mapping[str, str]) -> str:
    """Resolve `${NAME}` references in `value` from `environ`; `Unset` for one that is unset with no default."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$${":
            return "${"
        name = match["name"]
        if name is None:
            return match[0]  # ${{...}}: Foundry resolves it, not us
        current = environ.get(name)
        op = match["op"]
        if op == ":-" and not current:
            return match["default"]
        if op == "-" and current is None:
            return match["default"]
        if current is None:
            raise Unset(name)
        return current

    return _REFERENCE.sub(replace, value)
