"""State stores behind the project's state-store API: the client's own local store's semantics (ETags, TTLs,
key listings), scoped to an agent and, with user isolation, to a caller, on a real migrated SQLite database."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dockyard.domain.errors import Conflict, NotFound
from dockyard.housekeeping import Retention, sweeps
from dockyard.reconciler import Reconciler, ReconcilerSettings
from dockyard.store.agents import AgentStore
from dockyard.store.database import migrate, open_engine, sqlite_url
from dockyard.store.registries import RegistryStore
from dockyard.store.secrets import SecretBox
from dockyard.store.state_stores import NEVER_EXPIRES, Paging, PreconditionFailed, StateScope, StateStores

ALICE = StateScope("default", "helper", "call:user:alice|")
BOB = StateScope("default", "helper", "call:user:bob|")
OTHER_AGENT = StateScope("default", "other", "call:user:alice|")


@pytest.fixture
def store(tmp_path: Path) -> StateStores:
    engine = open_engine(sqlite_url(tmp_path / "dockyard.db"))
    migrate(engine)
    return StateStores(engine)


def make(store: StateStores, name: str = "agent_sessions", *, isolated: bool = True, ttl: int = 3600) -> None:
    store.create_store(ALICE, name, user_isolation=isolated, item_ttl_seconds=ttl, description="d",
                       tags={"kind": "sessions"})


def test_a_store_is_created_once_and_is_its_agents_alone(store: StateStores) -> None:
    make(store)
    got = store.get_store(BOB, "agent_sessions")  # another caller of the same agent: the same store
    assert (got["object"], got["name"], got["user_isolation"], got["item_ttl_seconds"]) == (
        "state_store", "agent_sessions", True, 3600)
    assert got["id"].startswith("ss_") and got["tags"] == {"kind": "sessions"}
    with pytest.raises(Conflict):
        make(store)
    with pytest.raises(NotFound):
        store.get_store(OTHER_AGENT, "agent_sessions")


def test_update_replaces_tags_clears_with_null_and_leaves_what_is_not_named(store: StateStores) -> None:
    make(store)
    assert store.update_store(ALICE, "agent_sessions", {"tags": {"a": "1"}})["description"] == "d"
    updated = store.update_store(ALICE, "agent_sessions", {"description": None})
    assert (updated["description"], updated["tags"]) == (None, {"a": "1"})


def test_items_with_user_isolation_are_each_callers_own(store: StateStores) -> None:
    make(store)
    store.put_item(ALICE, "agent_sessions", "s1", {"turns": 1}, None, None)
    store.put_item(BOB, "agent_sessions", "s1", {"turns": 7}, None, None)
    assert store.get_item(ALICE, "agent_sessions", "s1")["value"] == {"turns": 1}
    assert store.get_item(BOB, "agent_sessions", "s1")["value"] == {"turns": 7}
    assert [k["key"] for k in store.list_keys(BOB, "agent_sessions", {}, Paging()).data] == ["s1"]
    store.delete_item(BOB, "agent_sessions", "s1", None)
    assert store.get_item(ALICE, "agent_sessions", "s1")["value"] == {"turns": 1}


def test_without_user_isolation_every_caller_shares_the_items(store: StateStores) -> None:
    make(store, "shared", isolated=False)
    store.put_item(ALICE, "shared", "k", {"v": 1}, None, None)
    assert store.get_item(BOB, "shared", "k")["value"] == {"v": 1}


def test_etags_make_writes_conditional(store: StateStores) -> None:
    make(store)
    first = store.put_item(ALICE, "agent_sessions", "s1", {"n": 1}, None, None)
    assert "value" not in first and first["etag"].startswith('"')
    second = store.put_item(ALICE, "agent_sessions", "s1", {"n": 2}, None, first["etag"])
    assert second["etag"] != first["etag"] and second["id"] == first["id"]
    with pytest.raises(PreconditionFailed) as stale:
        store.put_item(ALICE, "agent_sessions", "s1", {"n": 3}, None, first["etag"])
    assert stale.value.status_code == 412 and stale.value.headers == {"ETag": second["etag"]}
    with pytest.raises(PreconditionFailed) as absent:
        store.put_item(ALICE, "agent_sessions", "new", {"n": 1}, None, "*")  # require_exists
    assert absent.value.headers == {}
    with pytest.raises(PreconditionFailed):
        store.delete_item(ALICE, "agent_sessions", "s1", first["etag"])
    assert store.get_item(ALICE, "agent_sessions", "s1")["value"] == {"n": 2}
    assert store.delete_item(ALICE, "agent_sessions", "s1", "*")["deleted"] is True
    assert store.delete_item(ALICE, "agent_sessions", "s1", None)["id"] is None  # gone already: still fine


def test_create_item_refuses_a_taken_key(store: StateStores) -> None:
    make(store)
    store.create_item(ALICE, "agent_sessions", "k", {"v": 1}, {"t": "x"})
    with pytest.raises(Conflict):
        store.create_item(ALICE, "agent_sessions", "k", {"v": 2}, None)
    store.create_item(BOB, "agent_sessions", "k", {"v": 2}, None)  # Bob's partition: free


def test_keys_are_listed_with_tag_filters_in_order_and_paged(store: StateStores) -> None:
    make(store)
    for index in range(5):
        parity = "even" if index % 2 == 0 else "odd"
        store.create_item(ALICE, "agent_sessions", f"k{index}", {"i": index}, {"parity": parity})
        time.sleep(0.002)
    newest_first = store.list_keys(ALICE, "agent_sessions", {}, Paging(limit=2))
    assert [k["key"] for k in newest_first.data] == ["k4", "k3"] and newest_first.has_more
    assert "value" not in newest_first.data[0] and newest_first.data[0]["tags"] == {"parity": "even"}
    rest = store.list_keys(ALICE, "agent_sessions", {}, Paging(limit=10, after=newest_first.to_wire()["last_id"]))
    assert [k["key"] for k in rest.data] == ["k2", "k1", "k0"] and not rest.has_more
    even = store.list_keys(ALICE, "agent_sessions", {"parity": "even"}, Paging(ascending=True))
    assert [k["key"] for k in even.data] == ["k0", "k2", "k4"]


def test_items_expire_after_their_ttl_from_the_last_write(store: StateStores) -> None:
    make(store, "short", ttl=1)
    make(store, "forever", ttl=NEVER_EXPIRES)
    store.put_item(ALICE, "short", "k", {"v": 1}, None, None)
    store.put_item(ALICE, "forever", "k", {"v": 1}, None, None)
    time.sleep(1.1)
    with pytest.raises(NotFound):
        store.get_item(ALICE, "short", "k")
    assert store.list_keys(ALICE, "short", {}, Paging()).data == []
    store.create_item(ALICE, "short", "k", {"v": 2}, None)  # an expired key is free again
    assert store.purge_expired(now=time.time() + 5) == 1
    assert store.get_item(ALICE, "forever", "k")["value"] == {"v": 1}


def test_deleting_a_store_removes_every_callers_items(store: StateStores) -> None:
    make(store)
    store.put_item(ALICE, "agent_sessions", "a", {}, None, None)
    store.put_item(BOB, "agent_sessions", "b", {}, None, None)
    assert store.delete_store(BOB, "agent_sessions")["deleted"] is True
    make(store)
    assert store.list_keys(ALICE, "agent_sessions", {}, Paging()).data == []
    assert store.list_keys(BOB, "agent_sessions", {}, Paging()).data == []
    assert [s["name"] for s in store.list_stores(ALICE, Paging()).data] == ["agent_sessions"]


def test_the_reconcilers_sweep_removes_expired_items(store: StateStores, tmp_path: Path) -> None:
    engine = open_engine(sqlite_url(tmp_path / "dockyard.db"))
    reconciler = Reconciler(AgentStore(engine), RegistryStore(engine, SecretBox.generate()), None, lambda *_: {},
                            ReconcilerSettings(prune_interval_seconds=3600),
                            sweeps=sweeps(Retention(), state_stores=store))
    make(store, "short", ttl=1)
    store.put_item(ALICE, "short", "k", {"v": 1}, None, None)
    time.sleep(1.1)
    assert reconciler.prune_if_due() == 1
