"""Where the code interpreter's Python runs: never in dockyard's own process (issue 11 §4).

One run is one fresh interpreter (`python3 -I -c CODE`) with the container's folder at /mnt/data as its
working directory: files persist between runs of a container, variables do not. Two backends, one
contract (`CodeSandbox.run`, blocking; call it from a thread):

- `ContainerSandbox`: a one-off container of the code image on the engine: no network, read-only root
  filesystem, a small private /tmp, /mnt/data bound read-write, all capabilities dropped, no new
  privileges, user 65534, pids, memory (no swap) and cpu limits, ulimits for open files, processes and
  file size; killed when the wall-clock limit passes; removed after every run.
- `ProcessSandbox`: `code_launcher.py` on this machine (namespaces, a cgroup where possible, rlimits,
  `nobody` when dockyard is root; its docstring says exactly what).

Output (stdout and stderr together) is kept up to a byte limit either way.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig, Ulimit

from dockyard.runtime.containers import LABEL, _ulimits
from dockyard.runtime.engine import Engine

log = logging.getLogger("dockyard.tools")

DATA_PATH = "/mnt/data"
CODE_LABEL = f"{LABEL}.code-interpreter"
NOBODY = 65534
# Run by path, never imported: it is a script of its own (stdlib only), as process_supervisor.py is.
_LAUNCHER = Path(__file__).with_name("code_launcher.py")
# What the code's interpreter sees of the world: a PATH and a locale, nothing of dockyard's environment.
_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
                "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}


# What runs the code: like a notebook cell, the value of a last bare expression is printed (`17 * 23` shows
# 391), as OpenAI's interpreter shows it; small models often write just the expression. The code arrives
# as sys.argv[1] and runs as __main__; its tracebacks name it "<code>".
RUNNER = (
    "import ast, sys\n"
    "source = sys.argv.pop(1)\n"
    "tree = ast.parse(source, '<code>')\n"
    "last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None\n"
    "scope = {'__name__': '__main__', '__builtins__': __builtins__}\n"
    "exec(compile(tree, '<code>', 'exec'), scope)\n"
    "if last is not None:\n"
    "    value = eval(compile(ast.Expression(last.value), '<code>', 'eval'), scope)\n"
    "    if value is not None:\n"
    "        print(repr(value))\n"
)


def python_arguments(code: str) -> list[str]:
    """The interpreter's arguments after its path: isolated mode (no environment, no user site), the runner."""
    return ["-I", "-c", RUNNER, code]


@dataclass(frozen=True)
class SandboxLimits:
    timeout_seconds: float = 30.0
    memory_bytes: int = 512 * 1024 * 1024
    output_bytes: int = 64 * 1024
    # The largest file the code may write (RLIMIT_FSIZE / ulimit fsize); bigger writes fail with EFBIG.
    file_bytes: int = 64 * 1024 * 1024
    cpu: float = 1.0
    pids: int = 64
    tmp_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class RunResult:
    exit_code: int | None
    output: str
    truncated: bool
    timed_out: bool
    oom_killed: bool
    duration_seconds: float
    # Why the code could not run at all (the sandbox failed, not the code); None when it ran.
    error: str | None = None

    @property
    def out_of_memory(self) -> bool:
        """Killed at the memory limit, or refused memory (Python's MemoryError: the address-space limit)."""
        return self.oom_killed or (self.exit_code not in (0, None) and "\nMemoryError" in "\n" + self.output)


class CodeSandbox(Protocol):
    kind: str

    def run(self, code: str, data: Path, limits: SandboxLimits) -> RunResult:
        """Run `code` with `data` as /mnt/data; blocks for at most the time limit (and a little cleanup)."""
        ...


def prepare_data_folder(data: Path) -> None:
    """/mnt/data must be writable by the sandbox's user (65534): its owner when dockyard is root, else open.

    The folder sits inside dockyard's home (0700), so no other user of this machine reaches it by path.
    """
    data.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        for path in [data, *data.rglob("*")]:
            if not path.is_symlink():
                os.chown(path, NOBODY, NOBODY)
        data.chmod(0o755)
    else:
        data.chmod(0o777)


class ProcessSandbox:
    """The code runs on this machine, in namespaces of its own, through `code_launcher.py`."""

    kind = "process"

    def __init__(self, hide: list[Path], python: Path | None = None) -> None:
        # Folders the code must not see (dockyard's home), covered by an empty tmpfs in its mount namespace.
        self.hide = [str(p.resolve()) for p in hide]
        self.python = python or find_python()

    def run(self, code: str, data: Path, limits: SandboxLimits) -> RunResult:
        spec = {
            "python": str(self.python), "arguments": python_arguments(code), "data": str(data.resolve()),
            "hide": self.hide,
            "memory_bytes": limits.memory_bytes, "cpu": limits.cpu, "pids": limits.pids,
            "timeout_seconds": limits.timeout_seconds, "output_bytes": limits.output_bytes,
            "file_bytes": limits.file_bytes, "tmp_bytes": limits.tmp_bytes,
            "drop_to_nobody": os.geteuid() == 0, "env": _ENVIRONMENT,
        }
        started = time.monotonic()
        try:
            answer = subprocess.run(
                [sys.executable, "-I", "-S", str(_LAUNCHER)], input=json.dumps(spec).encode(), capture_output=True,
                timeout=limits.timeout_seconds + 30, start_new_session=True, env={"PATH": _ENVIRONMENT["PATH"]},
                cwd="/")
            report = json.loads(answer.stdout)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            return RunResult(None, "", False, False, False, time.monotonic() - started,
                             error=f"the code interpreter's sandbox process failed: {exc}")
        return RunResult(report["exit_code"], report["output"], report["truncated"], report["timed_out"],
                         report["oom_killed"], report["duration"], report["error"])


def find_python() -> Path:
    """An interpreter every user may run (the code may run as nobody): the base one of dockyard's, or the system's."""
    candidates = [Path(getattr(sys, "_base_executable", "") or sys.executable), Path("/usr/bin/python3"),
                  Path("/usr/local/bin/python3")]
    for candidate in candidates:
        if candidate.is_file() and _everyone_may_run(candidate.resolve()):
            return candidate.resolve()
    return candidates[0]


def _everyone_may_run(path: Path) -> bool:
    if not path.stat().st_mode & 0o001:
        return False
    return all(parent.stat().st_mode & 0o001 for parent in path.parents)


class ContainerSandbox:
    """The code runs in a one-off, locked-down container of the code image on the engine."""

    kind = "container"

    def __init__(self, engine: Engine, image: str, instance_id: str) -> None:
        self.engine = engine
        self.client = engine.client
        self.image = image
        self.instance_id = instance_id

    def run(self, code: str, data: Path, limits: SandboxLimits) -> RunResult:
        started = time.monotonic()
        failure = self._ensure_image()
        if failure is not None:
            return RunResult(None, "", False, False, False, time.monotonic() - started, error=failure)
        mode = "rw,U" if self.engine.is_podman else "rw"
        try:
            container = self.client.containers.create(
                self.image, entrypoint=["python3"], command=python_arguments(code), working_dir=DATA_PATH,
                user=f"{NOBODY}:{NOBODY}", environment=_ENVIRONMENT,
                labels={CODE_LABEL: self.instance_id},
                volumes={str(data.resolve()): {"bind": DATA_PATH, "mode": mode}},
                network_disabled=True, network_mode="none", read_only=True,
                tmpfs={"/tmp": f"rw,nosuid,nodev,size={limits.tmp_bytes}"},
                cap_drop=["ALL"], security_opt=["no-new-privileges"], privileged=False,
                pids_limit=limits.pids, mem_limit=limits.memory_bytes, memswap_limit=limits.memory_bytes,
                nano_cpus=int(limits.cpu * 1_000_000_000),
                ulimits=[*_ulimits_within(limits), Ulimit(name="fsize", soft=limits.file_bytes, hard=limits.file_bytes),
                         Ulimit(name="core", soft=0, hard=0),
                         Ulimit(name="data", soft=_data_limit(limits), hard=_data_limit(limits))],
                log_config=self._log_config(limits), detach=True,
            )
        except (APIError, DockerException) as exc:
            return RunResult(None, "", False, False, False, time.monotonic() - started,
                             error=f"the container engine refused the code interpreter's container: {_explain(exc)}")
        timed_out = False
        try:
            container.start()
            try:  # the limit is the code's own time: the engine's start-up is not counted against it
                status = container.wait(timeout=limits.timeout_seconds)
                exit_code: int | None = int(status.get("StatusCode", 1))
            except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
                timed_out = True
                try:
                    container.kill()
                except (APIError, DockerException):
                    pass
                exit_code = int(container.wait(timeout=30).get("StatusCode", 137))
            container.reload()
            state = container.attrs.get("State", {})
            raw = container.logs(stdout=True, stderr=True, tail="all")
            output = raw[:limits.output_bytes].decode(errors="replace")
            # Podman on cgroup v1 never sets OOMKilled: a SIGKILL that was not dockyard's is the kernel's.
            oom = bool(state.get("OOMKilled")) or (not timed_out and exit_code == 137)
            return RunResult(exit_code, output, len(raw) > limits.output_bytes, timed_out, oom,
                             time.monotonic() - started)
        except (APIError, DockerException, requests.exceptions.RequestException) as exc:
            return RunResult(None, "", False, timed_out, False, time.monotonic() - started,
                             error=f"the code interpreter's container failed in the engine: {_explain(exc)}")
        finally:
            try:
                container.remove(force=True, v=True)
            except (APIError, DockerException) as exc:
                log.warning("could not remove code interpreter container %s: %s", container.short_id, _explain(exc))

    def _ensure_image(self) -> str | None:
        try:
            self.client.images.get(self.image)
            return None
        except ImageNotFound:
            pass
        except (APIError, DockerException) as exc:
            return f"the container engine cannot inspect {self.image}: {_explain(exc)}"
        try:
            self.client.images.pull(self.image)
            return None
        except (APIError, DockerException) as exc:
            return (f"the code interpreter's image {self.image} is not available ({_explain(exc)}); pull it, or "
                    "name another image with python3 with `dockyard up --code-image IMAGE`")

    def _log_config(self, limits: SandboxLimits) -> LogConfig:
        """The engine keeps a little more than the output limit, so a flood of output cannot fill its disk."""
        limit = {"max-size": str(max(limits.output_bytes * 2, 1024 * 1024))}
        if self.engine.is_podman:
            return LogConfig(type="k8s-file", config=limit)
        return LogConfig(type=LogConfig.types.JSON, config={**limit, "max-file": "1"})


def _data_limit(limits: SandboxLimits) -> int:
    """RLIMIT_DATA (podman knows no "as"), under the memory limit by what the cgroup also charges (page cache).

    Allocations past it are a prompt MemoryError; with the cgroup's limit alone, code that eats memory
    can thrash at the limit (the kernel reclaiming the interpreter's own pages) until its time runs out.
    """
    return limits.memory_bytes - min(64 * 1024 * 1024, limits.memory_bytes // 4)


def _ulimits_within(limits: SandboxLimits) -> list[Ulimit]:
    """The runtime's nofile/nproc pair (both, within the engine's hard limits), nproc cut to the pids limit."""
    chosen = []
    for ulimit in _ulimits():
        cap = max(limits.pids, 16) if ulimit.name == "nproc" else 1024
        value = min(int(ulimit.soft or cap), cap)
        chosen.append(Ulimit(name=ulimit.name, soft=value, hard=value))
    return chosen


def _explain(exc: Exception) -> str:
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc)


def remove_leftovers(engine: Engine, instance_id: str) -> int:
    """Remove code interpreter containers a killed dockyard left behind; how many there were."""
    removed = 0
    try:
        for container in engine.client.containers.list(all=True, filters={"label": f"{CODE_LABEL}={instance_id}"}):
            try:
                container.remove(force=True, v=True)
                removed += 1
            except NotFound:
                pass
    except (APIError, DockerException) as exc:
        log.warning("could not list leftover code interpreter containers: %s", _explain(exc))
    return removed
