"""The reconciler: make what runs match what the store says should run.

Desired state is the store (every version that exists should have a running, ready sandbox); observed
state is the engine (containers labelled with this dockyard's instance id). Each pass compares the two
and takes one idempotent step per version: start, wait for readiness, mark `active`, restart after a
crash, give up with Foundry's error code, or remove what nobody wants any more. Nothing lives only in
memory, so killing dockyard at any point and starting it again converges to the same place, adopting
the containers that are already running instead of starting them twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait as wait_for
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from dockyard.domain.admission import Admission, Decision, Sandbox, TooManySandboxes
from dockyard.domain.agents import VersionError, VersionStatus
from dockyard.domain.errors import (
    CONTAINER_RUNTIME_UNAVAILABLE,
    CRASH_LOOP_BACK_OFF,
    OOM_KILLED,
    READINESS_TIMEOUT,
    DockyardError,
)
from dockyard.domain.images import parse_image_reference
from dockyard.domain.resources import DEFAULT_CPU, DEFAULT_MEMORY, cpu_cores, memory_bytes
from dockyard.domain.sessions import Session, SessionStatus
from dockyard.housekeeping import Sweep
from dockyard.runtime.base import (
    CodeWorkload,
    Observed,
    RegistryCredentials,
    Runtime,
    RuntimeFailure,
    Workload,
    WorkloadKey,
)
from dockyard.runtime.engine import INSTALL_HINT
from dockyard.runtime.python_runtimes import runtime_image
from dockyard.store.agents import AgentStore, DesiredVersion
from dockyard.store.registries import RegistryConnection, RegistryStore
from dockyard.store.sessions import SessionStore

if TYPE_CHECKING:
    from dockyard.store.code_bundles import CodeBundles

log = logging.getLogger("dockyard.reconciler")

# Failures that may cure themselves: an engine restarted or briefly away (retried every
# _ENGINE_RETRY_SECONDS on a runtime that runs images), or one that appears with a restarted dockyard
# (retried once per start: a process runtime refuses an image-based version the same way each time).
_RETRYABLE = {CONTAINER_RUNTIME_UNAVAILABLE}
_ENGINE_RETRY_SECONDS = 15.0
# Sessions whose sandbox may run (a creating one is being cold-started by the gateway right now).
_LIVE_SESSIONS = {SessionStatus.CREATING, SessionStatus.ACTIVE}


@dataclass(frozen=True)
class ReconcilerSettings:
    interval_seconds: float = 2.0
    max_restarts: int = 3
    readiness_timeout_seconds: float = 180.0
    # A cold start waits on this too (the gateway probes as often): a sandbox is ready within 20 ms of being so.
    readiness_probe_seconds: float = 0.02
    readiness_wait_per_pass_seconds: float = 30.0
    workers: int = 8
    log_lines_in_errors: int = 20
    # dockyard.housekeeping's sweeps run at most this often, from this loop.
    prune_interval_seconds: float = 300.0


class Reconciler:
    def __init__(
        self,
        store: AgentStore,
        registries: RegistryStore,
        runtime: Runtime | None,
        environment_for: Callable[[DesiredVersion, str], dict[str, str]],
        settings: ReconcilerSettings = ReconcilerSettings(),
        sessions: SessionStore | None = None,
        bundles: CodeBundles | None = None,
        code_image: str | None = None,
        admission: Admission | None = None,
        sweeps: Sequence[Sweep] = (),
    ) -> None:
        self.store = store
        self.sweeps = list(sweeps)
        self._next_prune = 0.0
        # What sandboxes may start (dockyard.domain.admission); None admits everything.
        self.admission = admission
        self._waiting_for_room: set[str] = set()
        # Code-based versions' unpacked trees; `code_image` replaces the runtime's default base image.
        self.bundles = bundles
        self.code_image = code_image
        # Versions failed with a retryable code under this start, or retried by it already.
        self._retried: set[str] = set()
        self.sessions = sessions
        self.registries = registries
        self.runtime = runtime
        self.environment_for = environment_for
        self.settings = settings
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="reconcile")
        self._thread: threading.Thread | None = None
        self._probe = httpx.Client(timeout=2.0)

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self, *, finish_removals_within: float = 15.0) -> None:
        """Stop the loop, then carry out the removals already decided, for at most the given seconds.

        An agent deleted a moment before a stop would otherwise keep its containers running, and if this
        home never starts again nothing would ever remove them. Nothing is started on the way out.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.runtime is not None and finish_removals_within > 0:
            try:
                futures = [f for f in self.reconcile_once(removals_only=True) if f is not None]
                _, pending = wait_for(futures, timeout=finish_removals_within)
                if pending:
                    log.warning("stopping with %d removal(s) unfinished; the next start finishes them", len(pending))
            except Exception:  # a stop must not fail: the next start reconciles again
                log.exception("finishing removals on stop failed")
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._probe.close()

    def wake(self) -> None:
        """Ask for a pass now rather than at the next tick (after a create or a delete)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.reconcile_once()
            except Exception:  # one bad pass must not stop the loop
                log.exception("reconcile pass failed")
            self.prune_if_due()
            self._wake.wait(self.settings.interval_seconds)
            self._wake.clear()

    def prune_if_due(self) -> int:
        """Run the housekeeping sweeps (dockyard.housekeeping) if a prune interval has passed; how many things
        they removed."""
        if not self.sweeps or time.monotonic() < self._next_prune:
            return 0
        self._next_prune = time.monotonic() + self.settings.prune_interval_seconds
        removed = 0
        for sweep in self.sweeps:
            try:
                count = sweep.run()
            except Exception:  # a locked or full database must not stop the loop: the next interval tries again
                log.exception("removing %s failed", sweep.what)
                continue
            if count:
                log.info("removed %d %s", count, sweep.what)
            removed += count
        return removed

    # -- one pass -----------------------------------------------------------------------------------

    def reconcile_once(self, *, wait: bool = False, removals_only: bool = False) -> list[Future[None] | None]:
        """One pass; the steps it started. `removals_only` (on the way out) starts and restarts nothing."""
        desired = self.store.desired_versions()
        everything: list[Observed] = []
        if self.runtime is not None:
            try:
                everything = self.runtime.list()
            except RuntimeFailure as failure:
                log.warning("cannot list containers: %s", failure.message)
                return []
        observed = {o.key.version_uid: o for o in everything if not o.key.session}
        wanted = {version.uid for version in desired}
        futures = [] if removals_only else [
            self._submit(version.uid, self._converge, version, observed.get(version.uid)) for version in desired]
        for uid, container in observed.items():
            if uid not in wanted:
                futures.append(self._submit(uid, self._remove, container))
        futures += self._release_sessions([o for o in everything if o.key.session], wanted)
        if wait:
            for future in futures:
                if future is not None:
                    future.result()
        return futures

    def _release_sessions(self, containers: list[Observed], versions: set[str]) -> list[Future[None] | None]:
        """Session sandboxes: release idle ones (state kept), remove those of deleted sessions or versions."""
        if self.sessions is None or self.runtime is None:
            return []
        sessions = {s.id: s for s in self.sessions.all()}
        futures = []
        now = time.time()
        for container in containers:
            session = sessions.get(container.key.session)
            if session is None or container.key.version_uid not in versions:
                futures.append(self._submit(f"session:{container.key.session}", self.runtime.discard, container.key))
            elif session.status not in _LIVE_SESSIONS:
                futures.append(self._submit(f"session:{session.id}", self._release, session, container.key))
            elif now - max(session.last_accessed_at, container.started_at or now) > session.idle_timeout_seconds:
                futures.append(self._submit(f"session:{session.id}", self._release_if_idle, session, container))
        return futures

    def _release_if_idle(self, session: Session, container: Observed) -> None:
        """Release a live session's sandbox, unless it is still booting for the request that woke it.

        A cold start can take longer than a short idle timeout (an image pull, a slow machine); released
        then, the request waiting for it would fail after the readiness timeout.
        """
        booting = (container.running and container.endpoint is not None and not self.ready(container.endpoint)
                   and time.time() - (container.started_at or time.time()) < self.settings.readiness_timeout_seconds)
        if not booting:
            self._release(session, container.key)

    def _release(self, session: Session, key: WorkloadKey) -> None:
        assert self.runtime is not None and self.sessions is not None
        log.info("releasing idle session %s of %s:%s", session.id, session.agent_name, session.version)
        self.sessions.set_status(session.id, SessionStatus.IDLE)
        self.runtime.stop(key)

    def _submit(self, uid: str, step: Callable[..., None], *args: object) -> Future[None] | None:
        with self._lock:
            if uid in self._in_flight:
                return None
            self._in_flight.add(uid)

        def run() -> None:
            try:
                step(*args)
            except Exception:  # logged; the next pass tries again
                log.exception("reconciling %s failed", uid)
            finally:
                with self._lock:
                    self._in_flight.discard(uid)

        return self._pool.submit(run)

    def _remove(self, container: Observed) -> None:
        assert self.runtime is not None
        log.info("removing %s:%s (%s): its version no longer exists", container.agent_name, container.version,
                 container.container_id[:12])
        self.runtime.stop(container.key)

    def _converge(self, desired: DesiredVersion, observed: Observed | None) -> None:
        version = desired.version
        key = WorkloadKey(desired.uid)
        if version.status is VersionStatus.FAILED:
            if not self._retry_due(desired):
                if observed is not None and self.runtime is not None:
                    self.runtime.stop(key)
                return
            self._retried.add(desired.uid)
            self._set(desired, VersionStatus.CREATING)
        if self.runtime is None:
            self._fail(desired, CONTAINER_RUNTIME_UNAVAILABLE,
                       "dockyard found no container engine to run this version. " + INSTALL_HINT
                       + " Then restart dockyard; versions that failed for this reason are retried.")
            return
        if observed is not None and not observed.running:
            if not self._restart_allowed(desired, observed):
                return
        if observed is None or not observed.running:
            # The workload is built only to start a container: its environment resolves the version's
            # ${{connections.…}} references, and a running container keeps what it started with (a
            # connection removed meanwhile fails the next start, not the sandbox that runs).
            try:
                with self.admitted(self.sandbox_of(desired)):
                    observed = self.runtime.ensure_running(self.workload(desired))
                self._waiting_for_room.discard(desired.uid)
            except TooManySandboxes as full:
                # Not a failure: the version stays `creating` and a later pass starts it once there is room.
                if desired.uid not in self._waiting_for_room:
                    self._waiting_for_room.add(desired.uid)
                    log.warning("%s:%s waits for room to start: %s", version.agent_name, version.version, full.message)
                return
            except RuntimeFailure as failure:
                self._fail(desired, failure.code, failure.message)
                return
            except DockyardError as error:
                self._fail(desired, error.code, error.message)
                return
        if version.status is not VersionStatus.ACTIVE:
            self._check_readiness(desired, observed)

    def _retry_due(self, desired: DesiredVersion) -> bool:
        """Whether a failed version should be started again now (see _RETRYABLE)."""
        error = desired.version.error
        if error is None or error.code not in _RETRYABLE or self.runtime is None:
            return False
        if desired.uid not in self._retried:
            return True
        return self.runtime.runs_images and time.time() - desired.updated_at >= _ENGINE_RETRY_SECONDS

    def _restart_allowed(self, desired: DesiredVersion, observed: Observed) -> bool:
        assert self.runtime is not None
        key = observed.key
        if observed.oom_killed:
            memory = desired.version.definition.memory
            self._fail(desired, OOM_KILLED,
                       f"The container was killed for using more than its memory limit ({memory}; exit code "
                       f"{observed.exit_code}). "
                       "Raise definition.memory (up to 8Gi) in a new version, or make the agent use less."
                       + self._last_logs(key))
            self.runtime.stop(key)
            return False
        if desired.restarts >= self.settings.max_restarts:
            self._fail(desired, CRASH_LOOP_BACK_OFF,
                       f"The container keeps exiting (exit code {observed.exit_code}; restarted {desired.restarts} "
                       "times). Fix the crash shown in its last log lines and create a new version."
                       + self._last_logs(key))
            self.runtime.stop(key)
            return False
        backoff = min(2.0 ** desired.restarts, 30.0)
        if observed.finished_at is not None and time.time() - observed.finished_at < backoff:
            return False  # back off; a later pass restarts it
        restarts = self.store.record_restart(desired.uid)
        log.info("restarting %s:%s after exit code %s (restart %d)", desired.version.agent_name,
                 desired.version.version, observed.exit_code, restarts)
        return True

    def _check_readiness(self, desired: DesiredVersion, observed: Observed) -> None:
        """Probe /readiness closely for a while, so `active` follows readiness within a probe interval.

        The wait is bounded per pass (a worker is not held for minutes); a later pass resumes it, and
        gives up once the container has been running for the whole readiness timeout.
        """
        assert self.runtime is not None
        if not observed.running or observed.endpoint is None:
            return
        until = time.monotonic() + self.settings.readiness_wait_per_pass_seconds
        next_look = time.monotonic() + 1.0
        while True:
            if self.ready(observed.endpoint):
                self._set(desired, VersionStatus.ACTIVE)
                log.info("%s:%s is active", desired.version.agent_name, desired.version.version)
                return
            if time.monotonic() >= until or self._stopping.is_set():
                break
            if time.monotonic() >= next_look:
                # Still there? A container that exited is the next pass's business (restart or give up).
                current = self.runtime.observe(observed.key)
                if current is None or not current.running:
                    return
                next_look = time.monotonic() + 1.0
            time.sleep(self.settings.readiness_probe_seconds)
        if observed.started_at and time.time() - observed.started_at > self.settings.readiness_timeout_seconds:
            assert self.runtime is not None
            self._fail(desired, READINESS_TIMEOUT,
                       f"The container did not answer GET /readiness on its port within "
                       f"{self.settings.readiness_timeout_seconds:.0f}s. Make it listen on $PORT (8088) and serve "
                       "/readiness, as Microsoft's hosting adapters do." + self._last_logs(observed.key))
            self.runtime.stop(observed.key)

    def ready(self, endpoint: str) -> bool:
        """Whether a sandbox answers GET /readiness with 200, as Microsoft's hosting adapters do once up."""
        try:
            return self._probe.get(f"{endpoint}/readiness").status_code == 200
        except httpx.HTTPError:
            return False

    # -- admission ----------------------------------------------------------------------------------

    def admitted(self, sandbox: Sandbox) -> AbstractContextManager[Decision | None]:
        """Hold `sandbox`'s place in the budget while it starts; TooManySandboxes when it does not fit."""
        if self.admission is None:
            return nullcontext()
        return self.admission.starting(sandbox, self.live_sandboxes)

    def live_sandboxes(self) -> list[Sandbox]:
        """The running sandboxes and the limits their versions state (a deleted version's, the defaults)."""
        if self.runtime is None:
            return []
        running = [o for o in self.runtime.list() if o.running]
        versions = {v.uid: v for v in self.store.desired_versions()}
        sessions = {s.id: s for s in self.sessions.all()} if self.sessions is not None and any(
            o.key.session for o in running) else {}
        live = []
        for observed in running:
            desired = versions.get(observed.key.version_uid)
            if desired is not None:
                live.append(self.sandbox_of(desired, sessions.get(observed.key.session), observed.key.session,
                                            started_at=observed.started_at))
            else:
                live.append(Sandbox((observed.key.version_uid, observed.key.session), ("", observed.agent_name),
                                    memory_bytes(DEFAULT_MEMORY), cpu_cores(DEFAULT_CPU)))
        return live

    @staticmethod
    def sandbox_of(desired: DesiredVersion, session: Session | None = None, session_id: str = "",
                   started_at: float | None = None) -> Sandbox:
        definition = desired.version.definition
        last_used = max(session.last_accessed_at if session else 0.0, started_at or 0.0)
        return Sandbox(
            key=(desired.uid, session.id if session else session_id),
            agent=(desired.project, desired.version.agent_name),
            memory_bytes=memory_bytes(definition.memory), cpu_cores=cpu_cores(definition.cpu),
            last_used=last_used,
            release_due=last_used + session.idle_timeout_seconds if session is not None else None,
        )

    # -- helpers ------------------------------------------------------------------------------------

    def workload(self, desired: DesiredVersion, session_id: str = "") -> Workload:
        """What should run for a version (or one of its sessions): image, limits, credentials, environment."""
        definition = desired.version.definition
        code = self._code(desired)
        image = runtime_image(code.runtime, self.code_image) if code is not None else definition.image
        assert image is not None
        reference = parse_image_reference(image)
        connection: RegistryConnection | None
        if definition.registry_connection_id:
            connection = self.registries.get(desired.project, definition.registry_connection_id)
        else:
            connection = self.registries.for_server(desired.project, reference.registry)
        credentials = (RegistryCredentials(connection.server, connection.username, connection.password)
                       if connection else None)
        return Workload(
            key=WorkloadKey(desired.uid, session_id),
            project=desired.project,
            agent_name=desired.version.agent_name,
            version=desired.version.version,
            image=image,
            cpu=cpu_cores(definition.cpu),
            memory_bytes=memory_bytes(definition.memory),
            environment=self.environment_for(desired, session_id),
            credentials=credentials,
            pull_always=reference.is_floating,
            code=code,
        )

    def _code(self, desired: DesiredVersion) -> CodeWorkload | None:
        """A code-based version's code: its stored tree (NotFound when gone) and how to run it."""
        configuration = desired.version.definition.code_configuration
        if configuration is None:
            return None
        if self.bundles is None:
            raise RuntimeFailure("CodeError", "This dockyard keeps no code bundles, so it cannot run a code-based "
                                 "version. Start it with a home it can write to.")
        content_hash = str(configuration.get("content_hash") or "")
        return CodeWorkload(
            content_hash=content_hash,
            tree=self.bundles.tree(content_hash),
            runtime=str(configuration.get("runtime") or ""),
            entry_point=tuple(str(part) for part in configuration.get("entry_point") or ()),
            dependency_resolution=str(configuration.get("dependency_resolution") or "bundled"),
        )

    def _last_logs(self, key: WorkloadKey) -> str:
        assert self.runtime is not None
        try:
            lines = self.runtime.logs(key, tail=self.settings.log_lines_in_errors)
        except RuntimeFailure:
            return ""
        return ("\nLast log lines:\n" + "\n".join(lines)) if lines else ""

    def _set(self, desired: DesiredVersion, status: VersionStatus) -> None:
        self.store.set_status(desired.uid, status)

    def _fail(self, desired: DesiredVersion, code: str, message: str) -> None:
        if code in _RETRYABLE:
            self._retried.add(desired.uid)  # what failed under this start is retried by the next one only
        if self.store.set_status(desired.uid, VersionStatus.FAILED, VersionError(code, message)):
            log.warning("%s:%s failed: %s", desired.version.agent_name, desired.version.version, code,
                        extra={"code": code})
