from __future__ import annotations

import pytest

from dockyard.domain.errors import BadRequest
from dockyard.domain.protocols import SERVED_PROTOCOLS, ProtocolVersion, parse_protocol_versions, served_summary


@pytest.mark.parametrize(
    ("protocol", "version"),
    [
        ("responses", "v1"),
        ("responses", "1"),
        ("responses", "1.0.0"),
        ("responses", "2.0.0"),
        ("invocations", "v1"),
        ("invocations", "1.0.0"),
        ("invocations", "2.0.0"),
    ],
)
def test_served_protocol_versions(protocol: str, version: str) -> None:
    records = [{"protocol": protocol, "version": version}]
    assert parse_protocol_versions(records, field="protocol_versions") == (ProtocolVersion(protocol, version),)


def test_protocol_name_is_case_insensitive_and_normalized() -> None:
    parsed = parse_protocol_versions([{"protocol": "Responses", "version": "v1"}], field="protocol_versions")
    assert parsed == (ProtocolVersion("responses", "v1"),)


def test_several_protocols_keep_their_order() -> None:
    records = [{"protocol": "invocations", "version": "1.0.0"}, {"protocol": "responses", "version": "v1"}]
    assert parse_protocol_versions(records, field="protocol_versions") == (
        ProtocolVersion("invocations", "1.0.0"),
        ProtocolVersion("responses", "v1"),
    )


def test_to_wire() -> None:
    assert ProtocolVersion("responses", "v1").to_wire() == {"protocol": "responses", "version": "v1"}


@pytest.mark.parametrize(
    ("protocol", "version"),
    [
        ("activity_protocol", "v1"),
        ("a2a", "1.0.0"),
        ("responses", "v9"),
        ("responses", "V1"),
        ("responses", ""),
        ("invocations", "3.0.0"),
        ("", "v1"),
    ],
)
def test_unsupported_protocol_or_version(protocol: str, version: str) -> None:
    records = [{"protocol": "responses", "version": "v1"}, {"protocol": protocol, "version": version}]
    with pytest.raises(BadRequest) as info:
        parse_protocol_versions(records, field="container_protocol_versions")
    error = info.value
    assert error.code == "ProtocolVersionNotSupported"
    assert error.status_code == 400
    assert error.param == "definition.container_protocol_versions"
    assert repr(protocol) in error.message
    assert repr(version) in error.message
    assert served_summary() in error.message


def test_served_summary_lists_every_protocol_and_version() -> None:
    summary = served_summary()
    for protocol, versions in SERVED_PROTOCOLS.items():
        assert f"{protocol} ({', '.join(versions)})" in summary


@pytest.mark.parametrize(
    "records",
    [
        None,
        [],
        "responses",
        {"protocol": "responses", "version": "v1"},
        ["responses"],
        [{}],
        [{"protocol": "responses"}],
        [{"version": "v1"}],
        [{"protocol": "responses", "version": 1}],
        [{"protocol": None, "version": "v1"}],
        [{"protocol": "responses", "version": "v1"}, None],
    ],
)
def test_malformed_protocol_versions(records: object) -> None:
    with pytest.raises(BadRequest) as info:
        parse_protocol_versions(records, field="protocol_versions")
    error = info.value
    assert error.code == "InvalidProtocolVersions"
    assert error.status_code == 400
    assert error.param == "definition.protocol_versions"
    assert "definition.protocol_versions" in error.message
