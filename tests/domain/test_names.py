from __future__ import annotations

import pytest

from dockyard.domain.errors import BadRequest
from dockyard.domain.names import AGENT_NAME_RULE, MAX_AGENT_NAME, validate_agent_name


@pytest.mark.parametrize(
    "name",
    ["a", "Z", "agent", "my-hosted-agent", "Agent7", "a1", "a--b", "a-1", "x" * 63, "a" + "-" * 61 + "b"],
)
def test_valid_agent_names(name: str) -> None:
    assert validate_agent_name(name) == name


def test_max_agent_name_is_63() -> None:
    assert MAX_AGENT_NAME == 63


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 64,
        "a" + "-" * 62 + "b",
        "1agent",
        "7",
        "-agent",
        "agent-",
        "-",
        "my_agent",
        "my.agent",
        "my agent",
        " agent",
        "agent ",
        "agënt",
        "агент",
        "agent/1",
        "agent:1",
    ],
)
def test_invalid_agent_names(name: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_agent_name(name)
    error = info.value
    assert error.code == "InvalidAgentName"
    assert error.status_code == 400
    assert error.param == "agent_name"
    assert repr(name) in error.message
    assert AGENT_NAME_RULE in error.message


@pytest.mark.parametrize("name", [None, 7, ["agent"]])
def test_non_string_agent_names(name: object) -> None:
    with pytest.raises(BadRequest) as info:
        validate_agent_name(name)  # type: ignore[arg-type]
    assert info.value.code == "InvalidAgentName"


def test_trailing_newline_is_rejected() -> None:
    with pytest.raises(BadRequest):
        validate_agent_name("agent\n")


def test_rule_states_the_constraints() -> None:
    rule = AGENT_NAME_RULE
    assert "letters, digits and hyphens" in rule
    assert "starts with a letter" in rule
    assert "ends with a letter or digit" in rule
    assert "63 characters" in rule
