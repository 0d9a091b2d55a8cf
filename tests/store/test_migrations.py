from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from dockyard.store.database import migrate, open_engine, sqlite_url
from dockyard.store.tables import Base


def head_revision() -> str:
    versions = Path(migrate.__code__.co_filename).with_name("migrations") / "versions"
    return max(path.name.split("_", 1)[0] for path in versions.glob("[0-9]*_*.py"))


def schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, Base.metadata)


def test_migrations_create_exactly_the_tables(tmp_path: Path) -> None:
    engine = open_engine(sqlite_url(tmp_path / "dockyard.db"))
    migrate(engine)
    assert schema_diff(engine) == []
    assert set(inspect(engine).get_table_names()) == {"agents", "agent_versions", "registry_connections", "sessions",
                                                        "response_routes", "invocation_routes", "model_connections",
                                                        "model_deployments", "alembic_version", "tool_loop_responses",
                                                        "files", "vector_stores", "vector_store_files",
                                                        "vector_store_file_batches", "vector_store_chunks",
                                                        "toolboxes", "toolbox_versions",
                                                        "stored_responses", "stored_response_items",
                                                            "state_stores", "state_store_items"}


def test_an_empty_database_differs(tmp_path: Path) -> None:
    # The comparison above must be able to fail.
    engine = open_engine(sqlite_url(tmp_path / "dockyard.db"))
    assert schema_diff(engine) != []


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "dockyard.db"
    engine = open_engine(sqlite_url(path))
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO agents (project, name, created_at, last_version) VALUES ('default', 'kept', 1, 0)")
        )
    migrate(engine)
    engine.dispose()

    reopened = open_engine(sqlite_url(path))
    migrate(reopened)
    assert schema_diff(reopened) == []
    with reopened.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]
        assert connection.execute(text("SELECT name FROM agents")).scalars().all() == ["kept"]


def test_journal_mode_is_wal(tmp_path: Path) -> None:
    engine = open_engine(sqlite_url(tmp_path / "dockyard.db"))
    migrate(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_sqlite_url(tmp_path: Path) -> None:
    assert sqlite_url(tmp_path / "d.db") == f"sqlite:///{tmp_path}/d.db"


def test_upgrading_a_first_schema_database_keeps_its_versions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A home made by the first release upgrades in place: rows kept, each given its own uid."""
    from alembic import command
    from alembic.config import Config

    from dockyard.store.database import _MIGRATIONS

    engine = open_engine(sqlite_url(tmp_path / "old.db"))
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(text("INSERT INTO agents (project, name, created_at, last_version) "
                                "VALUES ('default', 'a', 1, 2)"))
        for number in (1, 2):
            connection.execute(text(
                "INSERT INTO agent_versions (agent_id, number, created_at, metadata, definition, status, updated_at) "
                f"VALUES (1, {number}, 1, '{{}}', '{{}}', 'creating', 1)"))
    migrate(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT number, uid, restarts FROM agent_versions ORDER BY number")).all()
    assert [r[0] for r in rows] == [1, 2]
    assert all(len(r[1]) == 32 for r in rows) and rows[0][1] != rows[1][1]
    assert [r[2] for r in rows] == [0, 0]


def test_upgrading_a_sessions_database_adds_invocation_routes_and_keeps_its_routes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A home made before invocation routes (0003) upgrades in place, its sessions and response routes kept."""
    from alembic import command
    from alembic.config import Config

    from dockyard.store.database import _MIGRATIONS
    from dockyard.store.sessions import SessionStore

    engine = open_engine(sqlite_url(tmp_path / "sessions.db"))
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
        connection.execute(text(
            "INSERT INTO sessions (id, project, agent_name, version_uid, version, status, idle_timeout_seconds, "
            "created_at, last_accessed_at) VALUES ('s1', 'default', 'a', 'u1', '1', 'active', 900, 1, 1.0)"))
        connection.execute(text("INSERT INTO response_routes (response_id, session_id, created_at) "
                                "VALUES ('r1', 's1', 1)"))
    migrate(engine)
    assert schema_diff(engine) == []
    store = SessionStore(engine)
    assert store.session_of_response("r1") == "s1"
    store.route_invocation("inv-1", "s1")
    assert store.session_of_invocation("inv-1") == "s1" and store.session_of_invocation("inv-2") is None
    store.delete("s1")
    assert store.session_of_invocation("inv-1") is None and store.session_of_response("r1") is None
