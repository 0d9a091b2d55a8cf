"""Runs one piece of untrusted Python on this machine, walled off, and reports how it ended (no engine needed).

The code interpreter's process sandbox (`dockyard.runtime.code_sandboxes.ProcessSandbox`) starts this
script once per run, as `python -I -S code_launcher.py`, with the spec on standard input. It is stdlib
only (no site import, nothing of dockyard's environment), like the process runtime's supervisor, whose
cgroup helpers it borrows from the same folder.

What the code gets, and what it does not:

- new mount, network, pid, IPC and UTS namespaces (and a user namespace when dockyard is not root):
  no network at all (only a loopback that is down), its own /proc, a private /tmp, an empty /mnt with the
  container's folder bound at /mnt/data, and dockyard's home covered by an empty read-only tmpfs;
- when dockyard is root, the code runs as `nobody` (65534) with no supplementary groups;
- memory, cpu and a process count in a cgroup of its own where this process may make one, and rlimits
  either way (address space = the memory limit, file size, open files, cpu seconds, no core dumps);
- a wall-clock limit: the whole process group is killed when it passes, and with it every process in the
  pid namespace (the code's process is that namespace's init);
- its output (stdout and stderr, interleaved) read through a pipe and kept up to a byte limit; the rest is
  read and dropped, so a chatty program can neither block nor fill anything.

Answers one JSON object on standard output: exit_code, timed_out, oom_killed, output (text), truncated,
isolation (what was in force), error (why the code could not be started, else null).
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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.runtime import process_supervisor
else:  # run as a script, outside dockyard's package: the sibling script (stdlib only) by its folder
    sys.path.insert(0, str(Path(__file__).parent))
    import process_supervisor

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_PR_SET_PDEATHSIG = 1
_NOBODY = 65534
_CHUNK = 64 * 1024
# Exit codes of the launcher's own failures before the code ran (never a Python program's usual codes).
_ISOLATION_FAILED = 213

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(), flags,
                       data and data.encode()), f"mount {target}")


def _pids_group(name: str, pids: int, groups: list[Path]) -> list[Path]:
    """A pids cgroup (v1), or pids.max in the v2 group already made; [] when neither can be had."""
    for group in groups:
        if (group / "pids.max").exists():
            try:
                (group / "pids.max").write_text(str(pids))
                return []
            except OSError:
                return []
    root = process_supervisor.CGROUP_ROOT / "pids"
    if not (root / "pids.max").exists() and not (root / "cgroup.procs").exists():
        return []
    own = process_supervisor._own_cgroups().get("pids", "/")  # noqa: SLF001 - a sibling script's helper
    group = root / own.lstrip("/") / name
    try:
        group.mkdir(exist_ok=True)
        (group / "pids.max").write_text(str(pids))
    except OSError:
        process_supervisor.remove_cgroups([group])
        return []
    return [group]


def _kill_groups(groups: list[Path]) -> None:
    """Kill whatever is still in the cgroups (a process that left the process group with setsid)."""
    for _ in range(20):
        left = False
        for group in groups:
            try:
                members = [int(p) for p in (group / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                continue
            for pid in members:
                left = True
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not left:
            return
        time.sleep(0.02)


def _inner(spec: dict[str, Any], output: int) -> None:
    """The code's own process, pid 1 of the new pid namespace: finish the walls, then exec the code."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount("tmpfs", "/mnt", "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=755")
    os.mkdir("/mnt/data", 0o755)
    _mount(spec["data"], "/mnt/data", None, _MS_BIND)  # bound before the home that holds it is covered
    for hidden in spec["hide"]:
        if os.path.isdir(hidden):
            _mount("tmpfs", hidden, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=4k,mode=755")
    _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={spec['tmp_bytes']},mode=1777")
    try:
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    except OSError:
        pass  # some machines refuse a fresh proc in a user namespace; the host's then shows pids, not more
    memory = int(spec["memory_bytes"])
    for kind, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, int(spec["file_bytes"])),
                        (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CORE, 0),
                        (resource.RLIMIT_CPU, int(spec["timeout_seconds"]) + 5)):
        resource.setrlimit(kind, (value, value))
    if spec["drop_to_nobody"]:
        resource.setrlimit(resource.RLIMIT_NPROC, (int(spec["pids"]), int(spec["pids"])))
        os.setgroups([])
        os.setgid(_NOBODY)
        os.setuid(_NOBODY)
    os.chdir("/mnt/data")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.closerange(3, 65536)
    os.execve(spec["python"], [spec["python"], *spec["arguments"]], spec["env"])


def _relay(spec: dict[str, Any], groups: list[Path], output: int) -> None:
    """The process between the launcher and the code: joins the limits, makes the namespaces, waits.

    Never returns: it exits with the code's exit status (128 + a signal's number when killed).
    """
    try:
        os.setpgid(0, 0)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for group in groups:
            (group / "cgroup.procs").write_text(str(os.getpid()))
        flags = _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWUTS
        as_root = os.geteuid() == 0
        if not as_root:
            flags |= _CLONE_NEWUSER
        uid, gid = os.geteuid(), os.getegid()
        _check(_libc.unshare(flags), "unshare")
        if not as_root:
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        child = os.fork()
        if child == 0:
            try:
                _inner(spec, output)
            except BaseException as exc:  # noqa: BLE001 - report anything, then leave without cleanup
                os.write(output, f"dockyard: the sandbox could not be set up: {exc}\n".encode())
            os._exit(_ISOLATION_FAILED)
        os.close(output)
        _, status = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(status)
        os._exit(128 - code if code < 0 else code)
    except BaseException as exc:  # noqa: BLE001
        try:
            os.write(output, f"dockyard: the sandbox could not be set up: {exc}\n".encode())
        finally:
            os._exit(_ISOLATION_FAILED)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    name = f"dockyard-code-{os.getpid()}"
    memory, cpu, pids = int(spec["memory_bytes"]), float(spec["cpu"]), int(spec["pids"])
    groups = process_supervisor.make_cgroups(name, memory, cpu)
    groups += _pids_group(name, pids, groups)
    oom_before = process_supervisor.oom_kills(groups)
    isolation = ["namespaces", "cgroup" if groups else "rlimits", "nobody" if spec["drop_to_nobody"] else "own-user"]
    read_end, write_end = os.pipe()
    started = time.monotonic()
    relay = os.fork()
    if relay == 0:
        os.close(read_end)
        _relay(spec, groups, write_end)
    os.close(write_end)
    limit = int(spec["output_bytes"])
    kept = bytearray()
    dropped = 0
    timed_out = False
    deadline = started + float(spec["timeout_seconds"])
    status: int | None = None
    pipe_open = True
    while status is None or pipe_open:
        now = time.monotonic()
        if now >= deadline and not timed_out:
            timed_out = True
            _signal_group(relay, signal.SIGKILL)
            _kill_groups(groups)
        if pipe_open:
            wait = 0.1 if timed_out else max(0.0, min(0.1, deadline - now))
            ready, _, _ = select.select([read_end], [], [], wait)
            if ready:
                chunk = os.read(read_end, _CHUNK)
                if not chunk:
                    pipe_open = False
                else:
                    room = max(0, limit - len(kept))
                    kept += chunk[:room]
                    dropped += len(chunk) - min(room, len(chunk))
        else:
            time.sleep(0.02)
        if status is None:
            done, raw = os.waitpid(relay, os.WNOHANG)
            if done:
                status = raw
                _signal_group(relay, signal.SIGKILL)  # what the code left behind goes with it
        if timed_out and time.monotonic() > deadline + 5:
            break  # a process that escaped every group holds the pipe: stop reading it
    os.close(read_end)
    if status is None:
        _, status = os.waitpid(relay, 0)
    _kill_groups(groups)
    exit_code = os.waitstatus_to_exitcode(status)
    if exit_code < 0:
        exit_code = 128 - exit_code
    oom = bool(groups) and process_supervisor.oom_kills(groups) > oom_before
    process_supervisor.remove_cgroups(groups)
    error = None
    text = kept.decode(errors="replace")
    if exit_code == _ISOLATION_FAILED and text.startswith("dockyard: the sandbox could not be set up"):
        error = text.strip()
        text = ""
    return {"exit_code": exit_code, "timed_out": timed_out, "oom_killed": oom, "output": text,
            "truncated": dropped > 0, "dropped_bytes": dropped, "isolation": isolation, "error": error,
            "duration": time.monotonic() - started}


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def main() -> int:
    spec = json.loads(sys.stdin.read())
    sys.stdin.close()
    sys.stdout.write(json.dumps(run(spec)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
