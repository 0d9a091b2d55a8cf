from __future__ import annotations

from decimal import Decimal

import pytest

from dockyard.domain.errors import BadRequest
from dockyard.domain.resources import parse_quantity, validate_cpu, validate_memory

GI = 1024**3
MI = 1024**2


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("500m", Decimal("0.5")),
        ("1500m", Decimal("1.5")),
        ("+2", Decimal(2)),
        ("-1", Decimal(-1)),
        ("1e3", Decimal(1000)),
        ("2E-1", Decimal("0.2")),
        ("1k", Decimal(1000)),
        ("1G", Decimal(10**9)),
        ("1Ki", Decimal(1024)),
        ("1024Mi", Decimal(GI)),
        ("1Gi", Decimal(GI)),
        ("8.5Gi", Decimal(8 * GI + GI // 2)),
        (" 2Gi ", Decimal(2 * GI)),
    ],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "1 core", "1gi", "Gi", "1GiB", "1e", "--1", "1Gi1"])
def test_parse_quantity_rejects_non_quantities(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)


# -- cpu ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0.5", "500m", "1", "1.5", "2", "4", "4.0", "4000m"])
def test_cpu_within_limits_is_kept_as_spelled(value: str) -> None:
    assert validate_cpu(value) == value


@pytest.mark.parametrize("value", [None, ""])
def test_cpu_defaults_to_one_core(value: str | None) -> None:
    assert validate_cpu(value) == "1"


@pytest.mark.parametrize("value", ["0.25", "250m", "499m", "0.4999", "4.25", "4001m", "5", "0", "-1"])
def test_cpu_out_of_range(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_cpu(value)
    error = info.value
    assert error.code == "InvalidCpu"
    assert error.status_code == 400
    assert error.param == "definition.cpu"
    assert repr(value) in error.message
    rule = error.message.replace(repr(value), "")  # the range must be stated, not merely echoed
    assert "cpu" in rule
    assert "between 0.5 and 4" in rule


@pytest.mark.parametrize("value", ["abc", "1.2.3", "1 core", "one", "1cores", "0x1"])
def test_cpu_not_a_quantity(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_cpu(value)
    error = info.value
    assert error.code == "InvalidCpu"
    assert error.status_code == 400
    assert error.param == "definition.cpu"
    assert repr(value) in error.message
    rule = error.message.replace(repr(value), "")
    assert "cpu" in rule
    assert "0.5 to 4" in rule


# -- memory -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1Gi", "2Gi", "1.5Gi", "8Gi", "1024Mi", "8192Mi", "1048576Ki", str(GI), str(8 * GI)])
def test_memory_within_limits_is_kept_as_spelled(value: str) -> None:
    assert validate_memory(value) == value


@pytest.mark.parametrize("value", [None, ""])
def test_memory_defaults_to_two_gi(value: str | None) -> None:
    assert validate_memory(value) == "2Gi"


@pytest.mark.parametrize(
    "value",
    [
        "8.5Gi",
        "8193Mi",
        "9Gi",
        "512Mi",
        "1023Mi",
        "0.5Gi",
        "1G",  # decimal: 10**9 bytes, less than 1Gi
        "9G",  # decimal: 9 * 10**9 bytes, more than 8Gi
        str(GI - 1),
        str(8 * GI + 1),
        "0",
        "-2Gi",
    ],
)
def test_memory_out_of_range(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_memory(value)
    error = info.value
    assert error.code == "InvalidMemory"
    assert error.status_code == 400
    assert error.param == "definition.memory"
    assert repr(value) in error.message
    rule = error.message.replace(repr(value), "")
    assert "memory" in rule
    assert "between 1Gi and 8Gi" in rule


@pytest.mark.parametrize("value", ["abc", "2 GB", "2GB", "2gi", "1.2.3Gi", "Gi"])
def test_memory_not_a_quantity(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_memory(value)
    error = info.value
    assert error.code == "InvalidMemory"
    assert error.status_code == 400
    assert error.param == "definition.memory"
    assert repr(value) in error.message
    rule = error.message.replace(repr(value), "")
    assert "memory" in rule
    assert "1Gi to 8Gi" in rule


def test_memory_decimal_gigabyte_inside_range_is_accepted() -> None:
    # "2G" is 2 * 10**9 bytes, which lies between 1Gi and 8Gi.
    assert validate_memory("2G") == "2G"
