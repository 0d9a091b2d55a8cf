"""The tool loop's kept Responses: only their caller finds or deletes one, old ones are pruned (also by the
reconciler's loop, dockyard's periodic sweep), and input items page as OpenAI's lists do."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine

from dockyard.housekeeping import Retention, sweeps
from dockyard.identity.ownership import Caller, Owner
from dockyard.reconciler import Reconciler, ReconcilerSettings
from dockyard.store.agents import AgentStore
from dockyard.store.registries import RegistryStore
from dockyard.store.secrets import SecretBox
from dockyard.store.tool_responses import LoopRecord, ToolResponseStore, page_items

ME = Caller(subject="user:me", user=None, operator=False, oid="me")
SOMEONE_ELSE = Caller(subject="user:other", user=None, operator=False, oid="other")
DAY = 24 * 3600


def record(response_id: str, created_at: float, items: list[dict[str, Any]] | None = None) -> LoopRecord:
    return LoopRecord(id=response_id, project="default", owner=Owner(ME.subject, None), created_at=int(created_at),
                      response={"id": response_id, "object": "response", "output": []},
                      transcript=[{"type": "message", "role": "user", "content": "hi"}], input_items=items or [])


def test_only_its_caller_finds_or_deletes_a_response(engine: Engine) -> None:
    store = ToolResponseStore(engine)
    store.save(record("resp_1", time.time(), [{"id": "msg_1", "type": "message"}]))
    assert store.find("default", SOMEONE_ELSE, "resp_1") is None
    assert not store.delete("default", SOMEONE_ELSE, "resp_1") and not store.delete("other", ME, "resp_1")
    found = store.find("default", ME, "resp_1")
    assert found is not None and found.input_items == [{"id": "msg_1", "type": "message"}]
    assert store.delete("default", ME, "resp_1")
    assert store.find("default", ME, "resp_1") is None and not store.delete("default", ME, "resp_1")


def test_responses_past_their_retention_are_pruned(engine: Engine) -> None:
    store = ToolResponseStore(engine)
    now = time.time()
    store.save(record("resp_old", now - 31 * DAY))
    store.save(record("resp_new", now - 29 * DAY))
    assert store.prune(older_than=now - 30 * DAY) == 1
    assert store.find("default", ME, "resp_old") is None and store.find("default", ME, "resp_new") is not None


def test_the_reconcilers_loop_prunes_once_per_interval(engine: Engine) -> None:
    store = ToolResponseStore(engine)
    reconciler = Reconciler(AgentStore(engine), RegistryStore(engine, SecretBox.generate()), None,
                            lambda *_: {}, ReconcilerSettings(prune_interval_seconds=3600),
                            sweeps=sweeps(Retention(tool_responses_seconds=30 * DAY), tool_responses=store))
    store.save(record("resp_old", time.time() - 31 * DAY))
    assert reconciler.prune_if_due() == 1 and store.find("default", ME, "resp_old") is None
    store.save(record("resp_old_too", time.time() - 31 * DAY))
    assert reconciler.prune_if_due() == 0  # not due again for an hour
    assert store.find("default", ME, "resp_old_too") is not None


def test_input_items_page_newest_first_and_by_id() -> None:
    items = [{"id": f"item_{n}", "type": "message"} for n in range(5)]
    page = page_items(items, limit=2)
    assert [i["id"] for i in page.data] == ["item_4", "item_3"] and page.has_more
    wire = page_items(items, limit=2, after="item_3").to_wire()
    assert [i["id"] for i in wire["data"]] == ["item_2", "item_1"] and wire["has_more"]
    assert (wire["first_id"], wire["last_id"]) == ("item_2", "item_1")
    page = page_items(items, ascending=True, after="item_1", before="item_4")
    assert [i["id"] for i in page.data] == ["item_2", "item_3"] and not page.has_more
    assert page_items([], limit=20).to_wire() == {"object": "list", "data": [], "first_id": None, "last_id": None,
                                                  "has_more": False}
