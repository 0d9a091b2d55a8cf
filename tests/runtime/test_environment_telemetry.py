"""The OTLP export a sandbox is given: to dockyard, with its own identity, even when its version names a collector."""

from __future__ import annotations

from dockyard.domain.agents import AgentVersion
from dockyard.domain.definitions import HostedDefinition
from dockyard.identity.agents import agent_from_identity_header
from dockyard.runtime.environment import PlatformEnvironment
from dockyard.store.agents import DesiredVersion


def desired(environment: dict[str, str]) -> DesiredVersion:
    definition = HostedDefinition.from_wire({
        "kind": "hosted", "image": "localhost:5000/echo:v1",
        "container_protocol_versions": [{"protocol": "responses", "version": "v1"}],
        "environment_variables": environment,
    })
    return DesiredVersion(uid="u1", project="default", version=AgentVersion("agent", 1, 0, definition), restarts=0,
                          updated_at=0)


PLATFORM = PlatformEnvironment(base_url="https://10.88.0.1:8443", identity_secret="s")


def test_a_sandbox_exports_to_dockyard_with_its_own_identity() -> None:
    environment = PLATFORM.for_version(desired({}), "0123456789abcdef0123456789abcdef")
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://10.88.0.1:8443"
    assert environment["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    name, _, value = environment["OTEL_EXPORTER_OTLP_HEADERS"].partition("=")
    assert name == "x-identity-header" and agent_from_identity_header("s", value) == "u1"
    assert environment["OTEL_RESOURCE_ATTRIBUTES"] == "session.id=0123456789abcdef0123456789abcdef"
    # The version's own sandbox (no session) names none.
    assert "OTEL_RESOURCE_ATTRIBUTES" not in PLATFORM.for_version(desired({}))


def test_a_version_with_its_own_collector_still_exports_to_dockyard_which_forwards() -> None:
    own = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_HEADERS": "api-key=k",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/collector-ca.pem"}
    environment = PLATFORM.for_version(desired(own), "s1")
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://10.88.0.1:8443"
    assert environment["OTEL_EXPORTER_OTLP_HEADERS"].startswith("x-identity-header=")
    assert "api-key=k" not in environment.values()  # the collector's key stays with dockyard
    assert environment["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert "OTEL_EXPORTER_OTLP_CERTIFICATE" not in environment  # it is for the collector, not dockyard


def test_per_signal_settings_of_the_version_are_pointed_at_dockyard_too() -> None:
    """The exporter prefers …_TRACES_ENDPOINT/_HEADERS over the general ones: left alone they would bypass dockyard."""
    environment = PLATFORM.for_version(desired({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces",
                                                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "k=v",
                                                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "grpc"}))
    assert environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "https://10.88.0.1:8443/v1/traces"
    assert environment["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] == environment["OTEL_EXPORTER_OTLP_HEADERS"]
    assert environment["OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"] == "http/protobuf"
    assert "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" not in environment


def test_resource_attributes_of_the_version_are_kept_and_extended() -> None:
    environment = PLATFORM.for_version(desired({"OTEL_RESOURCE_ATTRIBUTES": "team=blue"}), "s1")
    assert environment["OTEL_RESOURCE_ATTRIBUTES"] == "team=blue,session.id=s1"


def test_without_a_way_back_to_dockyard_nothing_is_exported() -> None:
    environment = PlatformEnvironment(base_url=None, identity_secret="s").for_version(desired({}), "s1")
    assert not any(name.startswith("OTEL_") for name in environment)
