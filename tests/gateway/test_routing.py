"""Choosing the version that serves a new session: pins, traffic splits, latest active."""

from __future__ import annotations

import random

import pytest

from dockyard.domain.agents import AgentVersion, VersionError, VersionStatus
from dockyard.domain.definitions import HostedDefinition
from dockyard.domain.errors import BadRequest, Conflict
from dockyard.gateway.routing import pick_version, validate_endpoint

DEFINITION = HostedDefinition.from_wire({
    "kind": "hosted", "image": "localhost:5000/echo:v1",
    "container_protocol_versions": [{"protocol": "responses", "version": "v1"}],
})


def version(number: int, status: VersionStatus = VersionStatus.ACTIVE) -> AgentVersion:
    error = VersionError("CrashLoopBackOff", "boom") if status is VersionStatus.FAILED else None
    return AgentVersion("agent", number, 0, DEFINITION, status=status, error=error)


def split(*rules: tuple[str, float]) -> dict[str, object]:
    return {"version_selector": {"version_selection_rules": [
        {"type": "FixedRatio", "agent_version": v, "traffic_percentage": p} for v, p in rules]}}


def test_latest_active_by_default() -> None:
    versions = [version(1), version(2), version(3, VersionStatus.CREATING)]
    assert pick_version(versions, None, None).number == 2


def test_no_active_version_says_why() -> None:
    with pytest.raises(Conflict) as caught:
        pick_version([version(1, VersionStatus.FAILED)], None, None)
    assert caught.value.code == "NoActiveVersion" and "CrashLoopBackOff" in caught.value.message


def test_a_pin_wins_and_must_be_active() -> None:
    versions = [version(1), version(2), version(3, VersionStatus.CREATING)]
    assert pick_version(versions, split(("2", 100)), "1").number == 1
    with pytest.raises(Conflict):
        pick_version(versions, None, "3")
    with pytest.raises(BadRequest):
        pick_version(versions, None, "9")


def test_fixed_ratio_split_follows_the_percentages() -> None:
    versions = [version(1), version(2)]
    rng = random.Random(7)
    draws = [pick_version(versions, split(("1", 80), ("2", 20)), None, rng.random()).number for _ in range(2000)]
    share = draws.count(1) / len(draws)
    assert 0.77 < share < 0.83


def test_one_draw_decides_the_split() -> None:
    # A request may ask twice (cache, then store) and must get the same answer both times.
    versions = [version(1), version(2)]
    eighty_twenty = split(("1", 80), ("2", 20))
    picked = [pick_version(versions, eighty_twenty, None, draw).number for draw in (0.0, 0.79, 0.79, 0.8, 0.99)]
    assert picked == [1, 1, 1, 2, 2]


@pytest.mark.parametrize(
    ("endpoint", "words"),
    [
        (split(("1", 80), ("2", 30)), "sum to 110"),
        (split(("1", 50), ("9", 50)), "9 does not exist"),
        (split(("1", 50), ("3", 50)), "3 is creating"),
        (split(("1", 120)), "between 0 and 100"),
        ({"version_selector": {"version_selection_rules": [{"type": "Weighted", "agent_version": "1"}]}}, "FixedRatio"),
        ({"version_selector": {"version_selection_rules": []}}, "non-empty"),
    ],
)
def test_invalid_splits_are_refused(endpoint: dict[str, object], words: str) -> None:
    versions = [version(1), version(2), version(3, VersionStatus.CREATING)]
    with pytest.raises(BadRequest) as caught:
        validate_endpoint(endpoint, versions)
    assert words in caught.value.message


def test_a_valid_split_is_kept_as_sent() -> None:
    endpoint = split(("1", 80), ("2", 20))
    assert validate_endpoint(endpoint, [version(1), version(2)]) == endpoint
