from __future__ import annotations

import itertools

import pytest

from dockyard.domain.agents import (
    Agent,
    AgentVersion,
    VersionStatus,
    can_transition,
    parse_version_number,
    validate_description,
    validate_metadata,
    version_id,
)
from dockyard.domain.definitions import HostedDefinition
from dockyard.domain.errors import BadRequest
from dockyard.domain.protocols import ProtocolVersion

S = VersionStatus

ALLOWED = {
    (S.CREATING, S.ACTIVE),
    (S.CREATING, S.FAILED),
    (S.CREATING, S.DELETING),
    (S.ACTIVE, S.FAILED),
    (S.ACTIVE, S.CREATING),
    (S.ACTIVE, S.DELETING),
    (S.FAILED, S.CREATING),
    (S.FAILED, S.ACTIVE),
    (S.FAILED, S.DELETING),
    (S.DELETING, S.DELETED),
}


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (S.CREATING, S.ACTIVE, True),
        (S.CREATING, S.FAILED, True),
        (S.FAILED, S.ACTIVE, True),
        (S.ACTIVE, S.DELETING, True),
        (S.DELETING, S.DELETED, True),
        (S.ACTIVE, S.ACTIVE, True),
        (S.DELETED, S.DELETED, True),
        (S.DELETED, S.ACTIVE, False),
        (S.DELETED, S.CREATING, False),
        (S.DELETED, S.DELETING, False),
        (S.DELETING, S.ACTIVE, False),
        (S.DELETING, S.CREATING, False),
        (S.DELETING, S.FAILED, False),
        (S.CREATING, S.DELETED, False),
        (S.ACTIVE, S.DELETED, False),
        (S.FAILED, S.DELETED, False),
    ],
)
def test_can_transition(current: VersionStatus, target: VersionStatus, allowed: bool) -> None:
    assert can_transition(current, target) is allowed


@pytest.mark.parametrize(("current", "target"), list(itertools.product(VersionStatus, VersionStatus)))
def test_transition_table_is_exactly_the_lifecycle(current: VersionStatus, target: VersionStatus) -> None:
    assert can_transition(current, target) is (current == target or (current, target) in ALLOWED)


def test_status_values_are_foundrys() -> None:
    assert [s.value for s in VersionStatus] == ["creating", "active", "failed", "deleting", "deleted"]


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("7", 7),
        ("1", 1),
        ("123", 123),
        ("agent:7", 7),
        ("my-agent:42", 42),
        ("a:b:3", 3),
        ("07", None),
        ("0", None),
        ("agent:07", None),
        ("x", None),
        ("", None),
        ("agent:", None),
        ("agent", None),
        ("-1", None),
        ("+1", None),
        ("1.0", None),
        (" 7", None),
        ("7:agent", None),
    ],
)
def test_parse_version_number(text: str, number: int | None) -> None:
    assert parse_version_number(text) == number


def test_parse_version_number_ignores_non_ascii_digits() -> None:
    assert parse_version_number("agent:²") is None


def test_version_id() -> None:
    assert version_id("my-agent", 3) == "my-agent:3"


def test_version_and_agent_ids() -> None:
    definition = HostedDefinition(protocols=(ProtocolVersion("responses", "v1"),), cpu="1", memory="2Gi",
                                  image="app:v1")
    version = AgentVersion(agent_name="my-agent", number=3, created_at=0, definition=definition)
    assert (version.id, version.version, version.status) == ("my-agent:3", "3", VersionStatus.CREATING)
    assert Agent(name="my-agent", created_at=0, latest=version).id == "my-agent"


# -- metadata -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"team": "search"},
        {f"k{i}": "v" for i in range(16)},
        {"k" * 64: "v" * 512},
        {"": ""},
    ],
)
def test_valid_metadata(metadata: dict[str, str]) -> None:
    assert validate_metadata(metadata) == metadata


def test_no_metadata_is_empty() -> None:
    assert validate_metadata(None) == {}


def test_metadata_is_copied() -> None:
    metadata = {"a": "b"}
    assert validate_metadata(metadata) is not metadata


@pytest.mark.parametrize(
    ("metadata", "mentions"),
    [
        ({f"k{i}": "v" for i in range(17)}, "17 pairs"),
        ({"k" * 65: "v"}, "64"),
        ({"k": "v" * 513}, "512"),
        ({"k": 1}, "'k'"),
        ({"k": None}, "'k'"),
        ({"k": ["v"]}, "'k'"),
        (["k", "v"], "object"),
        ("k=v", "object"),
    ],
)
def test_invalid_metadata(metadata: object, mentions: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_metadata(metadata)
    error = info.value
    assert error.code == "InvalidMetadata"
    assert error.param == "metadata"
    assert error.status_code == 400
    assert mentions in error.message


def test_metadata_with_non_string_key_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        validate_metadata({1: "v"})


# -- description --------------------------------------------------------------------------------------


@pytest.mark.parametrize("description", [None, "", "An agent.", "d" * 512])
def test_valid_description(description: str | None) -> None:
    assert validate_description(description) == description


@pytest.mark.parametrize("description", ["d" * 513, 7, ["d"], {"text": "d"}])
def test_invalid_description(description: object) -> None:
    with pytest.raises(BadRequest) as info:
        validate_description(description)
    error = info.value
    assert error.code == "InvalidDescription"
    assert error.param == "description"
    assert error.status_code == 400
    assert "512" in error.message
