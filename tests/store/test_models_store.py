"""Model connections and deployments in a real SQLite store, and the catalog reading them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from dockyard.domain.deployments import AuthKind, Connection, Deployment, ProviderKind, Sku
from dockyard.domain.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from dockyard.models.catalog import LOCAL, Catalog
from dockyard.models.upstreams import ModelKind, Upstream
from dockyard.store.database import open_engine, sqlite_url
from dockyard.store.models import ModelStore
from dockyard.store.registries import RegistryStore
from dockyard.store.secrets import SecretBox, SecretKeyMismatch

SECRETS = SecretBox.generate()  # one key for every store in this module, as one home has


@pytest.fixture
def models(engine: Engine) -> ModelStore:
    return ModelStore(engine, SECRETS)


OPENAI = Connection("openai", ProviderKind.OPENAI, "https://api.openai.com/v1", AuthKind.API_KEY, api_key="sk-live-1",
                    metadata={"team": "a"})


def deployment(name: str, connection: str = "openai", model: str = "") -> Deployment:
    return Deployment(name, connection, model or name, model_name=name, model_publisher="OpenAI")


def test_connections_and_deployments_round_trip(models: ModelStore) -> None:
    models.add_connection("default", OPENAI)
    models.add_deployment("default", Deployment("gpt-4o-mini", "openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini",
                                                "2024-07-18", "OpenAI", {"chat_completion": "true"},
                                                Sku(capacity=5, name="GlobalStandard")))
    assert models.get_connection("default", "openai") == OPENAI
    got = models.get_deployment("default", "gpt-4o-mini")
    assert (got.model, got.model_version, got.sku.capacity, got.sku.name) == (
        "gpt-4o-mini-2024-07-18", "2024-07-18", 5, "GlobalStandard")
    assert models.list_deployments("other") == [] and models.list_connections("other") == []


def test_names_are_unique_per_project(models: ModelStore) -> None:
    models.add_connection("default", OPENAI)
    models.add_connection("other", OPENAI)
    with pytest.raises(Conflict) as caught:
        models.add_connection("default", OPENAI)
    assert caught.value.code == "ConnectionExists"
    models.add_deployment("default", deployment("m"))
    with pytest.raises(Conflict) as caught:
        models.add_deployment("default", deployment("m"))
    assert caught.value.code == "DeploymentExists"


def test_model_and_registry_connections_share_one_namespace(engine: Engine, models: ModelStore) -> None:
    RegistryStore(engine, SECRETS).add("default", "acr", "r.example", "u", "p")
    with pytest.raises(Conflict, match="registry connection"):
        models.add_connection("default", Connection("acr", ProviderKind.OPENAI, "http://x/v1"))
    # ...nor the other way round.
    models.add_connection("default", Connection("openai", ProviderKind.OPENAI, "http://x/v1"))
    with pytest.raises(Conflict, match="model connection") as caught:
        RegistryStore(engine, SECRETS).add("default", "openai", "r.example", "u", "p")
    assert caught.value.code == "ConnectionExists"


def test_a_deployment_needs_its_connection_and_keeps_it_in_use(models: ModelStore) -> None:
    with pytest.raises(NotFound) as caught:
        models.add_deployment("default", deployment("m", connection="missing"))
    assert caught.value.code == "ConnectionNotFound" and "dockyard connection add missing" in caught.value.message
    models.add_connection("default", OPENAI)
    models.add_deployment("default", deployment("m"))
    with pytest.raises(Conflict) as in_use:
        models.remove_connection("default", "openai")
    assert in_use.value.code == "ConnectionInUse" and "m" in in_use.value.message
    assert models.remove_deployment("default", "m").name == "m"
    models.remove_connection("default", "openai")
    with pytest.raises(NotFound):
        models.remove_connection("default", "openai")
    with pytest.raises(NotFound) as gone:
        models.remove_deployment("default", "m")
    assert gone.value.code == "DeploymentNotFound"


def test_invalid_values_never_reach_the_table(models: ModelStore) -> None:
    with pytest.raises(BadRequest):
        models.add_connection("default", Connection("bad.name", ProviderKind.OPENAI, "http://x/v1"))
    with pytest.raises(BadRequest):
        models.add_connection("default", Connection("c", ProviderKind.OPENAI, "nowhere"))
    assert models.list_connections("default") == []


def test_ensure_is_idempotent_and_keeps_what_is_there(models: ModelStore) -> None:
    catalog = Catalog(models)
    assert models.ensure_connection("default", Connection(LOCAL, ProviderKind.LOCAL, ""))
    assert not models.ensure_connection("default", Connection(LOCAL, ProviderKind.LOCAL, ""))
    assert models.ensure_deployment("default", Deployment(LOCAL, LOCAL, "", ""))
    assert not models.ensure_deployment("default", Deployment(LOCAL, LOCAL, "", "something else"))
    assert catalog.names("default") == [LOCAL]


def test_the_key_is_stored_sealed_and_never_in_a_repr(engine: Engine, models: ModelStore) -> None:
    models.add_connection("default", OPENAI)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT api_key FROM model_connections")).scalar().startswith("fernet:")
    assert models.get_connection("default", "openai").api_key == "sk-live-1"
    assert "sk-live-1" not in repr(models.list_connections("default"))


# -- the catalog ----------------------------------------------------------------------------------------


def test_resolve_gives_the_upstream(models: ModelStore) -> None:
    models.add_connection("default", OPENAI)
    models.add_connection("default", Connection("aoai", ProviderKind.AZURE_OPENAI, "https://x.openai.azure.com",
                                                AuthKind.ENTRA, speaks_responses=False))
    models.add_deployment("default", deployment("gpt-4o-mini", model="gpt-4o-mini-2024-07-18"))
    models.add_deployment("default", deployment("chat", connection="aoai", model="my-azure-deployment"))
    catalog = Catalog(models)
    assert catalog.resolve("default", "gpt-4o-mini") == Upstream(
        deployment="gpt-4o-mini", connection="openai", kind=ProviderKind.OPENAI, base_url="https://api.openai.com/v1",
        model="gpt-4o-mini-2024-07-18", auth=AuthKind.API_KEY, api_key="sk-live-1", speaks_responses=True)
    chat = catalog.resolve("default", "chat")
    assert (chat.kind, chat.base_url, chat.model, chat.auth, chat.speaks_responses) == (
        ProviderKind.AZURE_OPENAI, "https://x.openai.azure.com", "my-azure-deployment", AuthKind.ENTRA, False)
    assert catalog.names("default") == ["chat", "gpt-4o-mini"]


def test_a_deployment_whose_capabilities_say_embeddings_only_resolves_as_an_embedding_model(
        models: ModelStore) -> None:
    models.add_connection("default", OPENAI)
    models.add_deployment("default", deployment("gpt-4o-mini"))
    models.add_deployment("default", Deployment("small", "openai", "text-embedding-3-small", "text-embedding-3-small",
                                                capabilities={"embeddings": "true"}))
    catalog = Catalog(models)
    assert catalog.resolve("default", "small").model_kind is ModelKind.EMBEDDINGS
    # Added with the CLI's default (chat) capabilities, a remote deployment may be anything: its upstream answers.
    assert catalog.resolve("default", "gpt-4o-mini").model_kind is ModelKind.ANY


def test_an_unknown_deployment_lists_the_ones_there_are_and_how_to_add_one(models: ModelStore) -> None:
    models.add_connection("default", OPENAI)
    models.add_deployment("default", deployment("b"))
    models.add_deployment("default", deployment("a"))
    with pytest.raises(NotFound) as caught:
        Catalog(models).resolve("default", "gpt-5")
    error = caught.value
    assert error.status_code == 404 and error.code == "DeploymentNotFound"
    assert "'gpt-5'" in error.message and "a, b" in error.message
    assert "dockyard model add gpt-5" in error.message and "--local" in error.message
    with pytest.raises(NotFound, match="none"):
        Catalog(models).resolve("empty-project", "x")


def test_the_warm_path_does_not_read_the_store(engine: Engine, models: ModelStore) -> None:
    models.add_connection("default", OPENAI)
    models.add_deployment("default", deployment("m"))
    catalog = Catalog(models, cache_seconds=60)
    first = catalog.resolve("default", "m")
    # Another process (the CLI) changes the file: this process sees it only when its cache expires...
    with engine.begin() as connection:
        connection.execute(text("UPDATE model_deployments SET upstream_model = 'changed'"))
    assert catalog.resolve("default", "m") is first
    # ...but its own writes at once.
    models.add_deployment("default", deployment("n"))
    assert catalog.resolve("default", "m").model == "changed"


def test_another_processs_changes_show_within_the_cache_time(tmp_path: Path, models: ModelStore) -> None:
    models.add_connection("default", OPENAI)
    models.add_deployment("default", deployment("m"))
    catalog = Catalog(models, cache_seconds=0.05)
    assert catalog.resolve("default", "m").model == "m"
    other = ModelStore(open_engine(sqlite_url(tmp_path / "dockyard.db")), SECRETS)  # the CLI's own engine
    other.remove_deployment("default", "m")
    other.add_deployment("default", deployment("m", model="m-2"))
    # A new name is found at once (a miss reads again)...
    other.add_deployment("default", deployment("fresh"))
    assert catalog.resolve("default", "fresh").model == "fresh"
    # ...and a change once the cache is past its time (served stale while one background read refreshes).
    deadline = time.monotonic() + 5
    while catalog.resolve("default", "m").model != "m-2":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    catalog.close()


def test_a_local_deployment_without_a_local_model_is_503(models: ModelStore) -> None:
    catalog = Catalog(models)
    models.ensure_connection("default", Connection(LOCAL, ProviderKind.LOCAL, ""))
    models.add_deployment("default", Deployment("gpt-4o-mini", LOCAL, "", ""))
    with pytest.raises(ServiceUnavailable) as caught:
        catalog.resolve("default", "gpt-4o-mini")
    assert caught.value.status_code == 503 and caught.value.code == "LocalModelUnavailable"
    assert "--no-local-model" in caught.value.message


def test_a_local_model_not_installed_or_not_running_is_503_saying_what_to_do(tmp_path: Path,
                                                                              models: ModelStore) -> None:
    from dockyard.home import Home

    LocalModel = pytest.importorskip("dockyard.models.local").LocalModel

    local = LocalModel(Home(tmp_path / "home").ensure())  # built, never started: no base_url
    catalog = Catalog(models)
    catalog.attach_local_model(local, ["default"])
    with pytest.raises(ServiceUnavailable) as caught:
        catalog.resolve("default", LOCAL)
    assert caught.value.code == "LocalModelUnavailable"
    if local.available:
        assert "not running yet" in caught.value.message
    else:
        assert "local-model" in caught.value.message  # the install hint
    # The built-in deployment reports the model the local server serves.
    assert catalog.deployment("default", LOCAL).model_name == local.model_name


def test_connections_list_model_and_registry_connections_with_one_default_per_type(engine: Engine,
                                                                                  models: ModelStore) -> None:
    registries = RegistryStore(engine, SECRETS)
    registries.add("default", "acr", "r.example", "u", "pw")
    models.add_connection("default", OPENAI)
    models.add_connection("default", Connection("second", ProviderKind.OPENAI, "http://127.0.0.1:1/v1"))
    catalog = Catalog(models, registries)
    listed = catalog.connections("default")
    assert [(c.name, c.type, c.is_default) for c in listed] == [
        ("openai", "ApiKey", True), ("second", "ApiKey", False), ("acr", "ContainerRegistry", True)]
    assert [c.name for c in catalog.connections("default", connection_type="containerregistry")] == ["acr"]
    assert [c.name for c in catalog.connections("default", default_connection=False)] == ["second"]
    assert catalog.connection("default", "acr").credentials.fields["password"] == "pw"
    with pytest.raises(NotFound) as caught:
        catalog.connection("default", "nope")
    assert caught.value.code == "ConnectionNotFound"


def test_deployment_filters(models: ModelStore) -> None:
    models.add_connection("default", OPENAI)
    models.add_deployment("default", deployment("a"))
    models.add_deployment("default", Deployment("b", "openai", "b", "llama", model_publisher="Meta"))
    catalog = Catalog(models)
    assert [d.name for d in catalog.deployments("default", model_publisher="openai")] == ["a"]
    assert [d.name for d in catalog.deployments("default", model_name="LLAMA")] == ["b"]
    assert [d.name for d in catalog.deployments("default", deployment_type="ModelDeployment")] == ["a", "b"]
    assert catalog.deployments("default", deployment_type="Other") == []


def test_keys_and_passwords_are_encrypted_at_rest(engine: Engine) -> None:
    """The database file alone gives no secret away; the key lives in the home (issue 13)."""
    models, registries = ModelStore(engine, SECRETS), RegistryStore(engine, SECRETS)
    models.add_connection("default", Connection(name="vendor", kind=ProviderKind.OPENAI, target="https://v.example/v1",
                                                auth=AuthKind.API_KEY, api_key="sk-very-secret"))
    registries.add("default", "acr2", "r2.example", "u", "hunter2-password")
    with engine.connect() as raw:
        dumped = " ".join(str(row) for table in ("model_connections", "registry_connections")
                          for row in raw.exec_driver_sql(f"SELECT * FROM {table}"))
    assert "sk-very-secret" not in dumped and "hunter2-password" not in dumped
    assert models.get_connection("default", "vendor").api_key == "sk-very-secret"
    assert registries.get("default", "acr2").password == "hunter2-password"
    with pytest.raises(SecretKeyMismatch):
        ModelStore(engine, SecretBox.generate()).get_connection("default", "vendor")


def test_secrets_an_older_dockyard_stored_in_the_clear_are_sealed(engine: Engine) -> None:
    with engine.begin() as raw:
        raw.exec_driver_sql("INSERT INTO registry_connections (project, name, server, username, password, created_at) "
                            "VALUES ('default', 'old', 'old.example', 'u', 'plain-old-password', 0)")
    registries = RegistryStore(engine, SECRETS)
    assert registries.get("default", "old").password == "plain-old-password"  # still readable
    assert registries.seal_plaintext() == 1 and registries.seal_plaintext() == 0
    with engine.connect() as raw:
        stored = raw.exec_driver_sql("SELECT password FROM registry_connections WHERE name = 'old'").scalar()
    assert stored.startswith("fernet:") and registries.get("default", "old").password == "plain-old-password"
