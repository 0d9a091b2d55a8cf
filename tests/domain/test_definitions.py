from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from dockyard.domain.definitions import HostedDefinition, WireShape
from dockyard.domain.errors import BadRequest
from dockyard.domain.protocols import ProtocolVersion

IMAGE = "myregistry.azurecr.io/my-agent:v1"
RESPONSES_V1 = [{"protocol": "responses", "version": "v1"}]
ENVIRONMENT = {"AZURE_AI_PROJECT_ENDPOINT": "https://example.test/api/projects/p", "MODEL_DEPLOYMENT_NAME": "gpt-4o"}

# The same agent in the shape each SDK sends.
PREVIEW = {
    "kind": "hosted",
    "image": IMAGE,
    "container_protocol_versions": RESPONSES_V1,
    "cpu": "1",
    "memory": "2Gi",
    "tools": [{"type": "code_interpreter"}],
    "environment_variables": ENVIRONMENT,
}
V1 = {
    "kind": "hosted",
    "container_configuration": {"image": IMAGE},
    "protocol_versions": RESPONSES_V1,
    "cpu": "1",
    "memory": "2Gi",
    "tools": [{"type": "code_interpreter"}],
    "environment_variables": ENVIRONMENT,
}
V1_FULL = {
    "kind": "hosted",
    "container_configuration": {"image": IMAGE, "registry_connection_id": "acr-connection"},
    "protocol_versions": [{"protocol": "responses", "version": "2.0.0"},
                          {"protocol": "invocations", "version": "2.0.0"}],
    "cpu": "2",
    "memory": "4Gi",
    "environment_variables": ENVIRONMENT,
    "session_configuration": {"idle_timeout_seconds": 900},
    "telemetry_config": {"enabled": True},
}
V1_CODE = {
    "kind": "hosted",
    "code_configuration": {"runtime": "python_3_12", "entry_point": ["python", "main.py"],
                           "dependency_resolution": "bundled"},
    "protocol_versions": RESPONSES_V1,
    "cpu": "0.5",
    "memory": "1Gi",
    "environment_variables": {},
}


_DROP = object()


def wire(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `base` with keys replaced, or removed where the value is `_DROP`."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if value is _DROP:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def test_wire_shapes_are_named_by_api_version() -> None:
    assert WireShape.PREVIEW.value == "2025-11-15-preview"
    assert WireShape.V1.value == "v1"
    assert WireShape.supported() == ["2025-11-15-preview", "v1"]


def test_preview_shape_is_parsed() -> None:
    definition = HostedDefinition.from_wire(PREVIEW)
    assert definition == HostedDefinition(
        protocols=(ProtocolVersion("responses", "v1"),),
        cpu="1",
        memory="2Gi",
        image=IMAGE,
        environment_variables=ENVIRONMENT,
        tools=[{"type": "code_interpreter"}],
    )


def test_v1_shape_is_parsed() -> None:
    definition = HostedDefinition.from_wire(V1_FULL)
    assert definition == HostedDefinition(
        protocols=(ProtocolVersion("responses", "2.0.0"), ProtocolVersion("invocations", "2.0.0")),
        cpu="2",
        memory="4Gi",
        image=IMAGE,
        registry_connection_id="acr-connection",
        environment_variables=ENVIRONMENT,
        options={"session_configuration": {"idle_timeout_seconds": 900}, "telemetry_config": {"enabled": True}},
    )


CODE = V1_CODE["code_configuration"]


def test_code_configuration_is_parsed() -> None:
    definition = HostedDefinition.from_wire(V1_CODE)
    assert definition.image is None
    assert definition.code_configuration == V1_CODE["code_configuration"]


def test_code_configuration_drops_a_sent_content_hash_and_defaults_to_bundled() -> None:
    sent = {"runtime": "python_3_14", "entry_point": ["python", "-m", "app"], "content_hash": "0" * 64}
    definition = HostedDefinition.from_wire(wire(V1_CODE, code_configuration=sent))
    assert definition.code_configuration == {"runtime": "python_3_14", "entry_point": ["python", "-m", "app"],
                                             "dependency_resolution": "bundled"}


def test_both_shapes_saying_the_same_thing_are_equal() -> None:
    assert HostedDefinition.from_wire(PREVIEW) == HostedDefinition.from_wire(V1)


def test_same_image_in_both_places_is_accepted() -> None:
    both = wire(V1, image=IMAGE)
    assert HostedDefinition.from_wire(both) == HostedDefinition.from_wire(V1)


def test_same_protocols_in_both_places_are_accepted() -> None:
    both = wire(V1, container_protocol_versions=RESPONSES_V1)
    assert HostedDefinition.from_wire(both) == HostedDefinition.from_wire(V1)


@pytest.mark.parametrize(
    ("sent", "shape"),
    [
        (PREVIEW, WireShape.PREVIEW),
        (V1, WireShape.V1),
        (V1_FULL, WireShape.V1),
        (V1_CODE, WireShape.V1),
    ],
)
def test_round_trip_in_the_callers_shape(sent: dict[str, Any], shape: WireShape) -> None:
    assert HostedDefinition.from_wire(sent).to_wire(shape) == sent


@pytest.mark.parametrize(
    ("sent", "shape", "filled"),
    [
        (
            {"kind": "hosted", "image": IMAGE, "container_protocol_versions": RESPONSES_V1},
            WireShape.PREVIEW,
            {"cpu": "1", "memory": "2Gi", "environment_variables": {}},
        ),
        (
            {"kind": "hosted", "container_configuration": {"image": IMAGE}, "protocol_versions": RESPONSES_V1,
             "cpu": ""},
            WireShape.V1,
            {"cpu": "1", "memory": "2Gi", "environment_variables": {}},
        ),
    ],
)
def test_round_trip_fills_in_defaults(sent: dict[str, Any], shape: WireShape, filled: dict[str, Any]) -> None:
    assert HostedDefinition.from_wire(sent).to_wire(shape) == {**sent, **filled}


def test_preview_answered_in_v1_shape() -> None:
    assert HostedDefinition.from_wire(PREVIEW).to_wire(WireShape.V1) == V1


def test_v1_answered_in_preview_shape() -> None:
    answered = HostedDefinition.from_wire(V1_FULL).to_wire(WireShape.PREVIEW)
    assert answered == {
        "kind": "hosted",
        "image": IMAGE,
        "container_protocol_versions": V1_FULL["protocol_versions"],
        "cpu": "2",
        "memory": "4Gi",
        "environment_variables": ENVIRONMENT,
        "session_configuration": {"idle_timeout_seconds": 900},
        "telemetry_config": {"enabled": True},
    }


@pytest.mark.parametrize("shape", list(WireShape))
@pytest.mark.parametrize("base", [PREVIEW, V1])
def test_unknown_fields_survive(base: dict[str, Any], shape: WireShape) -> None:
    extras = {
        "session_configuration": {"idle_timeout_seconds": 600},
        "telemetry_config": {"otlp": {"endpoint": "http://collector:4318"}},
        "rai_config": {"rai_policy_name": "Microsoft.Default"},
    }
    answered = HostedDefinition.from_wire({**base, **extras}).to_wire(shape)
    for key, value in extras.items():
        assert answered[key] == value


def test_to_wire_does_not_share_environment_with_the_model() -> None:
    definition = HostedDefinition.from_wire(PREVIEW)
    definition.to_wire(WireShape.PREVIEW)["environment_variables"]["INJECTED"] = "x"
    assert "INJECTED" not in definition.environment_variables


@pytest.mark.parametrize("sent", [PREVIEW, V1_FULL, V1_CODE])
def test_record_round_trip(sent: dict[str, Any]) -> None:
    definition = HostedDefinition.from_wire(sent)
    record = definition.to_record()
    assert HostedDefinition.from_record(record) == definition
    assert HostedDefinition.from_record(json.loads(json.dumps(record))) == definition


# -- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "code", "param"),
    [
        (None, "InvalidDefinition", "definition"),
        ([PREVIEW], "InvalidDefinition", "definition"),
        (wire(PREVIEW, kind="prompt"), "UnsupportedAgentKind", "definition.kind"),
        (wire(PREVIEW, kind="workflow"), "UnsupportedAgentKind", "definition.kind"),
        (wire(PREVIEW, kind=_DROP), "UnsupportedAgentKind", "definition.kind"),
        (wire(PREVIEW, image=_DROP), "InvalidContainerImage", "definition.image"),
        (wire(V1, container_configuration={}), "InvalidContainerImage", "definition.image"),
        (wire(V1, container_configuration="app:v1"), "InvalidContainerImage", "definition.container_configuration"),
        (wire(PREVIEW, code_configuration=V1_CODE["code_configuration"]), "InvalidDefinition", "definition.image"),
        (wire(V1_CODE, code_configuration="main.py"), "InvalidDefinition", "definition.code_configuration"),
        (wire(V1_CODE, code_configuration={**CODE, "runtime": "python_3_9"}), "InvalidCodeConfiguration",
         "definition.code_configuration.runtime"),
        (wire(V1_CODE, code_configuration={**CODE, "runtime": None}), "InvalidCodeConfiguration",
         "definition.code_configuration.runtime"),
        (wire(V1_CODE, code_configuration={**CODE, "entry_point": []}), "InvalidCodeConfiguration",
         "definition.code_configuration.entry_point"),
        (wire(V1_CODE, code_configuration={**CODE, "entry_point": "python main.py"}), "InvalidCodeConfiguration",
         "definition.code_configuration.entry_point"),
        (wire(V1_CODE, code_configuration={**CODE, "entry_point": ["python", ""]}), "InvalidCodeConfiguration",
         "definition.code_configuration.entry_point"),
        (wire(V1_CODE, code_configuration={**CODE, "entry_point": ["python"] * 65}), "InvalidCodeConfiguration",
         "definition.code_configuration.entry_point"),
        (wire(V1_CODE, code_configuration={**CODE, "dependency_resolution": "pip"}), "InvalidCodeConfiguration",
         "definition.code_configuration.dependency_resolution"),
        (wire(V1, image="myregistry.azurecr.io/other:v1"), "InvalidContainerImage", "definition.image"),
        (wire(PREVIEW, image="Not An Image"), "InvalidContainerImage", "definition.image"),
        (wire(PREVIEW, image=42), "InvalidContainerImage", None),
        (
            wire(V1, container_configuration={"image": IMAGE, "registry_connection_id": 7}),
            "InvalidDefinition",
            "definition.container_configuration.registry_connection_id",
        ),
        (wire(PREVIEW, container_protocol_versions=_DROP), "InvalidProtocolVersions",
         "definition.container_protocol_versions"),
        (
            wire(V1, container_protocol_versions=[{"protocol": "invocations", "version": "v1"}]),
            "InvalidProtocolVersions",
            "definition.protocol_versions",
        ),
        (
            wire(V1, protocol_versions=[{"protocol": "activity_protocol", "version": "v1"}]),
            "ProtocolVersionNotSupported",
            "definition.protocol_versions",
        ),
        (wire(PREVIEW, cpu="8"), "InvalidCpu", "definition.cpu"),
        (wire(PREVIEW, memory="16Gi"), "InvalidMemory", "definition.memory"),
        (wire(PREVIEW, tools={"type": "mcp"}), "InvalidTool", "definition.tools"),
        (wire(PREVIEW, environment_variables=["A=1"]), "InvalidEnvironmentVariables",
         "definition.environment_variables"),
    ],
)
def test_invalid_definitions(sent: object, code: str, param: str | None) -> None:
    with pytest.raises(BadRequest) as info:
        HostedDefinition.from_wire(sent)
    assert info.value.code == code
    assert info.value.param == param
    assert info.value.status_code == 400


def test_unsupported_kind_names_the_kind_and_the_fix() -> None:
    with pytest.raises(BadRequest) as info:
        HostedDefinition.from_wire(wire(PREVIEW, kind="prompt"))
    assert "'prompt'" in info.value.message
    assert "hosted" in info.value.message


def test_disagreeing_images_are_both_named() -> None:
    with pytest.raises(BadRequest) as info:
        HostedDefinition.from_wire(wire(V1, image="myregistry.azurecr.io/other:v1"))
    assert IMAGE in info.value.message
    assert "myregistry.azurecr.io/other:v1" in info.value.message


@pytest.mark.parametrize("value", [1, 1.5, True, None, ["a"], {"a": "b"}])
def test_environment_variable_values_must_be_strings(value: object) -> None:
    with pytest.raises(BadRequest) as info:
        HostedDefinition.from_wire(wire(PREVIEW, environment_variables={"GOOD": "x", "PORT_NUMBER": value}))
    error = info.value
    assert error.code == "InvalidEnvironmentVariables"
    assert error.param == "definition.environment_variables"
    assert "'PORT_NUMBER'" in error.message
    assert type(value).__name__ in error.message


@pytest.mark.parametrize("name", ["", "1ABC", "MY VAR", "A=B", "ÄBC", "-X"])
def test_environment_variable_names_are_checked(name: str) -> None:
    with pytest.raises(BadRequest) as info:
        HostedDefinition.from_wire(wire(PREVIEW, environment_variables={name: "x"}))
    error = info.value
    assert error.code == "InvalidEnvironmentVariables"
    assert error.param == "definition.environment_variables"
    assert repr(name) in error.message


@pytest.mark.parametrize("name", ["A", "_A", "a_b", "PATH2"])
def test_environment_variable_names_accepted(name: str) -> None:
    parsed = HostedDefinition.from_wire(wire(PREVIEW, environment_variables={name: ""}))
    assert parsed.environment_variables == {name: ""}


def test_unknown_container_configuration_fields_survive() -> None:
    sent = wire(V1, container_configuration={"image": IMAGE, "pull_policy": "always"})
    assert HostedDefinition.from_wire(sent).to_wire(WireShape.V1) == sent
