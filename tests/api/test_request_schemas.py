"""The request models as the handlers' gate: what they refuse, with which code and path, and what they let by."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.api.schemas import (
    CreateAgentRequest,
    CreateResponseRequest,
    CreateSessionRequest,
    CreateVersionRequest,
    UpdateAgentDetailsRequest,
    validated,
)
from dockyard.domain.errors import BadRequest

PREVIEW = {"kind": "hosted", "image": "localhost:5000/echo:v1",
           "container_protocol_versions": [{"protocol": "responses", "version": "v1"}], "cpu": "1", "memory": "2Gi"}
V1 = {"kind": "hosted", "container_configuration": {"image": "localhost:5000/echo:v1"},
      "protocol_versions": [{"protocol": "responses", "version": "2.0.0"}],
      "session_configuration": {"idle_timeout_seconds": 600}, "telemetry_config": {"anything": [1, 2]}}


def refused(model: Any, body: dict[str, Any]) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        validated(model, body)
    return info.value


@pytest.mark.parametrize("definition", [PREVIEW, V1], ids=["2.0.0b3", "2.x"])
def test_both_sdk_shapes_pass_as_sent(definition: dict[str, Any]) -> None:
    body = {"definition": definition, "description": "d", "metadata": {"a": "b"}, "future_field": {"x": 1}}
    assert validated(CreateVersionRequest, body) is body  # the body itself, not a re-serialised model


def test_numbers_for_cpu_and_memory_pass_as_the_domain_reads_them() -> None:
    validated(CreateVersionRequest, {"definition": {**PREVIEW, "cpu": 1, "memory": 2147483648}})


@pytest.mark.parametrize(("change", "code", "param"), [
    ({"environment_variables": {"A": 1}}, "InvalidEnvironmentVariables", "definition.environment_variables.A"),
    ({"environment_variables": {f"V{i}": "x" for i in range(1001)}}, "InvalidEnvironmentVariables",
     "definition.environment_variables"),
    ({"tools": [{"type": "code_interpreter"}] * 129}, "InvalidTool", "definition.tools"),
    ({"tools": [{"name": "no type"}]}, "InvalidTool", "definition.tools[0].type"),
    ({"session_configuration": {"idle_timeout_seconds": 1.5}}, "InvalidSessionConfiguration",
     "definition.session_configuration.idle_timeout_seconds"),
    ({"session_configuration": {"idle_timeout_seconds": True}}, "InvalidSessionConfiguration",
     "definition.session_configuration.idle_timeout_seconds"),
    ({"session_configuration": {"idle_timeout_seconds": 14401}}, "InvalidSessionConfiguration",
     "definition.session_configuration.idle_timeout_seconds"),
    ({"cpu": True}, "InvalidCpu", "definition.cpu"),
    ({"memory": ["2Gi"]}, "InvalidMemory", "definition.memory"),
    ({"container_protocol_versions": [{"protocol": "responses", "version": 1}]}, "InvalidProtocolVersions",
     "definition.container_protocol_versions[0].version"),
    ({"image": 5}, "InvalidContainerImage", "definition.image"),
    ({"code_configuration": {"runtime": "python_3_12", "entry_point": []}}, "InvalidCodeConfiguration",
     "definition.code_configuration.entry_point"),
])
def test_a_wrong_type_or_bound_gets_the_domain_code_and_its_path(change: dict[str, Any], code: str, param: str) -> None:
    error = refused(CreateVersionRequest, {"definition": {**PREVIEW, **change}})
    assert (error.code, error.param) == (code, param)
    assert param in error.message


def test_a_missing_definition_is_an_invalid_body_and_a_missing_kind_an_unsupported_kind() -> None:
    assert refused(CreateVersionRequest, {}).code == "InvalidRequestBody"
    assert refused(CreateVersionRequest, {"definition": {"image": "x"}}).code == "UnsupportedAgentKind"
    assert refused(CreateVersionRequest, {"definition": "hosted"}).code == "InvalidDefinition"


def test_metadata_and_description_bounds() -> None:
    assert refused(CreateVersionRequest, {"definition": PREVIEW, "metadata": {"k": 1}}).code == "InvalidMetadata"
    many = {f"k{i}": "v" for i in range(17)}
    assert refused(CreateVersionRequest, {"definition": PREVIEW, "metadata": many}).code == "InvalidMetadata"
    assert refused(CreateVersionRequest, {"definition": PREVIEW, "description": "x" * 513}).code == "InvalidDescription"


def test_an_agent_name_in_a_body_follows_the_name_rule() -> None:
    assert refused(CreateAgentRequest, {"name": "-bad", "definition": PREVIEW}).code == "InvalidAgentName"
    validated(CreateAgentRequest, {"name": "good-1", "definition": PREVIEW})


def test_a_refusal_never_quotes_the_value() -> None:
    error = refused(CreateVersionRequest, {"definition": {**PREVIEW, "environment_variables": {"KEY": ["s3cret"]}}})
    assert "s3cret" not in error.message


@pytest.mark.parametrize("session_id", [{"a": 1}, ["x"], 7, True, "has space", "x" * 65])
def test_session_ids_in_bodies(session_id: object) -> None:
    assert refused(CreateResponseRequest, {"agent_session_id": session_id}).code == "InvalidSessionId"
    assert refused(CreateSessionRequest, {"agent_session_id": session_id}).code == "InvalidSessionId"


def test_a_responses_body_keeps_what_it_does_not_read() -> None:
    body = {"agent_reference": {"type": "agent_reference", "name": "a"}, "input": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "name": "f"}], "stream": True, "temperature": 0.2}
    assert validated(CreateResponseRequest, body) == body
    assert refused(CreateResponseRequest, {"agent_reference": "a"}).code == "InvalidAgentReference"
    assert refused(CreateResponseRequest, {"model": 5}).param == "model"


def test_traffic_split_rules() -> None:
    rule = {"type": "FixedRatio", "agent_version": "1", "traffic_percentage": 100}
    validated(UpdateAgentDetailsRequest, {"agent_endpoint": {"version_selector": {"version_selection_rules": [rule]}}})
    bad = {**rule, "traffic_percentage": 101}
    error = refused(UpdateAgentDetailsRequest,
                    {"agent_endpoint": {"version_selector": {"version_selection_rules": [bad]}}})
    assert error.code == "InvalidVersionSelector"
