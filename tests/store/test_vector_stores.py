"""Vector stores past their `expires_after`: shown `expired`, then deleted with their files, chunks and index by
the periodic sweep (the reconciler's loop), in a real SQLite store with a real usearch index."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from dockyard.domain.errors import BadRequest, NotFound
from dockyard.housekeeping import Retention, sweeps
from dockyard.identity.ownership import Owner
from dockyard.reconciler import Reconciler, ReconcilerSettings
from dockyard.store.agents import AgentStore
from dockyard.store.files import FileStore
from dockyard.store.registries import RegistryStore
from dockyard.store.secrets import SecretBox
from dockyard.store.tables import VectorStoreRow
from dockyard.store.vector_stores import VectorStoreRepository
from dockyard.tools.vector_search import VectorSearch

ME = Owner("user:me", None)
DAY = 24 * 3600


def make_store(engine: Engine, repository: VectorStoreRepository, *, days: int | None,
               last_active_ago: float = 0.0) -> str:
    """A store with one file, two chunks and their vectors, last active `last_active_ago` seconds ago."""
    store = repository.create("default", ME, name=None, metadata={}, embedding_deployment="local-embeddings",
                              expires_after={"anchor": "last_active_at", "days": days} if days else None)
    repository.add_file("default", ME, store.id, "file-1", chunking_strategy={}, attributes={})
    keys = repository.add_chunks(store.id, "file-1", ["tide tables", "harbour charts"])
    repository.index(store.id).add(keys, [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
    repository.finish_file(store.id, "file-1", 24)
    with engine.begin() as connection:
        connection.execute(update(VectorStoreRow).where(VectorStoreRow.id == store.id)
                           .values(last_active_at=int(time.time() - last_active_ago)))
    return store.id


def test_expired_stores_are_deleted_after_the_grace_with_their_chunks_and_index(engine: Engine,
                                                                                 tmp_path: Path) -> None:
    repository = VectorStoreRepository(engine, tmp_path / "vector_stores")
    long_expired = make_store(engine, repository, days=1, last_active_ago=3 * DAY)
    just_expired = make_store(engine, repository, days=1, last_active_ago=DAY + 60)
    active = make_store(engine, repository, days=7, last_active_ago=DAY)
    forever = make_store(engine, repository, days=None, last_active_ago=400 * DAY)
    assert repository.get("default", ME, just_expired).to_wire()["status"] == "expired"
    assert repository.get("default", ME, active).to_wire()["status"] == "completed"
    folder = repository.index(long_expired).folder
    assert folder.is_dir()

    assert repository.delete_expired(grace_seconds=DAY) == [long_expired]
    with pytest.raises(NotFound):
        repository.get("default", ME, long_expired)
    assert repository.chunks([long_expired]) == [] and not folder.exists()
    assert repository.file_attributes([long_expired]) == {}
    # Still inside its grace: shown expired, its chunks kept.
    assert repository.get("default", ME, just_expired).to_wire()["status"] == "expired"
    assert len(repository.chunks([just_expired])) == 2 and len(repository.index(just_expired)) == 2
    # Past the grace (a day later), it goes too; stores not expired never do.
    assert repository.delete_expired(grace_seconds=DAY, now=time.time() + DAY) == [just_expired]
    assert repository.delete_expired(grace_seconds=0, now=time.time() + 5 * DAY) == []
    assert {s.id for s in repository.list_stores("default", ME, limit=10, order="asc", after=None,
                                                 before=None).items} == {active, forever}


def test_a_store_used_again_is_no_longer_expired_and_is_kept(engine: Engine, tmp_path: Path) -> None:
    repository = VectorStoreRepository(engine, tmp_path / "vector_stores")
    store = make_store(engine, repository, days=1, last_active_ago=3 * DAY)
    repository.touch(store)  # a search or an update: last_active_at is now
    assert repository.get("default", ME, store).to_wire()["status"] == "completed"
    assert repository.delete_expired(grace_seconds=0) == []


def test_the_reconcilers_loop_deletes_expired_stores_once_per_interval(engine: Engine, tmp_path: Path) -> None:
    repository = VectorStoreRepository(engine, tmp_path / "vector_stores")
    reconciler = Reconciler(AgentStore(engine), RegistryStore(engine, SecretBox.generate()), None, lambda *_: {},
                            ReconcilerSettings(prune_interval_seconds=3600),
                            sweeps=sweeps(Retention(expired_vector_store_grace_seconds=DAY), vector_stores=repository))
    expired = make_store(engine, repository, days=1, last_active_ago=3 * DAY)
    assert reconciler.prune_if_due() == 1
    with pytest.raises(NotFound):
        repository.get("default", ME, expired)
    again = make_store(engine, repository, days=1, last_active_ago=3 * DAY)
    assert reconciler.prune_if_due() == 0  # not due again for an hour
    assert repository.get("default", ME, again).id == again


def test_searching_an_expired_store_is_refused_and_does_not_revive_it(engine: Engine, tmp_path: Path) -> None:
    """As in OpenAI, an expired store is no longer available for use (the sweep deletes it after the grace)."""
    repository = VectorStoreRepository(engine, tmp_path / "vector_stores")
    expired = make_store(engine, repository, days=1, last_active_ago=DAY + 60)
    search = VectorSearch(repository, FileStore(engine, tmp_path / "files"), {}, "local-embeddings")
    with pytest.raises(BadRequest) as refused:
        asyncio.run(search.search("default", ME, [expired], ["tide"]))
    assert refused.value.code == "VectorStoreExpired"
    assert repository.get("default", ME, expired).to_wire()["status"] == "expired"
