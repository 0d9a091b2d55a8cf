from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine

from dockyard.domain.errors import Conflict
from dockyard.domain.sessions import Session, SessionStatus
from dockyard.store.sessions import SessionStore


@pytest.fixture
def sessions(engine: Engine) -> SessionStore:
    return SessionStore(engine)


def session(session_id: str, agent_name: str = "agent", version: str = "1") -> Session:
    now = time.time()
    return Session(id=session_id, project="default", agent_name=agent_name, version_uid=f"uid-{version}",
                   version=version, status=SessionStatus.CREATING, idle_timeout_seconds=900, created_at=int(now),
                   last_accessed_at=now)


def test_the_first_of_two_creates_of_one_id_wins(sessions: SessionStore) -> None:
    first = sessions.create(session("s1", version="1"))
    second = sessions.create(session("s1", version="2"))
    assert first.version == second.version == "1"


def test_an_id_in_use_by_another_agent_is_refused(sessions: SessionStore) -> None:
    sessions.create(session("s1", agent_name="agent"))
    with pytest.raises(Conflict) as info:
        sessions.create(session("s1", agent_name="other"))
    assert info.value.code == "SessionIdInUse"
    assert sessions.find("default", "other", "s1") is None


def test_routes_lead_to_their_session_until_it_is_deleted(sessions: SessionStore) -> None:
    sessions.create(session("s1"))
    sessions.route_response("caresp_1", "s1")
    sessions.route_invocation("inv-1", "s1")
    assert sessions.session_of_response("caresp_1") == "s1"
    assert sessions.session_of_invocation("inv-1") == "s1"
    sessions.delete("s1")
    assert sessions.session_of_response("caresp_1") is None
    assert sessions.session_of_invocation("inv-1") is None
    assert sessions.by_id("s1") is None


def test_touch_marks_the_session_active_and_restarts_its_idle_clock(sessions: SessionStore) -> None:
    created = sessions.create(session("s1"))
    sessions.set_status("s1", SessionStatus.IDLE)
    assert sessions.by_id("s1").stopped_at is not None  # type: ignore[union-attr]
    sessions.touch("s1")
    touched = sessions.by_id("s1")
    assert touched is not None and touched.status is SessionStatus.ACTIVE and touched.stopped_at is None
    assert touched.last_accessed_at >= created.last_accessed_at
