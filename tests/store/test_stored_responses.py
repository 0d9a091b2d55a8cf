"""The response store behind the project's storage API: the adapter's own store's semantics, scoped to an agent
and a caller, on a real migrated SQLite database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard.domain.errors import BadRequest, Conflict, NotFound
from dockyard.identity.ownership import Owner
from dockyard.store.database import migrate, open_engine, sqlite_url
from dockyard.store.stored_responses import StorageScope, StoredResponses

ALICE = StorageScope("default", "helper", Owner("user:alice"))
ALICE_FOR_CAROL = StorageScope("default", "helper", Owner("user:alice", "carol"))
BOB = StorageScope("default", "helper", Owner("user:bob"))
OTHER_AGENT = StorageScope("default", "other", Owner("user:alice"))


@pytest.fixture
def store(tmp_path: Path) -> StoredResponses:
    engine = open_engine(sqlite_url(tmp_path / "dockyard.db"))
    migrate(engine)
    return StoredResponses(engine)


def message(item_id: str, text: str, role: str = "user") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


def response(response_id: str, *outputs: dict[str, Any], status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {"id": response_id, "object": "response", "status": status, "output": list(outputs), **extra}


def turn(store: StoredResponses, scope: StorageScope, number: int, previous: str | None = None,
         conversation: str | None = None) -> str:
    """One turn as the adapter stores it: history ids first, then create, then the final snapshot."""
    response_id = f"caresp_{number}"
    history = store.history_item_ids(scope, previous, conversation, 100) if previous or conversation else []
    extra = {"conversation": {"id": conversation}} if conversation else {}
    store.create(scope, response(response_id, status="in_progress", **extra),
                 [message(f"in_{number}", f"question {number}")], history)
    store.update(scope, response(response_id, message(f"out_{number}", f"answer {number}", "assistant"), **extra))
    return response_id


def test_a_turn_is_kept_with_its_input_and_its_final_output(store: StoredResponses) -> None:
    first = turn(store, ALICE, 1)
    assert store.get(ALICE, first)["status"] == "completed"
    assert store.items(ALICE, ["out_1", "nope", "in_1"]) == [
        message("out_1", "answer 1", "assistant"), None, message("in_1", "question 1")]
    page = store.input_items(ALICE, first, ascending=True)
    assert page.to_wire() == {"object": "list", "data": [message("in_1", "question 1")], "first_id": "in_1",
                              "last_id": "in_1", "has_more": False}


def test_history_chains_through_previous_responses(store: StoredResponses) -> None:
    first = turn(store, ALICE, 1)
    second = turn(store, ALICE, 2, previous=first)
    assert store.history_item_ids(ALICE, second, None, 100) == ["in_1", "out_1", "in_2", "out_2"]
    assert store.history_item_ids(ALICE, second, None, 3) == ["out_1", "in_2", "out_2"]  # the most recent
    assert store.history_item_ids(ALICE, second, None, -1) == ["in_1", "out_1", "in_2", "out_2"]
    assert store.history_item_ids(ALICE, second, None, 0) == []
    # The second turn's input items are its history, then its own input; newest first unless asked.
    assert [i["id"] for i in store.input_items(ALICE, second).data] == ["in_2", "out_1", "in_1"]
    assert [i["id"] for i in store.input_items(ALICE, second, ascending=True, after="in_1").data] == ["out_1",
                                                                                                    "in_2"]
    page = store.input_items(ALICE, second, ascending=True, limit=2)
    assert ([i["id"] for i in page.data], page.has_more) == (["in_1", "out_1"], True)
    assert [i["id"] for i in store.input_items(ALICE, second, ascending=True, before="in_2").data] == [
        "in_1", "out_1"]


def test_history_of_a_conversation_is_every_turn_in_it(store: StoredResponses) -> None:
    turn(store, ALICE, 1, conversation="conv_a")
    turn(store, ALICE, 2, conversation="conv_b")
    turn(store, ALICE, 3, conversation="conv_a")
    assert store.history_item_ids(ALICE, None, "conv_a", 100) == ["in_1", "out_1", "in_3", "out_3"]
    assert store.history_item_ids(ALICE, None, "conv_new", 100) == []
    assert store.history_item_ids(BOB, None, "conv_a", 100) == []


def test_another_caller_agent_or_delegated_user_meets_what_does_not_exist(store: StoredResponses) -> None:
    first = turn(store, ALICE, 1, conversation="conv_a")
    for stranger in (BOB, OTHER_AGENT, ALICE_FOR_CAROL):
        for attempt in (lambda s: store.get(s, first), lambda s: store.history_item_ids(s, first, None, 10),
                        lambda s: store.input_items(s, first), lambda s: store.delete(s, first),
                        lambda s: store.update(s, response(first))):
            with pytest.raises(NotFound) as caught:
                attempt(stranger)
            assert (caught.value.code, caught.value.message) == ("ResponseNotFound",
                                                                 "Response 'caresp_1' was not found.")
        assert store.items(stranger, ["in_1", "out_1"]) == [None, None]
    with pytest.raises(NotFound):
        store.get(ALICE, "caresp_never")
    assert store.get(ALICE, first)["id"] == first  # untouched by all of that


def test_a_taken_id_is_a_conflict_the_adapter_reads_as_already_exists(store: StoredResponses) -> None:
    first = turn(store, ALICE, 1)
    for scope in (ALICE, BOB):
        with pytest.raises(Conflict) as caught:
            store.create(scope, response(first), [], [])
        assert "already exists" in caught.value.message
    with pytest.raises(BadRequest):
        store.create(ALICE, {"object": "response"}, [], [])


def test_update_replaces_the_output_and_delete_removes_response_and_items(store: StoredResponses) -> None:
    first = turn(store, ALICE, 1)
    store.update(ALICE, response(first, message("out_1b", "revised", "assistant")))
    assert store.items(ALICE, ["out_1", "out_1b"]) == [None, message("out_1b", "revised", "assistant")]
    store.delete(ALICE, first)
    with pytest.raises(NotFound):
        store.get(ALICE, first)
    assert store.items(ALICE, ["in_1", "out_1b"]) == [None, None]
    assert store.find("default", None, first) is None
    turn(store, ALICE, 1)  # the id may be used again once deleted, as in the adapter's own store


def test_find_is_for_the_gateway_and_names_the_owner(store: StoredResponses) -> None:
    first = turn(store, ALICE_FOR_CAROL, 1)
    found = store.find("default", "helper", first)
    assert found is not None and found.scope == ALICE_FOR_CAROL and found.body["status"] == "completed"
    assert store.find("default", None, first) is not None
    assert store.find("default", "other", first) is None
    assert store.find("elsewhere", None, first) is None


def test_items_without_an_id_are_not_kept(store: StoredResponses) -> None:
    store.create(ALICE, response("caresp_x", {"type": "message", "content": []}), [{"type": "message"}], [])
    assert store.input_items(ALICE, "caresp_x").data == []
