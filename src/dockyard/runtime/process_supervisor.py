"""The tiny parent that runs one workload of the process runtime, and records how it ends.

dockyard starts one supervisor per workload, in a session of its own, so it outlives dockyard (as a
container outlives a killed engine client). The supervisor starts the agent, puts it in its limits,
copies its output into the workload's log file, and writes the agent's state (pids with their start
times, exit code, OOM kill) to `state.json`, so a dockyard started later reads how the agent ended even
though it never saw it run. The agent dies with its supervisor (PR_SET_PDEATHSIG), so neither outlives
the other for long.

Limits: memory and CPU through a cgroup of the agent's own when this process may make one (cgroup v1:
the memory and cpu controllers, v2: memory.max and cpu.max), else a watchdog that kills the agent's
process group once its resident memory passes the limit (CPU is then not limited). Open files and
processes are capped with setrlimit either way, as containers' ulimits are.

Run as a script by path under `python -I -S`: stdlib only, so the agent's PYTHONPATH never decides what the
supervisor imports, and no site import, since one starts on every cold start. The spec arrives on
standard input, so the agent's environment, which can hold resolved secrets, is never written to disk.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PR_SET_PDEATHSIG = 1
_CFS_PERIOD_US = 100_000
_CHUNK = 64 * 1024


# -- /proc ------------------------------------------------------------------------------------------

def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), None when gone.

    A pid with the start time recorded for it is the same process; a reused pid has another. A zombie
    counts as gone: it has exited and only waits to be reaped.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = raw[raw.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int | None, started: int | None) -> bool:
    return pid is not None and started is not None and start_time(pid) == started


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2:].split()
        if len(fields) > 3 and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _resident_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except (OSError, ValueError):
            continue
    return total


# -- cgroups ----------------------------------------------------------------------------------------

def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per v1 controller ("memory", "cpu") and "" for the v2 hierarchy."""
    found: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def cgroup_mode() -> str:
    """"v2" when /sys/fs/cgroup is the unified hierarchy, "v1" when the memory controller is mounted there."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return "v2"
    if (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").exists():
        return "v1"
    return "none"


def make_cgroups(name: str, memory_bytes: int, cpu: float) -> list[Path]:
    """Child cgroups under this process's own, with the limits written; [] when this process may not.

    Nested under our own cgroup, so whatever limits dockyard itself runs under still hold for the agent.
    """
    own = _own_cgroups()
    made: list[Path] = []
    try:
        if cgroup_mode() == "v2":
            parent = CGROUP_ROOT / own.get("", "/").lstrip("/")
            group = parent / name
            group.mkdir(exist_ok=True)
            made.append(group)
            (group / "memory.max").write_text(str(memory_bytes))
            if (group / "memory.swap.max").exists():
                (group / "memory.swap.max").write_text("0")
            if (group / "cpu.max").exists():
                (group / "cpu.max").write_text(f"{int(cpu * _CFS_PERIOD_US)} {_CFS_PERIOD_US}")
            return made
        if cgroup_mode() != "v1":
            return []
        memory = CGROUP_ROOT / "memory" / own.get("memory", "/").lstrip("/") / name
        memory.mkdir(exist_ok=True)
        made.append(memory)
        (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
        swap = memory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            try:
                swap.write_text(str(memory_bytes))  # no swap beyond the limit, as containers get
            except OSError:
                pass
        cpu_root = CGROUP_ROOT / "cpu"
        if (cpu_root / "cpu.cfs_quota_us").exists():
            group = cpu_root / own.get("cpu", "/").lstrip("/") / name
            group.mkdir(exist_ok=True)
            made.append(group)
            (group / "cpu.cfs_period_us").write_text(str(_CFS_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(int(cpu * _CFS_PERIOD_US)))
        return made
    except OSError:
        remove_cgroups(made)
        return []


def oom_kills(groups: list[Path]) -> int:
    """How many times the kernel's OOM killer struck in these cgroups (v1 memory.oom_control, v2 memory.events)."""
    total = 0
    for group in groups:
        for name in ("memory.oom_control", "memory.events"):
            try:
                text = (group / name).read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    total += int(value)
    return total


def remove_cgroups(groups: list[Path]) -> None:
    for group in groups:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)  # the last member is still leaving


# -- the supervisor ---------------------------------------------------------------------------------

class Supervisor:
    def __init__(self, directory: Path, spec: dict[str, Any]) -> None:
        self.directory = directory
        self.spec = spec
        self.state_path = directory / "state.json"
        self.log_path = directory / "output.log"
        self.max_log_bytes = int(spec.get("max_log_bytes", 10 * 1024 * 1024))
        self.grace_seconds = float(spec.get("grace_seconds", 10.0))
        self.stopping = False
        self.state: dict[str, Any] = {}

    def write_state(self, **changes: Any) -> None:
        self.state.update(changes)
        tmp = self.state_path.with_name(f".state.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.state))
            os.replace(tmp, self.state_path)
        except OSError:
            pass  # the workload's folder was removed (a stop, or its home deleted): nothing to record to

    def run(self) -> int:
        spec = self.spec
        groups = (make_cgroups(f"dockyard-{self.directory.name}", int(spec["memory_bytes"]), float(spec["cpu"]))
                  if spec.get("cgroups", True) else [])
        oom_before = oom_kills(groups)
        limits = "cgroup " + cgroup_mode() if groups else "watchdog"
        read_end, write_end = os.pipe()
        log = open(self.log_path, "ab")  # held for the agent's whole life
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            pid = self._spawn(write_end, groups)
        except OSError as exc:
            log.write(f"dockyard: cannot start {spec['argv'][0]}: {exc.strerror or exc}\n".encode())
            log.close()
            self.write_state(supervisor_pid=os.getpid(), supervisor_start=start_time(os.getpid()), child_pid=None,
                             child_start=None, running=False, exit_code=127, oom_killed=False,
                             started_at=time.time(), finished_at=time.time(), limits=limits)
            remove_cgroups(groups)
            return 0
        os.close(write_end)
        self.write_state(supervisor_pid=os.getpid(), supervisor_start=start_time(os.getpid()), child_pid=pid,
                         child_start=start_time(pid), running=True, exit_code=None, oom_killed=False,
                         started_at=time.time(), finished_at=None, limits=limits,
                         cgroups=[str(g) for g in groups])
        status: int | None = None
        watchdog_kill = False
        term_sent_at: float | None = None
        pipe_open = True
        next_watch = 0.0
        while status is None or pipe_open:
            if pipe_open:
                ready, _, _ = select.select([read_end], [], [], 0.1)
                if ready:
                    chunk = os.read(read_end, _CHUNK)
                    if chunk:
                        log = self._append(log, chunk)
                    else:
                        pipe_open = False
            elif status is None:
                time.sleep(0.1)
            if status is None:
                done, raw = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = raw
                    # Whatever the agent left behind in its group goes with it, as with a container.
                    self._signal_group(pid, signal.SIGKILL)
            if status is not None and pipe_open and term_sent_at is None:
                term_sent_at = time.monotonic()  # a grandchild holds the pipe: read what is left, briefly
            if term_sent_at is not None and status is not None and time.monotonic() - term_sent_at > 1.0:
                break
            if self.stopping and term_sent_at is None and status is None:
                self._signal_group(pid, signal.SIGTERM)
                term_sent_at = time.monotonic()
            if (status is None and term_sent_at is not None
                    and time.monotonic() - term_sent_at > self.grace_seconds):
                self._signal_group(pid, signal.SIGKILL)
            if not groups and status is None and time.monotonic() >= next_watch:
                next_watch = time.monotonic() + 0.1
                if _resident_bytes(_group_members(pid)) > int(spec["memory_bytes"]):
                    watchdog_kill = True
                    self._signal_group(pid, signal.SIGKILL)
        os.close(read_end)
        log.close()
        assert status is not None
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code < 0:
            exit_code = 128 - exit_code  # killed by a signal: 128 + its number, as containers report it
        oom = watchdog_kill or (bool(groups) and oom_kills(groups) > oom_before)
        self.write_state(running=False, exit_code=exit_code, oom_killed=oom, finished_at=time.time(),
                         stopped=self.stopping)
        remove_cgroups(groups)
        return 0

    def _spawn(self, output: int, groups: list[Path]) -> int:
        spec = self.spec
        nofile, nproc = int(spec.get("nofile", 16384)), int(spec.get("nproc", 4096))
        libc = ctypes.CDLL(None, use_errno=True)
        pid = os.fork()
        if pid:
            return pid
        try:  # the child, until exec: no Python-level locks taken, nothing but system calls
            os.setsid()
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            for group in groups:
                with open(group / "cgroup.procs", "w") as procs:
                    procs.write(str(os.getpid()))
            for kind, value in ((resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_NPROC, nproc)):
                _soft, hard = resource.getrlimit(kind)
                value = value if hard == resource.RLIM_INFINITY else min(value, hard)
                resource.setrlimit(kind, (value, value))
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(output, 1)
            os.dup2(output, 2)
            os.closerange(3, 65536)
            os.chdir(spec["cwd"])
            os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
        except BaseException as exc:  # noqa: BLE001 - report anything, then leave without cleanup
            try:
                os.write(2, f"dockyard: cannot start {spec['argv'][0]}: {exc}\n".encode())
            finally:
                os._exit(127)
        raise AssertionError("unreachable")

    def _append(self, log: Any, chunk: bytes) -> Any:
        log.write(chunk)
        log.flush()
        if log.tell() > self.max_log_bytes:
            log.close()
            os.replace(self.log_path, self.log_path.with_name("output.log.1"))  # one older file kept, as docker
            log = open(self.log_path, "ab")
        return log

    def _signal_group(self, pid: int, signum: int) -> None:
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _on_term(self, _signum: int, _frame: object) -> None:
        self.stopping = True


def main() -> int:
    directory = Path(sys.argv[1])
    spec = json.loads(sys.stdin.read())
    sys.stdin.close()
    return Supervisor(directory, spec).run()


if __name__ == "__main__":
    sys.exit(main())
