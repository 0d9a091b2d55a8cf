"""The containers backend: workloads as containers on a Docker-Engine-API engine (docker or podman).

Every container carries labels naming the dockyard instance, project, agent, version and session, so
the engine itself is the record of what runs: a dockyard that was killed finds its containers again
with one labelled list call. Containers run the way Foundry's sandboxes do: unprivileged, all
capabilities dropped, no new privileges, read-only root filesystem with a writable /tmp, CPU quota and
a memory limit with no extra swap, explicit ulimits, the agent port published on loopback only.

A code-based version runs on its runtime's base image (`Workload.image`, e.g. python:3.12-slim) with the
code mounted read-only at /app and its entry point as the command. For `remote_build` code the
requirements are installed first, inside a one-off container of the same image (so wheels match the
Python that runs them), into a directory on the host cached by image and requirements and mounted
read-only at /deps; the build's output is the version's log stream, ahead of the agent's own lines.
"""

from __future__ import annotations

import base64
import builtins
import collections
import json
import logging
import os
import re
import resource
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import LogConfig, Ulimit
from requests.exceptions import RequestException

from dockyard.domain.code_runtimes import REMOTE_BUILD_FAILED
from dockyard.domain.errors import CONTAINER_RUNTIME_UNAVAILABLE, IMAGE_PULL_BACK_OFF, INVALID_CONTAINER_IMAGE
from dockyard.domain.images import parse_image_reference
from dockyard.domain.session_files import SessionFileEntry, SessionPath
from dockyard.runtime import session_volumes
from dockyard.runtime.base import (
    CodeWorkload,
    Observed,
    RegistryCredentials,
    RuntimeFailure,
    SessionFileStream,
    Workload,
    WorkloadKey,
)
from dockyard.runtime.engine import INSTALL_HINT, Engine
from dockyard.runtime.environment import SESSION_STATE_PATH
from dockyard.runtime.leftovers import BUILD_LABEL, HOME_LABEL
from dockyard.runtime.python_runtimes import (
    NOTHING_TO_INSTALL,
    PIP_OPTIONS,
    PIP_TAIL_LINES,
    BuildPlan,
    build_failure,
    build_once,
    build_plan,
)

log = logging.getLogger("dockyard.runtime")

LABEL = "io.dockyard"
CA_BUNDLE_IN_CONTAINER = "/etc/dockyard/ca-bundle.pem"
CODE_IN_CONTAINER = "/app"
DEPS_IN_CONTAINER = "/deps"
# What a build container may pass on from dockyard's environment: how to reach the package index.
_BUILD_ENVIRONMENT = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT",
                      "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
# What a call to the engine raises when the engine refuses, and when it is not there at all: docker-py lets
# requests' ConnectionError (a socket nobody serves, an engine killed mid-call) through unwrapped.
ENGINE_ERRORS = (DockerException, RequestException)
_NOT_FOUND_HINTS = ("manifest unknown", "name unknown", "not found", "no such image", "does not exist", "404")
_DENIED_HINTS = ("unauthorized", "authentication required", "denied", "401", "403", "forbidden")


def _is_local_registry(registry: str | None) -> bool:
    host = (registry or "").rsplit(":", 1)[0] if not (registry or "").startswith("[") else registry
    return host in ("localhost", "127.0.0.1", "[::1]")


def _pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 32768


def _ulimits() -> list[Ulimit]:
    """Both limits, always, and never above what the engine may grant.

    Naming one ulimit makes podman reset the other to a value some machines refuse, and no runtime may
    raise a limit above its own hard limit (podman also caps nproc at kernel.pid_max). dockyard usually
    runs beside its engine with the same limits, so its own hard limits are the best guide it has.
    """
    limits = []
    for kind, name, cap in ((resource.RLIMIT_NOFILE, "nofile", 16384), (resource.RLIMIT_NPROC, "nproc", 4096)):
        _soft, hard = resource.getrlimit(kind)
        value = min(cap, _pid_max()) if name == "nproc" else cap
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        limits.append(Ulimit(name=name, soft=value, hard=value))
    return limits


_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?")


def _timestamp(text: str | None) -> float | None:
    """Engine timestamps carry nanoseconds, which datetime cannot parse; "0001-…" means never."""
    match = _TIMESTAMP.fullmatch(text or "")
    if match is None or match[1].startswith("0001-"):
        return None
    fraction = (match[2] or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match[3] in (None, "Z") else match[3]
    return datetime.fromisoformat(f"{match[1]}.{fraction}{zone}").timestamp()


class ContainersRuntime:
    runs_images = True

    def __init__(
        self,
        engine: Engine,
        *,
        instance_id: str,
        ca_bundle: Path | None = None,
        pull_attempts: int = 3,
        pull_backoff_seconds: float = 1.0,
        tmp_size: str = "512m",
        max_log_bytes: int = 10 * 1024 * 1024,
        home: Path | None = None,
        deps_root: Path | None = None,
        build_timeout_seconds: float = 900.0,
    ) -> None:
        self.engine = engine
        # Labelled on everything made, so `dockyard prune` can tell when the home that made it is gone.
        self.home = home
        self.client = engine.client
        self.instance_id = instance_id
        self.ca_bundle = ca_bundle
        self.pull_attempts = pull_attempts
        self.pull_backoff_seconds = pull_backoff_seconds
        self.tmp_size = tmp_size
        self.max_log_bytes = max_log_bytes
        # remote_build dependencies, one directory per image and requirements, and each version's build log.
        self.deps_root = deps_root or (home / "python" / "containers" if home is not None else None)
        self.build_timeout_seconds = build_timeout_seconds

    # -- the Runtime interface ----------------------------------------------------------------------

    def ensure_running(self, workload: Workload) -> Observed:
        container = self._find(workload.key)
        created = False
        try:
            if container is None:
                self._ensure_image_for(workload)
                deps = self._code_dependencies(workload) if workload.code is not None else None
                container = self._create(workload, deps)
                created = True
            if container.status != "running":
                container.start()
            container.reload()
        except ENGINE_ERRORS as exc:
            if created and container is not None:
                # A container that could not start is left "created" by the engine; do not keep it (an engine
                # gone mid-start cannot remove it now: the reconciler's next pass does).
                try:
                    container.remove(force=True, v=True)
                except ENGINE_ERRORS as cleanup:
                    log.warning("could not remove container %s that failed to start: %s", container.short_id,
                                _explain(cleanup))
            if isinstance(exc, ImageNotFound):
                raise RuntimeFailure(INVALID_CONTAINER_IMAGE,
                                     f"Image {workload.image} is not available: {exc}") from None
            raise RuntimeFailure(
                CONTAINER_RUNTIME_UNAVAILABLE, f"The container engine refused to run {workload.image}: {_explain(exc)}"
            ) from None
        return self._observed(container)

    def stop(self, key: WorkloadKey) -> None:
        for container in self._containers(key):
            try:
                container.remove(force=True, v=True)
            except NotFound:
                pass

    def discard(self, key: WorkloadKey) -> None:
        self.stop(key)
        if key.session:
            try:
                self.client.volumes.get(_session_volume(key)).remove(force=True)
            except NotFound:
                pass
            except ENGINE_ERRORS as exc:
                log.warning("could not remove the volume of session %s: %s", key.session, _explain(exc))

    def observe(self, key: WorkloadKey) -> Observed | None:
        container = self._find(key)
        return self._observed(container) if container is not None else None

    def list(self) -> list[Observed]:
        return [self._observed(c) for c in self._containers()]

    def logs(self, key: WorkloadKey, tail: int = 100) -> builtins.list[str]:
        """The container's lines, after a code-based version's dependency build (which may be all there is)."""
        built = self._build_lines(key)
        container = self._find(key)
        if container is None:
            return built[-tail:] if tail > 0 else []
        lines = built + self._container_lines(container, tail)
        return lines[-tail:] if tail > 0 else []

    def follow_logs(self, key: WorkloadKey, tail: int = 100) -> _ContainerLogStream | None:
        container = self._find(key)
        if container is None:
            return None
        first = self._build_lines(key)[-tail:] if tail > 0 else []
        if not self.engine.is_podman:
            return _ContainerLogStream(container.logs(stdout=True, stderr=True, tail=tail, stream=True, follow=True),
                                       first=first)
        # Podman's tail mangles partial lines (see _container_lines): follow everything, skip all but the tail.
        skip = max(0, len(self._container_lines(container, None)) - tail)
        return _ContainerLogStream(container.logs(stdout=True, stderr=True, tail="all", stream=True, follow=True),
                                   first=first, skip=skip)

    def _container_lines(self, container: Container, tail: int | None) -> builtins.list[str]:
        """The container's last `tail` lines (all when None).

        Podman 4.3 counts a line written in pieces (`print("a", "b")` unbuffered, as agents' output is) as
        several entries and answers a tail with the pieces cut apart or dropped ("all" is right), so on
        podman dockyard reads all (at most max_log_bytes) and keeps the tail itself.
        """
        if self.engine.is_podman or tail is None:
            lines = container.logs(stdout=True, stderr=True, tail="all").decode(errors="replace").splitlines()
            return lines if tail is None else lines[-tail:] if tail > 0 else []
        return container.logs(stdout=True, stderr=True, tail=tail).decode(errors="replace").splitlines()

    # -- session files ------------------------------------------------------------------------------

    def write_session_file(self, workload: Workload, path: SessionPath, content: BinaryIO, size: int) -> None:
        with self._volume_container(workload) as container:
            session_volumes.write(container, path, content, size, session_volumes.container_user(container))

    def read_session_file(self, workload: Workload, path: SessionPath) -> SessionFileStream:
        def chunks() -> Iterator[int | bytes]:
            with self._volume_container(workload) as container:
                yield from session_volumes.read(container, path)

        reading = chunks()
        size = next(reading)  # the checks run here, so a missing file fails before any byte is answered
        assert isinstance(size, int)
        return SessionFileStream(size=size, chunks=reading)  # type: ignore[arg-type]

    def list_session_files(self, workload: Workload, path: SessionPath) -> builtins.list[SessionFileEntry]:
        with self._volume_container(workload) as container:
            return session_volumes.list_directory(container, path)

    def delete_session_file(self, workload: Workload, path: SessionPath, recursive: bool) -> None:
        command = session_volumes.delete_command(path, recursive)
        container = self._find(workload.key)
        if container is not None and container.status == "running":
            result = container.exec_run(command)
            # Neither streamed nor detached: exec_run waited, so there is an exit code and the output is bytes.
            assert result.exit_code is not None and not isinstance(result.output, Iterator)
            session_volumes.deleted(result.exit_code, result.output or b"", path)
            return
        with self._volume_container(workload, command=command) as helper:
            helper.start()
            exit_code = int(helper.wait(timeout=60).get("StatusCode", 1))
            session_volumes.deleted(exit_code, helper.logs(stdout=True, stderr=True, tail=20), path)

    @contextmanager
    def _volume_container(self, workload: Workload, command: builtins.list[str] | None = None) -> Iterator[Container]:
        """A container mounting the session's volume: the session's own, or a helper removed afterwards.

        The helper is made from the agent image (so it exists wherever the session ran), never
        networked, and labelled apart from workloads (`files-helper-of`, no `instance`), so neither the
        reconciler nor adoption ever takes it for a sandbox. `command` makes one to be started.
        """
        if command is None:
            own = self._find(workload.key)
            if own is not None:
                yield own
                return
        try:
            try:
                self.client.images.get(workload.image)
            except ImageNotFound:
                self._ensure_image(workload)
            self._ensure_volume(workload)
            helper = self.client.containers.create(
                workload.image,
                entrypoint=command[:1] if command else None,
                command=command[1:] if command else None,
                labels={f"{LABEL}.files-helper-of": self.instance_id, f"{LABEL}.session": workload.key.session,
                        **self._home_label()},
                volumes={_session_volume(workload.key): {"bind": SESSION_STATE_PATH,
                                                         "mode": "rw,U" if self.engine.is_podman else "rw"}},
                network_disabled=True, read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"],
                ulimits=_ulimits(), pids_limit=64, log_config=self._log_config(), detach=True,
            )
        except ENGINE_ERRORS as exc:
            raise session_volumes.SessionFilesFailed(
                f"The container engine could not reach the session's volume: {_explain(exc)}") from None
        try:
            yield helper
        finally:
            try:
                helper.remove(force=True)  # not v=True: the session's volume is named and must stay
            except ENGINE_ERRORS as exc:
                log.warning("could not remove files helper %s: %s", helper.short_id, _explain(exc))

    # -- containers ---------------------------------------------------------------------------------

    def _labels(self, workload: Workload) -> dict[str, str]:
        return {
            f"{LABEL}.instance": self.instance_id,
            f"{LABEL}.project": workload.project,
            f"{LABEL}.agent": workload.agent_name,
            f"{LABEL}.version": workload.version,
            f"{LABEL}.version-uid": workload.key.version_uid,
            f"{LABEL}.session": workload.key.session,
            f"{LABEL}.port": str(workload.port),
            **self._home_label(),
        }

    def _home_label(self) -> dict[str, str]:
        return {HOME_LABEL: str(self.home.resolve())} if self.home is not None else {}

    def _containers(self, key: WorkloadKey | None = None) -> builtins.list[Container]:
        filters = [f"{LABEL}.instance={self.instance_id}"]
        if key is not None:
            filters.append(f"{LABEL}.version-uid={key.version_uid}")
        for attempt in range(3):
            try:
                found = self.client.containers.list(all=True, filters={"label": filters}, ignore_removed=True)
                break
            except ENGINE_ERRORS as exc:
                # docker-py inspects each listed container; one removed in between (another session's delete)
                # is a 404 on docker (ignored above) but a 500 "no such container" on podman: list again.
                if attempt < 2 and _vanished(exc):
                    continue
                raise RuntimeFailure(CONTAINER_RUNTIME_UNAVAILABLE, f"The container engine does not answer: {exc}. "
                                     + INSTALL_HINT) from None
        # The session is matched here, not in the filter: engines read "session=" (empty) as "has the label".
        return found if key is None else [c for c in found if c.labels.get(f"{LABEL}.session", "") == key.session]

    def _find(self, key: WorkloadKey) -> Container | None:
        containers = self._containers(key)
        # Two containers for one key would be a bug or a race; keep the oldest, remove the rest.
        containers.sort(key=lambda c: c.attrs.get("Created", ""))
        for extra in containers[1:]:
            log.warning("removing duplicate container %s for %s", extra.short_id, key)
            extra.remove(force=True, v=True)
        return containers[0] if containers else None

    def _create(self, workload: Workload, deps: Path | None = None) -> Container:
        # The whole session id: callers choose them, and two may share any prefix ("job-1", "job-2").
        session = f"-{workload.key.session}" if workload.key.session else ""
        name = f"dockyard-{workload.agent_name}-v{workload.version}-{workload.key.version_uid[:8]}{session}"
        volumes = {}
        environment = dict(workload.environment)
        if self.ca_bundle is not None:
            volumes[str(self.ca_bundle)] = {"bind": CA_BUNDLE_IN_CONTAINER, "mode": "ro"}
            environment.setdefault("SSL_CERT_FILE", CA_BUNDLE_IN_CONTAINER)
            environment.setdefault("REQUESTS_CA_BUNDLE", CA_BUNDLE_IN_CONTAINER)
        extra_hosts = {} if self.engine.is_podman else {"host.docker.internal": "host-gateway"}
        if workload.key.session:
            self._ensure_volume(workload)
            # `U` makes podman hand the volume to the image's user; docker keeps the image's ownership.
            volumes[_session_volume(workload.key)] = {
                "bind": SESSION_STATE_PATH, "mode": "rw,U" if self.engine.is_podman else "rw"}
        code: dict[str, Any] = {}
        if workload.code is not None:
            code = _code_container(workload.code, deps, environment, volumes)
        container = self.client.containers.create(
            workload.image,
            name=name,
            labels=self._labels(workload),
            **code,
            environment=environment,
            nano_cpus=int(workload.cpu * 1_000_000_000),
            mem_limit=workload.memory_bytes,
            memswap_limit=workload.memory_bytes,  # the same as the limit: no swap beyond it
            ulimits=_ulimits(),
            pids_limit=4096,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmp_size}"},
            # None: the engine picks a free host port (docker-py takes it; its stubs do not).
            ports={f"{workload.port}/tcp": ("127.0.0.1", None)},  # type: ignore[dict-item]
            volumes=volumes,
            extra_hosts=extra_hosts,
            log_config=self._log_config(),
            detach=True,
        )
        if workload.key.session and not self.engine.is_podman:
            self._open_volume_to_user(container)
        return container

    def _open_volume_to_user(self, container: Container) -> None:
        """Let the agent write its session state (AGENTSERVER_STATE_ROOT) whatever user its image runs as.

        podman's `U` hands the volume to the container's user; docker makes a new volume's root root's 0755
        (unless the image has the mount point), so an adapter running as a user of its own could not make its
        state folder ("Permission denied: '/session/agentserver'"). docker's `copyUIDGID` cannot resolve a
        numeric user the host does not know, and it will not change the root itself through an archive, so the
        state folder is made here, 1777 as /tmp is: anyone in this one sandbox may make entries, each its own.
        """
        header = tarfile.TarInfo("agentserver")
        header.type, header.mode, header.mtime = tarfile.DIRTYPE, 0o1777, int(time.time())
        container.put_archive(SESSION_STATE_PATH, header.tobuf() + b"\0" * 1024)

    def _ensure_volume(self, workload: Workload) -> None:
        name = _session_volume(workload.key)
        try:
            self.client.volumes.get(name)
        except NotFound:
            labels = {k: v for k, v in self._labels(workload).items() if not k.endswith(".port")}
            self.client.volumes.create(name=name, labels=labels)

    # -- code-based versions ------------------------------------------------------------------------

    def _code_dependencies(self, workload: Workload) -> Path | None:
        """The directory of a remote_build version's dependencies, built in a container on first need.

        Cached by the image's id and what is installed, so sessions and versions with the same
        requirements share one build. The build's output goes to the version's build log, which
        `logs()` shows ahead of the container's own lines; a failed build fails the version with
        RemoteBuildFailed and pip's last lines.
        """
        code = workload.code
        if code is None or code.dependency_resolution != "remote_build":
            return None
        log_path = self._build_log_path(workload.key)
        plan = build_plan(code)
        if plan is None:
            _write_lines(log_path, [NOTHING_TO_INSTALL])
            return None
        if self.deps_root is None or log_path is None:
            raise RuntimeFailure(REMOTE_BUILD_FAILED, "This dockyard has no directory for built dependencies (it "
                                 "runs without a home). Start it with `dockyard up`, or bundle the packages in the "
                                 "zip's packages/ folder and use dependency_resolution 'bundled'.")
        try:
            image_id = self.client.images.get(workload.image).id
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(INVALID_CONTAINER_IMAGE,
                                 f"Image {workload.image} is not available: {_explain(exc)}") from None
        key = plan.key(f"image={image_id}")
        if (self.deps_root / key).is_dir() and log_path.exists():
            return self.deps_root / key  # another session of this version: its log already tells the build
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Appended to: sessions of one version starting together, or a retried build, each add their lines.
        with open(log_path, "a", encoding="utf-8") as build_log:

            def write(line: str) -> None:
                build_log.write(line + "\n")
                build_log.flush()  # `dockyard logs` during a build sees how far it got

            def build(target: Path) -> None:
                write(f"dockyard: remote_build: installing {plan.describe()} in {workload.image}")
                self._run_build(workload, code, plan, key, target, write)

            built, fresh = build_once(self.deps_root, key, build)
            write(f"dockyard: remote_build: dependencies ready ({built})" if fresh else plan.cached_note(built))
        return built

    def _run_build(self, workload: Workload, code: CodeWorkload, plan: BuildPlan, key: str, target: Path,
                   write: Callable[[str], None]) -> None:
        """pip in a one-off container of the version's image: the code read-only, `target` writable at /deps."""
        self._remove_builds(key)  # a build of this key still there was left by a dockyard that died mid-build
        pip = ["python3", "-m", "pip", "install", "--target", DEPS_IN_CONTAINER, *PIP_OPTIONS,
               *plan.requirement_arguments(CODE_IN_CONTAINER)]
        if plan.builds_project:  # a build writes into its source: build a writable copy
            command = ["sh", "-c", f'cp -R {CODE_IN_CONTAINER} /tmp/project && chmod -R u+w /tmp/project && exec "$@"',
                       "build", *pip, "/tmp/project"]
        else:
            command = pip
        environment = {name: os.environ[name] for name in _BUILD_ENVIRONMENT
                       if os.environ.get(name) and "file:" not in os.environ[name]}
        environment.update({"HOME": "/tmp", "PIP_NO_CACHE_DIR": "1", "PYTHONUNBUFFERED": "1"})
        volumes = {str(code.tree.resolve()): {"bind": CODE_IN_CONTAINER, "mode": "ro"},
                   str(target): {"bind": DEPS_IN_CONTAINER, "mode": "rw,U" if self.engine.is_podman else "rw"}}
        if self.ca_bundle is not None:
            volumes[str(self.ca_bundle)] = {"bind": CA_BUNDLE_IN_CONTAINER, "mode": "ro"}
            environment["PIP_CERT"] = CA_BUNDLE_IN_CONTAINER
        try:
            builder = self.client.containers.create(
                workload.image, entrypoint=command[:1], command=command[1:], working_dir=CODE_IN_CONTAINER,
                labels={BUILD_LABEL: self.instance_id, f"{LABEL}.build-key": key, **self._home_label()},
                environment=environment, volumes=volumes,
                nano_cpus=int(workload.cpu * 1_000_000_000), mem_limit=workload.memory_bytes,
                memswap_limit=workload.memory_bytes, ulimits=_ulimits(), pids_limit=4096, cap_drop=["ALL"],
                security_opt=["no-new-privileges"], privileged=False, read_only=True,
                tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmp_size}"}, log_config=self._log_config(), detach=True,
            )
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(CONTAINER_RUNTIME_UNAVAILABLE, f"The container engine refused to run the "
                                 f"dependency build on {workload.image}: {_explain(exc)}") from None
        tail: collections.deque[str] = collections.deque(maxlen=PIP_TAIL_LINES)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                builder.kill()
            except ENGINE_ERRORS:
                pass

        watchdog = threading.Timer(self.build_timeout_seconds, kill)
        watchdog.daemon = True
        try:
            builder.start()
            watchdog.start()
            for line in _ContainerLogStream(builder.logs(stdout=True, stderr=True, stream=True, follow=True)):
                tail.append(line)
                write(line)
            status = int(builder.wait(timeout=60).get("StatusCode", 1))
        except ENGINE_ERRORS as exc:
            raise RuntimeFailure(CONTAINER_RUNTIME_UNAVAILABLE, f"The dependency build on {workload.image} "
                                 f"failed in the container engine: {_explain(exc)}") from None
        finally:
            watchdog.cancel()
            try:
                builder.remove(force=True, v=True)
            except ENGINE_ERRORS as exc:
                # The build's own result matters more; the leftover is removed before the next build of its key.
                log.warning("could not remove build container %s: %s", builder.short_id, _explain(exc))
        if status != 0 or timed_out.is_set():
            raise build_failure(f"in {workload.image}", status, timed_out.is_set(), self.build_timeout_seconds,
                                tail, f"the Python in {workload.image}")

    def _remove_builds(self, key: str) -> None:
        try:
            for leftover in self.client.containers.list(
                    all=True, filters={"label": [f"{BUILD_LABEL}={self.instance_id}", f"{LABEL}.build-key={key}"]}):
                leftover.remove(force=True, v=True)
        except ENGINE_ERRORS as exc:
            log.warning("could not remove a stale dependency build: %s", _explain(exc))

    def _build_log_path(self, key: WorkloadKey) -> Path | None:
        """One build log per version: its sessions share the code and so its dependencies."""
        return self.deps_root / "logs" / f"{key.version_uid}.log" if self.deps_root is not None else None

    def _build_lines(self, key: WorkloadKey) -> builtins.list[str]:
        path = self._build_log_path(key)
        try:
            return path.read_text(encoding="utf-8", errors="replace").splitlines() if path is not None else []
        except FileNotFoundError:
            return []

    def _log_config(self) -> LogConfig:
        """Logs are kept by the engine, per container, bounded so a chatty agent cannot fill the disk."""
        limit = {"max-size": str(self.max_log_bytes)}
        if self.engine.is_podman:
            return LogConfig(type="k8s-file", config=limit)
        return LogConfig(type=LogConfig.types.JSON, config={**limit, "max-file": "2"})

    def _observed(self, container: Container) -> Observed:
        labels = container.labels
        state = container.attrs.get("State", {})
        port = labels.get(f"{LABEL}.port", "8088")
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
        endpoint = None
        if bindings and bindings[0].get("HostPort"):
            host = bindings[0].get("HostIp") or "127.0.0.1"
            endpoint = f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{bindings[0]['HostPort']}"
        running = state.get("Status") == "running" or bool(state.get("Running"))
        return Observed(
            key=WorkloadKey(labels.get(f"{LABEL}.version-uid", ""), labels.get(f"{LABEL}.session", "")),
            container_id=container.id or "",  # always set on a container the engine listed
            agent_name=labels.get(f"{LABEL}.agent", ""),
            version=labels.get(f"{LABEL}.version", ""),
            running=running,
            exit_code=None if running else state.get("ExitCode"),
            # Podman on cgroup v1 never sets OOMKilled; the kernel's SIGKILL (exit 137) is the only trace, and
            # dockyard removes rather than kills containers, so a 137 it sees was not its doing.
            oom_killed=bool(state.get("OOMKilled")) or (not running and state.get("ExitCode") == 137),
            started_at=_timestamp(state.get("StartedAt")),
            finished_at=None if running else _timestamp(state.get("FinishedAt")),
            endpoint=endpoint if running else None,
        )

    # -- images -------------------------------------------------------------------------------------

    def _ensure_image_for(self, workload: Workload) -> None:
        """The workload's image; a code-based version's failure also says how to name another runtime image."""
        try:
            self._ensure_image(workload)
        except RuntimeFailure as failure:
            if workload.code is None:
                raise
            raise RuntimeFailure(failure.code, f"{failure.message} {workload.image} is the runtime image of "
                                 f"{workload.code.runtime}; where it cannot be pulled, `dockyard up --code-image "
                                 "IMAGE` names another (one with python3, and pip for remote_build).") from None

    def _ensure_image(self, workload: Workload) -> None:
        if not workload.pull_always:
            try:
                self.client.images.get(workload.image)
                return
            except ImageNotFound:
                pass
            except ENGINE_ERRORS:
                pass
        last: RuntimeFailure | None = None
        for attempt in range(self.pull_attempts):
            if attempt:
                time.sleep(self.pull_backoff_seconds * 2 ** (attempt - 1))
            try:
                self._pull(workload.image, workload.credentials)
                _pulled("pulled")
                return
            except RuntimeFailure as failure:
                _pulled("failed")
                last = failure
                log.info("pull of %s failed (attempt %d of %d): %s", workload.image, attempt + 1,
                         self.pull_attempts, failure.message)
        assert last is not None
        raise last

    def _pull(self, image: str, credentials: RegistryCredentials | None) -> None:
        reference = parse_image_reference(image)
        auth = {"username": credentials.username, "password": credentials.password} if credentials else None
        try:
            if self.engine.is_podman and _is_local_registry(reference.registry):
                # Podman's compat API has no way to say "plain http"; its own API does.
                messages = self._libpod_pull(image, auth)
            else:
                repository = reference.name
                tag = reference.digest or reference.tag or "latest"
                messages = self.client.api.pull(repository, tag=tag, auth_config=auth, stream=True, decode=True)
            for message in messages:
                error = message.get("error") or (message.get("errorDetail") or {}).get("message")
                if error:
                    raise _pull_failure(image, str(error), credentials)
        except ENGINE_ERRORS as exc:
            raise _pull_failure(image, _explain(exc), credentials) from None

    def _libpod_pull(self, image: str, auth: dict[str, str] | None) -> Iterator[dict[str, Any]]:
        api: Any = self.client.api  # the private helpers used below are not in docker-py's stubs
        headers = {}
        if auth:
            headers["X-Registry-Auth"] = base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()
        response = api._post(  # noqa: SLF001 - libpod's pull endpoint has no public wrapper
            api._url("/libpod/images/pull"),  # noqa: SLF001
            params={"reference": image, "tlsVerify": "false", "policy": "always"},
            headers=headers,
            stream=True,
        )
        api._raise_for_status(response)  # noqa: SLF001
        return api._stream_helper(response, decode=True)  # noqa: SLF001


class _ContainerLogStream:
    """The engine's log stream, split into lines; closing it closes the connection under a blocked reader.

    `first` are lines to give before the engine's (a code-based version's dependency build)."""

    def __init__(self, chunks: Any, first: builtins.list[str] | None = None, skip: int = 0) -> None:
        self._chunks = chunks
        self._first = first or []
        self._skip = skip  # engine lines to drop first (what lies before the tail asked for)

    def __iter__(self) -> Iterator[str]:
        yield from self._first
        buffer = b""
        try:
            for chunk in self._chunks:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if self._skip:
                        self._skip -= 1
                        continue
                    yield line.decode(errors="replace")
        except (OSError, ValueError, AttributeError):
            return  # closed under us
        if buffer:
            yield buffer.decode(errors="replace")

    def close(self) -> None:
        try:
            self._chunks.close()
        except (OSError, ValueError, AttributeError):
            pass


def _code_container(code: CodeWorkload, deps: Path | None, environment: dict[str, str],
                    volumes: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What makes a container run a version's code: the tree read-only at /app, the import path, the command.

    Edits `environment` and `volumes` in place and answers the create() arguments to add.
    """
    volumes[str(code.tree.resolve())] = {"bind": CODE_IN_CONTAINER, "mode": "ro"}
    python_path = [f"{CODE_IN_CONTAINER}/packages"] if (code.tree / "packages").is_dir() else []
    if deps is not None:
        volumes[str(deps)] = {"bind": DEPS_IN_CONTAINER, "mode": "ro"}
        python_path.append(DEPS_IN_CONTAINER)
    if environment.get("PYTHONPATH"):  # the definition's own entries come after the platform's
        python_path.append(environment["PYTHONPATH"])
    if python_path:
        environment["PYTHONPATH"] = ":".join(python_path)
    environment.setdefault("PYTHONUNBUFFERED", "1")  # print() reaches the log stream as it happens
    environment.setdefault("PYTHONDONTWRITEBYTECODE", "1")  # /app is read-only
    command = _code_command(code.entry_point)
    return {"entrypoint": command[:1], "command": command[1:], "working_dir": CODE_IN_CONTAINER}


def _code_command(entry_point: tuple[str, ...]) -> builtins.list[str]:
    """The entry point as the container's command. `python` becomes `python3`: Foundry's samples say
    `python`, which Docker's python images have but Debian's python3 package does not install."""
    command = list(entry_point)
    if command and command[0] == "python":
        command[0] = "python3"
    return command


def _write_lines(path: Path | None, lines: builtins.list[str]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _session_volume(key: WorkloadKey) -> str:
    return f"dockyard-session-{key.session}"


def _vanished(exc: Exception) -> bool:
    """The engine's error says a container it had just listed is gone."""
    text = str(exc).lower()
    return "no such container" in text or "does not exist in database" in text


def _explain(exc: Exception) -> str:
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc)


# Hook: each pull attempt's outcome, "pulled" or "failed" (api/metrics.py counts them).
_on_pull: Callable[[str], None] | None = None


def on_pull(callback: Callable[[str], None] | None) -> None:
    global _on_pull
    _on_pull = callback


def _pulled(outcome: str) -> None:
    if _on_pull is not None:
        _on_pull(outcome)


def _pull_failure(image: str, detail: str, credentials: RegistryCredentials | None) -> RuntimeFailure:
    lowered = detail.lower()
    if any(hint in lowered for hint in _DENIED_HINTS):
        fix = (
            "the registry refused the credentials dockyard sent; check the registry connection's user and password"
            if credentials else
            "the registry needs credentials: add them with `dockyard registry add NAME --server HOST "
            "--username USER --password-stdin` (and in 2.x set container_configuration.registry_connection_id)"
        )
        return RuntimeFailure(IMAGE_PULL_BACK_OFF, f"Pulling {image} was refused ({detail}); {fix}.")
    if any(hint in lowered for hint in _NOT_FOUND_HINTS):
        return RuntimeFailure(
            INVALID_CONTAINER_IMAGE,
            f"Image {image} was not found in its registry ({detail}). Check the repository and tag, and that the "
            "image was pushed.",
        )
    return RuntimeFailure(
        IMAGE_PULL_BACK_OFF,
        f"Pulling {image} failed ({detail}). Check that the registry is reachable from this machine.",
    )
