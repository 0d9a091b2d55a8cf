from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from dockyard.domain.agents import VersionError, VersionStatus
from dockyard.domain.definitions import HostedDefinition
from dockyard.domain.errors import BadRequest, NotFound
from dockyard.domain.paging import PageRequest
from dockyard.store.agents import AgentStore
from dockyard.store.database import migrate, open_engine, sqlite_url

PROJECT = "default"
DEFINITION = HostedDefinition.from_wire(
    {
        "kind": "hosted",
        "container_configuration": {"image": "localhost:5000/agent:v1", "registry_connection_id": "local"},
        "protocol_versions": [{"protocol": "responses", "version": "v1"}],
        "cpu": "0.5",
        "memory": "1Gi",
        "environment_variables": {"MODEL": "gpt-4o"},
        "session_configuration": {"idle_timeout_seconds": 300},
    }
)


class Clock:
    """A clock the test moves by hand: one second per reading."""

    def __init__(self, start: int = 1_700_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "dockyard.db"


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    engine = open_engine(sqlite_url(db_path))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(engine: Engine, clock: Clock) -> AgentStore:
    return AgentStore(engine, clock=clock)


def page(limit: int = 20, order: str = "desc", after: str | None = None, before: str | None = None) -> PageRequest:
    return PageRequest.parse(limit, order, after, before)


def numbers(store: AgentStore, name: str, request: PageRequest | None = None) -> list[int]:
    return [v.number for v in store.list_versions(PROJECT, name, request or page(limit=100, order="asc")).items]


# -- versions -----------------------------------------------------------------------------------------


def test_create_version(store: AgentStore, clock: Clock) -> None:
    version = store.create_version(
        PROJECT, "agent", DEFINITION, description="first", metadata={"team": "search"}
    )
    assert (version.agent_name, version.number, version.id, version.version) == ("agent", 1, "agent:1", "1")
    assert version.created_at == clock.now
    assert version.definition == DEFINITION
    assert version.description == "first"
    assert version.metadata == {"team": "search"}
    assert version.status is VersionStatus.CREATING
    assert version.error is None


def test_get_version_returns_what_was_created(store: AgentStore) -> None:
    created = store.create_version(PROJECT, "agent", DEFINITION, description="d", metadata={"k": "v"})
    assert store.get_version(PROJECT, "agent", "1") == created
    assert store.get_version(PROJECT, "agent", "agent:1") == created


def test_versions_are_numbered_per_agent(store: AgentStore) -> None:
    assert [store.create_version(PROJECT, "a", DEFINITION).number for _ in range(3)] == [1, 2, 3]
    assert store.create_version(PROJECT, "b", DEFINITION).number == 1


def test_projects_are_separate(store: AgentStore) -> None:
    store.create_version(PROJECT, "agent", DEFINITION)
    assert store.create_version("other", "agent", DEFINITION).number == 1
    store.delete_agent("other", "agent")
    assert store.get_agent(PROJECT, "agent").name == "agent"
    with pytest.raises(NotFound):
        store.get_agent("other", "agent")


def test_numbering_continues_after_a_delete(store: AgentStore) -> None:
    for _ in range(3):
        store.create_version(PROJECT, "agent", DEFINITION)
    store.delete_version(PROJECT, "agent", "2")
    assert numbers(store, "agent") == [1, 3]
    assert store.create_version(PROJECT, "agent", DEFINITION).number == 4
    assert numbers(store, "agent") == [1, 3, 4]


def test_numbering_continues_after_deleting_the_latest(store: AgentStore) -> None:
    for _ in range(3):
        store.create_version(PROJECT, "agent", DEFINITION)
    store.delete_version(PROJECT, "agent", "agent:3")
    assert store.get_agent(PROJECT, "agent").latest.number == 2
    assert store.create_version(PROJECT, "agent", DEFINITION).number == 4


def test_deleting_the_last_version_removes_the_agent(store: AgentStore) -> None:
    store.create_version(PROJECT, "agent", DEFINITION)
    store.create_version(PROJECT, "agent", DEFINITION)
    store.delete_version(PROJECT, "agent", "1")
    assert store.get_agent(PROJECT, "agent").latest.number == 2
    store.delete_version(PROJECT, "agent", "2")
    with pytest.raises(NotFound) as info:
        store.get_agent(PROJECT, "agent")
    assert info.value.code == "AgentNotFound"
    assert store.list_agents(PROJECT, page()).items == []


@pytest.mark.parametrize("version", ["2", "agent:2", "0", "01", "x", ""])
def test_unknown_version(store: AgentStore, version: str) -> None:
    store.create_version(PROJECT, "agent", DEFINITION)
    for call in (
        lambda: store.get_version(PROJECT, "agent", version),
        lambda: store.delete_version(PROJECT, "agent", version),
    ):
        with pytest.raises(NotFound) as info:
            call()
        assert info.value.code == "AgentVersionNotFound"
        assert info.value.status_code == 404
        assert repr(version) in info.value.message
    assert numbers(store, "agent") == [1]


def test_a_version_id_of_another_agent_is_not_found(store: AgentStore) -> None:
    store.create_version(PROJECT, "agent", DEFINITION)
    with pytest.raises(NotFound):
        store.get_version(PROJECT, "agent", "other:1")


def test_unknown_agent(store: AgentStore) -> None:
    calls = (
        lambda: store.get_agent(PROJECT, "ghost"),
        lambda: store.delete_agent(PROJECT, "ghost"),
        lambda: store.get_version(PROJECT, "ghost", "1"),
        lambda: store.delete_version(PROJECT, "ghost", "1"),
        lambda: store.list_versions(PROJECT, "ghost", page()),
    )
    for call in calls:
        with pytest.raises(NotFound) as info:
            call()
        assert info.value.code == "AgentNotFound"
        assert info.value.status_code == 404
        assert "'ghost'" in info.value.message


# -- status -------------------------------------------------------------------------------------------


def observe(store: AgentStore, version: str, status: VersionStatus, error: VersionError | None = None) -> bool:
    """What the reconciler does: record an observation for a version, by its uid."""
    return store.set_status(store.version_uid(PROJECT, "agent", version), status, error)


def test_set_status(store: AgentStore, clock: Clock) -> None:
    store.create_version(PROJECT, "agent", DEFINITION)
    assert observe(store, "1", VersionStatus.ACTIVE)
    assert store.get_version(PROJECT, "agent", "1").status is VersionStatus.ACTIVE


def test_set_status_of_a_version_that_is_gone(store: AgentStore) -> None:
    assert store.set_status("no-such-uid", VersionStatus.ACTIVE) is False


def test_failed_status_records_the_error_and_a_recovery_clears_it(store: AgentStore) -> None:
    store.create_version(PROJECT, "agent", DEFINITION)
    error = VersionError("ImagePullBackOff", "The registry refused the pull.")
    assert observe(store, "1", VersionStatus.FAILED, error)
    failed = store.get_version(PROJECT, "agent", "1")
    assert (failed.status, failed.error) == (VersionStatus.FAILED, error)
    observe(store, "1", VersionStatus.ACTIVE)
    assert store.get_version(PROJECT, "agent", "1").error is None


def test_deleted_version_cannot_become_active(store: AgentStore) -> None:
    store.create_version(PROJECT, "agent", DEFINITION)
    observe(store, "1", VersionStatus.DELETING)
    observe(store, "1", VersionStatus.DELETED)
    assert observe(store, "1", VersionStatus.ACTIVE, VersionError("X", "y")) is False
    unchanged = store.get_version(PROJECT, "agent", "1")
    assert (unchanged.status, unchanged.error) == (VersionStatus.DELETED, None)


def test_refused_transition_keeps_the_recorded_error(store: AgentStore) -> None:
    store.create_version(PROJECT, "agent", DEFINITION)
    error = VersionError("ImagePullBackOff", "The registry refused the pull.")
    observe(store, "1", VersionStatus.FAILED, error)
    observe(store, "1", VersionStatus.DELETING, error)
    assert observe(store, "1", VersionStatus.CREATING) is False
    assert store.get_version(PROJECT, "agent", "1").error == error


# -- agents -------------------------------------------------------------------------------------------


def test_get_agent_shows_the_latest_version(store: AgentStore, clock: Clock) -> None:
    first = store.create_version(PROJECT, "agent", DEFINITION)
    latest = store.create_version(PROJECT, "agent", DEFINITION, description="second")
    agent = store.get_agent(PROJECT, "agent")
    assert (agent.name, agent.id, agent.created_at) == ("agent", "agent", first.created_at)
    assert agent.latest == latest


def test_delete_agent_removes_every_version(store: AgentStore) -> None:
    for _ in range(3):
        store.create_version(PROJECT, "agent", DEFINITION)
    store.delete_agent(PROJECT, "agent")
    with pytest.raises(NotFound):
        store.get_version(PROJECT, "agent", "1")
    # A new agent of the same name starts again.
    assert store.create_version(PROJECT, "agent", DEFINITION).number == 1


# -- paging -------------------------------------------------------------------------------------------


@pytest.fixture
def seven(store: AgentStore) -> AgentStore:
    for _ in range(7):
        store.create_version(PROJECT, "agent", DEFINITION)
    return store


@pytest.mark.parametrize(
    ("request_", "expected", "has_more"),
    [
        (page(3, "desc"), [7, 6, 5], True),
        (page(3, "desc", after="agent:5"), [4, 3, 2], True),
        (page(3, "desc", after="2"), [1], False),
        (page(3, "desc", after="1"), [], False),
        (page(3, "asc"), [1, 2, 3], True),
        (page(3, "asc", after="3"), [4, 5, 6], True),
        (page(3, "asc", after="agent:6"), [7], False),
        (page(3, "asc", after="7"), [], False),
        (page(7, "asc"), [1, 2, 3, 4, 5, 6, 7], False),
        (page(6, "asc"), [1, 2, 3, 4, 5, 6], True),
        (page(100, "desc"), [7, 6, 5, 4, 3, 2, 1], False),
        # `before` pages back towards the start, answering in the requested order.
        (page(3, "desc", before="1"), [4, 3, 2], True),
        (page(3, "desc", before="agent:4"), [7, 6, 5], False),
        (page(3, "desc", before="7"), [], False),
        (page(3, "asc", before="7"), [4, 5, 6], True),
        (page(3, "asc", before="4"), [1, 2, 3], False),
        (page(3, "asc", before="1"), [], False),
    ],
)
def test_list_versions_pages(seven: AgentStore, request_: PageRequest, expected: list[int], has_more: bool) -> None:
    result = seven.list_versions(PROJECT, "agent", request_)
    assert [v.number for v in result.items] == expected
    assert result.has_more is has_more


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_walking_every_page_sees_each_version_once(seven: AgentStore, order: str) -> None:
    seen: list[int] = []
    after = None
    while True:
        result = seven.list_versions(PROJECT, "agent", page(2, order, after=after))
        seen += [v.number for v in result.items]
        if not result.has_more:
            break
        after = result.items[-1].id
    assert seen == sorted(range(1, 8), reverse=order == "desc")


def test_paging_skips_deleted_versions(seven: AgentStore) -> None:
    seven.delete_version(PROJECT, "agent", "5")
    assert numbers(seven, "agent", page(2, "desc", after="6")) == [4, 3]
    # A deleted version still works as a cursor: it is a position, not a row.
    assert numbers(seven, "agent", page(2, "desc", after="5")) == [4, 3]


@pytest.mark.parametrize("cursor", ["x", "agent:", "0"])
def test_bad_version_cursor(seven: AgentStore, cursor: str) -> None:
    with pytest.raises(BadRequest) as info:
        seven.list_versions(PROJECT, "agent", page(after=cursor))
    assert info.value.code == "InvalidPaging"


@pytest.fixture
def five_agents(store: AgentStore) -> AgentStore:
    for name in ["a1", "a2", "a3", "a4", "a5"]:
        store.create_version(PROJECT, name, DEFINITION)
    store.create_version(PROJECT, "a2", DEFINITION)  # a2 has two versions; it is still listed once
    store.create_version("other", "elsewhere", DEFINITION)
    return store


@pytest.mark.parametrize(
    ("request_", "expected", "has_more"),
    [
        (page(2, "desc"), ["a5", "a4"], True),
        (page(2, "desc", after="a4"), ["a3", "a2"], True),
        (page(2, "desc", after="a2"), ["a1"], False),
        (page(2, "desc", after="a1"), [], False),
        (page(2, "asc"), ["a1", "a2"], True),
        (page(2, "asc", after="a2"), ["a3", "a4"], True),
        (page(2, "asc", after="a4"), ["a5"], False),
        (page(2, "desc", before="a1"), ["a3", "a2"], True),
        (page(2, "desc", before="a3"), ["a5", "a4"], False),
        (page(2, "asc", before="a5"), ["a3", "a4"], True),
        (page(2, "asc", before="a1"), [], False),
        (page(20, "asc"), ["a1", "a2", "a3", "a4", "a5"], False),
    ],
)
def test_list_agents_pages(five_agents: AgentStore, request_: PageRequest, expected: list[str], has_more: bool) -> None:
    result = five_agents.list_agents(PROJECT, request_)
    assert [a.name for a in result.items] == expected
    assert result.has_more is has_more


def test_listed_agents_carry_their_latest_version(five_agents: AgentStore) -> None:
    latest = {a.name: a.latest.number for a in five_agents.list_agents(PROJECT, page(20)).items}
    assert latest == {"a1": 1, "a2": 2, "a3": 1, "a4": 1, "a5": 1}


def test_list_agents_of_an_empty_project(store: AgentStore) -> None:
    result = store.list_agents(PROJECT, page())
    assert (result.items, result.has_more) == ([], False)


def test_unknown_agent_cursor(five_agents: AgentStore) -> None:
    with pytest.raises(BadRequest) as info:
        five_agents.list_agents(PROJECT, page(after="ghost"))
    assert info.value.code == "InvalidPaging"
    with pytest.raises(BadRequest):
        five_agents.list_agents(PROJECT, page(before="elsewhere"))  # exists, but in another project


# -- concurrency and durability -----------------------------------------------------------------------


def test_concurrent_creates_get_distinct_numbers(store: AgentStore) -> None:
    threads = 20
    barrier = threading.Barrier(threads)
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def create() -> None:
        try:
            barrier.wait(timeout=30)
            number = store.create_version(PROJECT, "busy", DEFINITION).number
            with lock:
                results.append(number)
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(exc)

    workers = [threading.Thread(target=create) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers)
    assert errors == []
    assert sorted(results) == list(range(1, threads + 1))
    assert numbers(store, "busy") == list(range(1, threads + 1))
    assert store.get_agent(PROJECT, "busy").latest.number == threads


def test_data_survives_reopening(db_path: Path, engine: Engine, store: AgentStore) -> None:
    created = store.create_version(PROJECT, "agent", DEFINITION, description="kept", metadata={"k": "v"})
    store.create_version(PROJECT, "agent", DEFINITION)
    store.delete_version(PROJECT, "agent", "2")
    observe(store, "1", VersionStatus.FAILED, VersionError("E", "m"))
    engine.dispose()

    reopened = open_engine(sqlite_url(db_path))
    try:
        migrate(reopened)
        again = AgentStore(reopened)
        version = again.get_version(PROJECT, "agent", "1")
        assert version.definition == DEFINITION
        assert (version.description, version.metadata, version.created_at) == ("kept", {"k": "v"}, created.created_at)
        assert (version.status, version.error) == (VersionStatus.FAILED, VersionError("E", "m"))
        assert again.create_version(PROJECT, "agent", DEFINITION).number == 3
    finally:
        reopened.dispose()


def test_after_and_before_together_give_the_items_between(store: AgentStore) -> None:
    for _ in range(9):
        store.create_version(PROJECT, "between", DEFINITION)
    request = PageRequest(limit=10, order="asc", after="between:3", before="between:8")
    assert [v.number for v in store.list_versions(PROJECT, "between", request).items] == [4, 5, 6, 7]
    request = PageRequest(limit=2, order="desc", after="between:8", before="between:3")
    result = store.list_versions(PROJECT, "between", request)
    assert [v.number for v in result.items] == [7, 6] and result.has_more
