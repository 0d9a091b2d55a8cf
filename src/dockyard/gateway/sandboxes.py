"""Sessions and their sandboxes: find or make the session a request belongs to, and make it run.

A request names its session (`agent_session_id` in the body, the `x-agent-session-id` header, or the
invocations query) or gets its version's shared session: calls that name none share one sandbox per
version, where Foundry would start a sandbox per call (see the README's differences). A session's
sandbox is a container of its own, started on demand (a cold start), reused while warm, and released
by the reconciler once idle; its state lives on a per-session volume, so a released session resumes
where it stopped. Routing state is in the store, so a second dockyard on the same store routes the
same way; this process keeps what it read for a second at most (less if it changed it meanwhile), so
a warm request does not wait for the database at all.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from dockyard.domain.admission import Sandbox
from dockyard.domain.errors import DockyardError, NotFound, ServiceUnavailable
from dockyard.domain.sessions import Session, SessionStatus, idle_timeout_from, validate_session_id
from dockyard.gateway import tracing
from dockyard.gateway.routing import pick_version
from dockyard.identity.ownership import OPERATOR_SUBJECT, Caller, Owner, may_enter, owner_of
from dockyard.reconciler import Reconciler
from dockyard.runtime.base import RuntimeFailure, WorkloadKey
from dockyard.store.agents import AgentStore, DesiredVersion
from dockyard.store.sessions import Route, SessionStore, session_not_found
from dockyard.store.write_behind import WriteBehind

log = logging.getLogger("dockyard.gateway")


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


@dataclass(frozen=True)
class _Routing:
    """What picking a version for an agent's request needs, as read at `generation` of the agent store."""

    read_at: float
    generation: int
    enabled: bool
    endpoint: dict[str, Any] | None
    versions: list[DesiredVersion]


def shared_session_id(version_uid: str, owner: Owner | None = None) -> str:
    """The session that calls naming none share, one per version and owner: 32 hex characters, like any
    session id. The operator's, undelegated, is the one every caller shared before sessions had owners."""
    if owner is None or owner == Owner(OPERATOR_SUBJECT):
        return hashlib.sha256(f"shared-session:{version_uid}".encode()).hexdigest()[:32]
    seed = f"shared-session:{version_uid}:{len(owner.subject)}:{owner.subject}:{owner.user or ''}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


# Past `cache_seconds`, what was read still serves requests for up to this many times as long while a
# background read refreshes it, so no request waits for the store after the first.
_STALE_LIMIT = 10


class Sandboxes:
    def __init__(self, agents: AgentStore, sessions: SessionStore, reconciler: Reconciler,
                 readiness_timeout_seconds: float = 120.0, warm_seconds: float = 2.0,
                 cache_seconds: float = 1.0) -> None:
        self.agents = agents
        self.sessions = sessions
        self.reconciler = reconciler
        self.readiness_timeout_seconds = readiness_timeout_seconds
        # A sandbox seen running this recently is trusted without asking the engine again: asking
        # costs tens of milliseconds, and a request that finds it gone after all is retried cold.
        # Past that, requests still go to it while a background check asks the engine.
        self.warm_seconds = warm_seconds
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dockyard-gateway-refresh")
        self._refreshing: set[object] = set()
        # How long what was read from the store serves requests: the lag after which a change made by
        # another replica (a disabled agent, a new split) is seen here. This process's own changes
        # are seen at once.
        self.cache_seconds = cache_seconds
        self.writes = WriteBehind()
        self._warm: dict[str, tuple[float, Target]] = {}
        self._touched: dict[str, float] = {}
        self._routing: dict[tuple[str, str], _Routing] = {}
        self._sessions: dict[str, tuple[float, Session]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def open(self, project: str, agent_name: str, *, session_id: str | None, pinned_version: str | None,
             caller: Caller, draw: float | None = None) -> Session:
        """The request's session: the one it names (made if new, the caller's) or the caller's shared one
        of its version. A named session the caller may not enter is answered as a missing one (404).

        `draw` (uniform in [0, 1)) decides a traffic split; pass the one `open_cached` was given.
        """
        session = self._open(project, agent_name, session_id, pinned_version, draw, caller, cached_only=False)
        assert session is not None
        return session

    def open_cached(self, project: str, agent_name: str, *, session_id: str | None, pinned_version: str | None,
                    caller: Caller, draw: float) -> Session | None:
        """`open` from what this process already knows, without blocking; None when the store is needed."""
        return self._open(project, agent_name, session_id, pinned_version, draw, caller, cached_only=True)

    def _open(self, project: str, agent_name: str, session_id: str | None, pinned_version: str | None,
              draw: float | None, caller: Caller, *, cached_only: bool) -> Session | None:
        session = self._open_any(project, agent_name, session_id, pinned_version, draw, caller,
                                 cached_only=cached_only)
        if session is not None and not may_enter(caller, owner_of(session.owner_subject, session.owner_user)):
            raise session_not_found(agent_name, session.id)
        return session

    def _open_any(self, project: str, agent_name: str, session_id: str | None, pinned_version: str | None,
                  draw: float | None, caller: Caller, *, cached_only: bool) -> Session | None:
        routing = self._routing_of(project, agent_name, cached_only)
        if routing is None:
            return None
        if not routing.enabled:
            raise AgentDisabled(f"Agent {agent_name!r} is disabled. "
                                "Enable it with client.agents.enable(agent_name=...) "
                                "(POST …/agents/{name}:enable).")
        if session_id is not None:
            validate_session_id(session_id)
            existing = self._session(project, agent_name, session_id, cached_only)
            if existing is not None or cached_only:
                return existing
        chosen = pick_version([v.version for v in routing.versions], routing.endpoint, pinned_version, draw)
        desired = next(v for v in routing.versions if v.version.number == chosen.number)
        if session_id is None:
            session_id = shared_session_id(desired.uid, caller.owner)
            existing = self._session(project, agent_name, session_id, cached_only)
            if existing is not None or cached_only:
                return existing
        now = time.time()
        session = self.sessions.create(Session(
            id=session_id, project=project, agent_name=agent_name, version_uid=desired.uid,
            version=chosen.version, status=SessionStatus.CREATING,
            idle_timeout_seconds=idle_timeout_from(chosen.definition.options), created_at=int(now),
            last_accessed_at=now, owner_subject=caller.subject, owner_user=caller.user,
        ))
        self._sessions[session.id] = (time.monotonic(), session)
        return session

    def _routing_of(self, project: str, agent_name: str, cached_only: bool) -> _Routing | None:
        key = (project, agent_name)
        cached = self._routing.get(key)
        if cached is not None and cached.generation == self.agents.generation:
            age = time.monotonic() - cached.read_at
            if age < self.cache_seconds:
                return cached
            if cached_only and age < _STALE_LIMIT * self.cache_seconds:
                self._refresh(("routing", *key), self._read_routing, project, agent_name)
                return cached
        return None if cached_only else self._read_routing(project, agent_name)

    def _read_routing(self, project: str, agent_name: str) -> _Routing:
        generation = self.agents.generation
        try:
            enabled, endpoint = self.agents.endpoint_of(project, agent_name)
            versions = self.agents.desired_versions_of(project, agent_name)
        except NotFound:
            self._routing.pop((project, agent_name), None)
            raise
        routing = _Routing(read_at=time.monotonic(), generation=generation, enabled=enabled, endpoint=endpoint,
                           versions=versions)
        self._routing[(project, agent_name)] = routing
        return routing

    def _session(self, project: str, agent_name: str, session_id: str, cached_only: bool) -> Session | None:
        cached = self._sessions.get(session_id)
        if cached is not None:
            age = time.monotonic() - cached[0]
            fresh = age < self.cache_seconds
            if not fresh and cached_only and age < _STALE_LIMIT * self.cache_seconds:
                self._refresh(("session", session_id), self._read_session, project, agent_name, session_id)
                fresh = True
            if fresh:
                session = cached[1]
                return session if (session.project, session.agent_name) == (project, agent_name) else None
        return None if cached_only else self._read_session(project, agent_name, session_id)

    def _read_session(self, project: str, agent_name: str, session_id: str) -> Session | None:
        session = self.sessions.find(project, agent_name, session_id)
        if session is None:
            self._sessions.pop(session_id, None)
        else:
            self._sessions[session_id] = (time.monotonic(), session)
        return session

    def _refresh(self, key: object, read: Callable[..., object], *args: object) -> None:
        """Read (or ask the engine) again in the background, while requests go on with what was known a
        moment ago; one refresh of each thing at a time."""
        if key in self._refreshing:
            return
        self._refreshing.add(key)

        def run() -> None:
            try:
                read(*args)
            except Exception:  # gone or unreadable: the next request reads it itself
                log.debug("background refresh of %r failed", key, exc_info=True)
            finally:
                self._refreshing.discard(key)

        self._background.submit(run)

    def warm(self, session: Session) -> Target | None:
        """The session's sandbox if it was seen running a moment ago: no engine, no database, no waiting."""
        warm = self._warm.get(session.id)
        if warm is None:
            return None
        age = time.monotonic() - warm[0]
        if age >= 4 * self.warm_seconds:
            return None
        if age >= self.warm_seconds:
            self._refresh(("sandbox", session.id), self._check, warm[1])
        self.touch(session.id)
        return warm[1]

    def _check(self, target: Target) -> None:
        """Ask the engine whether a warm sandbox still runs, off the request path."""
        session_id = target.session.id
        runtime = self.reconciler.runtime
        try:
            observed = runtime.observe(WorkloadKey(target.session.version_uid, session_id)) if runtime else None
        except RuntimeFailure:
            # The engine is away (killed, restarted, upgraded), but its containers run on without it: a
            # sandbox that still answers its readiness probe keeps serving; one that does not is cold.
            if self.reconciler.ready(target.endpoint):
                self._warm[session_id] = (time.monotonic(), target)
            else:
                self._warm.pop(session_id, None)
            return
        except Exception:  # the engine did not answer: the next request asks it itself
            self._warm.pop(session_id, None)
            raise
        if observed is not None and observed.running and observed.endpoint == target.endpoint:
            self._warm[session_id] = (time.monotonic(), target)
        else:
            self._warm.pop(session_id, None)

    def ensure_running(self, session: Session) -> Target:
        """Start the session's sandbox if it is not running, wait until it is ready, and mark the session used."""
        warm = self.warm(session)
        if warm is not None:
            return warm
        runtime = self.reconciler.runtime
        if runtime is None:
            raise GatewayError("dockyard has no container engine, so no sandbox can run.",
                               code="ContainerRuntimeUnavailable")
        desired = self.version_of(session)
        key = WorkloadKey(session.version_uid, session.id)
        with self._lock(session.id):
            try:
                observed = runtime.observe(key)
            except RuntimeFailure as failure:  # the engine does not answer
                raise GatewayError(f"The session's sandbox could not start: {failure.message}",
                                   code=failure.code) from None
            cold = observed is None or not observed.running
            # A cold start must fit in the budget first (429 TooManySandboxes, or room made by releasing
            # the longest-idle sessions); its place is held until the runtime lists it.
            with self._admitted(desired, session) if cold else nullcontext():
                # Mark the session in use before starting it, or the reconciler, seeing an idle session's
                # container appear, would release it again while it boots.
                self.sessions.touch(session.id)
                self._touched[session.id] = time.monotonic()
                if cold:
                    tracing.cold_start(session)
                    try:
                        observed = runtime.ensure_running(self.reconciler.workload(desired, session.id))
                    except RuntimeFailure as failure:
                        raise GatewayError(f"The session's sandbox could not start: {failure.message}",
                                           code=failure.code) from None
            if cold:
                assert observed is not None
                self._wait_until_ready(observed.endpoint)
                # The idle clock starts when the sandbox can answer, not when it began to boot.
                self.sessions.touch(session.id)
        assert observed is not None and observed.endpoint is not None
        target = Target(session=session, version=desired, endpoint=observed.endpoint)
        self._warm[session.id] = (time.monotonic(), target)
        return target

    @contextmanager
    def _admitted(self, desired: DesiredVersion, session: Session) -> Iterator[None]:
        with self.reconciler.admitted(self.reconciler.sandbox_of(desired, session)) as decision:
            for victim in decision.evict if decision is not None else ():
                self._evict(victim)
            yield

    def _evict(self, victim: Sandbox) -> None:
        """Release another session's sandbox to make room, as an idle release does (its state is kept)."""
        version_uid, session_id = victim.key
        log.info("releasing session %s of %s to make room for a new sandbox (--on-full evict)", session_id,
                 victim.agent[1])
        self.forget(session_id)
        try:
            self.sessions.set_status(session_id, SessionStatus.IDLE)
            if self.reconciler.runtime is not None:
                self.reconciler.runtime.stop(WorkloadKey(version_uid, session_id))
        finally:
            if self.reconciler.admission is not None:
                self.reconciler.admission.evicted(victim.key)

    def version_of(self, session: Session) -> DesiredVersion:
        """The version the session runs, as the store has it now; 404 once it is deleted."""
        desired = next((v for v in self.agents.desired_versions_of(session.project, session.agent_name)
                        if v.uid == session.version_uid), None)
        if desired is None:
            raise NotFound(f"Version {session.version} of {session.agent_name!r}, which session {session.id} runs, "
                           "no longer exists. Start a new session.", code="AgentVersionNotFound")
        return desired

    def record_response(self, response_id: str, session_id: str, owner: Owner) -> None:
        """Remember which session made a response, and for whom, for its GET/cancel/delete and for
        continuing it; written after answering."""
        self.writes.submit(self.sessions.route_response, response_id, session_id, owner.subject, owner.user)

    def record_invocation(self, invocation_id: str, session_id: str, owner: Owner) -> None:
        """Remember which session ran an invocation, and for whom, for its GET/cancel; written after answering."""
        self.writes.submit(self.sessions.route_invocation, invocation_id, session_id, owner.subject, owner.user)

    def session_of_response(self, response_id: str) -> tuple[Session, Owner | None] | None:
        """The session a response lives in and whose the response is; None if dockyard made no such response."""
        return self._routed(self.sessions.response_route, response_id)

    def session_of_invocation(self, invocation_id: str) -> tuple[Session, Owner | None] | None:
        return self._routed(self.sessions.invocation_route, invocation_id)

    def _routed(self, lookup: Callable[[str], Route | None], routed_id: str) -> tuple[Session, Owner | None] | None:
        route = lookup(routed_id)
        if route is None and self.writes.flush():
            route = lookup(routed_id)  # recorded a moment ago, here, and not yet written
        session = self.sessions.by_id(route.session_id) if route is not None else None
        if route is None or session is None:
            return None
        return session, owner_of(route.owner_subject, route.owner_user)

    def forget(self, session_id: str) -> None:
        """The sandbox did not answer, or the session changed: the next request asks again."""
        self._warm.pop(session_id, None)
        self._sessions.pop(session_id, None)

    def touch(self, session_id: str) -> None:
        """The session is in use. The idle clock needs seconds, not every request: written (behind the
        answer) at most once a second per session."""
        last = self._touched.get(session_id, 0.0)
        if time.monotonic() - last >= 1.0:
            self._touched[session_id] = time.monotonic()
            self.writes.submit(self.sessions.touch, session_id)

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
            with _engine_unavailable_as_503("stopped"):
                self.reconciler.runtime.stop(WorkloadKey(session.version_uid, session.id))
        self.sessions.set_status(session.id, SessionStatus.IDLE)

    def delete(self, session: Session) -> None:
        self.forget(session.id)
        if self.reconciler.runtime is not None:
            with _engine_unavailable_as_503("deleted"):
                self.reconciler.runtime.discard(WorkloadKey(session.version_uid, session.id))
        self.sessions.delete(session.id)


@contextmanager
def _engine_unavailable_as_503(what: str) -> Iterator[None]:
    """An engine that does not answer is the caller's 503 (retry later), never a 500; the session stays."""
    try:
        yield
    except RuntimeFailure as failure:
        raise ServiceUnavailable(f"The session could not be {what} now: {failure.message}",
                                 code=failure.code) from None
