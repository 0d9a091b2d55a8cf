"""FileStore against a real SQLite database and a real folder: bytes, records, owners, paging, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.domain.errors import BadRequest, NotFound, PayloadTooLarge
from dockyard.identity.ownership import Owner
from dockyard.store.database import migrate, open_engine, sqlite_url
from dockyard.store.files import FileStore, StoredFile

ALICE = Owner("user:alice")
BOB = Owner("user:bob")


@pytest.fixture
def files(tmp_path: Path) -> FileStore:
    engine = open_engine(sqlite_url(tmp_path / "dockyard.db"))
    migrate(engine)
    return FileStore(engine, tmp_path / "files")


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _save(files: FileStore, owner: Owner, data: bytes, name: str = "a.txt", limit: int = 1 << 20) -> StoredFile:
    return asyncio.run(files.save("default", owner, name, "assistants", _chunks(data[:3], data[3:]), limit))


def test_round_trip_keeps_bytes_and_record(files: FileStore) -> None:
    stored = _save(files, ALICE, b"hello world", name="dir/notes.txt")
    got = files.get("default", ALICE, stored.id)
    assert got == stored
    assert got.filename == "notes.txt" and got.bytes == 11 and got.id.startswith("file-")
    assert files.path(got).read_bytes() == b"hello world"
    wire = got.to_wire()
    assert wire["object"] == "file" and wire["purpose"] == "assistants" and wire["bytes"] == 11


def test_another_owner_sees_nothing(files: FileStore) -> None:
    stored = _save(files, ALICE, b"secret")
    with pytest.raises(NotFound) as caught:
        files.get("default", BOB, stored.id)
    assert caught.value.code == "FileNotFound"
    with pytest.raises(NotFound):
        files.get("default", Owner("user:alice", "delegated"), stored.id)
    with pytest.raises(NotFound):
        files.get("other", ALICE, stored.id)
    assert files.list("default", BOB).items == []
    with pytest.raises(NotFound):
        files.delete("default", BOB, stored.id)
    assert files.path(stored).exists()


def test_past_the_limit_is_refused_and_leaves_nothing(files: FileStore) -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        _save(files, ALICE, b"x" * 100, limit=50)
    assert caught.value.code == "FileTooLarge"
    assert list((files.root / "incoming").iterdir()) == []
    assert files.list("default", ALICE).items == []


def test_list_pages_newest_first_and_filters_purpose(files: FileStore) -> None:
    ids = [_save(files, ALICE, str(i).encode() * 4).id for i in range(5)]
    first = files.list("default", ALICE, limit=2)
    assert [f.id for f in first.items] == ids[::-1][:2] and first.has_more
    rest = files.list("default", ALICE, limit=10, after=first.items[-1].id)
    assert [f.id for f in rest.items] == ids[::-1][2:] and not rest.has_more
    assert [f.id for f in files.list("default", ALICE, order="asc", limit=2).items] == ids[:2]
    assert files.list("default", ALICE, purpose="user_data").items == []


def test_delete_removes_bytes_and_record(files: FileStore) -> None:
    stored = _save(files, ALICE, b"bye")
    files.delete("default", ALICE, stored.id)
    assert not files.path(stored).exists()
    with pytest.raises(NotFound):
        files.get("default", ALICE, stored.id)


def test_save_path_moves_a_finished_file_in(files: FileStore, tmp_path: Path) -> None:
    source = tmp_path / "out.csv"
    source.write_bytes(b"a,b\n1,2\n")
    stored = files.save_path("default", ALICE, "out.csv", "user_data", source)
    assert files.path(stored).read_bytes() == b"a,b\n1,2\n" and stored.bytes == 8
    assert not source.exists()


def test_bad_purpose_and_orphans(files: FileStore) -> None:
    with pytest.raises(BadRequest):
        asyncio.run(files.save("default", ALICE, "a", "nonsense", _chunks(b"x"), 10))
    stored = _save(files, ALICE, b"kept")
    (files.root / "file-orphan").write_bytes(b"left by a crash")
    assert files.collect_orphans() == 1
    assert files.path(stored).exists()
