"""The toolbox store: versions as Foundry numbers them, the default version, secrets sealed at rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from dockyard.domain.errors import BadRequest, Conflict, NotFound
from dockyard.store.database import migrate, open_engine, sqlite_url
from dockyard.store.secrets import SecretBox
from dockyard.store.toolboxes import REDACTED, ToolboxStore, validate_version_body

MCP = {"type": "mcp", "server_label": "tools", "server_url": "http://127.0.0.1:9/mcp",
       "headers": {"Authorization": "Bearer s3cret"}, "require_approval": "never"}


@pytest.fixture
def store(tmp_path: Path) -> ToolboxStore:  # its database is tmp_path / "dockyard.db"
    engine = open_engine(sqlite_url(tmp_path / "dockyard.db"))
    migrate(engine)
    return ToolboxStore(engine, SecretBox.generate())


def test_versions_count_up_and_the_latest_is_the_default(store: ToolboxStore) -> None:
    first = store.create_version("default", "kit", [{"type": "code_interpreter"}], description="one")
    second = store.create_version("default", "kit", [MCP], metadata={"team": "a"})
    assert (first.version, second.version) == ("1", "2")
    toolbox = store.get("default", "kit")
    assert toolbox.default_version == "2"
    assert toolbox.latest.version == "2"
    assert store.get_version("default", "kit").tools == [MCP]
    assert [v.version for v in store.versions("default", "kit")] == ["1", "2"]
    assert store.get_version("default", "kit", "1").description == "one"
    assert [t.name for t in store.toolboxes("default")] == ["kit"]
    assert store.toolboxes("other") == []


def test_a_pinned_default_version_is_served_until_moved(store: ToolboxStore) -> None:
    store.create_version("default", "kit", [{"type": "code_interpreter"}])
    store.create_version("default", "kit", [MCP])
    assert store.set_default_version("default", "kit", "1").default_version == "1"
    assert store.get_version("default", "kit").version == "1"
    store.create_version("default", "kit", [{"type": "file_search", "vector_store_ids": ["vs_1"]}])
    assert store.get_version("default", "kit").version == "1"  # a new version does not move a pinned default
    with pytest.raises(Conflict):
        store.delete_version("default", "kit", "1")
    store.delete_version("default", "kit", "2")
    with pytest.raises(NotFound):
        store.get_version("default", "kit", "2")
    with pytest.raises(NotFound):
        store.set_default_version("default", "kit", "7")


def test_deleting_removes_the_toolbox_and_its_versions(store: ToolboxStore) -> None:
    store.create_version("default", "kit", [MCP])
    store.delete("default", "kit")
    with pytest.raises(NotFound) as missing:
        store.get("default", "kit")
    assert missing.value.code == "ToolboxNotFound"
    with pytest.raises(NotFound):
        store.delete("default", "kit")
    again = store.create_version("default", "kit", [MCP])
    assert again.version == "1"
    store.delete_version("default", "kit", "1")  # its last version: the toolbox goes too
    with pytest.raises(NotFound):
        store.get("default", "kit")


def test_secrets_are_sealed_at_rest_and_redacted_on_the_wire(store: ToolboxStore, tmp_path: Path) -> None:
    store.create_version("default", "kit", [{**MCP, "authorization": "tok-123"}])
    with open_engine(sqlite_url(tmp_path / "dockyard.db")).connect() as connection:  # what the file holds
        raw = connection.execute(text("SELECT tools FROM toolbox_versions")).scalar_one()
    assert "s3cret" not in raw and "tok-123" not in raw
    version = store.get_version("default", "kit")
    assert version.tools[0]["headers"] == {"Authorization": "Bearer s3cret"}
    assert version.tools[0]["authorization"] == "tok-123"
    wire = version.to_wire()
    assert wire["tools"][0]["headers"] == {"Authorization": REDACTED}
    assert wire["tools"][0]["authorization"] == REDACTED
    assert "s3cret" not in repr(version)
    assert wire["id"] == "kit:1" and wire["object"] == "toolbox.version"


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "../etc", "ünï"])
def test_bad_names_are_refused(store: ToolboxStore, name: str) -> None:
    with pytest.raises(BadRequest) as refused:
        store.create_version("default", name, [MCP])
    assert refused.value.code == "InvalidToolboxName"


@pytest.mark.parametrize("body, param", [
    ({}, "tools"), ({"tools": []}, "tools"), ({"tools": "mcp"}, "tools"), ({"tools": [{"server_label": "x"}]},
                                                                             "tools[0]"),
    ({"tools": [MCP], "metadata": {"k": 1}}, "metadata"), ({"tools": [MCP], "description": 5}, "description"),
    ({"tools": [{"type": "code_interpreter"}] * 129}, "tools"),
])
def test_bad_bodies_are_refused_naming_the_field(body: dict, param: str) -> None:
    with pytest.raises(BadRequest) as refused:
        validate_version_body(body)
    assert refused.value.param == param
