"""The environment a version's container gets: platform names, connection references, no phoning home."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from dockyard.domain.agents import AgentVersion
from dockyard.domain.definitions import HostedDefinition
from dockyard.domain.deployments import AuthKind, Connection, ProviderKind
from dockyard.domain.errors import BadRequest, NotFound
from dockyard.models.catalog import Catalog
from dockyard.runtime.environment import PlatformEnvironment
from dockyard.store.agents import DesiredVersion
from dockyard.store.models import ModelStore
from dockyard.store.registries import RegistryStore
from dockyard.store.secrets import SecretBox

SECRETS = SecretBox.generate()  # one key for every store in this module, as one home has


@pytest.fixture
def catalog(engine: Engine) -> Catalog:
    models = ModelStore(engine, SECRETS)
    models.add_connection("default", Connection("openai", ProviderKind.OPENAI, "https://api.openai.com/v1",
                                                AuthKind.API_KEY, api_key="sk-from-store", metadata={"region": "eu"}))
    RegistryStore(engine, SECRETS).add("default", "acr", "r.example", "puller", "pw")
    return Catalog(models, RegistryStore(engine, SECRETS))


def desired(environment: dict[str, str], project: str = "default") -> DesiredVersion:
    definition = HostedDefinition.from_wire({
        "kind": "hosted", "image": "localhost:5000/echo:v1",
        "container_protocol_versions": [{"protocol": "responses", "version": "v1"}],
        "environment_variables": environment,
    })
    return DesiredVersion(uid="u1", project=project, version=AgentVersion("agent", 1, 0, definition), restarts=0,
                          updated_at=0)


def platform(catalog: Catalog | None) -> PlatformEnvironment:
    return PlatformEnvironment(base_url="https://10.88.0.1:8443", identity_secret="s",
                               connections=catalog.connection if catalog else None)


def test_references_resolve_when_the_sandbox_starts(catalog: Catalog) -> None:
    version = desired({
        "OPENAI_API_KEY": "${{connections.openai.credentials.key}}",
        "OPENAI_BASE_URL": "${{connections.openai.target}}",
        "REGION": "${{connections.openai.metadata.region}}",
        "PULLER": "${{connections.acr.credentials.username}}",
        "PLAIN": "as is",
    })
    environment = platform(catalog).for_version(version)
    assert environment["OPENAI_API_KEY"] == "sk-from-store"
    assert environment["OPENAI_BASE_URL"] == "https://api.openai.com/v1"
    assert environment["REGION"] == "eu"
    assert environment["PULLER"] == "puller"
    assert environment["PLAIN"] == "as is"
    # The version itself keeps the reference, never the secret.
    assert version.version.definition.environment_variables["OPENAI_API_KEY"] == \
        "${{connections.openai.credentials.key}}"


def test_a_changed_key_reaches_the_next_sandbox(engine: Engine, catalog: Catalog) -> None:
    version = desired({"KEY": "${{connections.openai.credentials.key}}"})
    assert platform(catalog).for_version(version)["KEY"] == "sk-from-store"
    models = ModelStore(engine, SECRETS)
    models.remove_connection("default", "openai")
    models.add_connection("default", Connection("openai", ProviderKind.OPENAI, "https://api.openai.com/v1",
                                                AuthKind.API_KEY, api_key="sk-rotated"))
    assert platform(catalog).for_version(version, "session-1")["KEY"] == "sk-rotated"


def test_a_missing_connection_fails_the_start_with_connection_not_found(catalog: Catalog) -> None:
    with pytest.raises(NotFound) as caught:
        platform(catalog).for_version(desired({"KEY": "${{connections.nope.credentials.key}}"}))
    assert caught.value.code == "ConnectionNotFound"
    assert "KEY" in caught.value.message and "dockyard connection add nope" in caught.value.message
    # Connections belong to a project.
    with pytest.raises(NotFound):
        platform(catalog).for_version(desired({"KEY": "${{connections.openai.target}}"}, project="other"))
    with pytest.raises(NotFound):
        platform(None).for_version(desired({"KEY": "${{connections.openai.target}}"}))


def test_a_field_the_connection_lacks_is_refused(catalog: Catalog) -> None:
    with pytest.raises(BadRequest) as caught:
        platform(catalog).for_version(desired({"KEY": "${{connections.acr.credentials.key}}"}))
    assert caught.value.code == "InvalidConnectionReference"


def test_statsbeat_is_off_in_every_container_unless_the_definition_says_otherwise(catalog: Catalog) -> None:
    assert platform(catalog).for_version(desired({}))["APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL"] == "true"
    assert platform(None).for_version(desired({}), "s")["APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL"] == "true"
    chosen = desired({"APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "false"})
    assert platform(catalog).for_version(chosen)["APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL"] == "false"


def test_the_project_hosts_storage_whenever_the_sandbox_can_reach_dockyard(catalog: Catalog) -> None:
    assert platform(catalog).for_version(desired({}), "s")["FOUNDRY_HOSTING_ENVIRONMENT"] == "1"
    assert platform(catalog).for_version(desired({"FOUNDRY_HOSTING_ENVIRONMENT": ""}))[
        "FOUNDRY_HOSTING_ENVIRONMENT"] == ""  # a version may keep its state in the sandbox
    unreachable = PlatformEnvironment(base_url=None, identity_secret="s", connections=None)
    assert "FOUNDRY_HOSTING_ENVIRONMENT" not in unreachable.for_version(desired({}))


def test_platform_names_still_win(catalog: Catalog) -> None:
    environment = platform(catalog).for_version(desired({"PORT": "1", "FOUNDRY_AGENT_NAME": "x"}))
    assert environment["PORT"] == "8088" and environment["FOUNDRY_AGENT_NAME"] == "agent"


def test_a_workload_never_shows_its_environment_in_a_repr(catalog: Catalog) -> None:
    from decimal import Decimal

    from dockyard.runtime.base import Workload, WorkloadKey

    environment = platform(catalog).for_version(desired({"KEY": "${{connections.openai.credentials.key}}"}))
    workload = Workload(WorkloadKey("u1"), "default", "agent", "1", "img", Decimal(1), 1 << 30, environment)
    assert "sk-from-store" not in repr(workload) and workload.environment["KEY"] == "sk-from-store"
