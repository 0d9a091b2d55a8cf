"""Sessions and their sandboxes: find or make the session a request belongs to, and make it run.

A request names its session (`agent_session_id` in the body, the `x-agent-session-id` header, or the
invocations query) or gets a new one. The session's sandbox is a container of its own, started on
demand (a cold start), reused while warm, and released by the reconciler once idle; its state lives
on a per-session volume, so a released session resumes where it stopped. Everything here is read from
and written to the store, so a second dockyard on the same store routes the same way.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from dockyard.domain.errors import NotFound, DockyardError
from dockyard.domain.sessions import Session, SessionStatus, idle_timeout_from, new_session_id, validate_session_id
from dockyard.gateway.routing import pick_version
from dockyard.reconciler import Reconciler
from dockyard.runtime.base import RuntimeFailure, WorkloadKey
from dockyard.store.agents import AgentStore, DesiredVersion
from dockyard.store.sessions import SessionStore


class GatewayError(DockyardError):
    """The platform could not serve the request (no sandbox, sandbox not ready): a 503 with a reason."""

    status_code = 503
    code = "SandboxUnavailable"


class AgentDisabled(DockyardError):
    status_code = 409
    code = "AgentDisabled"


@dataclass(frozen=True)
class Target:
    session: Session
    version: DesiredVersion
    endpoint: str  # e.g. http://127.0.0.1:49153
    cold_start: bool


class Sandboxes:
    def __init__(self, agents: AgentStore, sessions: SessionStore, reconciler: Reconciler,
                 readiness_timeout_seconds: float = 120.0, warm_seconds: float = 2.0) -> None:
        self.agents = agents
        self.sessions = sessions
        self.reconciler = reconciler
        self.readiness_timeout_seconds = readiness_timeout_seconds
        # A sandbox seen running this recently is trusted without asking the engine again: asking
        # costs tens of milliseconds, and a request that finds it gone after all is retried cold.
        self.warm_seconds = warm_seconds
        self._warm: dict[str, tuple[float, Target]] = {}
        self._touched: dict[str, float] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def open(self, project: str, agent_name: str, *, session_id: str | None, pinned_version: str | None) -> Session:
        """The request's session: the one it names (made if new) or a fresh one, on a version picked now."""
        enabled, endpoint = self.agents.endpoint_of(project, agent_name)
        if not enabled:
            raise AgentDisabled(f"Agent {agent_name!r} is disabled. Enable it with client.agents.enable(agent_name=...) "
                                "(POST …/agents/{name}:enable).")
        if session_id is not None:
            validate_session_id(session_id)
            existing = self.sessions.find(project, agent_name, session_id)
            if existing is not None:
                return existing
        versions = self.agents.desired_versions_of(project, agent_name)
        chosen = pick_version([v.version for v in versions], endpoint, pinned_version)
        desired = next(v for v in versions if v.version.number == chosen.number)
        now = time.time()
        return self.sessions.create(Session(
            id=session_id or new_session_id(), project=project, agent_name=agent_name, version_uid=desired.uid,
            version=chosen.version, status=SessionStatus.CREATING,
            idle_timeout_seconds=idle_timeout_from(chosen.definition.options), created_at=int(now),
            last_accessed_at=now,
        ))

    def ensure_running(self, session: Session) -> Target:
        """Start the session's sandbox if it is not running, wait until it is ready, and mark the session used."""
        warm = self._warm.get(session.id)
        if warm is not None and time.monotonic() - warm[0] < self.warm_seconds:
            self._touch(session.id)
            return warm[1]
        runtime = self.reconciler.runtime
        if runtime is None:
            raise GatewayError("dockyard has no container engine, so no sandbox can run.",
                               code="ContainerRuntimeUnavailable")
        desired = next((v for v in self.agents.desired_versions_of(session.project, session.agent_name)
                        if v.uid == session.version_uid), None)
        if desired is None:
            raise NotFound(f"Version {session.version} of {session.agent_name!r}, which session {session.id} runs, "
                           "no longer exists. Start a new session.", code="AgentVersionNotFound")
        key = WorkloadKey(session.version_uid, session.id)
        with self._lock(session.id):
            observed = runtime.observe(key)
            cold = observed is None or not observed.running
            # Mark the session in use before starting it, or the reconciler, seeing an idle session's
            # container appear, would release it again while it boots.
            self.sessions.touch(session.id)
            self._touched[session.id] = time.monotonic()
            if cold:
                try:
                    observed = runtime.ensure_running(self.reconciler.workload(desired, session.id))
                except RuntimeFailure as failure:
                    raise GatewayError(f"The session's sandbox could not start: {failure.message}",
                                       code=failure.code) from None
                self._wait_until_ready(observed.endpoint)
        assert observed is not None and observed.endpoint is not None
        target = Target(session=session, version=desired, endpoint=observed.endpoint, cold_start=cold)
        self._warm[session.id] = (time.monotonic(), Target(session, desired, observed.endpoint, cold_start=False))
        return target

    def forget(self, session_id: str) -> None:
        """The sandbox did not answer: the next request asks the engine (and cold-starts if need be)."""
        self._warm.pop(session_id, None)

    def _touch(self, session_id: str) -> None:
        # The idle clock needs seconds, not every request: write at most once a second per session.
        last = self._touched.get(session_id, 0.0)
        if time.monotonic() - last >= 1.0:
            self._touched[session_id] = time.monotonic()
            self.sessions.touch(session_id)

    def _wait_until_ready(self, endpoint: str | None) -> None:
        deadline = time.monotonic() + self.readiness_timeout_seconds
        while endpoint is not None and time.monotonic() < deadline:
            if self.reconciler.ready(endpoint):
                return
            time.sleep(self.reconciler.settings.readiness_probe_seconds)
        raise GatewayError(f"The session's sandbox did not become ready within {self.readiness_timeout_seconds:.0f}s.")

    def _lock(self, session_id: str) -> threading.Lock:
        # Only to keep two requests of one process from cold-starting the same session twice; the
        # runtime's own de-duplication covers requests arriving at different replicas.
        with self._locks_guard:
            return self._locks.setdefault(session_id, threading.Lock())

    def stop(self, session: Session) -> None:
        self.forget(session.id)
        if self.reconciler.runtime is not None:
            self.reconciler.runtime.stop(WorkloadKey(session.version_uid, session.id))
        self.sessions.set_status(session.id, SessionStatus.IDLE)

    def delete(self, session: Session) -> None:
        self.forget(session.id)
        if self.reconciler.runtime is not None:
            self.reconciler.runtime.discard(WorkloadKey(session.version_uid, session.id))
        self.sessions.delete(session.id)
