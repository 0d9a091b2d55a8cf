"""The process backend: code-based workloads as supervised processes on this machine, no engine needed.

Each workload (a version's sandbox, or one session's) is a folder under `<home>/processes/`:
`workload.json` (what it is: agent, version, port; written here), `state.json` (how its process is
doing: written by its supervisor, `process_supervisor.py`), `output.log` (the agent's stdout and stderr:
the version's log stream) and `tmp/` (its TMPDIR, and HOME for a version's shared sandbox; emptied on
every start, as a container's /tmp is). The folders are the record of what runs, as labels are on an
engine: a dockyard started again on the same home reads them and adopts the processes still running
(a pid counts only with the start time recorded for it, so a reused pid is never taken for the agent).

A session's home is `<home>/sessions/<session id>/` (HOME and AGENTSERVER_STATE_ROOT point there), the
counterpart of a session volume: kept when the session's process is released, gone with the session.

The code runs in place, with the unpacked bundle as its working directory: the tree is written once by
dockyard and left read-only (its files' modes), every sandbox of a version shares it, and nothing is
copied on a cold start. How far this isolation goes, compared with a container: docs/process-runtime.md.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.domain.errors import CONTAINER_RUNTIME_UNAVAILABLE
from dockyard.domain.session_files import SessionFileEntry, SessionPath
from dockyard.home import Home
from dockyard.runtime import process_supervisor, session_homes
from dockyard.runtime.base import Observed, RuntimeFailure, SessionFileStream, Workload, WorkloadKey
from dockyard.runtime.engine import INSTALL_HINT
from dockyard.runtime.python_runtimes import HostPythons

log = logging.getLogger("dockyard.runtime")

_SAFE = re.compile(r"[A-Za-z0-9_-]{1,128}")
# What an agent takes from dockyard's own environment: the little a program needs to run, nothing that
# could hold dockyard's secrets (a container starts from its image's environment, not the host's).
_INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
_SUPERVISOR = Path(process_supervisor.__file__)


def processes_root(home: Path) -> Path:
    return home / "processes"


def sessions_root(home: Path) -> Path:
    return home / "sessions"


def _folder_name(key: WorkloadKey) -> str:
    for part in (key.version_uid, key.session):
        if part and not _SAFE.fullmatch(part):
            raise RuntimeFailure("InvalidWorkload", f"dockyard cannot name a process folder after {part!r}.")
    return f"{key.version_uid}.{key.session}" if key.session else key.version_uid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


class ProcessRuntime:
    runs_images = False

    def __init__(
        self,
        home: Home,
        pythons: HostPythons,
        *,
        instance_id: str,
        ca_bundle: Path | None = None,
        grace_seconds: float = 10.0,
        max_log_bytes: int = 10 * 1024 * 1024,
        start_timeout_seconds: float = 10.0,
        cgroups: bool = True,
    ) -> None:
        self.home = home
        self.pythons = pythons
        self.instance_id = instance_id
        self.ca_bundle = ca_bundle
        self.grace_seconds = grace_seconds
        self.max_log_bytes = max_log_bytes
        self.start_timeout_seconds = start_timeout_seconds
        # False: never a cgroup, only the memory watchdog and rlimits (what a machine without cgroups gets).
        self.cgroups = cgroups
        self.root = processes_root(home.root)
        self.sessions = sessions_root(home.root)
        # Supervisors this process started, kept to reap them once they exit (else they linger as zombies).
        self._launched: dict[int, subprocess.Popen[bytes]] = {}
        self._guard = threading.Lock()

    # -- the Runtime interface ----------------------------------------------------------------------

    def ensure_running(self, workload: Workload) -> Observed:
        if workload.code is None:
            raise RuntimeFailure(
                CONTAINER_RUNTIME_UNAVAILABLE,
                f"{workload.agent_name}:{workload.version} is image-based ({workload.image}), and this dockyard "
                "runs code-based versions as processes only. Image-based versions need a container engine: "
                + INSTALL_HINT + " Then start dockyard again (with --runtime auto or containers); versions that "
                "failed for this reason are retried.")
        folder = self.root / _folder_name(workload.key)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked(folder):
            current = self._observe_folder(folder)
            if current is not None and current.running:
                return current
            return self._start(workload, folder)

    def stop(self, key: WorkloadKey) -> None:
        folder = self.root / _folder_name(key)
        if not folder.exists():
            return
        with self._locked(folder):
            self._stop_folder(folder)
            shutil.rmtree(folder, ignore_errors=True)

    def discard(self, key: WorkloadKey) -> None:
        self.stop(key)
        if key.session:
            shutil.rmtree(self.sessions / _folder_name(WorkloadKey(key.session)), ignore_errors=True)

    def observe(self, key: WorkloadKey) -> Observed | None:
        self._reap()
        return self._observe_folder(self.root / _folder_name(key))

    def list(self) -> builtins.list[Observed]:
        self._reap()
        if not self.root.is_dir():
            return []
        found = []
        for folder in sorted(self.root.iterdir()):
            observed = self._observe_folder(folder) if folder.is_dir() else None
            if observed is not None:
                found.append(observed)
        return found

    def logs(self, key: WorkloadKey, tail: int = 100) -> builtins.list[str]:
        path = self.root / _folder_name(key) / "output.log"
        try:
            with open(path, "rb") as source:
                return _last_lines(source, tail)
        except FileNotFoundError:
            return []

    def follow_logs(self, key: WorkloadKey, tail: int = 100) -> _FileLogStream | None:
        folder = self.root / _folder_name(key)
        if not (folder / "workload.json").exists():
            return None
        return _FileLogStream(folder, tail, lambda: self._supervisor_alive(folder))

    # -- session files ------------------------------------------------------------------------------

    def write_session_file(self, workload: Workload, path: SessionPath, content: BinaryIO, size: int) -> None:
        session_homes.write(self._session_home(workload.key), path, content, size)

    def read_session_file(self, workload: Workload, path: SessionPath) -> SessionFileStream:
        return session_homes.read(self._session_home(workload.key), path)

    def list_session_files(self, workload: Workload, path: SessionPath) -> builtins.list[SessionFileEntry]:
        return session_homes.list_directory(self._session_home(workload.key), path)

    def delete_session_file(self, workload: Workload, path: SessionPath, recursive: bool) -> None:
        session_homes.delete(self._session_home(workload.key), path, recursive)

    def _session_home(self, key: WorkloadKey) -> Path:
        return self.sessions / _folder_name(WorkloadKey(key.session))

    # -- starting and stopping ----------------------------------------------------------------------

    def _start(self, workload: Workload, folder: Path) -> Observed:
        assert workload.code is not None
        self._stop_folder(folder)  # a supervisor that lingers after its agent exited
        (folder / "state.json").unlink(missing_ok=True)
        tmp = folder / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700)
        output = folder / "output.log"

        def write_log(line: str) -> None:
            with open(output, "a", encoding="utf-8", errors="replace") as sink:
                sink.write(line.rstrip("\n") + "\n")

        # Recorded before a build that may take minutes: a failed or abandoned build's folder is then
        # listed (not running), so the reconciler's stop removes it rather than leaving it behind.
        record: dict[str, Any] = {
            "instance": self.instance_id, "home": str(self.home.root.resolve()), "project": workload.project,
            "agent": workload.agent_name, "version": workload.version, "version_uid": workload.key.version_uid,
            "session": workload.key.session, "port": None, "content_hash": workload.code.content_hash,
        }
        _write_json(folder / "workload.json", record)
        prepared = self.pythons.prepare(workload.code, write_log)
        if prepared.warning:
            log.warning("%s:%s: %s", workload.agent_name, workload.version, prepared.warning)
        port = _free_port()
        home = tmp
        environment = {name: os.environ[name] for name in _INHERITED if name in os.environ}
        environment.update(workload.environment)
        environment.update({"PORT": str(port), "TMPDIR": str(tmp), "HOME": str(home),
                            "AGENTSERVER_STATE_ROOT": str(tmp / "agentserver")})
        if workload.key.session:
            home = self._session_home(workload.key)
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            environment.update({"HOME": str(home), "AGENTSERVER_STATE_ROOT": str(home / "agentserver")})
        if self.ca_bundle is not None:
            environment.setdefault("SSL_CERT_FILE", str(self.ca_bundle))
            environment.setdefault("REQUESTS_CA_BUNDLE", str(self.ca_bundle))
        environment.setdefault("PYTHONUNBUFFERED", "1")  # the log stream shows print() as it happens
        if prepared.python_path:
            environment["PYTHONPATH"] = os.pathsep.join(str(p) for p in prepared.python_path)
        spec = {
            "argv": prepared.command(workload.code.entry_point),
            "cwd": str(workload.code.tree),
            "env": environment,
            "memory_bytes": workload.memory_bytes,
            "cpu": float(workload.cpu),
            # As containers' ulimits; the supervisor keeps them under its own hard limits.
            "nofile": 16384,
            "nproc": 4096,
            "max_log_bytes": self.max_log_bytes,
            "grace_seconds": self.grace_seconds,
            "cgroups": self.cgroups,
        }
        record["port"] = port
        _write_json(folder / "workload.json", record)
        with open(folder / "supervisor.log", "ab") as supervisor_log:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_SUPERVISOR), str(folder)],
                stdin=subprocess.PIPE, stdout=supervisor_log, stderr=supervisor_log,
                start_new_session=True, close_fds=True, env={"PATH": os.environ.get("PATH", "")},
            )
        assert process.stdin is not None
        process.stdin.write(json.dumps(spec).encode())
        process.stdin.close()
        with self._guard:
            self._launched[process.pid] = process
        deadline = time.monotonic() + self.start_timeout_seconds
        while time.monotonic() < deadline:
            state = _read_json(folder / "state.json")
            if state is not None and "child_pid" in state:
                observed = self._observe_folder(folder)
                assert observed is not None
                log.info("started %s:%s%s as process %s on port %d (limits: %s)", workload.agent_name,
                         workload.version, f" session {workload.key.session}" if workload.key.session else "",
                         state.get("child_pid"), port, state.get("limits"))
                return observed
            if process.poll() is not None:
                break
            time.sleep(0.01)
        process.kill()
        detail = (folder / "supervisor.log").read_text(errors="replace")[-2000:]
        raise RuntimeFailure(CONTAINER_RUNTIME_UNAVAILABLE,
                             f"dockyard could not start the process supervisor for {workload.agent_name}:"
                             f"{workload.version}: {detail or 'it did not report in time'}")

    def _stop_folder(self, folder: Path) -> None:
        state = _read_json(folder / "state.json") or {}
        supervisor_pid: int | None = state.get("supervisor_pid")
        supervisor_start: int | None = state.get("supervisor_start")
        child_pid: int | None = state.get("child_pid")
        child_start: int | None = state.get("child_start")
        if process_supervisor.alive(supervisor_pid, supervisor_start):
            assert supervisor_pid is not None
            os.kill(supervisor_pid, signal.SIGTERM)  # it stops the agent: SIGTERM, then SIGKILL after the grace
            deadline = time.monotonic() + self.grace_seconds + 5.0
            while process_supervisor.alive(supervisor_pid, supervisor_start) and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.02)
        try:
            if supervisor_pid is not None and process_supervisor.alive(supervisor_pid, supervisor_start):
                os.kill(supervisor_pid, signal.SIGKILL)
            if child_pid is not None and process_supervisor.alive(child_pid, child_start):
                os.killpg(child_pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process_supervisor.remove_cgroups([Path(p) for p in state.get("cgroups") or []])
        self._reap()

    def _supervisor_alive(self, folder: Path) -> bool:
        state = _read_json(folder / "state.json") or {}
        return process_supervisor.alive(state.get("supervisor_pid"), state.get("supervisor_start"))

    def _reap(self) -> None:
        with self._guard:
            for pid, process in builtins.list(self._launched.items()):
                if process.poll() is not None:
                    del self._launched[pid]

    def _locked(self, folder: Path) -> _FolderLock:
        return _FolderLock(folder / ".lock")

    # -- observing ----------------------------------------------------------------------------------

    def _observe_folder(self, folder: Path) -> Observed | None:
        workload = _read_json(folder / "workload.json")
        if workload is None or workload.get("instance") != self.instance_id:
            return None
        state = _read_json(folder / "state.json") or {}
        child_pid, child_start = state.get("child_pid"), state.get("child_start")
        running = bool(state.get("running")) and process_supervisor.alive(child_pid, child_start)
        deadline = time.monotonic() + 2.0
        while (not running and state.get("running") and time.monotonic() < deadline
               and process_supervisor.alive(state.get("supervisor_pid"), state.get("supervisor_start"))):
            time.sleep(0.02)  # the agent just ended; its supervisor is about to record how
            state = _read_json(folder / "state.json") or state
        finished_at = None if running else state.get("finished_at")
        if not running and state.get("running"):
            # The supervisor was killed (its agent died with it): no exit status was recorded.
            finished_at = state.get("started_at")
        return Observed(
            key=WorkloadKey(workload.get("version_uid", ""), workload.get("session", "")),
            container_id=f"pid-{child_pid}" if child_pid else f"process-{folder.name}",
            agent_name=workload.get("agent", ""),
            version=workload.get("version", ""),
            running=running,
            exit_code=None if running else state.get("exit_code"),
            oom_killed=not running and bool(state.get("oom_killed")),
            started_at=state.get("started_at"),
            finished_at=finished_at,
            endpoint=f"http://127.0.0.1:{workload['port']}" if running else None,
        )


class _FolderLock:
    """One starter or stopper per workload at a time, across threads and processes (flock on a file)."""

    _threads: dict[Path, threading.Lock] = {}
    _threads_guard = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._threads_guard:
            self._thread_lock = self._threads.setdefault(path, threading.Lock())
        self._fd: int | None = None

    def __enter__(self) -> _FolderLock:
        self._thread_lock.acquire()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        try:
            if self._fd is not None:
                os.close(self._fd)
        finally:
            self._thread_lock.release()


def _last_lines(source: BinaryIO, count: int) -> builtins.list[str]:
    source.seek(0, os.SEEK_END)
    end = source.tell()
    block = 64 * 1024
    start = max(0, end - block)
    while True:
        source.seek(start)
        data = source.read(end - start)
        lines = data.splitlines()
        if start == 0 or len(lines) > count:
            break
        start = max(0, start - block)
    return [line.decode(errors="replace") for line in lines[-count:]] if count > 0 else []


class _FileLogStream:
    """The log file's last lines, then lines as they are written, until closed or the supervisor is gone."""

    def __init__(self, folder: Path, tail: int, supervisor_alive: Any) -> None:
        self._folder = folder
        self._tail = tail
        self._supervisor_alive = supervisor_alive
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        path = self._folder / "output.log"
        try:
            source = open(path, "rb")  # closed below, whichever way iteration ends
        except FileNotFoundError:
            return
        try:
            yield from _last_lines(source, self._tail)
            source.seek(0, os.SEEK_END)
            buffer = b""
            while not self._closed.is_set():
                chunk = source.read(64 * 1024)
                if chunk:
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        yield line.decode(errors="replace")
                    continue
                if not self._supervisor_alive():
                    break
                try:
                    if os.stat(path).st_ino != os.fstat(source.fileno()).st_ino:
                        source.close()
                        source = open(path, "rb")  # rotated: the new file from its start
                        continue
                except FileNotFoundError:
                    break
                self._closed.wait(0.1)
            if buffer:
                yield buffer.decode(errors="replace")
        finally:
            source.close()

    def close(self) -> None:
        self._closed.set()


# -- leftovers: `dockyard down` and `dockyard prune` -----------------------------------------------

def stop_home(home: Home, *, purge: bool) -> builtins.list[str]:
    """Stop every agent process of a home (dockyard itself stopped); with `purge`, delete session homes too.

    Returns what was removed, as "process FOLDER" and "session-home ID".
    """
    removed = []
    root = processes_root(home.root)
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir():
            continue
        with _FolderLock(folder / ".lock"):
            _stop_orphan(folder)
            shutil.rmtree(folder, ignore_errors=True)
        removed.append(f"process {folder.name}")
    sessions = sessions_root(home.root)
    if purge and sessions.is_dir():
        for folder in sorted(sessions.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(f"session-home {folder.name}")
    return removed


def orphaned_supervisors() -> builtins.list[tuple[int, str, str]]:
    """Supervisors on this machine whose home is gone or is another instance's now: (pid, folder, reason)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        argv = [part.decode(errors="replace") for part in raw if part]
        if len(argv) < 2 or not argv[-2].endswith("/runtime/process_supervisor.py"):
            continue
        folder = Path(argv[-1])
        home = folder.parent.parent
        workload = _read_json(folder / "workload.json")
        try:
            current = (home / "instance-id").read_text().strip()
        except FileNotFoundError:
            found.append((int(entry.name), str(folder), f"its home {home} no longer exists"
                          if not home.exists() else f"{home} is no dockyard home now"))
            continue
        except OSError:
            continue  # another user's home: not ours to judge
        if workload is None:
            found.append((int(entry.name), str(folder), f"its folder in {home} is gone"))
        elif workload.get("instance") != current:
            found.append((int(entry.name), str(folder), f"{home} now belongs to another dockyard instance"))
    return found


def stop_supervisor(pid: int, grace_seconds: float = 10.0) -> None:
    """Stop a supervisor (it stops its agent), killing both if it does not go within the grace."""
    started = process_supervisor.start_time(pid)
    if started is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds + 5.0
    while process_supervisor.alive(pid, started) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_supervisor.alive(pid, started):
        os.kill(pid, signal.SIGKILL)  # its agent dies with it (PR_SET_PDEATHSIG)


def _stop_orphan(folder: Path) -> None:
    state = _read_json(folder / "state.json") or {}
    pid, started = state.get("supervisor_pid"), state.get("supervisor_start")
    if isinstance(pid, int) and process_supervisor.alive(pid, started):
        stop_supervisor(pid)
    child, child_started = state.get("child_pid"), state.get("child_start")
    if isinstance(child, int) and process_supervisor.alive(child, child_started):
        try:
            os.killpg(child, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    process_supervisor.remove_cgroups([Path(p) for p in state.get("cgroups") or []])
