"""Runtime names and the rule that picks an interpreter: exact, else the newest below, else the oldest above."""

from __future__ import annotations

import pytest

from dockyard.domain.code_runtimes import PYTHON_RUNTIMES, nearest_version, parse_python_runtime, runtime_name
from dockyard.domain.errors import BadRequest


@pytest.mark.parametrize("name", PYTHON_RUNTIMES)
def test_every_foundry_runtime_parses_and_round_trips(name: str) -> None:
    assert runtime_name(parse_python_runtime(name)) == name


@pytest.mark.parametrize("name", ["python_3_10", "python_3_15", "python3.12", "python_3_12 ", "node_20", ""])
def test_other_names_are_refused_with_the_accepted_ones(name: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_python_runtime(name)
    assert "python_3_11, python_3_12, python_3_13, python_3_14" in raised.value.message
    assert raised.value.param == "definition.code_configuration.runtime"


def test_exact_version_wins() -> None:
    assert nearest_version((3, 12), [(3, 11), (3, 12), (3, 13)]) == (3, 12)


def test_newest_below_is_preferred_to_anything_above() -> None:
    assert nearest_version((3, 14), [(3, 11), (3, 13)]) == (3, 13)
    assert nearest_version((3, 12), [(3, 11), (3, 13)]) == (3, 11)


def test_oldest_above_when_nothing_is_below() -> None:
    assert nearest_version((3, 11), [(3, 14), (3, 12)]) == (3, 12)


def test_nothing_present_chooses_nothing() -> None:
    assert nearest_version((3, 12), []) is None
